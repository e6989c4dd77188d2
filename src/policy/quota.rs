//! Quotas (`quota`, `quota_files`) held on every protocol: an upload into
//! a full target is refused before a byte moves, one that grows past the
//! quota fails at that write (nothing of it is stored, a replaced object
//! stays), and what is committed, deleted or moved is counted.
//!
//! A VFS around the user's, as the file rules are: what a write costs
//! depends on what it replaces, which takes a `stat` first — only where a
//! target counts the path, so a gateway without quotas pays nothing.

use crate::base::{Algorithm, FsError, FsResult};
use crate::cluster::quotas::Usage;
use crate::quota::{Quotas, Target};
use crate::vfs::{Download, FileStat, Located, Upload, UserPath, Vfs, WriteMode};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Quoted<V> {
    quotas: Arc<Quotas>,
    inner: V,
}

/// A file's size, or `None` where there is none (a new name).
async fn size_of<V: Vfs>(vfs: &V, path: &UserPath) -> FsResult<Option<u64>> {
    match vfs.stat(path).await {
        Ok(s) if s.is_dir => Ok(None),
        Ok(s) => Ok(Some(s.size)),
        Err(FsError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

fn refused(why: String) -> FsError {
    FsError::QuotaExceeded(why)
}

/// What the object an upload replaces held, once its HEAD has answered
/// (`Some(None)`: there was none, or it could not be asked); what the
/// upload's writes read without waiting.
#[derive(Default)]
struct Replaced {
    seen: std::sync::OnceLock<Option<u64>>,
}

/// What an upload holds of each target's reservation.
struct Reserved {
    targets: Vec<Arc<Target>>,
    /// Bytes reserved in each, as the file grew past what it replaces.
    bytes: AtomicU64,
}

impl Reserved {
    /// Grows the reservation to `need`; refused (and unchanged) when a
    /// target's quota would be passed.
    fn grow(&self, need: u64) -> Result<(), FsError> {
        let held = self.bytes.load(Ordering::SeqCst);
        if need <= held {
            return Ok(());
        }
        let more = need - held;
        for (i, t) in self.targets.iter().enumerate() {
            if let Err(why) = t.reserve(more) {
                for t in &self.targets[..i] {
                    t.release(more);
                }
                return Err(refused(why));
            }
        }
        self.bytes.store(need, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let held = *self.bytes.get_mut();
        for t in &self.targets {
            t.release(held);
        }
    }
}

impl<V: Vfs> Quoted<V> {
    pub fn new(quotas: Arc<Quotas>, inner: V) -> Self {
        Quoted { quotas, inner }
    }

    pub fn inner(&self) -> &V {
        &self.inner
    }

    /// The targets that count `path`, with where it is.
    fn counting(&self, path: &UserPath) -> (Vec<Arc<Target>>, Option<Located>) {
        match self.inner.locate(path) {
            Some(at) => (self.quotas.covering(&at.remote, &at.key), Some(at)),
            None => (Vec::new(), None),
        }
    }

    /// Refuses `size` bytes more in the folder `dir` when a quota has no
    /// room for them (FTP `ALLO`, a web upload that says its size).
    pub async fn room(&self, dir: &UserPath, size: u64) -> FsResult<()> {
        let (targets, _) = self.counting(dir);
        for t in self.limiting(&targets).await {
            t.admits(true, Some(size)).map_err(refused)?;
        }
        Ok(())
    }

    /// The targets with a quota among `targets`, their fleet's usage read.
    async fn limiting(&self, targets: &[Arc<Target>]) -> Vec<Arc<Target>> {
        let mut limiting = Vec::new();
        for t in targets.iter().filter(|t| t.limit().is_set()) {
            self.quotas.refresh(t).await;
            limiting.push(t.clone());
        }
        limiting
    }
}

#[async_trait]
impl<V: Vfs> Vfs for Quoted<V> {
    async fn stat(&self, path: &UserPath) -> FsResult<FileStat> {
        self.inner.stat(path).await
    }

    async fn list(&self, path: &UserPath) -> FsResult<BoxStream<'static, FsResult<FileStat>>> {
        self.inner.list(path).await
    }

    async fn open_read(&self, path: &UserPath, offset: u64) -> FsResult<Download> {
        self.inner.open_read(path, offset).await
    }

    /// The object an upload replaces is asked for beside the upload, not
    /// before it (a HEAD on the path of every upload is what makes many
    /// small files slow): its size is known by the time it matters, and
    /// waited for only when the target is already full. A name the
    /// target's listing and commits never held is not asked for at all.
    async fn open_write(&self, path: &UserPath, mode: WriteMode) -> FsResult<Upload> {
        let (targets, at) = self.counting(path);
        // The object layer is looked up only where a target counts the path.
        let counted = at.filter(|_| !targets.is_empty());
        let Some((at, layer)) = counted.and_then(|at| {
            let layer = self.quotas.layer(&at.remote)?;
            Some((at, layer))
        }) else {
            return self.inner.open_write(path, mode).await;
        };
        let replaced = Arc::new(Replaced::default());
        let head = if Quotas::absent(&targets, &at.key) {
            let _ = replaced.seen.set(None);
            futures::future::ready(Some(Err(FsError::NotFound)))
                .boxed()
                .shared()
        } else {
            let (replaced, key) = (replaced.clone(), at.key.clone());
            let asked = tokio::spawn(async move {
                let found = layer.head_object(&key).await;
                let _ = replaced.seen.set(match &found {
                    Ok((stat, _)) => Some(stat.size),
                    Err(_) => None,
                });
                found
            });
            asked.map(|done| done.ok()).boxed().shared()
        };
        let limiting = self.limiting(&targets).await;
        if limiting.iter().any(|t| t.full()) {
            // Full: only what it replaces may let this upload through.
            head.clone().await;
        }
        let old = replaced.seen.get().copied().flatten();
        for t in &limiting {
            t.admits(old.is_none(), None).map_err(refused)?;
        }
        let mut upload = self.inner.open_write(path, mode).await?;
        let reserved = Arc::new(Reserved {
            targets: limiting,
            bytes: AtomicU64::new(0),
        });
        if !reserved.targets.is_empty() {
            // What the file may grow to for free: the object it replaces
            // goes when it commits (an append keeps it, and grows from its end).
            let (held, replaced, head) = (reserved.clone(), replaced.clone(), head.clone());
            upload.observers().guard(Box::new(move |end| {
                let free = |r: &Replaced| r.seen.get().copied().flatten().unwrap_or(0);
                match held.grow(end.saturating_sub(free(&replaced))) {
                    // Refused before the HEAD answered: what the file
                    // replaces may still make room.
                    Err(_) if replaced.seen.get().is_none() => {
                        let (held, replaced, head) = (held.clone(), replaced.clone(), head.clone());
                        async move {
                            head.await;
                            held.grow(end.saturating_sub(free(&replaced)))
                        }
                        .boxed()
                    }
                    grown => std::future::ready(grown).boxed(),
                }
            }));
        }
        let (quotas, targets) = (self.quotas.clone(), targets.clone());
        upload.observers().on_end(Box::new(move |ended| {
            let committed = ended.result.ok().and(ended.size);
            let etag = ended.etag.map(str::to_string);
            async move {
                if let Some(size) = committed {
                    // What it replaced (`Some(None)`: nothing), when known.
                    let replaced = match head.await {
                        // The HEAD saw this upload's own object.
                        Some(Ok((_, Some(seen)))) if Some(&seen) == etag.as_ref() => None,
                        Some(Ok((stat, _))) => Some(Some(stat.size)),
                        Some(Err(FsError::NotFound)) => Some(None),
                        _ => None,
                    };
                    match replaced {
                        Some(old) => {
                            let delta = Usage {
                                bytes: size as i64 - old.unwrap_or(0) as i64,
                                files: i64::from(old.is_none()),
                            };
                            quotas.changed(&at.remote, &at.key, delta).await;
                        }
                        // Not known: the targets are listed instead.
                        None => {
                            for t in &targets {
                                quotas.rescan(t);
                            }
                        }
                    }
                }
                // Counted (or failed): the reservation goes.
                drop(reserved);
            }
            .boxed()
        }));
        Ok(upload)
    }

    async fn mkdir(&self, path: &UserPath) -> FsResult<()> {
        self.inner.mkdir(path).await
    }

    async fn rmdir(&self, path: &UserPath) -> FsResult<()> {
        self.inner.rmdir(path).await
    }

    async fn remove(&self, path: &UserPath) -> FsResult<()> {
        let (targets, at) = self.counting(path);
        let Some(at) = at.filter(|_| !targets.is_empty()) else {
            return self.inner.remove(path).await;
        };
        let size = size_of(&self.inner, path).await?;
        self.inner.remove(path).await?;
        if let Some(size) = size {
            let delta = Usage {
                bytes: -(size as i64),
                files: -1,
            };
            self.quotas.changed(&at.remote, &at.key, delta).await;
        }
        Ok(())
    }

    async fn rename(&self, from: &UserPath, to: &UserPath, overwrite: bool) -> FsResult<()> {
        let ((source, src), (target, dst)) = (self.counting(from), self.counting(to));
        let same = source.len() == target.len()
            && source.iter().zip(&target).all(|(a, b)| Arc::ptr_eq(a, b));
        let (Some(src), Some(dst)) = (src, dst) else {
            return self.inner.rename(from, to, overwrite).await;
        };
        if same && !overwrite {
            // A file or a folder: both are noted, rather than asking which.
            self.inner.rename(from, to, overwrite).await?;
            self.quotas.named(&dst.remote, &dst.key);
            self.quotas.moved_in(&dst.remote, &dst.key);
            return Ok(());
        }
        let stat = self.inner.stat(from).await?;
        if stat.is_dir {
            // A folder's size takes a listing: the targets it leaves and
            // enters are listed again once it has moved.
            let renamed = self.inner.rename(from, to, overwrite).await;
            let moved =
                |t: &Arc<Target>, other: &[Arc<Target>]| !other.iter().any(|o| Arc::ptr_eq(o, t));
            for t in source.iter().filter(|t| moved(t, &target)) {
                self.quotas.rescan(t);
            }
            for t in target.iter().filter(|t| moved(t, &source)) {
                self.quotas.rescan(t);
            }
            if renamed.is_ok() {
                self.quotas.moved_in(&dst.remote, &dst.key);
            }
            return renamed;
        }
        let replaced = match overwrite {
            true => size_of(&self.inner, to).await?,
            false => None,
        };
        // Entering a target costs what the file brings there.
        let entering: Vec<Arc<Target>> = self
            .limiting(&target)
            .await
            .into_iter()
            .filter(|t| !source.iter().any(|s| Arc::ptr_eq(s, t)))
            .collect();
        let reserved = Reserved {
            targets: entering,
            bytes: AtomicU64::new(0),
        };
        for t in &reserved.targets {
            t.admits(replaced.is_none(), None).map_err(refused)?;
        }
        reserved.grow(stat.size.saturating_sub(replaced.unwrap_or(0)))?;
        self.inner.rename(from, to, overwrite).await?;
        let gone = Usage {
            bytes: -(stat.size as i64),
            files: -1,
        };
        self.quotas.changed(&src.remote, &src.key, gone).await;
        let came = Usage {
            bytes: stat.size as i64 - replaced.unwrap_or(0) as i64,
            files: i64::from(replaced.is_none()),
        };
        self.quotas.changed(&dst.remote, &dst.key, came).await;
        Ok(())
    }

    async fn set_times(&self, path: &UserPath, mtime: DateTime<Utc>) -> FsResult<()> {
        self.inner.set_times(path, mtime).await
    }

    /// From the quota where one counts the path (so `df` in OpenSSH's
    /// `sftp` shows it): the smallest room left of every target's.
    async fn statvfs(&self, path: &UserPath) -> FsResult<crate::remote::Space> {
        let (targets, _) = self.counting(path);
        let tightest = targets
            .iter()
            .filter_map(|t| t.space())
            .min_by_key(|(_, free)| *free);
        match tightest {
            Some((total, free)) => Ok(crate::remote::Space {
                total_bytes: total,
                free_bytes: free,
            }),
            None => self.inner.statvfs(path).await,
        }
    }

    async fn digest(&self, path: &UserPath, algorithm: Algorithm) -> FsResult<Vec<u8>> {
        self.inner.digest(path, algorithm).await
    }

    fn locate(&self, path: &UserPath) -> Option<Located> {
        self.inner.locate(path)
    }
}
