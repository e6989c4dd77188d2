//! Legacy SCP (`scp -O`, and old clients that speak nothing else): the
//! `scp -t` (upload) and `scp -f` (download) commands on a session
//! channel, speaking the rcp protocol over the same [`SessionVfs`] as
//! SFTP: permissions, rules, quotas, audit and events alike. There is no
//! shell: paths are taken as written, never expanded.
//!
//! The protocol, as OpenSSH's `scp.c` speaks it: the receiving side
//! acknowledges each line with a zero byte, or with `\x01message\n` (this
//! file failed, go on) or `\x02message\n` (stop). Lines are `C<mode> <size>
//! <name>` (a file; its bytes and a zero byte follow), `D<mode> 0 <name>`
//! and `E` (into and out of a folder), `T<mtime> 0 <atime> 0` (the times
//! of what follows, with `-p`).

use crate::policy::SessionVfs;
use crate::vfs::{FileStat, FsError, UserPath, Vfs, WriteMode};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// A control line longer than this is no SCP client's.
const MAX_LINE: usize = 4096;
/// What is read from the channel at once into an upload.
const CHUNK: usize = 256 << 10;

/// What `scp` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub struct Scp {
    pub direction: Direction,
    /// `-r`: folders, recursively.
    pub recursive: bool,
    /// `-p`: file times.
    pub times: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Direction {
    /// `scp -t TARGET`: the client uploads into `TARGET`; `-d`: it must be a folder.
    Sink { target: String, folder: bool },
    /// `scp -f PATH…`: the client downloads these.
    Source { paths: Vec<String> },
}

/// The `scp` command in `words` (as the shell would split the line), if
/// it is one the gateway runs.
pub fn parse(words: &[String]) -> Option<Scp> {
    let (program, args) = words.split_first()?;
    if program != "scp" {
        return None;
    }
    let (mut sink, mut source, mut recursive, mut times, mut folder) =
        (false, false, false, false, false);
    let mut rest = args;
    while let Some((word, tail)) = rest.split_first() {
        if word == "--" {
            rest = tail;
            break;
        }
        let Some(flags) = word.strip_prefix('-').filter(|f| !f.is_empty()) else {
            break;
        };
        for flag in flags.chars() {
            match flag {
                't' => sink = true,
                'f' => source = true,
                'r' => recursive = true,
                'p' => times = true,
                'd' => folder = true,
                'v' | 'q' => {}
                _ => return None,
            }
        }
        rest = tail;
    }
    let direction = match (sink, source, rest) {
        (true, false, [target]) => Direction::Sink {
            target: target.clone(),
            folder,
        },
        (false, true, paths) if !paths.is_empty() => Direction::Source {
            paths: paths.to_vec(),
        },
        _ => return None,
    };
    Some(Scp {
        direction,
        recursive,
        times,
    })
}

/// Why a transfer stopped.
enum Stop {
    /// The channel broke or the client sent nonsense: nothing more is said.
    Broken,
}

/// The channel as SCP reads and writes it.
struct Wire<R, W> {
    r: BufReader<R>,
    w: W,
    /// Files and folders that failed (the exit status is 1 if any did).
    failed: u32,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Wire<R, W> {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        self.w.write_all(bytes).await.map_err(|_| Stop::Broken)?;
        self.w.flush().await.map_err(|_| Stop::Broken)
    }

    async fn ok(&mut self) -> Result<(), Stop> {
        self.send(b"\0").await
    }

    /// Tells the client that `path` failed, and goes on.
    async fn warn(&mut self, path: &str, why: &str) -> Result<(), Stop> {
        self.failed += 1;
        tracing::info!(path, reason = why, "scp: refused");
        let line = format!("\x01scp: {path}: {why}\n").replace(['\r'], " ");
        self.send(line.as_bytes()).await
    }

    /// One control line, without its `\n`; `None` at the end of input.
    async fn line(&mut self) -> Result<Option<String>, Stop> {
        let mut line = Vec::new();
        let read = (&mut self.r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|_| Stop::Broken)?;
        match (read, line.pop()) {
            (0, _) => Ok(None),
            (_, Some(b'\n')) => String::from_utf8(line).map(Some).map_err(|_| Stop::Broken),
            _ => Err(Stop::Broken),
        }
    }

