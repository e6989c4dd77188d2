//! What one run did: logged when it ends, kept in the job's state folder,
//! shown by `bucketgate sync status`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "reason")]
pub enum Outcome {
    /// Every action succeeded.
    Done,
    /// Some files failed; the rest was done. The next run retries them.
    Failed,
    /// Stopped before acting (max_delete, an empty side) or unable to list.
    Stopped(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub job: String,
    /// The node of the fleet that ran it (with `[cluster]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub started: DateTime<Utc>,
    pub seconds: f64,
    pub outcome: Outcome,
    pub copied: u64,
    pub copied_bytes: u64,
    pub deleted: u64,
    pub folders_created: u64,
    pub folders_removed: u64,
    pub conflicts: u64,
    /// Paths left alone, with why.
    pub skipped: Vec<String>,
    /// Paths that failed, with the error.
    pub errors: Vec<String>,
}

impl Report {
    pub fn new(job: &str, started: DateTime<Utc>) -> Self {
        Report {
            job: job.to_string(),
            node: None,
            started,
            seconds: 0.0,
            outcome: Outcome::Done,
            copied: 0,
            copied_bytes: 0,
            deleted: 0,
            folders_created: 0,
            folders_removed: 0,
            conflicts: 0,
            skipped: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Writes the summary to the log, with one line per skipped or failed path.
    pub fn log(&self) {
        for s in &self.skipped {
            tracing::warn!(job = self.job, "sync skipped {s}");
        }
        for e in &self.errors {
            tracing::error!(job = self.job, "sync failed: {e}");
        }
        match &self.outcome {
            Outcome::Stopped(reason) => {
                tracing::error!(job = self.job, "sync run stopped: {reason}")
            }
            _ => tracing::info!(
                job = self.job,
                copied = self.copied,
                copied_bytes = self.copied_bytes,
                deleted = self.deleted,
                folders_created = self.folders_created,
                folders_removed = self.folders_removed,
                conflicts = self.conflicts,
                skipped = self.skipped.len(),
                errors = self.errors.len(),
                seconds = format!("{:.2}", self.seconds),
                "sync run {}",
                if self.errors.is_empty() {
                    "done"
                } else {
                    "finished with errors"
                }
            ),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match &self.outcome {
            Outcome::Done => "done".to_string(),
            Outcome::Failed => format!("{} error(s)", self.errors.len()),
            Outcome::Stopped(reason) => format!("stopped: {reason}"),
        };
        let at = self
            .node
            .as_ref()
            .map_or(String::new(), |n| format!(" at node {n}"));
        write!(
            f,
            "{}{at} ({:.1} s): {outcome}; copied {} file(s), {} byte(s); deleted {}; folders +{} -{}; conflicts {}; skipped {}",
            self.started.format("%Y-%m-%d %H:%M:%S UTC"),
            self.seconds,
            self.copied,
            self.copied_bytes,
            self.deleted,
            self.folders_created,
            self.folders_removed,
            self.conflicts,
            self.skipped.len(),
        )?;
        for s in &self.skipped {
            write!(f, "\n  skipped {s}")?;
        }
        for e in &self.errors {
            write!(f, "\n  error: {e}")?;
        }
        Ok(())
    }
}
