//! Running a job: take the lease, list both sides, plan, act, then keep
//! the state and the report. Every byte goes through the same object
//! layers the frontends use: streaming reads, multipart uploads that are
//! visible only when complete.

use super::lease::{LEASE_FOLDER, Lease, LeaseError, holder_name};
use super::md5::StreamMd5;
use super::plan::{Action, Inputs, Plan, Rules, plan};
use super::report::{Outcome, Report};
use super::state::{JobFiles, Journal, Pair, StateError, Synced};
use super::tree::{Entry, Fingerprint, Tree, tree_of};
use super::{BySide, Side};
use crate::base::{Algorithm, hex};
use crate::config::{Location, SyncConfig};
use crate::policy::audit::FileOp;
use crate::vfs::objects::ObjectLayer;
use crate::vfs::{FsError, Storage};
use chrono::Utc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no sync job named {name:?} in the config; its jobs: {known}")]
    UnknownJob { name: String, known: String },
    #[error("remote {0:?} is not configured")]
    UnknownRemote(String),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Told how a run goes, for a progress bar.
pub trait RunProgress: Send + Sync {
    /// The plan is made: this many actions, moving this many bytes.
    fn planned(&self, _actions: usize, _bytes: u64) {}
    /// Bytes copied since the last call.
    fn copied(&self, _bytes: u64) {}
    /// One action finished.
    fn finished(&self, _action: &str) {}
}

/// One configured job, ready to run.
#[derive(Debug)]
pub struct Job {
    pub config: SyncConfig,
    /// The config's two locations, by side.
    locations: BySide<Location>,
    layers: BySide<Arc<ObjectLayer>>,
    pub files: JobFiles,
}

/// What a run would do (see [`Job::dry_run`]).
#[derive(Debug, serde::Serialize)]
pub struct DryRun {
    pub actions: Vec<String>,
    pub skipped: Vec<String>,
}

/// Both sides listed and planned.
#[derive(Debug)]
pub struct Prepared {
    pub plan: Plan,
    trees: BySide<Tree>,
    state: Option<Synced>,
}

impl Job {
    pub fn new(config: &SyncConfig, storage: &Storage, state_dir: &Path) -> Result<Job, SyncError> {
        let layer = |loc: &Location| {
            storage
                .layer(&loc.remote)
                .cloned()
                .ok_or_else(|| SyncError::UnknownRemote(loc.remote.clone()))
        };
        let locations = BySide {
            local: config.local.clone(),
            remote: config.remote.clone(),
        };
        Ok(Job {
            layers: BySide {
                local: layer(&locations.local)?,
                remote: layer(&locations.remote)?,
            },
            locations,
            files: JobFiles::of(state_dir, config),
            config: config.clone(),
        })
    }

    /// Finds job `name` in the config.
    pub fn named(
        name: &str,
        syncs: &[SyncConfig],
        storage: &Storage,
        state_dir: &Path,
    ) -> Result<Job, SyncError> {
        Job::new(find(name, syncs)?, storage, state_dir)
    }

    /// The object key of `path` on `side`.
    fn key(&self, side: Side, path: &str) -> String {
        match self.locations[side].prefix.as_str() {
            "" => path.to_string(),
            prefix => format!("{prefix}/{path}"),
        }
    }

    /// `remote:/key`, as logs and the dry run name a file.
    pub fn shown(&self, side: Side, path: &str) -> String {
        format!("{}:/{}", self.locations[side].remote, self.key(side, path))
    }

    /// One line saying what an action does, naming the files.
    pub fn describe(&self, action: &Action) -> String {
        match action {
            Action::Copy {
                from,
                path,
                size,
                then_delete,
            } => format!(
                "{} {} -> {} ({size} bytes)",
                if *then_delete { "move" } else { "copy" },
                self.shown(*from, path),
                self.shown(from.other(), path)
            ),
            Action::VerifyThenDelete { from, path } => format!(
                "delete {} (already at {})",
                self.shown(*from, path),
                self.shown(from.other(), path)
            ),
            Action::MakeDir { side, path } => format!("mkdir {}", self.shown(*side, path)),
            Action::MoveAside { side, path, to } => format!(
                "conflict: keep {} as {}",
                self.shown(*side, path),
                self.shown(*side, to)
            ),
            Action::Delete { side, path } => format!("delete {}", self.shown(*side, path)),
            Action::RemoveDir { side, path } => {
                format!("rmdir {} (if empty)", self.shown(*side, path))
            }
            Action::Record { path } => format!("in sync: {path}"),
            Action::Forget { path } => format!("gone from both sides: {path}"),
        }
    }

