//! The actions of a sync run: each planned action carried out on the two
//! sides' object layers, settled in the journal, and audited like a
//! client's file operation.

use super::error::ActError;
use super::lease::Lease;
use super::md5::StreamMd5;
use super::plan::Action;
use super::report::Report;
use super::sides::Sides;
use super::state::{Journal, Pair, Synced};
use super::tree::{Entry, Fingerprint, Tree};
use super::{BySide, Side};
use crate::base::{Algorithm, hex};
use crate::policy::audit::FileOp;
use crate::vfs::FsError;
use crate::vfs::objects::ObjectLayer;
use futures::TryStreamExt;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

/// Told how a run goes, for a progress bar.
pub trait RunProgress: Send + Sync {
    /// The plan is made: this many actions, moving this many bytes.
    fn planned(&self, _actions: usize, _bytes: u64) {}
    /// Bytes copied since the last call.
    fn copied(&self, _bytes: u64) {}
    /// One action finished.
    fn finished(&self, _action: &str) {}
}

/// What a finished action adds to the report.
pub(super) enum Done {
    Copied {
        bytes: u64,
        source_deleted: bool,
        /// Of the copy's bytes, for the audit line (hex).
        sha256: Option<String>,
    },
    Deleted,
    DirMade,
    DirRemoved,
    Nothing,
}

impl Done {
    pub(super) fn tally(self, r: &mut Report) {
        match self {
            Done::Copied {
                bytes,
                source_deleted,
                ..
            } => {
                r.copied += 1;
                r.copied_bytes += bytes;
                r.deleted += source_deleted as u64;
            }
            Done::Deleted => r.deleted += 1,
            Done::DirMade => r.folders_created += 1,
            Done::DirRemoved => r.folders_removed += 1,
            Done::Nothing => {}
        }
    }
}

/// One run's acting state, shared by the transfers in flight.
pub(super) struct Run<'a> {
    pub(super) sides: &'a Sides,
    pub(super) trees: BySide<&'a Tree>,
    pub(super) journal: Journal,
    pub(super) synced: Mutex<Synced>,
    pub(super) lease: &'a Lease,
    pub(super) progress: &'a dyn RunProgress,
    /// Conflicts whose older file could not be moved aside: the newer one
    /// must not be copied over it.
    pub(super) not_aside: Mutex<HashSet<String>>,
}

pub(super) type ActResult<T> = Result<T, ActError>;

