//! Running a job: take the lease, list both sides, plan, act, then keep
//! the state and the report. Every byte goes through the same object
//! layers the frontends use: streaming reads, multipart uploads that are
//! visible only when complete.

pub use super::act::RunProgress;
use super::act::{ActResult, Done, Run};
pub use super::error::{ActError, NotRun, SyncError};
use super::lease::{LEASE_FOLDER, Lease, holder_name};
use super::plan::{Action, Inputs, Plan, Rules, plan};
use super::report::{Outcome, Report};
use super::sides::Sides;
use super::state::{JobFiles, Synced};
use super::tree::{Tree, tree_of};
use super::{BySide, Side};
use crate::config::{Location, SyncConfig};
use crate::vfs::{FsError, Storage};
use chrono::Utc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;
use tracing::Instrument;

/// One configured job, ready to run.
#[derive(Debug)]
pub struct Job {
    pub config: SyncConfig,
    pub(super) sides: Sides,
    pub files: JobFiles,
    /// With `[cluster]`: where the lease and the reports live.
    pub fleet: Option<crate::cluster::Cluster>,
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
            sides: Sides {
                layers: BySide {
                    local: layer(&locations.local)?,
                    remote: layer(&locations.remote)?,
                },
                locations,
                quotas: None,
            },
            files: JobFiles::of(state_dir, config),
            config: config.clone(),
            fleet: None,
        })
    }

    /// The job with its writes and deletes counted in `quotas`.
    pub fn counting(mut self, quotas: std::sync::Arc<crate::quota::Quotas>) -> Job {
        self.sides.quotas = Some(quotas);
        self
    }

    /// The job as a node of `fleet` runs it: its lease and reports in the
    /// fleet's database.
    pub fn in_fleet(mut self, fleet: Option<crate::cluster::Cluster>) -> Job {
        self.fleet = fleet;
        self
    }

    /// The latest run reports, newest first: the fleet's with `[cluster]`
    /// (this node's own when the database cannot be read, said in the
    /// log), else this gateway's.
    pub async fn reports(&self, limit: usize) -> Vec<Report> {
        if let Some(fleet) = &self.fleet {
            match super::fleet::reports(fleet, &self.config.name, limit).await {
                Ok(reports) => return reports,
                Err(e) => {
                    tracing::info!(job = self.config.name, error = %e, "the fleet's sync reports cannot be read; showing this node's")
                }
            }
        }
        let mut reports = self.files.reports().unwrap_or_default();
        reports.reverse();
        reports.truncate(limit);
        reports
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

    /// `remote:/key`, as logs and the dry run name a file.
    pub fn shown(&self, side: Side, path: &str) -> String {
        self.sides.shown(side, path)
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

    async fn list(&self, side: Side) -> Result<Tree, NotRun> {
        let loc = &self.sides.locations[side];
        let walked = match self.sides.layers[side].walk(&loc.prefix).await {
            Ok(w) => w,
            // A folder not made yet holds nothing; the empty-side stop
            // catches one that vanished.
            Err(FsError::NotFound) => Vec::new(),
            Err(source) => {
                return Err(NotRun::List {
                    side,
                    location: loc.to_string(),
                    source,
                });
            }
        };
        // The gateway's own names at a remote's root (the lease folder, the
        // case probe of a starting gateway) are never synced.
        let at_root = loc.prefix.is_empty();
        Ok(tree_of(walked, |p| at_root && p.starts_with(LEASE_FOLDER)))
    }

    /// Lists both sides and plans; acts on nothing. `Err` says why the
    /// run cannot go on.
    pub async fn prepare(&self, force: bool) -> Result<Prepared, NotRun> {
        let state = self.files.load().await?;
        let (local, remote) = tokio::join!(self.list(Side::Local), self.list(Side::Remote));
        let (local, remote) = (local?, remote?);
        let rules = Rules {
            direction: self.config.direction,
            delete_after_copy: self.config.delete_after_copy,
            delete_empty_folders: self.config.delete_empty_folders,
            max_delete: self.config.max_delete,
            force,
            case_insensitive: BySide::new(|side| {
                self.sides.layers[side].remote().case_insensitive()
            }),
        };
        let trees = BySide { local, remote };
        let plan = plan(&Inputs {
            rules: &rules,
            trees: BySide::new(|side| &trees[side]),
            state: state.as_ref(),
            now: Utc::now(),
        })?;
        Ok(Prepared { plan, trees, state })
    }

    /// What a run would do, in words, acting on nothing: the actions that
    /// change files, and the paths it would leave alone with why. `Err`
    /// says why a run would stop.
    pub async fn dry_run(&self, force: bool) -> Result<DryRun, NotRun> {
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
        let lease = match &self.fleet {
            Some(fleet) => Lease::acquire_in(fleet, &self.config.name, &holder_name()).await?,
            None => {
                let store = self.sides.layers.remote.remote().store().clone();
                Lease::acquire(store, &self.config.name, &holder_name()).await?
            }
        };
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
        let mut report = Report {
            node: self.fleet.as_ref().map(|f| f.node().to_string()),
            ..Report::new(&self.config.name, Utc::now())
        };
        tracing::info!(
            direction = ?self.config.direction,
            local = %self.config.local,
            remote = %self.config.remote,
            "sync run started"
        );
        match self.prepare(force).await {
            Err(reason) => report.outcome = Outcome::Stopped(reason.to_string()),
            Ok(prepared) => self.execute(prepared, lease, progress, &mut report).await?,
        }
        report.seconds = clock.elapsed().as_secs_f64();
        let outcome = match report.outcome {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Stopped(_) => "stopped",
        };
        self.sides
            .layers
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
        if let Some(fleet) = &self.fleet
            && let Err(e) = super::fleet::add_report(fleet, &report).await
        {
            tracing::warn!(error = %e, "the run's report did not reach the cluster's database; this node keeps it");
        }
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
            sides: &self.sides,
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