    async fn list(&self, side: Side) -> Result<Tree, String> {
        let loc = &self.locations[side];
        let walked = match self.layers[side].walk(&loc.prefix).await {
            Ok(w) => w,
            // A folder not made yet holds nothing; the empty-side stop
            // catches one that vanished.
            Err(FsError::NotFound) => Vec::new(),
            Err(e) => return Err(format!("cannot list the {side} side {loc}: {e}")),
        };
        // The gateway's own names at a remote's root (the lease folder, the
        // case probe of a starting gateway) are never synced.
        let at_root = loc.prefix.is_empty();
        Ok(tree_of(walked, |p| at_root && p.starts_with(LEASE_FOLDER)))
    }

    /// Lists both sides and plans; acts on nothing. `Err` says why the
    /// run cannot go on.
    pub async fn prepare(&self, force: bool) -> Result<Prepared, String> {
        let state = self.files.load().await.map_err(|e| e.to_string())?;
        let (local, remote) = tokio::join!(self.list(Side::Local), self.list(Side::Remote));
        let (local, remote) = (local?, remote?);
        let rules = Rules {
            direction: self.config.direction,
            delete_after_copy: self.config.delete_after_copy,
            delete_empty_folders: self.config.delete_empty_folders,
            max_delete: self.config.max_delete,
            force,
            case_insensitive: BySide::new(|side| self.layers[side].remote().case_insensitive()),
        };
        let trees = BySide { local, remote };
        let plan = plan(&Inputs {
            rules: &rules,
            trees: BySide::new(|side| &trees[side]),
            state: state.as_ref(),
            now: Utc::now(),
        })
        .map_err(|s| s.to_string())?;
        Ok(Prepared { plan, trees, state })
    }

    /// What a run would do, in words, acting on nothing: the actions that
    /// change files, and the paths it would leave alone with why. `Err`
    /// says why a run would stop.
    pub async fn dry_run(&self, force: bool) -> Result<DryRun, String> {
        let prepared = self.prepare(force).await?;
        Ok(DryRun {
            actions: prepared
                .plan
                .actions
                .iter()
                .filter(|a| a.phase().changes_files())
                .map(|a| self.describe(a))
                .collect(),
            skipped: prepared
                .plan
                .skipped
                .iter()
                .map(|s| format!("{}: {}", s.path, s.reason))
                .collect(),
        })
    }

    /// Runs the job once: fails only when the lease is held elsewhere or
    /// the state folder cannot be written; everything else is in the report.
    pub async fn run(&self, force: bool, progress: &dyn RunProgress) -> Result<Report, SyncError> {
        let store = self.layers.remote.remote().store().clone();
        let lease = Lease::acquire(store, &self.config.name, &holder_name()).await?;
        let span = tracing::info_span!("sync", job = self.config.name);
        let result = self
            .run_leased(force, &lease, progress)
            .instrument(span)
            .await;
        lease.release().await;
        result
    }

    async fn run_leased(
        &self,
        force: bool,
        lease: &Lease,
        progress: &dyn RunProgress,
    ) -> Result<Report, SyncError> {
        let clock = Instant::now();
        let mut report = Report::new(&self.config.name, Utc::now());
        tracing::info!(
            direction = ?self.config.direction,
            local = %self.config.local,
            remote = %self.config.remote,
            "sync run started"
        );
        match self.prepare(force).await {
            Err(reason) => report.outcome = Outcome::Stopped(reason),
            Ok(prepared) => self.execute(prepared, lease, progress, &mut report).await?,
        }
        report.seconds = clock.elapsed().as_secs_f64();
        let outcome = match report.outcome {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Stopped(_) => "stopped",
        };
        self.layers
            .local
            .remote()
            .metrics()
            .sync_runs
            .get_or_create(&crate::metrics::SyncLabel {
                job: self.config.name.clone(),
                outcome,
            })
            .inc();
        report.log();
        self.files.add_report(&report).await?;
        Ok(report)
    }

