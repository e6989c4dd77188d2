//! What a job keeps between runs, under `[server].state_dir/<job>/`:
//!
//! * `state.json` — each path both sides held in sync after the last run,
//!   as each side had it. Two-way runs tell new, changed and deleted files
//!   from it; one-way runs use it to know a copy unchanged.
//! * `journal.jsonl` — one line per path settled by the run in progress.
//!   A run that is killed leaves it behind; the next run replays it over
//!   `state.json`, so what the killed run finished is not taken for a
//!   change (a copy seen as "changed on both sides" would be a spurious
//!   conflict).
//! * `reports.json` — the last [`KEEP_REPORTS`] run reports.

use super::BySide;
use super::report::Report;
use super::tree::Entry;
use crate::config::SyncConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many run reports a job keeps.
pub const KEEP_REPORTS: usize = 20;

/// One path as each side held it when it was last in sync.
pub type Pair = BySide<Entry>;

/// Every path in sync after the last run.
pub type Synced = BTreeMap<String, Pair>;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// The job's folders when saved: a state taken of other folders (the
    /// config changed) is not this job's, and is ignored.
    local: String,
    remote: String,
    paths: Synced,
}

/// A journal line: a path settled (`Some`) or gone from both sides (`None`).
#[derive(Debug, Serialize, Deserialize)]
struct Settled {
    path: String,
    pair: Option<Pair>,
}

/// A job's files in the state folder.
#[derive(Debug, Clone)]
pub struct JobFiles {
    dir: PathBuf,
    local: String,
    remote: String,
}

#[derive(Debug, thiserror::Error)]
#[error("sync state in {path}: {source}")]
pub struct StateError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

impl JobFiles {
    pub fn new(state_dir: &Path, job: &str, local: String, remote: String) -> Self {
        JobFiles {
            dir: state_dir.join(folder_name(job)),
            local,
            remote,
        }
    }

    /// The files of a configured job.
    pub fn of(state_dir: &Path, job: &SyncConfig) -> Self {
        JobFiles::new(
            state_dir,
            &job.name,
            job.local.to_string(),
            job.remote.to_string(),
        )
    }

    fn err(&self, file: &str) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        let path = self.dir.join(file).display().to_string();
        move |source| StateError { path, source }
    }

    /// Runs `f` on a blocking thread: the state files are read whole and
    /// written with fsyncs, which must not stall the runtime's threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(JobFiles) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let files = self.clone();
        tokio::task::spawn_blocking(move || f(files))
            .await
            .map_err(|e| self.err("")(std::io::Error::other(e)))?
    }

    /// The last run's state with the journal of an unfinished run replayed
    /// over it; `None` when no run of this job has finished yet.
    pub async fn load(&self) -> Result<Option<Synced>, StateError> {
        self.blocking(|files| files.load_now()).await
    }

    fn load_now(&self) -> Result<Option<Synced>, StateError> {
        let saved: Option<Saved> =
            read_json(&self.dir.join("state.json")).map_err(self.err("state.json"))?;
        let mut saved = saved.filter(|s| s.local == self.local && s.remote == self.remote);
        let journal = match std::fs::read_to_string(self.dir.join("journal.jsonl")) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(self.err("journal.jsonl")(e)),
        };
        for line in journal.lines() {
            // The last line of a killed run may be cut short.
            let Ok(settled) = serde_json::from_str::<Settled>(line) else {
                continue;
            };
            let paths = &mut saved.get_or_insert_with(Saved::default).paths;
            match settled.pair {
                Some(pair) => paths.insert(settled.path, pair),
                None => paths.remove(&settled.path),
            };
        }
        Ok(saved.map(|s| s.paths))
    }

    /// Opens the journal of a run that is starting.
    pub async fn journal(&self) -> Result<Journal, StateError> {
        self.blocking(|files| files.journal_now()).await
    }

    fn journal_now(&self) -> Result<Journal, StateError> {
        std::fs::create_dir_all(&self.dir).map_err(self.err(""))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("journal.jsonl"))
            .map_err(self.err("journal.jsonl"))?;
        Ok(Journal {
            file: Arc::new(std::sync::Mutex::new(file)),
        })
    }

    /// Saves a finished run's state and drops its journal.
    pub async fn save(&self, paths: Synced) -> Result<(), StateError> {
        self.blocking(|files| files.save_now(paths)).await
    }

    fn save_now(&self, paths: Synced) -> Result<(), StateError> {
        let saved = Saved {
            local: self.local.clone(),
            remote: self.remote.clone(),
            paths,
        };
        write_json(&self.dir, "state.json", &saved).map_err(self.err("state.json"))?;
        match std::fs::remove_file(self.dir.join("journal.jsonl")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.err("journal.jsonl")(e)),
            _ => Ok(()),
        }
    }

    /// The job's recent run reports, oldest first.
    pub fn reports(&self) -> Result<Vec<Report>, StateError> {
        Ok(read_json(&self.dir.join("reports.json"))
            .map_err(self.err("reports.json"))?
            .unwrap_or_default())
    }

    /// Keeps `report` with the recent ones.
    pub async fn add_report(&self, report: &Report) -> Result<(), StateError> {
        let report = report.clone();
        self.blocking(move |files| files.add_report_now(&report))
            .await
    }

    fn add_report_now(&self, report: &Report) -> Result<(), StateError> {
        let mut reports = self.reports()?;
        reports.push(report.clone());
        let drop = reports.len().saturating_sub(KEEP_REPORTS);
        reports.drain(..drop);
        std::fs::create_dir_all(&self.dir).map_err(self.err(""))?;
        write_json(&self.dir, "reports.json", &reports).map_err(self.err("reports.json"))
    }
}

