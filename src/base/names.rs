//! Which names object storage can hold: one rule, used by the config
//! (mount paths), the VFS (client paths) and the remotes (keys found in a
//! bucket).

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