    async fn execute(
        &self,
        p: Prepared,
        lease: &Lease,
        progress: &dyn RunProgress,
        report: &mut Report,
    ) -> Result<(), SyncError> {
        report.conflicts = p.plan.conflicts as u64;
        report.skipped = p
            .plan
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.path, s.reason))
            .collect();
        let bytes = p
            .plan
            .actions
            .iter()
            .map(|a| match a {
                Action::Copy { size, .. } => *size,
                _ => 0,
            })
            .sum();
        progress.planned(p.plan.actions.len(), bytes);
        let run = Run {
            job: self,
            trees: BySide::new(|side| &p.trees[side]),
            journal: self.files.journal().await?,
            synced: Mutex::new(p.state.unwrap_or_default()),
            lease,
            progress,
            not_aside: Mutex::default(),
        };
        let actions = p.plan.actions;
        let run = &run;
        let mut at = 0;
        while at < actions.len() {
            let phase = actions[at].phase();
            let end = actions[at..]
                .iter()
                .position(|a| a.phase() != phase)
                .map_or(actions.len(), |n| at + n);
            let width = if phase.in_parallel() {
                self.config.transfers
            } else {
                1
            };
            // Boxed: the stream's futures borrow the run, and only a named
            // future type lets the compiler see that they are Send.
            let acting: Vec<BoxFuture<'_, (&Action, ActResult<Done>)>> = actions[at..end]
                .iter()
                .map(|a| async move { (a, run.act(a).await) }.boxed())
                .collect();
            let results: Vec<_> = futures::stream::iter(acting)
                .buffer_unordered(width)
                .collect()
                .await;
            for (action, result) in results {
                progress.finished(&self.describe(action));
                match result {
                    Ok(done) => done.tally(report),
                    Err(e) => report
                        .errors
                        .push(format!("{}: {e}", self.describe(action))),
                }
            }
            at = end;
        }
        if !report.errors.is_empty() {
            report.outcome = Outcome::Failed;
        }
        let synced = std::mem::take(&mut *crate::base::lock(&run.synced));
        self.files.save(synced).await?;
        Ok(())
    }
}