/// The journal of the run in progress.
#[derive(Debug)]
pub struct Journal {
    file: Arc<std::sync::Mutex<std::fs::File>>,
}

impl Journal {
    /// Notes a path settled: in sync as `pair`, or (`None`) on neither side.
    /// Written through at once, one `write` a line, off the runtime's
    /// threads: the point is to survive a kill.
    pub async fn settle(&self, path: &str, pair: Option<Pair>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&Settled {
            path: path.to_string(),
            pair,
        })?;
        line.push(b'\n');
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || crate::base::lock(&file).write_all(&line))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// A job name as a folder name: anything but letters, digits, `.`, `_`
/// and `-` is escaped, so no name can point outside the state folder.
pub(super) fn folder_name(job: &str) -> String {
    let mut out = String::new();
    for c in job.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') || (c == '.' && !out.is_empty()) {
            out.push(c);
        } else {
            for b in c.to_string().bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    crate::base::replace_file(&dir.join(name), &serde_json::to_vec_pretty(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::tree::Fingerprint;

    fn file(size: u64) -> Entry {
        Entry::File(Fingerprint {
            size,
            mtime: Some(1),
            etag: None,
        })
    }

    #[tokio::test]
    async fn a_killed_runs_journal_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let job = JobFiles::new(dir.path(), "orders/../x", "l:/a".into(), "r:/b".into());
        assert_eq!(job.load().await.unwrap(), None);
        let pair = |n| Pair {
            local: file(n),
            remote: file(n),
        };
        job.save(Synced::from([("a".into(), pair(1)), ("b".into(), pair(2))]))
            .await
            .unwrap();
        let journal = job.journal().await.unwrap();
        journal.settle("c", Some(pair(3))).await.unwrap();
        journal.settle("a", None).await.unwrap();
        drop(journal);
        // A line cut short by the kill is ignored.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("orders%2F..%2Fx/journal.jsonl"))
            .unwrap();
        f.write_all(b"{\"path\":\"d\",\"pa").unwrap();
        let loaded = job.load().await.unwrap().unwrap();
        assert_eq!(loaded.keys().collect::<Vec<_>>(), ["b", "c"]);
        // Another job's folders: not this state.
        let moved = JobFiles::new(dir.path(), "orders/../x", "l:/other".into(), "r:/b".into());
        assert_eq!(
            moved
                .load()
                .await
                .unwrap()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["c"]
        );
    }
}