impl Run<'_> {
    /// Notes `path` settled, in memory and in the journal.
    async fn settle(&self, path: &str, pair: Option<Pair>) -> ActResult<()> {
        self.journal
            .settle(path, pair.clone())
            .await
            .map_err(ActError::Journal)?;
        let mut synced = crate::base::lock(&self.synced);
        match pair {
            Some(p) => synced.insert(path.to_string(), p),
            None => synced.remove(path),
        };
        Ok(())
    }

    pub(super) async fn act(&self, action: &Action) -> ActResult<Done> {
        if self.lease.lost() {
            return Err(ActError::NotStarted);
        }
        let sides = self.sides;
        let started = Instant::now();
        let (op, side, path, to, result): (_, Side, &str, _, _) = match action {
            Action::Copy {
                from,
                path,
                then_delete,
                ..
            } => (
                "sync-copy",
                *from,
                path,
                Some(sides.shown(from.other(), path)),
                self.copy(*from, path, *then_delete).await,
            ),
            Action::VerifyThenDelete { from, path } => (
                "sync-delete-source",
                *from,
                path,
                None,
                self.verify_then_delete(*from, path).await,
            ),
            Action::MakeDir { side, path } => (
                "sync-mkdir",
                *side,
                path,
                None,
                self.ensure_dir(*side, path).await,
            ),
            Action::MoveAside { side, path, to } => (
                "sync-conflict",
                *side,
                path,
                Some(sides.shown(*side, to)),
                self.move_aside(*side, path, to).await,
            ),
            Action::Delete { side, path } => (
                "sync-delete",
                *side,
                path,
                None,
                self.delete(*side, path).await,
            ),
            Action::RemoveDir { side, path } => (
                "sync-rmdir",
                *side,
                path,
                None,
                self.remove_dir(*side, path).await,
            ),
            // State only: no file operation, no audit line.
            Action::Record { path } => {
                let (Some(local), Some(remote)) =
                    (self.trees.local.get(path), self.trees.remote.get(path))
                else {
                    return Err(ActError::NotAsListed("not on both sides"));
                };
                let pair = Pair {
                    local: local.clone(),
                    remote: remote.clone(),
                };
                return self.settle(path, Some(pair)).await.map(|_| Done::Nothing);
            }
            Action::Forget { path } => return self.settle(path, None).await.map(|_| Done::Nothing),
        };
        let shown = sides.shown(side, path);
        FileOp {
            op,
            path: &shown,
            to: to.as_deref(),
            bytes: match &result {
                Ok(Done::Copied { bytes, .. }) => Some(*bytes),
                _ => None,
            },
            sha256: match &result {
                Ok(Done::Copied { sha256, .. }) => sha256.clone(),
                _ => None,
            },
            started,
        }
        .finish(result.as_ref().map(|_| ()));
        result
    }

    /// The pair for `path` once `from`'s file is also on the other side.
    fn pair(from: Side, source: Fingerprint, target: Fingerprint) -> Pair {
        let (local, remote) = match from {
            Side::Local => (source, target),
            Side::Remote => (target, source),
        };
        Pair {
            local: Entry::File(local),
            remote: Entry::File(remote),
        }
    }

    async fn copy(&self, from: Side, path: &str, then_delete: bool) -> ActResult<Done> {
        if crate::base::lock(&self.not_aside).contains(path) {
            return Err(ActError::NotAsListed(
                "not copied: the conflicting file could not be moved aside first",
            ));
        }
        let sides = self.sides;
        let (src, dst) = (&sides.layers[from], &sides.layers[from.other()]);
        let (skey, dkey) = (sides.key(from, path), sides.key(from.other(), path));
        let download = src.open_read(&skey, 0).await?;
        let stat = download.stat().clone();
        // What the listing showed, when this is still that file: the next
        // run compares against listings, not against what a GET says.
        let read = Fingerprint::new(stat.size, Some(stat.modified), None);
        let source = match self.trees[from].get(path).and_then(Entry::file) {
            Some(listed) if listed.size == read.size => listed.clone(),
            _ => read,
        };
        let mut upload = dst.overwrite(&dkey)?;
        let mut md5 = StreamMd5::default();
        let mut copied = 0u64;
        let mut chunks = std::pin::pin!(download.into_stream());
        while let Some(chunk) = chunks.try_next().await? {
            if self.lease.lost() {
                // Dropping the upload aborts it: nothing half-written stays.
                return Err(ActError::LeaseLost);
            }
            md5.update(chunk.clone()).await?;
            let n = chunk.len() as u64;
            upload.write_at(copied, chunk).await?;
            copied += n;
            self.progress.copied(n);
        }
        let stored = upload.close_stored().await?;
        let replaced = self.trees[from.other()].get(path).and_then(Entry::file);
        let freed = replaced.map_or(0, |f| f.size as i64);
        sides
            .counted(
                dst,
                &dkey,
                stored.size as i64 - freed,
                i64::from(replaced.is_none()),
            )
            .await;
        if stored.size != copied {
            return Err(ActError::Short {
                held: stored.size,
                read: copied,
            });
        }
        // What the next listing will show of the copy. An S3 ETag decides
        // on its own (see `Fingerprint::unchanged`), so no HEAD is needed;
        // a file copy gets the source's mtime, then is asked (a local stat).
        let target = match (dst.remote().etags_identify_content(), stored.etag) {
            (true, Some(etag)) => Fingerprint::new(copied, None, Some(etag)),
            _ => {
                dst.keep_mtime(&dkey, stat.modified).await?;
                let (written, etag) = dst.head_object(&dkey).await?;
                Fingerprint::new(written.size, Some(written.modified), etag)
            }
        };
        if then_delete {
            self.check_copy(dst, &dkey, &target, &md5.finish().await?)
                .await?;
            self.delete_if_unchanged(src, &skey, &source).await?;
            self.settle(path, None).await?;
        } else {
            self.settle(path, Some(Self::pair(from, source, target)))
                .await?;
        }
        Ok(Done::Copied {
            bytes: copied,
            source_deleted: then_delete,
            sha256: stored.digests.hex(Algorithm::Sha256),
        })
    }

    /// A copy found on the other side before this run: its bytes are
    /// checked against the source's before the source goes.
    async fn verify_then_delete(&self, from: Side, path: &str) -> ActResult<Done> {
        let sides = self.sides;
        let (src, dst) = (&sides.layers[from], &sides.layers[from.other()]);
        let (skey, dkey) = (sides.key(from, path), sides.key(from.other(), path));
        let source = self.trees[from].get(path).and_then(Entry::file).cloned();
        let target = self.trees[from.other()]
            .get(path)
            .and_then(Entry::file)
            .cloned();
        let (Some(source), Some(target)) = (source, target) else {
            return Err(ActError::NotAsListed("not a file on both sides"));
        };
        if source.size != target.size {
            return Err(ActError::NotAsListed("the two sides differ in size"));
        }
        // Both SHA-256s known (kept by the uploads that wrote them): they
        // decide, and neither file is read. Otherwise MD5s, read where needed.
        let sha256 = Algorithm::Sha256;
        match (
            src.kept_digest(&skey, sha256).await?,
            dst.kept_digest(&dkey, sha256).await?,
        ) {
            (Some(a), Some(b)) if a != b => {
                return Err(ActError::Differs {
                    what: "SHA-256",
                    copy: hex(&b),
                    original: hex(&a),
                });
            }
            (Some(_), Some(_)) => {}
            _ => {
                let digest = content_md5(src, &skey).await?;
                self.check_copy(dst, &dkey, &target, &digest).await?;
            }
        }
        self.delete_if_unchanged(src, &skey, &source).await?;
        self.settle(path, None).await?;
        Ok(Done::Deleted)
    }

    /// Checks that the copy at `key` holds bytes with MD5 `digest`: the
    /// store's checksum where it gives one (a plain S3 ETag), else read back.
    async fn check_copy(
        &self,
        layer: &ObjectLayer,
        key: &str,
        copy: &Fingerprint,
        digest: &str,
    ) -> ActResult<()> {
        let held = match copy.md5() {
            Some(m) => m.to_string(),
            None => content_md5(layer, key).await?,
        };
        if held != digest {
            return Err(ActError::Differs {
                what: "checksum",
                copy: held,
                original: digest.to_string(),
            });
        }
        Ok(())
    }

    /// Deletes a file unless it changed since `seen`: a file a client is
    /// still writing, or rewrote since it was listed, is kept.
    async fn delete_if_unchanged(
        &self,
        layer: &ObjectLayer,
        key: &str,
        seen: &Fingerprint,
    ) -> ActResult<()> {
        let (now, etag) = match layer.head_object(key).await {
            Ok(found) => found,
            // Already gone: what the deletion wanted.
            Err(FsError::NotFound) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if !seen.unchanged(&Fingerprint::new(now.size, Some(now.modified), etag)) {
            return Err(ActError::NotAsListed("changed since it was listed; kept"));
        }
        match layer.remove(key).await {
            Ok(()) => {
                self.sides.counted(layer, key, -(now.size as i64), -1).await;
                Ok(())
            }
            Err(FsError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, side: Side, path: &str) -> ActResult<Done> {
        let Some(seen) = self.trees[side].get(path).and_then(Entry::file) else {
            return Err(ActError::NotAsListed("not a file"));
        };
        let layer = &self.sides.layers[side];
        self.delete_if_unchanged(layer, &self.sides.key(side, path), seen)
            .await?;
        self.settle(path, None).await?;
        Ok(Done::Deleted)
    }

    async fn ensure_dir(&self, side: Side, path: &str) -> ActResult<Done> {
        let layer = &self.sides.layers[side];
        layer.ensure_dir(&self.sides.key(side, path)).await?;
        self.settle(
            path,
            Some(Pair {
                local: Entry::Dir,
                remote: Entry::Dir,
            }),
        )
        .await?;
        Ok(Done::DirMade)
    }

    /// Moves a conflict's older file aside; if that fails, the newer one
    /// must not be copied over it, nor the aside name copied across.
    async fn move_aside(&self, side: Side, path: &str, to: &str) -> ActResult<Done> {
        let (sides, layer) = (self.sides, &self.sides.layers[side]);
        if let Err(e) = layer
            .rename(&sides.key(side, path), &sides.key(side, to), false)
            .await
        {
            let mut not_aside = crate::base::lock(&self.not_aside);
            not_aside.insert(path.to_string());
            not_aside.insert(to.to_string());
            return Err(e.into());
        }
        self.settle(path, None).await?;
        Ok(Done::Nothing)
    }

    /// Removes a folder the run emptied; one that still holds something
    /// (a file that failed, or one added meanwhile) stays, quietly.
    async fn remove_dir(&self, side: Side, path: &str) -> ActResult<Done> {
        match self.sides.layers[side]
            .rmdir(&self.sides.key(side, path))
            .await
        {
            Ok(()) => {
                self.settle(path, None).await?;
                Ok(Done::DirRemoved)
            }
            Err(FsError::NotEmpty | FsError::NotFound) => Ok(Done::Nothing),
            Err(e) => Err(e.into()),
        }
    }
}

/// The MD5 of an object's bytes, read through.
async fn content_md5(layer: &ObjectLayer, key: &str) -> ActResult<String> {
    let download = layer.open_read(key, 0).await?;
    let mut md5 = StreamMd5::default();
    let mut chunks = std::pin::pin!(download.into_stream());
    while let Some(chunk) = chunks.try_next().await? {
        md5.update(chunk).await?;
    }
    md5.finish().await
}
