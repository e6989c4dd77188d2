//! Jobs on their `interval` inside `serve`. Each job has its own task and
//! each run its own task inside it: a slow, failing or panicking job never
//! holds up serving or another job, and runs of one job never overlap
//! (the next waits for the last, then for the interval).

use super::lease::LeaseError;
use super::report::Outcome;
use super::{Job, Quiet, SyncError};
use crate::config::{Config, EventKind};
use crate::events::{Event, Events};
use crate::vfs::Storage;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Starts a task per job that has an interval; each ends when `stopped` turns true.
/// A run in progress when `stopped` turns true goes on until `ending` is
/// cancelled (the shutdown grace is over); then it is dropped, which
/// aborts its open copies.
pub fn start(
    config: &Config,
    storage: &Storage,
    events: &Arc<Events>,
    stopped: &watch::Receiver<bool>,
    ending: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for sync in &config.syncs {
        let Some(interval) = sync.interval else {
            continue;
        };
        let job = match Job::new(sync, storage, &config.server.state_dir) {
            Ok(job) => Arc::new(job),
            Err(e) => {
                tracing::error!(job = sync.name, error = %e, "sync job not scheduled");
                continue;
            }
        };
        tracing::info!(job = sync.name, every = %humantime::format_duration(interval), "sync job scheduled");
        let mut stopped = stopped.clone();
        let (ending, events) = (ending.clone(), events.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let mut run = tokio::spawn({
                    let job = job.clone();
                    async move { job.run(false, &Quiet).await }
                });
                tokio::select! {
                    result = &mut run => {
                        if let Some(event) = log_result(&job, result) {
                            events.emit(event).wait().await;
                        }
                    }
                    _ = ending.cancelled() => {
                        run.abort();
                        tracing::warn!(job = job.config.name, "sync run ended by shutdown; the next run finishes it");
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
            }
        }));
    }
    tasks
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