    async fn byte(&mut self) -> Result<u8, Stop> {
        self.r.read_u8().await.map_err(|_| Stop::Broken)
    }

    /// The client's answer to what was sent: `Ok(true)` if it took it,
    /// `Ok(false)` if it refused that file (it says why on its side).
    async fn answer(&mut self) -> Result<bool, Stop> {
        match self.byte().await? {
            0 => Ok(true),
            1 => {
                self.line().await?;
                self.failed += 1;
                Ok(false)
            }
            _ => Err(Stop::Broken),
        }
    }
}

/// Runs `scp` on `channel` over `vfs`: the exit status (0 if every file
/// went, 1 otherwise).
pub async fn run(
    scp: Scp,
    channel: &mut russh::Channel<russh::server::Msg>,
    vfs: &SessionVfs,
) -> u32 {
    let w = channel.make_writer();
    let mut wire = Wire {
        r: BufReader::new(channel.make_reader()),
        w,
        failed: 0,
    };
    let done = match &scp.direction {
        Direction::Sink { target, folder } => sink(&mut wire, vfs, &scp, target, *folder).await,
        Direction::Source { paths } => source(&mut wire, vfs, &scp, paths).await,
    };
    match done {
        Ok(()) if wire.failed == 0 => 0,
        _ => 1,
    }
}

/// A `T` line's modification time.
fn times_of(line: &str) -> Option<DateTime<Utc>> {
    let mtime = line.split_whitespace().next()?.parse::<i64>().ok()?;
    DateTime::from_timestamp(mtime, 0)
}

/// A `C` or `D` line: its size and name (one name, nothing else).
fn entry_of(line: &str) -> Option<(u64, &str)> {
    let mut parts = line.splitn(3, ' ');
    let _mode = parts
        .next()
        .filter(|m| m.len() == 4 && m.bytes().all(|b| b.is_ascii_digit()))?;
    let size = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return None;
    }
    Some((size, name))
}

