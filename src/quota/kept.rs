//! Where usage lives between listings: on one node, a file under
//! `state_dir` written a few seconds after a change (a crash loses at
//! most those seconds, which the next listing restores); in a fleet, the
//! cluster database, which every node adds to.

use super::{Quotas, Target};
use crate::cluster::Cluster;
use crate::cluster::quotas::{self, Usage};
use crate::config::Location;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug)]
pub(super) enum Kept {
    Local { file: PathBuf, dirty: AtomicBool },
    Fleet(Box<Cluster>),
}

/// One target in `quota-usage.json`.
#[derive(Serialize, Deserialize)]
struct Row {
    remote: String,
    prefix: String,
    bytes: i64,
    files: i64,
    /// Seconds since the epoch of its last listing.
    scanned: u64,
}

impl Kept {
    /// One node: what this gateway commits is all the gateway commits.
    pub(super) fn alone(&self) -> bool {
        !matches!(self, Kept::Fleet(_))
    }

    pub(super) fn new(cluster: Option<Cluster>, state_dir: &Path) -> Kept {
        match cluster {
            Some(c) => Kept::Fleet(Box::new(c)),
            None => Kept::Local {
                file: state_dir.join("quota-usage.json"),
                dirty: AtomicBool::new(false),
            },
        }
    }

    /// Reads back what a previous run kept; a damaged file is set aside
    /// (every target is then listed again).
    pub(super) fn load(&self, quotas: &Quotas) {
        let Kept::Local { file, .. } = self else {
            return;
        };
        let Ok(text) = std::fs::read(file) else {
            return;
        };
        match serde_json::from_slice::<Vec<Row>>(&text) {
            Ok(rows) => {
                for r in rows {
                    let place = Location {
                        remote: r.remote,
                        prefix: r.prefix,
                    };
                    let usage = Usage {
                        bytes: r.bytes,
                        files: r.files,
                    };
                    quotas.restore(place, usage, UNIX_EPOCH + Duration::from_secs(r.scanned));
                }
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "quota usage file unreadable; every target is listed again")
            }
        }
    }

    /// Adds `delta` to the fleet's count: the total after it, or `None`
    /// on one node (or with the database away: the next listing corrects).
    pub(super) async fn add(&self, target: &Target, delta: Usage) -> Option<Usage> {
        let Kept::Fleet(cluster) = self else {
            return None;
        };
        match quotas::add(cluster, &target.name(), delta).await {
            Ok(total) => Some(total),
            Err(e) => {
                tracing::warn!(target = %target.name(), error = %e, "quota usage not counted in the database; the next listing corrects it");
                None
            }
        }
    }

    /// The fleet's count of `target`, once some node listed it.
    pub(super) async fn read(&self, target: &Target) -> Option<Usage> {
        let Kept::Fleet(cluster) = self else {
            return None;
        };
        quotas::usage(cluster, &target.name()).await.ok().flatten()
    }

    /// Whether this node lists `name` now (in a fleet, one node per turn).
    pub(super) async fn take_scan(&self, name: &str, every: Duration) -> bool {
        match self {
            Kept::Local { .. } => true,
            Kept::Fleet(cluster) => quotas::take_scan(cluster, name, every)
                .await
                .unwrap_or(false),
        }
    }

    /// A listing's result, as the new count.
    pub(super) async fn set(&self, name: &str, usage: Usage) {
        if let Kept::Fleet(cluster) = self
            && let Err(e) = quotas::set(cluster, name, usage).await
        {
            tracing::warn!(target = %name, error = %e, "quota listing not kept in the database");
        }
    }

    /// Something changed that the file should hold.
    pub(super) fn changed(&self) {
        if let Kept::Local { dirty, .. } = self {
            dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the file when something changed since it was last written.
    pub(super) async fn save(&self, quotas: &Quotas) {
        let Kept::Local { file, dirty } = self else {
            return;
        };
        if !dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let rows: Vec<Row> = quotas
            .all()
            .iter()
            .filter_map(|t| {
                let state = t.state();
                let used = state.used?;
                Some(Row {
                    remote: t.place.remote.clone(),
                    prefix: t.place.prefix.clone(),
                    bytes: used.bytes,
                    files: used.files,
                    scanned: state
                        .scanned
                        .and_then(|s| s.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs()),
                })
            })
            .collect();
        let file = file.clone();
        let written = tokio::task::spawn_blocking(move || {
            let text = serde_json::to_vec(&rows).map_err(std::io::Error::other)?;
            crate::base::replace_file(&file, &text)
        })
        .await;
        if let Ok(Err(e)) | Err(e) = written.map_err(std::io::Error::other) {
            dirty.store(true, Ordering::Relaxed);
            tracing::warn!(error = %e, "quota usage not written to state_dir; trying again");
        }
    }
}
