//! `[[users.filters]]`: which names a user may write in a folder of their
//! tree. A filter holds for its folder and everything below it, unless a
//! deeper filter holds there; `deny` globs refuse files and folders,
//! `allow` globs (when given) are the only file names taken. Globs match
//! a name, not a path, and ignore case by default: `*.EXE` is `*.exe`.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// Absolute and normalised: `/` for the whole tree.
    pub path: String,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    allow_set: GlobSet,
    deny_set: GlobSet,
}

impl FilterConfig {
    /// A filter of `path` (normalised by the caller); the first glob that
    /// cannot be one is the error.
    pub fn new(path: String, allow: Vec<String>, deny: Vec<String>) -> Result<Self, String> {
        let set = |globs: &[String]| {
            let mut set = GlobSetBuilder::new();
            for g in globs {
                if g.contains('/') {
                    return Err(format!(
                        "{g:?}: a filter's glob matches a name, without '/'"
                    ));
                }
                let glob = GlobBuilder::new(g)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| format!("{g:?}: {}", e.kind()))?;
                set.add(glob);
            }
            set.build().map_err(|e| e.to_string())
        };
        Ok(FilterConfig {
            allow_set: set(&allow)?,
            deny_set: set(&deny)?,
            path,
            allow,
            deny,
        })
    }

    /// Whether this filter holds in `folder` (absolute, normalised).
    pub fn covers(&self, folder: &str) -> bool {
        self.path == "/"
            || folder == self.path
            || folder
                .strip_prefix(&self.path)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Why `name` (a file's, or a folder's) may not be written here.
    pub fn refuses(&self, name: &str, file: bool) -> Option<String> {
        if let Some(i) = self.deny_set.matches(name).first() {
            return Some(format!(
                "{name:?} matches deny {:?} of the filter for {}",
                self.deny[*i], self.path
            ));
        }
        if file && !self.allow.is_empty() && !self.allow_set.is_match(name) {
            return Some(format!(
                "{name:?} is not among allow {:?} of the filter for {}",
                self.allow, self.path
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(path: &str, allow: &[&str], deny: &[&str]) -> FilterConfig {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        FilterConfig::new(path.into(), v(allow), v(deny)).unwrap()
    }

    #[test]
    fn deny_refuses_files_and_folders_allow_only_lets_in_files_it_lists() {
        let f = filter("/in", &["*.csv", "*.xml"], &["*.exe"]);
        assert!(f.refuses("data.csv", true).is_none());
        assert!(f.refuses("DATA.CSV", true).is_none(), "case is ignored");
        let why = f.refuses("tool.EXE", true).unwrap();
        assert!(
            why.contains("deny \"*.exe\"") && why.contains("/in"),
            "{why}"
        );
        assert!(f.refuses("x.exe", false).is_some(), "a folder named so too");
        assert!(f.refuses("notes.txt", true).unwrap().contains("allow"));
        assert!(f.refuses("archive", false).is_none(), "allow is for files");
        assert!(f.covers("/in") && f.covers("/in/deep") && !f.covers("/inbox"));
        assert!(filter("/", &[], &[]).covers("/anything"));
        assert!(FilterConfig::new("/".into(), vec!["a/b".into()], vec![]).is_err());
        assert!(FilterConfig::new("/".into(), vec!["[".into()], vec![]).is_err());
    }
}