async fn sink<R, W>(
    wire: &mut Wire<R, W>,
    vfs: &SessionVfs,
    scp: &Scp,
    target: &str,
    folder: bool,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let target = match UserPath::parse(target) {
        Ok(t) => t,
        Err(e) => {
            let line = format!("\x02scp: {target}: {}\n", e.client_message());
            wire.failed += 1;
            return wire.send(line.as_bytes()).await;
        }
    };
    let target_is_folder = vfs.stat(&target).await.is_ok_and(|s| s.is_dir);
    if folder && !target_is_folder {
        wire.failed += 1;
        let line = format!("\x02scp: {}: not a folder\n", target.as_str());
        return wire.send(line.as_bytes()).await;
    }
    wire.ok().await?;
    // The folders entered (`D`), innermost last.
    let mut inside: Vec<UserPath> = Vec::new();
    let mut times = None;
    while let Some(line) = wire.line().await? {
        let (kind, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
        match kind {
            "T" => {
                times = times_of(rest);
                wire.ok().await?;
            }
            "E" => {
                inside.pop();
                wire.ok().await?;
            }
            "C" | "D" => {
                let Some((size, name)) = entry_of(rest) else {
                    return wire.send(b"\x02scp: a line no scp sends\n").await;
                };
                let at = match (inside.last(), target_is_folder) {
                    (Some(dir), _) => UserPath::resolve(dir, name),
                    (None, true) => UserPath::resolve(&target, name),
                    (None, false) => Ok(target.clone()),
                };
                let at = match at {
                    Ok(at) => at,
                    Err(e) => {
                        wire.warn(name, &e.client_message()).await?;
                        continue;
                    }
                };
                match kind {
                    "C" => receive(wire, vfs, &at, size, times.take()).await?,
                    _ if !scp.recursive => {
                        return wire.send(b"\x02scp: a folder, without -r\n").await;
                    }
                    _ => match enter(vfs, &at).await {
                        Ok(()) => {
                            inside.push(at);
                            times = None;
                            wire.ok().await?;
                        }
                        Err(e) => {
                            // Its contents follow all the same: nothing can take them.
                            return wire
                                .send(
                                    format!("\x02scp: {}: {}\n", at.as_str(), e.client_message())
                                        .as_bytes(),
                                )
                                .await;
                        }
                    },
                }
            }
            // The client gave up on a file of its own, or on everything.
            "\x01" => wire.failed += 1,
            "\x02" => return Err(Stop::Broken),
            _ => return wire.send(b"\x02scp: a line no scp sends\n").await,
        }
    }
    Ok(())
}

/// A folder to upload into: made if it is not there.
async fn enter(vfs: &SessionVfs, at: &UserPath) -> Result<(), FsError> {
    match vfs.stat(at).await {
        Ok(s) if s.is_dir => Ok(()),
        Ok(_) => Err(FsError::AlreadyExists),
        Err(FsError::NotFound) => vfs.mkdir(at).await,
        Err(e) => Err(e),
    }
}

/// One file of `size` bytes into `at`. Its size is known before its
/// bytes: a file the rules, `max_file_size` or the quota refuse is refused
/// before any is sent. The object appears only when every byte is in.
async fn receive<R, W>(
    wire: &mut Wire<R, W>,
    vfs: &SessionVfs,
    at: &UserPath,
    size: u64,
    mtime: Option<DateTime<Utc>>,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let opened = match vfs.room(&at.parent(), size).await {
        Ok(()) => vfs.open_write(at, WriteMode::Truncate).await,
        Err(e) => Err(e),
    };
    let mut upload = match opened {
        Ok(u) => Some(u),
        Err(e) => return wire.warn(at.as_str(), &e.client_message()).await,
    };
    wire.ok().await?;
    let mut failure = None;
    let mut offset = 0;
    let mut buf = vec![0; CHUNK.min(size as usize).max(1)];
    while offset < size {
        let want = buf.len().min((size - offset) as usize);
        let n = wire
            .r
            .read(&mut buf[..want])
            .await
            .map_err(|_| Stop::Broken)?;
        if n == 0 {
            // The client left mid-file: the upload is dropped, so aborted.
            return Err(Stop::Broken);
        }
        if let Some(u) = upload.as_mut()
            && let Err(e) = u.write_at(offset, Bytes::copy_from_slice(&buf[..n])).await
        {
            // The bytes still come: read and drop them, then say why.
            failure = Some(e);
            upload = None;
        }
        offset += n as u64;
    }
    // The client's own end of the file: 0 if it read it all.
    if wire.byte().await? != 0 {
        return Err(Stop::Broken);
    }
    let closed = match (upload, failure) {
        (Some(u), None) => u.close().await.map(drop),
        (_, Some(e)) => Err(e),
        (None, None) => Ok(()),
    };
    if let Err(e) = closed {
        return wire.warn(at.as_str(), &e.client_message()).await;
    }
    if let Some(t) = mtime {
        let _ = vfs.set_times(at, t).await;
    }
    wire.ok().await
}

async fn source<R, W>(
    wire: &mut Wire<R, W>,
    vfs: &SessionVfs,
    scp: &Scp,
    paths: &[String],
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // The client starts when it is ready.
    if wire.byte().await? != 0 {
        return Err(Stop::Broken);
    }
    for path in paths {
        let at = match UserPath::parse(path) {
            Ok(at) => at,
            Err(e) => {
                wire.warn(path, &e.client_message()).await?;
                continue;
            }
        };
        match vfs.stat(&at).await {
            Ok(stat) => Box::pin(send(wire, vfs, scp, &at, stat)).await?,
            Err(e) => wire.warn(path, &e.client_message()).await?,
        }
    }
    Ok(())
}

/// Sends the file or folder `at` (a folder only with `-r`).
async fn send<R, W>(
    wire: &mut Wire<R, W>,
    vfs: &SessionVfs,
    scp: &Scp,
    at: &UserPath,
    stat: FileStat,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let name = match at.file_name() {
        "" => "/",
        name => name,
    };
    if name.contains('\n') {
        return wire
            .warn(
                at.as_str(),
                "a name with a line break cannot be sent over scp",
            )
            .await;
    }
    if !stat.is_dir {
        return send_file(wire, vfs, scp, at, name).await;
    }
    if !scp.recursive {
        return wire.warn(at.as_str(), "a folder: use scp -r").await;
    }
    if !times(wire, scp, &stat).await? {
        return Ok(());
    }
    let mode = stat.mode() & 0o7777;
    {
        wire.send(format!("D{mode:04o} 0 {name}\n").as_bytes())
            .await?;
        if !wire.answer().await? {
            return Ok(());
        }
        match vfs.list(at).await {
            Ok(mut entries) => {
                while let Some(entry) = entries.next().await {
                    match entry.and_then(|e| Ok((UserPath::resolve(at, &e.name)?, e))) {
                        Ok((child, e)) => Box::pin(send(wire, vfs, scp, &child, e)).await?,
                        Err(e) => {
                            wire.warn(at.as_str(), &e.client_message()).await?;
                            break;
                        }
                    }
                }
            }
            Err(e) => wire.warn(at.as_str(), &e.client_message()).await?,
        }
        wire.send(b"E\n").await?;
        wire.answer().await?;
    }
    Ok(())
}

/// With `-p`, the `T` line of `stat`: whether the client took it.
async fn times<R, W>(wire: &mut Wire<R, W>, scp: &Scp, stat: &FileStat) -> Result<bool, Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if !scp.times {
        return Ok(true);
    }
    let t = stat.modified.timestamp().max(0);
    wire.send(format!("T{t} 0 {t} 0\n").as_bytes()).await?;
    wire.answer().await
}

