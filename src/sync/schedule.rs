//! The jobs of a running gateway: each on its `interval`, and any of them
//! now when an operator asks (the console, `/api/v1`). Each job has its
//! own task and each run its own task inside it: a slow, failing or
//! panicking job never holds up serving or another job. Runs of one job
//! never overlap in this gateway (a run waits for the one in progress),
//! nor across gateways (the lease).

use super::lease::LeaseError;
use super::report::{Outcome, Report};
use super::{Job, RunProgress, SyncError};
use crate::base::lock;
use crate::config::{Config, EventKind};
use crate::events::{Event, Events};
use crate::vfs::Storage;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One configured job, as the gateway runs it.
pub struct Scheduled {
    pub job: Arc<Job>,
    /// Held for the length of a run.
    turn: tokio::sync::Mutex<()>,
    /// The run in progress.
    running: Mutex<Option<Arc<Progress>>>,
}

/// How the run in progress goes.
#[derive(Debug, Serialize)]
pub struct Progress {
    pub started: DateTime<Utc>,
    /// `schedule` or `operator`.
    pub by: &'static str,
    pub actions: AtomicUsize,
    pub bytes: AtomicU64,
    pub done: AtomicUsize,
    pub copied_bytes: AtomicU64,
}

impl RunProgress for Progress {
    fn planned(&self, actions: usize, bytes: u64) {
        self.actions.store(actions, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }
    fn copied(&self, bytes: u64) {
        self.copied_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    fn finished(&self, _action: &str) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a run asked for now did not start.
#[derive(Debug, thiserror::Error)]
pub enum RunNowError {
    #[error("no sync job named {0:?}")]
    Unknown(String),
    #[error("job {0:?} is running now")]
    Running(String),
}

/// Every job the config names that could be set up, by name.
#[derive(Clone)]
pub struct Jobs {
    jobs: Arc<BTreeMap<String, Arc<Scheduled>>>,
    events: Arc<Events>,
    ending: CancellationToken,
}

impl Jobs {
    /// Sets up every job (one that cannot be is logged and left out) and
    /// starts a task per job that has an interval; each ends when
    /// `stopped` turns true. A run in progress when `stopped` turns true
    /// goes on until `ending` is cancelled (the shutdown grace is over);
    /// then it is dropped, which aborts its open copies.
    pub fn start(
        config: &Config,
        storage: &Storage,
        events: &Arc<Events>,
        fleet: Option<&crate::cluster::Cluster>,
        quotas: &Arc<crate::quota::Quotas>,
        stopped: &watch::Receiver<bool>,
        ending: &CancellationToken,
    ) -> (Jobs, Vec<tokio::task::JoinHandle<()>>) {
        let mut jobs = BTreeMap::new();
        for sync in &config.syncs {
            match Job::new(sync, storage, &config.server.state_dir) {
                Ok(job) => {
                    let scheduled = Scheduled {
                        job: Arc::new(job.in_fleet(fleet.cloned()).counting(quotas.clone())),
                        turn: tokio::sync::Mutex::new(()),
                        running: Mutex::new(None),
                    };
                    jobs.insert(sync.name.clone(), Arc::new(scheduled));
                }
                Err(e) => tracing::error!(job = sync.name, error = %e, "sync job not set up"),
            }
        }
        let jobs = Jobs {
            jobs: Arc::new(jobs),
            events: events.clone(),
            ending: ending.clone(),
        };
        let mut tasks = Vec::new();
        for scheduled in jobs.jobs.values() {
            let Some(interval) = scheduled.job.config.interval else {
                continue;
            };
            tracing::info!(job = scheduled.job.config.name, every = %humantime::format_duration(interval), "sync job scheduled");
            let (mut stopped, jobs, scheduled) = (stopped.clone(), jobs.clone(), scheduled.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    if !jobs.run(&scheduled, "schedule").await {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = stopped.wait_for(|s| *s) => return,
                    }
                }
            }));
        }
        (jobs, tasks)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Scheduled>> {
        self.jobs.values()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Scheduled>> {
        self.jobs.get(name)
    }

    /// Starts a run of `name` now, in the background.
    pub fn run_now(&self, name: &str) -> Result<(), RunNowError> {
        let scheduled = self
            .get(name)
            .ok_or_else(|| RunNowError::Unknown(name.to_string()))?
            .clone();
        if scheduled.progress().is_some() {
            return Err(RunNowError::Running(name.to_string()));
        }
        let jobs = self.clone();
        tokio::spawn(async move { jobs.run(&scheduled, "operator").await });
        Ok(())
    }

    /// One run, after the one in progress: logged, and its `sync_run`
    /// event emitted. False when shutdown ended it.
    async fn run(&self, scheduled: &Arc<Scheduled>, by: &'static str) -> bool {
        let _turn = scheduled.turn.lock().await;
        // The run's event is told for sure: room for it first, or no run.
        let told = Event {
            job: Some(scheduled.job.config.name.clone()),
            ..Event::new(EventKind::SyncRun)
        };
        let told = match self.events.reserve(&told) {
            Ok(room) => room,
            Err(e) => {
                tracing::error!(job = scheduled.job.config.name, error = %e, "sync run not started");
                return true;
            }
        };
        let progress = Arc::new(Progress {
            started: Utc::now(),
            by,
            actions: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            copied_bytes: AtomicU64::new(0),
        });
        *lock(&scheduled.running) = Some(progress.clone());
        let mut run = tokio::spawn({
            let job = scheduled.job.clone();
            async move { job.run(false, progress.as_ref()).await }
        });
        let went_on = tokio::select! {
            result = &mut run => {
                if let Some(event) = log_result(&scheduled.job, result) {
                    told.emit(event).wait().await;
                }
                true
            }
            _ = self.ending.cancelled() => {
                run.abort();
                tracing::warn!(job = scheduled.job.config.name, "sync run ended by shutdown; the next run finishes it");
                false
            }
        };
        *lock(&scheduled.running) = None;
        went_on
    }
}

impl Scheduled {
    /// The run in progress, if any.
    pub fn progress(&self) -> Option<Arc<Progress>> {
        lock(&self.running).clone()
    }

    /// The latest run reports, newest first.
    pub async fn reports(&self, limit: usize) -> Vec<Report> {
        self.job.reports(limit).await
    }
}

/// Logs how a run ended and gives its `sync_run` event: none for a run
/// another gateway holds the job for.
fn log_result(
    job: &Job,
    result: Result<Result<super::Report, SyncError>, tokio::task::JoinError>,
) -> Option<Event> {
    let name = &job.config.name;
    let event = Event {
        job: Some(name.clone()),
        ..Event::new(EventKind::SyncRun)
    };
    let error = match result {
        // The report has been logged by the run.
        Ok(Ok(report)) => {
            let error = match &report.outcome {
                Outcome::Done => None,
                Outcome::Failed => Some(format!("{} file(s) failed", report.errors.len())),
                Outcome::Stopped(why) => Some(why.clone()),
            };
            return Some(
                Event {
                    duration_ms: Some((report.seconds * 1000.0) as u64),
                    report: serde_json::to_value(&report).ok(),
                    ..event
                }
                .failed(error),
            );
        }
        Ok(Err(SyncError::Lease(LeaseError::Busy { holder, until }))) => {
            tracing::info!(job = name, %holder, %until, "sync run skipped: the job is running on another gateway");
            return None;
        }
        Ok(Err(e)) => {
            tracing::error!(job = name, error = %e, "sync run failed");
            e.to_string()
        }
        Err(e) => {
            tracing::error!(job = name, error = %e, "sync run crashed; serving goes on");
            e.to_string()
        }
    };
    Some(event.failed(Some(error)))
}
