//! User paths: normalised inside the user's tree, which nothing can leave.
//!
//! `..` at the root stays at the root (as in a chroot), `.` and empty
//! segments fold away, and a name that S3 or object_store cannot hold is
//! refused here, before any request is made.

use crate::base::{FsError, MAX_KEY_BYTES, check_segment};

/// A normalised absolute path in a user's tree: `/` or `/a/b`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserPath(String);

impl UserPath {
    pub fn root() -> Self {
        UserPath("/".into())
    }

    /// Resolves `input` (absolute, or relative to `cwd`) inside the tree.
    pub fn resolve(cwd: &UserPath, input: &str) -> Result<UserPath, FsError> {
        let mut parts: Vec<&str> = if input.starts_with('/') {
            Vec::new()
        } else {
            cwd.segments().collect()
        };
        for seg in input.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => {
                    check_segment(name).map_err(FsError::InvalidName)?;
                    parts.push(name);
                }
            }
        }
        Ok(UserPath(format!("/{}", parts.join("/"))))
    }

    /// Parses an absolute path from the user's side.
    pub fn parse(input: &str) -> Result<UserPath, FsError> {
        Self::resolve(&Self::root(), input)
    }

    /// Parses the path of a file to write: a name ending in `/` names a
    /// folder, and would otherwise be stored as the file without it.
    pub fn parse_file(input: &str) -> Result<UserPath, FsError> {
        if input.ends_with('/') {
            return Err(FsError::InvalidName(format!(
                "{input:?} ends with '/': a file name cannot"
            )));
        }
        Self::parse(input)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment; empty for the root.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    pub fn parent(&self) -> UserPath {
        match self.0.rfind('/') {
            Some(0) | None => UserPath::root(),
            Some(i) => UserPath(self.0[..i].to_string()),
        }
    }

    /// The part of this path below `base`, without a leading `/`; `None` when outside.
    pub fn strip_prefix(&self, base: &str) -> Option<&str> {
        if base == "/" {
            return Some(self.0.trim_start_matches('/'));
        }
        match self.0.strip_prefix(base)? {
            "" => Some(""),
            rest => rest.strip_prefix('/'),
        }
    }
}

impl std::fmt::Display for UserPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Joins a key prefix and a relative path into an object key, checking the length.
pub fn join_key(prefix: &str, rel: &str) -> Result<String, FsError> {
    let key = match (prefix.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{rel}"),
    };
    if key.len() + 1 > MAX_KEY_BYTES {
        return Err(FsError::InvalidName(format!(
            "the path is too long: object keys hold at most {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_stay_inside() {
        let cwd = UserPath::parse("/in/box").unwrap();
        let cases = [
            ("../../../etc/passwd", "/etc/passwd"),
            ("/../../..", "/"),
            ("..", "/in"),
            ("//etc//passwd", "/etc/passwd"),
            ("/./././", "/"),
            ("a/../../../../b", "/b"),
            ("%2e%2e/%2e%2e/x", "/in/box/%2e%2e/%2e%2e/x"),
            ("..\\..\\x", "/in/box/..\\..\\x"),
            ("/a/b/../../../../../../root", "/root"),
            ("....//....//x", "/in/box/..../..../x"),
        ];
        for (input, want) in cases {
            let got = UserPath::resolve(&cwd, input).unwrap();
            assert_eq!(got.as_str(), want, "input {input:?}");
            assert!(got.as_str().starts_with('/'));
            assert!(got.segments().all(|s| s != ".." && s != "."), "{input:?}");
        }
    }

    #[test]
    fn names_object_storage_cannot_hold_are_refused() {
        for bad in ["a\0b", "tab\there", "nl\nx", "del\x7f"] {
            let err = UserPath::parse(&format!("/ok/{bad}")).unwrap_err();
            assert!(matches!(err, FsError::InvalidName(_)), "{bad:?}");
        }
        let long = "x".repeat(2000);
        assert!(UserPath::parse(&format!("/{long}")).is_err());
        assert!(join_key(&"p".repeat(1000), &"q".repeat(30)).is_err());
    }

    #[test]
    fn parent_and_prefix() {
        let p = UserPath::parse("/a/b/c").unwrap();
        assert_eq!(p.parent().as_str(), "/a/b");
        assert_eq!(p.file_name(), "c");
        assert_eq!(p.strip_prefix("/a"), Some("b/c"));
        assert_eq!(p.strip_prefix("/a/b/c"), Some(""));
        assert_eq!(p.strip_prefix("/a/bc"), None);
        assert_eq!(p.strip_prefix("/"), Some("a/b/c"));
        assert_eq!(UserPath::root().parent().as_str(), "/");
    }
}
