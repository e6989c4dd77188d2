//! One side of a sync job as the planner sees it: every file and folder
//! under the job's folder, by relative path.

use crate::remote::TreeEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a file looked like: enough to tell whether it changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    /// Whole seconds since the epoch: stores keep different fractions.
    pub mtime: Option<i64>,
    /// The store's ETag, where it has one (S3).
    pub etag: Option<String>,
}

impl Fingerprint {
    pub fn new(
        size: u64,
        mtime: Option<chrono::DateTime<chrono::Utc>>,
        etag: Option<String>,
    ) -> Self {
        Fingerprint {
            size,
            mtime: mtime.map(|t| t.timestamp()),
            // Listings quote ETags and some HEAD answers do not.
            etag: etag.map(|e| e.trim_matches('"').to_string()),
        }
    }

    /// Whether `now` is still the file this fingerprint was taken of. An
    /// ETag changes with every write, so where both have one it decides;
    /// otherwise the mtime does (an object's shown mtime may come from
    /// metadata a listing does not carry).
    pub fn unchanged(&self, now: &Fingerprint) -> bool {
        self.size == now.size
            && match (&self.etag, &now.etag) {
                (Some(a), Some(b)) => a == b,
                _ => self.mtime == now.mtime,
            }
    }

    /// The content's MD5, when the ETag is one: S3 gives a single PUT's
    /// MD5 as its ETag; a multipart ETag (`…-N`) or another store's tag is
    /// not a checksum of the bytes.
    pub fn md5(&self) -> Option<&str> {
        md5_etag(self.etag.as_deref()?)
    }
}

/// The MD5 hex digest an ETag stands for, if it is a plain one.
pub fn md5_etag(etag: &str) -> Option<&str> {
    let tag = etag.trim_matches('"');
    (tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(tag)
}

/// A path on one side: a folder, or a file as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entry {
    Dir,
    File(Fingerprint),
}

impl Entry {
    pub fn file(&self) -> Option<&Fingerprint> {
        match self {
            Entry::File(f) => Some(f),
            Entry::Dir => None,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self, Entry::Dir)
    }
}

/// Every file and folder of one side, by path relative to the job's folder.
pub type Tree = BTreeMap<String, Entry>;

/// Builds a side from a store's walk. Folders that exist only because a
/// key lies below them (S3 without markers) are added, so "is there a
/// folder here" has one answer whatever the store. Paths for which `skip`
/// is true are left out.
pub fn tree_of(walked: Vec<TreeEntry>, skip: impl Fn(&str) -> bool) -> Tree {
    let mut tree = Tree::new();
    for e in walked.into_iter().filter(|e| !skip(&e.path)) {
        let mut at = e.path.as_str();
        while let Some((parent, _)) = at.rsplit_once('/') {
            tree.entry(parent.to_string()).or_insert(Entry::Dir);
            at = parent;
        }
        let entry = if e.is_dir {
            Entry::Dir
        } else {
            Entry::File(Fingerprint::new(e.size, e.modified, e.etag))
        };
        // A file and a marker of the same name on S3: the file is what a
        // client sees; the folder shows through its children.
        match tree.get(&e.path) {
            Some(Entry::File(_)) if entry.is_dir() => {}
            _ => {
                tree.insert(e.path, entry);
            }
        }
    }
    tree
}

/// How many files (not folders) a side holds.
pub fn file_count(tree: &Tree) -> usize {
    tree.values().filter(|e| e.file().is_some()).count()
}

/// `path` and each folder above it, the deepest first.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| p.rsplit_once('/').map(|(parent, _)| parent))
}

/// The entries strictly below folder `dir`.
pub fn below<'a>(tree: &'a Tree, dir: &str) -> impl Iterator<Item = (&'a String, &'a Entry)> {
    let prefix = format!("{dir}/");
    tree.range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(path: &str, is_dir: bool) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            is_dir,
            size: 3,
            modified: None,
            etag: None,
        }
    }

    #[test]
    fn implied_folders_are_added() {
        let t = tree_of(vec![walked("a/b/c.txt", false), walked("e", true)], |p| {
            p.starts_with(".bucketgate")
        });
        let paths: Vec<_> = t.keys().map(String::as_str).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/c.txt", "e"]);
        assert_eq!(file_count(&t), 1);
        assert_eq!(below(&t, "a").count(), 2);
        assert_eq!(
            ancestors("a/b/c").collect::<Vec<_>>(),
            ["a/b/c", "a/b", "a"]
        );
    }

    #[test]
    fn md5_etags() {
        assert_eq!(
            md5_etag("\"9e107d9d372bb6826bd81d3542a419d6\""),
            Some("9e107d9d372bb6826bd81d3542a419d6")
        );
        assert_eq!(md5_etag("\"9e107d9d372bb6826bd81d3542a419d6-3\""), None);
        assert_eq!(md5_etag("1a2b-3c4d"), None);
    }
}
