//! Folders on the filesystem remote are real directories. Listing reads the
//! directory itself, so one file with a name we cannot serve is skipped
//! instead of failing the folder.

use super::{Kept, ListPage, Namespace, RawEntry, Space, TreeEntry, usable_name};
use crate::base::{Algorithm, Digests, FsError, FsResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::path::PathBuf;

#[derive(Debug)]
pub struct FsNamespace {
    root: PathBuf,
}

impl FsNamespace {
    pub fn new(root: PathBuf) -> Self {
        FsNamespace { root }
    }

    fn path(&self, key: &str) -> PathBuf {
        if key.is_empty() {
            self.root.clone()
        } else {
            self.root.join(key)
        }
    }
}

/// object_store's LocalFileSystem stages multipart uploads as `name#N`
/// beside the target; those are not files yet.
fn is_staging_file(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[async_trait]
impl Namespace for FsNamespace {
    async fn list_page(&self, dir: &str, _token: Option<String>) -> FsResult<ListPage> {
        let (path, dir) = (self.path(dir), dir.to_string());
        let listed = tokio::task::spawn_blocking(move || read_folder(&path, &dir))
            .await
            .map_err(FsError::storage)??;
        Ok(ListPage {
            entries: listed
                .into_iter()
                .map(|l| RawEntry {
                    is_dir: l.meta.is_dir(),
                    size: l.size(),
                    modified: l.modified(),
                    name: l.name,
                    // Local disk has no first-byte latency to hide.
                    etag: None,
                })
                .collect(),
            next: None,
        })
    }

    async fn walk(&self, dir: &str) -> FsResult<Vec<TreeEntry>> {
        let (root, dir) = (self.path(dir), dir.to_string());
        tokio::task::spawn_blocking(move || {
            let mut entries = Vec::new();
            walk_into(&root, &dir, "", &mut entries)?;
            Ok(entries)
        })
        .await
        .map_err(FsError::storage)?
    }

    async fn dir_info(&self, dir: &str) -> FsResult<Option<Option<DateTime<Utc>>>> {
        match tokio::fs::metadata(self.path(dir)).await {
            Ok(m) if m.is_dir() => Ok(Some(m.modified().ok().map(DateTime::<Utc>::from))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::from(e)),
        }
    }

    async fn create_dir(&self, dir: &str) -> FsResult<()> {
        tokio::fs::create_dir(self.path(dir))
            .await
            .map_err(FsError::from)
    }

    async fn remove_dir(&self, dir: &str) -> FsResult<()> {
        tokio::fs::remove_dir(self.path(dir))
            .await
            .map_err(FsError::from)
    }

    async fn rename_dir(&self, from: &str, to: &str) -> FsResult<()> {
        tokio::fs::rename(self.path(from), self.path(to))
            .await
            .map_err(FsError::from)
    }

    /// The file's own mtime, and the digests in an extended attribute
    /// (those it had stay valid across a new mtime).
    async fn keep(&self, key: &str, kept: &Kept, _if_etag: Option<&str>) -> FsResult<()> {
        let path = self.path(key);
        let kept = kept.clone();
        tokio::task::spawn_blocking(move || {
            let had = read_digests(&path);
            if let Some(mtime) = kept.mtime {
                std::fs::File::options()
                    .write(true)
                    .open(&path)?
                    .set_modified(mtime.into())?;
            }
            let digests = match kept.digests == Digests::default() {
                true => had,
                false => Some(kept.digests),
            };
            if let Some(d) = digests {
                // A filesystem without user attributes keeps no digests:
                // they are computed when asked.
                let _ = write_digests(&path, &d);
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(FsError::storage)?
        .map_err(FsError::from)
    }

    async fn kept_digests(&self, key: &str) -> FsResult<Option<Digests>> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || read_digests(&path))
            .await
            .map_err(FsError::storage)
    }

    async fn space(&self) -> FsResult<Space> {
        let root = self.root.clone();
        let st = tokio::task::spawn_blocking(move || nix::sys::statvfs::statvfs(&root))
            .await
            .map_err(FsError::storage)?
            .map_err(|e| FsError::storage(std::io::Error::from(e)))?;
        let block = st.fragment_size() as u64;
        Ok(Space {
            total_bytes: st.blocks() as u64 * block,
            free_bytes: st.blocks_available() as u64 * block,
        })
    }

    async fn probe(&self) -> FsResult<()> {
        match tokio::fs::metadata(&self.root).await {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(FsError::failed("the root is not a directory")),
            Err(e) => Err(FsError::from(e)),
        }
    }
}

/// Whether the filesystem at `root` treats names that differ only in case
/// as one: writes a probe file with an upper-case name and looks for it by
/// its lower-case name.
pub fn probe_case_insensitive(root: &std::path::Path) -> std::io::Result<bool> {
    let name = format!(".bucketgate-CASE-probe-{}", std::process::id());
    let probe = root.join(&name);
    std::fs::write(&probe, b"")?;
    let folded = std::fs::symlink_metadata(root.join(name.to_lowercase())).is_ok();
    std::fs::remove_file(&probe)?;
    Ok(folded)
}

/// A directory entry a client can be shown.
struct Listed {
    name: String,
    /// Of the target, for a symlink.
    meta: std::fs::Metadata,
    linked: bool,
}

impl Listed {
    fn size(&self) -> u64 {
        if self.meta.is_dir() {
            0
        } else {
            self.meta.len()
        }
    }

    fn modified(&self) -> Option<DateTime<Utc>> {
        self.meta.modified().ok().map(DateTime::<Utc>::from)
    }
}

/// The entries of the directory at `path` that the gateway serves: names
/// that are UTF-8 and usable, no staging files, symlinks followed (a
/// dangling one skipped). `dir` names the folder in warnings. Blocking:
/// listing and walking both call it off the async threads.
fn read_folder(path: &std::path::Path, dir: &str) -> FsResult<Vec<Listed>> {
    let mut listed = Vec::new();
    for entry in std::fs::read_dir(path).map_err(FsError::from)? {
        let entry = entry.map_err(FsError::from)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            tracing::warn!(folder = dir, name = ?entry.file_name(), "skipping a file whose name is not UTF-8");
            continue;
        };
        if is_staging_file(&name) || !usable_name(dir, &name) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        let linked = entry.file_type().is_ok_and(|t| t.is_symlink());
        listed.push(Listed { name, meta, linked });
    }
    Ok(listed)
}

/// Reads `root/rel` and everything below it into `out`. Symlinked files
/// are followed; symlinked folders are not (a loop would never end).
fn walk_into(
    root: &std::path::Path,
    dir: &str,
    rel: &str,
    out: &mut Vec<TreeEntry>,
) -> FsResult<()> {
    let here = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for l in read_folder(&here, dir)? {
        let path = if rel.is_empty() {
            l.name.clone()
        } else {
            format!("{rel}/{}", l.name)
        };
        if l.meta.is_dir() && l.linked {
            tracing::warn!(folder = dir, path, "not following a symlinked folder");
            continue;
        }
        out.push(TreeEntry {
            path: path.clone(),
            is_dir: l.meta.is_dir(),
            size: l.size(),
            modified: l.modified(),
            etag: None,
        });
        if l.meta.is_dir() {
            walk_into(root, dir, &path, out)?;
        }
    }
    Ok(())
}

/// The extended attribute that keeps a file's digests, with the size and
/// mtime it had then: a file changed by anything but the gateway (which
/// rewrites it whole) no longer matches, and its digests are computed anew.
const DIGESTS_XATTR: &str = "user.bucketgate.digests";

fn stamp(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{} {}.{}", meta.len(), meta.mtime(), meta.mtime_nsec())
}

fn write_digests(path: &std::path::Path, digests: &Digests) -> std::io::Result<()> {
    let mut record = stamp(&std::fs::metadata(path)?);
    for a in Algorithm::ALL {
        if let Some(hex) = digests.hex(a) {
            record.push_str(&format!(" {}={hex}", a.name()));
        }
    }
    rustix::fs::setxattr(
        path,
        DIGESTS_XATTR,
        record.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )?;
    Ok(())
}

fn read_digests(path: &std::path::Path) -> Option<Digests> {
    let mut buf = [0u8; 512];
    let n = rustix::fs::getxattr(path, DIGESTS_XATTR, &mut buf[..]).ok()?;
    let record = std::str::from_utf8(&buf[..n]).ok()?;
    let stamp_now = stamp(&std::fs::metadata(path).ok()?);
    let rest = record.strip_prefix(&stamp_now)?.strip_prefix(' ')?;
    let mut digests = Digests::default();
    for entry in rest.split(' ') {
        let (name, hex) = entry.split_once('=')?;
        digests.set_hex(Algorithm::parse(name)?, hex);
    }
    Some(digests)
}

#[cfg(test)]
mod tests {
    #[test]
    fn staging_files() {
        assert!(super::is_staging_file("big.bin#1"));
        assert!(!super::is_staging_file("issue#"));
        assert!(!super::is_staging_file("a#b"));
        assert!(!super::is_staging_file("plain"));
    }
}
