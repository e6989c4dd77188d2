//! The virtual filesystem both frontends call (DESIGN §3).
//!
//! [`Vfs`] is what a session sees: its user's tree, with the home and extra
//! mounts, permissions and the path jail ([`mount::UserVfs`]). Below it,
//! [`objects::ObjectLayer`] turns folder and file operations into object
//! requests on one remote: streaming uploads ([`upload`]) and read-ahead
//! downloads ([`download`]).

pub mod budget;
mod digest_reads;
pub mod download;
mod hashing;
mod known_dirs;
pub mod mount;
pub mod objects;
pub mod path;
mod prefetch;
mod renames;
mod resume;
pub mod transfers;
pub mod upload;
mod watches;

pub use crate::base::{Algorithm, FsError, FsResult};
pub use crate::config::{Permission, Permissions};
pub use budget::Budget;
pub use download::{Chunks, Download};
pub use mount::UserVfs;
pub use path::UserPath;
pub use upload::{Stored, Upload, WriteMode};

use crate::remote::{Remotes, Space};
use async_trait::async_trait;
use chrono::{DateTime, Datelike, Utc};
use futures::stream::BoxStream;
use objects::ObjectLayer;
use prefetch::Prefetch;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

/// A file or folder as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified: DateTime<Utc>,
    /// On a read-only mount: frontends show it in the mode bits.
    pub read_only: bool,
}

impl FileStat {
    pub fn file(name: String, size: u64, modified: DateTime<Utc>) -> Self {
        FileStat {
            name,
            is_dir: false,
            size,
            modified,
            read_only: false,
        }
    }

    pub fn dir(name: String, modified: DateTime<Utc>) -> Self {
        FileStat {
            name,
            is_dir: true,
            size: 0,
            modified,
            read_only: false,
        }
    }

    /// POSIX mode bits for `ls -l` and SFTP attributes.
    pub fn mode(&self) -> u32 {
        match (self.is_dir, self.read_only) {
            (true, false) => 0o040755,
            (true, true) => 0o040555,
            (false, false) => 0o100644,
            (false, true) => 0o100444,
        }
    }

    /// The `ls -l` line of this entry: SFTP long names and FTP LIST, which
    /// FileZilla and WinSCP parse.
    pub fn ls_line(&self, now: DateTime<Utc>) -> String {
        let mode = self.mode();
        let mut perms = String::with_capacity(10);
        perms.push(if self.is_dir { 'd' } else { '-' });
        for shift in [6, 3, 0] {
            let bits = (mode >> shift) & 7;
            perms.push(if bits & 4 != 0 { 'r' } else { '-' });
            perms.push(if bits & 2 != 0 { 'w' } else { '-' });
            perms.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        // As ls does: the year instead of the time for dates over six months away.
        let recent = (now - self.modified).num_days().abs() < 183;
        let when = if recent {
            self.modified.format("%b %e %H:%M").to_string()
        } else {
            format!(
                "{} {:>5}",
                self.modified.format("%b %e"),
                self.modified.year()
            )
        };
        format!(
            "{perms} {links:>3} {owner:<8} {group:<8} {size:>12} {when} {name}",
            links = if self.is_dir { 2 } else { 1 },
            owner = "owner",
            group = "group",
            size = self.size,
            name = self.name,
        )
    }
}

/// A session's view of its user's files. Paths are the client's, resolved
/// and jailed by the implementation.
#[async_trait]
pub trait Vfs: Send + Sync {
    async fn stat(&self, path: &UserPath) -> FsResult<FileStat>;
    /// The entries of a folder, streamed page by page.
    async fn list(&self, path: &UserPath) -> FsResult<BoxStream<'static, FsResult<FileStat>>>;
    async fn open_read(&self, path: &UserPath, offset: u64) -> FsResult<Download>;
    async fn open_write(&self, path: &UserPath, mode: WriteMode) -> FsResult<Upload>;
    async fn mkdir(&self, path: &UserPath) -> FsResult<()>;
    /// Refuses a folder that holds anything.
    async fn rmdir(&self, path: &UserPath) -> FsResult<()>;
    async fn remove(&self, path: &UserPath) -> FsResult<()>;
    /// With `overwrite` false, fails when `to` exists (SFTP RENAME); true replaces a file (posix-rename).
    async fn rename(&self, from: &UserPath, to: &UserPath, overwrite: bool) -> FsResult<()>;
    /// Accepted always; stored only where the remote has `preserve_mtime`.
    async fn set_times(&self, path: &UserPath, mtime: DateTime<Utc>) -> FsResult<()>;
    async fn statvfs(&self, path: &UserPath) -> FsResult<Space>;
    /// A file's digest: the one its upload kept, or one computed by reading
    /// it (bounded memory; refused past `checksum_read_limit`).
    async fn digest(&self, path: &UserPath, algorithm: Algorithm) -> FsResult<Vec<u8>>;
    /// Where `path` is stored, for an event; `None` where it cannot say.
    fn locate(&self, _path: &UserPath) -> Option<Located> {
        None
    }
}

/// Where a user path is stored: the remote, its bucket (S3), the key.
#[derive(Debug, Clone, Default)]
pub struct Located {
    pub remote: String,
    pub bucket: Option<String>,
    pub key: String,
}

/// The object layers of every remote, built once and shared by all
/// sessions, and each user's prefetch, shared by their sessions here.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    layers: BTreeMap<String, Arc<ObjectLayer>>,
    prefetches: Arc<Mutex<HashMap<String, Weak<Prefetch>>>>,
}

impl Storage {
    /// Every remote's object layer, all drawing from one memory `budget`.
    pub fn new(remotes: &Remotes, budget: &Budget) -> Self {
        let digest_reads = digest_reads::DigestReads::default();
        Storage {
            layers: remotes
                .iter()
                .map(|r| {
                    let layer = ObjectLayer::new(r.clone(), budget.clone())
                        .with_digest_reads(digest_reads.clone());
                    (r.name().to_string(), Arc::new(layer))
                })
                .collect(),
            prefetches: Default::default(),
        }
    }

    pub fn layer(&self, remote: &str) -> Option<&Arc<ObjectLayer>> {
        self.layers.get(remote)
    }

    /// `user`'s prefetch, one for all their sessions on this gateway while
    /// any lasts: FileZilla and `lftp mirror --parallel` list on one
    /// connection and fetch on others, so what one session lists must
    /// feed the opens of another.
    pub(crate) fn prefetch_of(&self, user: &str) -> Arc<Prefetch> {
        let mut all = crate::base::lock(&self.prefetches);
        if let Some(shared) = all.get(user).and_then(Weak::upgrade) {
            return shared;
        }
        // Users whose sessions all ended go with the next one's arrival.
        all.retain(|_, p| p.strong_count() > 0);
        let shared = Arc::<Prefetch>::default();
        all.insert(user.to_string(), Arc::downgrade(&shared));
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn long_names_look_like_ls() {
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        let recent = Utc.with_ymd_and_hms(2026, 11, 2, 9, 5, 0).unwrap();
        let old = Utc.with_ymd_and_hms(2019, 3, 14, 9, 5, 0).unwrap();
        let f = FileStat::file("a b.txt".into(), 1234, recent);
        assert_eq!(
            f.ls_line(now),
            "-rw-r--r--   1 owner    group            1234 Nov  2 09:05 a b.txt"
        );
        let d = FileStat::dir("docs".into(), old);
        assert_eq!(
            d.ls_line(now),
            "drwxr-xr-x   2 owner    group               0 Mar 14  2019 docs"
        );
    }
}