/// Sends one file: its time as opening it found it (the one its upload
/// kept, where a listing has only the store's), its line, its bytes.
async fn send_file<R, W>(
    wire: &mut Wire<R, W>,
    vfs: &SessionVfs,
    scp: &Scp,
    at: &UserPath,
    name: &str,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let download = match vfs.open_read(at, 0).await {
        Ok(d) => d,
        Err(e) => return wire.warn(at.as_str(), &e.client_message()).await,
    };
    let stat = download.stat().clone();
    if !times(wire, scp, &stat).await? {
        return Ok(());
    }
    let mode = stat.mode() & 0o7777;
    wire.send(format!("C{mode:04o} {} {name}\n", stat.size).as_bytes())
        .await?;
    if !wire.answer().await? {
        return Ok(());
    }
    let mut sent = 0u64;
    let mut bytes = Box::pin(download.into_stream());
    while let Some(chunk) = bytes.next().await {
        match chunk {
            Ok(chunk) => {
                sent += chunk.len() as u64;
                wire.w.write_all(&chunk).await.map_err(|_| Stop::Broken)?;
            }
            // The size was promised: a file that cannot be read whole ends the transfer.
            Err(e) => {
                tracing::info!(path = at.as_str(), error = %e, "scp: a download failed midway");
                return Err(Stop::Broken);
            }
        }
    }
    if sent != stat.size {
        return Err(Stop::Broken);
    }
    wire.ok().await?;
    wire.answer().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn commands_as_openssh_scp_sends_them() {
        assert_eq!(
            parse(&words("scp -r -p -t -- /in")),
            Some(Scp {
                direction: Direction::Sink {
                    target: "/in".into(),
                    folder: false
                },
                recursive: true,
                times: true
            })
        );
        assert_eq!(
            parse(&words("scp -v -d -t /in")).map(|s| s.direction),
            Some(Direction::Sink {
                target: "/in".into(),
                folder: true
            })
        );
        assert_eq!(
            parse(&words("scp -f /a /b")).map(|s| s.direction),
            Some(Direction::Source {
                paths: vec!["/a".into(), "/b".into()]
            })
        );
        for refused in [
            "scp -t",
            "scp -t /a /b",
            "scp -f",
            "scp -t -f /a",
            "scp -x -t /a",
            "ls -t /a",
        ] {
            assert_eq!(parse(&words(refused)), None, "{refused}");
        }
    }

    #[test]
    fn lines_are_read_as_scp_writes_them() {
        assert_eq!(
            entry_of("0644 20971520 big file.bin"),
            Some((20 << 20, "big file.bin"))
        );
        assert_eq!(entry_of("0755 0 sub"), Some((0, "sub")));
        for bad in [
            "0644 12 ../x",
            "0644 12 a/b",
            "0644 x a",
            "644 1 a",
            "0644 1 ",
            "0644 1 .",
        ] {
            assert_eq!(entry_of(bad), None, "{bad}");
        }
        assert_eq!(
            times_of("1700000000 0 1700000001 0").map(|t| t.timestamp()),
            Some(1_700_000_000)
        );
    }
}
