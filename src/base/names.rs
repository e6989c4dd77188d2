//! Which names object storage can hold: one rule, used by the config
//! (mount paths), the VFS (client paths) and the remotes (keys found in a
//! bucket).

/// The longest user name, in bytes.
pub const MAX_USER_NAME: usize = 256;

/// Whether `name` can be a user's: the one rule of every identity source
/// (the users file, LDAP, the hook) and of every login. 1 to
/// [`MAX_USER_NAME`] bytes; no whitespace, `:` or `/`; no control or
/// invisible characters (a tab, a newline, a zero-width space, a
/// right-to-left override); and no letters of another script among
/// Latin ones (`аlice` with a Cyrillic `а`), which would look like
/// another user's name in the log and the console.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_USER_NAME {
        return Err(format!("a user name is 1 to {MAX_USER_NAME} bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || invisible(c) || c == ':' || c == '/')
    {
        return Err(format!("a user name cannot hold {c:?}"));
    }
    let latin = name.chars().any(|c| c.is_ascii_alphabetic());
    if latin && name.chars().any(|c| c.is_alphabetic() && !is_latin(c)) {
        return Err(
            "a user name cannot mix Latin letters with look-alikes of another script".into(),
        );
    }
    Ok(())
}

/// Unicode format characters that show as nothing: zero-width spaces and
/// joiners, direction marks and overrides, the BOM, the soft hyphen.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}')
}

/// Letters of the Latin script: ASCII, Latin-1, Latin Extended A and B,
/// Latin Extended Additional.
fn is_latin(c: char) -> bool {
    matches!(c, 'A'..='Z' | 'a'..='z' | '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}')
}

/// S3's limit on a key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Whether one path segment can be an S3 key segment that object_store accepts.
pub fn check_segment(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} cannot be a file name"));
    }
    if name.contains('/') {
        return Err(format!("{name:?} contains '/'"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        let what = if c == '\0' {
            "a NUL byte".to_string()
        } else {
            format!("control character {:?}", c)
        };
        return Err(format!(
            "{name:?} contains {what}, which object storage cannot hold"
        ));
    }
    if name.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a name longer than {MAX_KEY_BYTES} bytes cannot be stored"
        ));
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_one_rule() {
        for good in [
            "alice",
            "bob.smith",
            "j_doe-2",
            "alice@example.com",
            "josé",
            "Ωμέγα",
            "李雷",
        ] {
            assert!(check_user_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "alice\t",
            "al\nice",
            "a\u{c}b",
            "alice ",
            " alice",
            "a b",
            "a:b",
            "a/b",
            "al\u{200B}ice",
            "\u{202E}ecila",
            "\u{0430}lice",
            "alic\u{0435}",
        ] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_user_name(&"x".repeat(256)).is_ok());
        assert!(check_user_name(&"x".repeat(257)).is_err());
    }
}
