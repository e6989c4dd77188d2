//! The few commands an SSH client may run beside the SFTP subsystem: the
//! digest commands rclone and scripts use to verify files (`md5sum`,
//! `sha1sum`, `sha256sum PATH`, answered as coreutils prints them, from the
//! digest the upload kept), the shell probe rclone sends before them, and
//! legacy SCP ([`super::scp`]). There is no shell: anything else is refused.

use crate::base::{Checksums, Hashers};
use crate::policy::SessionVfs;
use crate::vfs::{Algorithm, UserPath, Vfs};
use russh::ChannelMsg;
use russh::server::Msg;

/// rclone's shell-type probe; a POSIX shell prints `%ComSpec%`.
const SHELL_PROBE: &str = "echo ${ShellId}%ComSpec%";

/// A command the gateway answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    ShellProbe,
    /// `sha256sum PATH`, or of its standard input without a path (the
    /// probe rclone runs to see that the command works).
    Digest {
        algorithm: Algorithm,
        path: Option<String>,
    },
    /// `scp -t` or `scp -f`.
    Scp(super::scp::Scp),
}

/// The command `line` asks for, if it is one the gateway answers.
pub fn parse(line: &str) -> Option<Command> {
    let line = line.trim();
    if line == SHELL_PROBE {
        return Some(Command::ShellProbe);
    }
    let (program, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    if program == "scp" {
        return super::scp::parse(&shell_words(line)?).map(Command::Scp);
    }
    // coreutils' names: the algorithm's, then `sum`.
    let algorithm = program.strip_suffix("sum").and_then(Algorithm::parse)?;
    let mut words = shell_words(rest)?;
    match words.len() {
        0 => Some(Command::Digest {
            algorithm,
            path: None,
        }),
        1 => Some(Command::Digest {
            algorithm,
            path: words.pop(),
        }),
        _ => None,
    }
}

/// Splits `text` as a POSIX shell splits plain words: backslash escapes,
/// single and double quotes. Anything a shell would run or expand (`;`,
/// `|`, `$`, backquotes, redirections…) unquoted makes it no command of ours.
fn shell_words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\\' => word.get_or_insert_default().push(chars.next()?),
            '\'' => {
                let w = word.get_or_insert_default();
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_default();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => w.push(c),
                            c => {
                                w.push('\\');
                                w.push(c);
                            }
                        },
                        '$' | '`' => return None,
                        c => w.push(c),
                    }
                }
            }
            ';' | '|' | '&' | '<' | '>' | '$' | '`' | '(' | ')' | '*' | '?' | '[' | '#' | '~' => {
                return None;
            }
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    Some(words)
}

/// Returns once the client has closed `channel`, or its session ended.
async fn closed(channel: &mut russh::Channel<Msg>) {
    while let Some(msg) = channel.wait().await {
        if matches!(msg, ChannelMsg::Close) {
            return;
        }
    }
}

/// Runs `command` on `channel`: its output, exit status, end.
pub async fn run(command: Command, mut channel: russh::Channel<Msg>, vfs: SessionVfs) {
    let (out, err, status) = match command {
        Command::Scp(scp) => {
            let status = super::scp::run(scp, &mut channel, &vfs).await;
            (String::new(), String::new(), status)
        }
        Command::ShellProbe => ("%ComSpec%\n".to_string(), String::new(), 0),
        Command::Digest {
            algorithm,
            path: None,
        } => {
            let mut hashers = Hashers::new(Checksums::only(algorithm));
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => hashers.update(&data),
                    ChannelMsg::Eof | ChannelMsg::Close => break,
                    _ => {}
                }
            }
            let hex = hashers.finish().hex(algorithm).unwrap_or_default();
            (format!("{hex}  -\n"), String::new(), 0)
        }
        Command::Digest {
            algorithm,
            path: Some(path),
        } => {
            let digest = async {
                match UserPath::parse(&path) {
                    Ok(p) => vfs.digest(&p, algorithm).await,
                    Err(e) => Err(e),
                }
            };
            // A client that closes the channel (or whose session ends) before
            // the answer stops the read that computes it.
            let digest = tokio::select! {
                digest = digest => digest,
                _ = closed(&mut channel) => return,
            };
            match digest {
                Ok(d) => (
                    format!("{}  {path}\n", crate::base::hex(&d)),
                    String::new(),
                    0,
                ),
                Err(e) => (
                    String::new(),
                    format!("{}sum: {path}: {}\n", algorithm.name(), e.client_message()),
                    1,
                ),
            }
        }
    };
    // The client may be gone already: nothing is left to tell it then.
    if !out.is_empty() {
        let _ = channel.data_bytes(out.into_bytes()).await;
    }
    if !err.is_empty() {
        let _ = channel.extended_data_bytes(1, err.into_bytes()).await;
    }
    let _ = channel.exit_status(status).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(algorithm: Algorithm, path: Option<&str>) -> Option<Command> {
        Some(Command::Digest {
            algorithm,
            path: path.map(str::to_string),
        })
    }

    #[test]
    fn commands_as_rclone_and_scripts_send_them() {
        assert_eq!(parse("echo ${ShellId}%ComSpec%"), Some(Command::ShellProbe));
        assert_eq!(parse("md5sum"), digest(Algorithm::Md5, None));
        assert_eq!(
            parse("sha256sum /dir/a\\ b.txt"),
            digest(Algorithm::Sha256, Some("/dir/a b.txt"))
        );
        assert_eq!(
            parse("sha1sum '/it'\\''s here'"),
            digest(Algorithm::Sha1, Some("/it's here"))
        );
        assert_eq!(
            parse("md5sum \"/x \\\"y\\\"\""),
            digest(Algorithm::Md5, Some("/x \"y\""))
        );
    }

    #[test]
    fn anything_a_shell_would_run_is_refused() {
        for line in [
            "ls",
            "md5sum a b",
            "md5sum a; rm -rf /",
            "md5sum $(id)",
            "md5sum `id`",
            "md5sum a | nc host 1",
            "md5sum \"$HOME\"",
            "md5sum 'unterminated",
            "md5sum a > b",
            "bash -c md5sum",
        ] {
            assert_eq!(parse(line), None, "{line}");
        }
    }
}