/// Job `name` of the config, or an error that lists the jobs there are.
pub fn find<'a>(name: &str, syncs: &'a [SyncConfig]) -> Result<&'a SyncConfig, SyncError> {
    syncs
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| SyncError::UnknownJob {
            name: name.to_string(),
            known: if syncs.is_empty() {
                "none".into()
            } else {
                syncs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
}

/// What a finished action adds to the report.
enum Done {
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
    fn tally(self, r: &mut Report) {
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
struct Run<'a> {
    job: &'a Job,
    trees: BySide<&'a Tree>,
    journal: Journal,
    synced: Mutex<Synced>,
    lease: &'a Lease,
    progress: &'a dyn RunProgress,
    /// Conflicts whose older file could not be moved aside: the newer one
    /// must not be copied over it.
    not_aside: Mutex<HashSet<String>>,
}

type ActResult<T> = Result<T, String>;

fn vfs(e: FsError) -> String {
    e.to_string()
}

impl Run<'_> {
    /// Notes `path` settled, in memory and in the journal.
    async fn settle(&self, path: &str, pair: Option<Pair>) -> ActResult<()> {
        self.journal
            .settle(path, pair.clone())
            .await
            .map_err(|e| format!("writing the sync journal: {e}"))?;
        let mut synced = crate::base::lock(&self.synced);
        match pair {
            Some(p) => synced.insert(path.to_string(), p),
            None => synced.remove(path),
        };
        Ok(())
    }

    async fn act(&self, action: &Action) -> ActResult<Done> {
        if self.lease.lost() {
            return Err("not started: the job's lease was lost".into());
        }
        let job = self.job;
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
                Some(job.shown(from.other(), path)),
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
                Some(job.shown(*side, to)),
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
                    return Err("not on both sides".into());
                };
                let pair = Pair {
                    local: local.clone(),
                    remote: remote.clone(),
                };
                return self.settle(path, Some(pair)).await.map(|_| Done::Nothing);
            }
            Action::Forget { path } => return self.settle(path, None).await.map(|_| Done::Nothing),
        };
        let shown = job.shown(side, path);
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
            return Err("not copied: the conflicting file could not be moved aside first".into());
        }
        let job = self.job;
        let (src, dst) = (&job.layers[from], &job.layers[from.other()]);
        let (skey, dkey) = (job.key(from, path), job.key(from.other(), path));
        let download = src.open_read(&skey, 0).await.map_err(vfs)?;
        let stat = download.stat().clone();
        // What the listing showed, when this is still that file: the next
        // run compares against listings, not against what a GET says.
        let read = Fingerprint::new(stat.size, Some(stat.modified), None);
        let source = match self.trees[from].get(path).and_then(Entry::file) {
            Some(listed) if listed.size == read.size => listed.clone(),
            _ => read,
        };
        let mut upload = dst.overwrite(&dkey).map_err(vfs)?;
        let mut md5 = StreamMd5::default();
        let mut copied = 0u64;
        let mut chunks = std::pin::pin!(download.into_stream());
        while let Some(chunk) = chunks.try_next().await.map_err(vfs)? {
            if self.lease.lost() {
                // Dropping the upload aborts it: nothing half-written stays.
                return Err("stopped: the job's lease was lost".into());
            }
            md5.update(chunk.clone()).await?;
            let n = chunk.len() as u64;
            upload.write_at(copied, chunk).await.map_err(vfs)?;
            copied += n;
            self.progress.copied(n);
        }
        let stored = upload.close_stored().await.map_err(vfs)?;
        if stored.size != copied {
            return Err(format!(
                "the copy holds {} bytes where {copied} were read",
                stored.size
            ));
        }
        // What the next listing will show of the copy. An S3 ETag decides
        // on its own (see `Fingerprint::unchanged`), so no HEAD is needed;
        // a file copy gets the source's mtime, then is asked (a local stat).
        let target = match (dst.remote().etags_identify_content(), stored.etag) {
            (true, Some(etag)) => Fingerprint::new(copied, None, Some(etag)),
            _ => {
                dst.keep_mtime(&dkey, stat.modified).await.map_err(vfs)?;
                let (written, etag) = dst.head_object(&dkey).await.map_err(vfs)?;
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
        let job = self.job;
        let (src, dst) = (&job.layers[from], &job.layers[from.other()]);
        let (skey, dkey) = (job.key(from, path), job.key(from.other(), path));
        let source = self.trees[from].get(path).and_then(Entry::file).cloned();
        let target = self.trees[from.other()]
            .get(path)
            .and_then(Entry::file)
            .cloned();
        let (Some(source), Some(target)) = (source, target) else {
            return Err("not a file on both sides".into());
        };
        if source.size != target.size {
            return Err("the two sides differ in size".into());
        }
        // Both SHA-256s known (kept by the uploads that wrote them): they
        // decide, and neither file is read. Otherwise MD5s, read where needed.
        let sha256 = Algorithm::Sha256;
        match (
            src.kept_digest(&skey, sha256).await.map_err(vfs)?,
            dst.kept_digest(&dkey, sha256).await.map_err(vfs)?,
        ) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "the copy's SHA-256 {} is not the source's {}; the source is kept",
                    hex(&b),
                    hex(&a)
                ));
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
            return Err(format!(
                "the copy's checksum {held} is not the source's {digest}; the source is kept"
            ));
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
            Err(e) => return Err(vfs(e)),
        };
        if !seen.unchanged(&Fingerprint::new(now.size, Some(now.modified), etag)) {
            return Err("changed since it was listed; kept".into());
        }
        match layer.remove(key).await {
            Ok(()) | Err(FsError::NotFound) => Ok(()),
            Err(e) => Err(vfs(e)),
        }
    }

    async fn delete(&self, side: Side, path: &str) -> ActResult<Done> {
        let Some(seen) = self.trees[side].get(path).and_then(Entry::file) else {
            return Err("not a file".into());
        };
        let layer = &self.job.layers[side];
        self.delete_if_unchanged(layer, &self.job.key(side, path), seen)
            .await?;
        self.settle(path, None).await?;
        Ok(Done::Deleted)
    }

    async fn ensure_dir(&self, side: Side, path: &str) -> ActResult<Done> {
        let layer = &self.job.layers[side];
        layer
            .ensure_dir(&self.job.key(side, path))
            .await
            .map_err(vfs)?;
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
        let (job, layer) = (self.job, &self.job.layers[side]);
        if let Err(e) = layer
            .rename(&job.key(side, path), &job.key(side, to), false)
            .await
        {
            let mut not_aside = crate::base::lock(&self.not_aside);
            not_aside.insert(path.to_string());
            not_aside.insert(to.to_string());
            return Err(vfs(e));
        }
        self.settle(path, None).await?;
        Ok(Done::Nothing)
    }

    /// Removes a folder the run emptied; one that still holds something
    /// (a file that failed, or one added meanwhile) stays, quietly.
    async fn remove_dir(&self, side: Side, path: &str) -> ActResult<Done> {
        match self.job.layers[side].rmdir(&self.job.key(side, path)).await {
            Ok(()) => {
                self.settle(path, None).await?;
                Ok(Done::DirRemoved)
            }
            Err(FsError::NotEmpty | FsError::NotFound) => Ok(Done::Nothing),
            Err(e) => Err(vfs(e)),
        }
    }
}

/// The MD5 of an object's bytes, read through.
async fn content_md5(layer: &ObjectLayer, key: &str) -> ActResult<String> {
    let download = layer.open_read(key, 0).await.map_err(vfs)?;
    let mut md5 = StreamMd5::default();
    let mut chunks = std::pin::pin!(download.into_stream());
    while let Some(chunk) = chunks.try_next().await.map_err(vfs)? {
        md5.update(chunk).await?;
    }
    md5.finish().await
}
