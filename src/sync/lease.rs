//! One runner per job across gateways: a run first takes a lease object on
//! the job's remote side, `.bucketgate/sync/<job>.lease` at the remote's
//! root. It is created with a conditional PUT (`If-None-Match: *`), so two
//! gateways racing for it cannot both win; it names its holder and an
//! expiry, and the holder renews it (`If-Match` on its own ETag) while the
//! run goes on. A crashed holder stops renewing and the lease expires; the
//! next taker replaces the expired lease by its ETag, so two takers of one
//! expired lease cannot both win either. A lease whose holder was a
//! process of this host that no longer runs counts as expired at once.
//!
//! With `[cluster]` the lease is a row of the fleet's database instead
//! (`fleet.rs`), held and renewed the same way.

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a lease holds without renewal.
pub const TTL: Duration = Duration::from_secs(60);
/// How often a holder renews: three chances before it expires.
const RENEW_EVERY: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    holder: String,
    expires: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the job is running elsewhere: its lease is held by {holder} until {until}")]
    Busy {
        holder: String,
        until: DateTime<Utc>,
    },
    #[error("cannot take the job's lease {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot take the job's lease in the cluster's database: {0}")]
    Fleet(#[from] crate::cluster::ClusterError),
}

/// A lease held by this process; renewed in the background until released.
#[derive(Debug)]
pub struct Lease {
    held: Held,
    /// Set when a renewal found the lease taken or expired: the run must stop.
    lost: Arc<AtomicBool>,
    renew: tokio::task::JoinHandle<()>,
}

/// Where a lease is held.
#[derive(Debug, Clone)]
enum Held {
    /// An object in the job's bucket.
    Bucket {
        store: Arc<dyn ObjectStore>,
        path: Path,
    },
    /// A row of the fleet's database.
    Fleet {
        cluster: Box<crate::cluster::Cluster>,
        job: String,
        holder: String,
    },
}

/// What one renewal found.
enum Renewal {
    Renewed,
    /// Another holder has it, or it is gone.
    Taken,
    Failed(String),
}

impl Held {
    /// The lease as logs name it.
    fn name(&self) -> String {
        match self {
            Held::Bucket { path, .. } => path.to_string(),
            Held::Fleet { job, .. } => format!("job {job} in the cluster's database"),
        }
    }

    async fn renew(&self, holder: &str, etag: &mut Option<String>) -> Renewal {
        match self {
            Held::Bucket { store, path } => {
                let mode = PutMode::Update(UpdateVersion {
                    e_tag: etag.clone(),
                    version: None,
                });
                let result = match put(store, path, holder, mode).await {
                    Err(object_store::Error::NotImplemented { .. }) => {
                        put(store, path, holder, PutMode::Overwrite).await
                    }
                    other => other,
                };
                match result {
                    Ok(new) => {
                        *etag = new;
                        Renewal::Renewed
                    }
                    Err(
                        object_store::Error::Precondition { .. }
                        | object_store::Error::NotFound { .. },
                    ) => Renewal::Taken,
                    Err(e) => Renewal::Failed(e.to_string()),
                }
            }
            Held::Fleet {
                cluster,
                job,
                holder,
            } => match super::fleet::renew(cluster, job, holder, TTL).await {
                Ok(true) => Renewal::Renewed,
                Ok(false) => Renewal::Taken,
                Err(e) => Renewal::Failed(e.to_string()),
            },
        }
    }

    async fn release(&self) -> Result<(), String> {
        match self {
            Held::Bucket { store, path } => store.delete(path).await.map_err(|e| e.to_string()),
            Held::Fleet {
                cluster,
                job,
                holder,
            } => super::fleet::release(cluster, job, holder)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// The lease object's path for `job`: outside every synced folder but the
/// remote's root, which [`super::run`] leaves out of its listing.
pub fn lease_path(job: &str) -> Path {
    Path::from_iter([
        LEASE_FOLDER.to_string(),
        "sync".to_string(),
        format!("{}.lease", super::state::folder_name(job)),
    ])
}

/// The folder at a remote's root where leases live.
pub const LEASE_FOLDER: &str = ".bucketgate";

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// This process, as a lease names it: `host/pid N/random`.
pub fn holder_name() -> String {
    format!(
        "{}/pid {}/{:08x}",
        host_name(),
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Whether `holder` names a process of this host that no longer runs: a
/// `sync run` that was killed need not hold its job up until the lease
/// expires.
fn holder_is_dead_here(holder: &str) -> bool {
    let mut parts = holder.split('/');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Some(pid) = pid.strip_prefix("pid ").and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    host == host_name()
        && pid > 0
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
}

impl Lease {
    /// Takes the lease for `job` or says who holds it.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        job: &str,
        holder: &str,
    ) -> Result<Lease, LeaseError> {
        let path = lease_path(job);
        let err = |source| LeaseError::Store {
            path: path.to_string(),
            source,
        };
        let etag = match put(&store, &path, holder, PutMode::Create).await {
            Ok(etag) => etag,
            Err(object_store::Error::AlreadyExists { .. }) => {
                let (current, etag) = match read(&store, &path).await {
                    Ok(found) => found,
                    // Released between our PUT and GET: try once more.
                    Err(object_store::Error::NotFound { .. }) => {
                        return Box::pin(Lease::acquire(store, job, holder)).await;
                    }
                    Err(e) => return Err(err(e)),
                };
                if current.expires > Utc::now() && !holder_is_dead_here(&current.holder) {
                    return Err(LeaseError::Busy {
                        holder: current.holder,
                        until: current.expires,
                    });
                }
                tracing::warn!(job, holder = current.holder, expires = %current.expires, "taking over a sync lease whose holder expired or died");
                let update = PutMode::Update(UpdateVersion {
                    e_tag: etag,
                    version: None,
                });
                match put(&store, &path, holder, update).await {
                    Ok(etag) => etag,
                    Err(
                        object_store::Error::Precondition { .. }
                        | object_store::Error::AlreadyExists { .. }
                        | object_store::Error::NotFound { .. },
                    ) => {
                        // Someone else took it over first.
                        let (now, _) = read(&store, &path).await.map_err(err)?;
                        return Err(LeaseError::Busy {
                            holder: now.holder,
                            until: now.expires,
                        });
                    }
                    // A store without conditional updates (the filesystem, one host).
                    Err(object_store::Error::NotImplemented { .. }) => {
                        store.delete(&path).await.map_err(err)?;
                        return Box::pin(Lease::acquire(store, job, holder)).await;
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            Err(e) => return Err(err(e)),
        };
        Ok(Lease::kept(Held::Bucket { store, path }, holder, etag))
    }

    /// Takes the lease for `job` in the fleet's database or says who
    /// holds it.
    pub async fn acquire_in(
        cluster: &crate::cluster::Cluster,
        job: &str,
        holder: &str,
    ) -> Result<Lease, LeaseError> {
        if let Err((current, until)) = super::fleet::take(cluster, job, holder, TTL).await? {
            let dead = holder_is_dead_here(&current)
                && super::fleet::take_over(cluster, job, &current, holder, TTL).await?;
            if !dead {
                return Err(LeaseError::Busy {
                    holder: current,
                    until,
                });
            }
            tracing::warn!(
                job,
                holder = current,
                "taking over a sync lease whose holder died"
            );
        }
        let held = Held::Fleet {
            cluster: Box::new(cluster.clone()),
            job: job.to_string(),
            holder: holder.to_string(),
        };
        Ok(Lease::kept(held, holder, None))
    }

    /// A lease taken, renewed from now on.
    fn kept(held: Held, holder: &str, etag: Option<String>) -> Lease {
        let lost = Arc::new(AtomicBool::new(false));
        let renew = tokio::spawn(renew(held.clone(), holder.to_string(), etag, lost.clone()));
        Lease { held, lost, renew }
    }

    /// Whether the lease was lost: another gateway may be running the job.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops renewing and deletes the lease, unless it was lost to another holder.
    pub async fn release(self) {
        self.renew.abort();
        let _ = self.renew.await;
        if !self.lost.load(Ordering::Relaxed)
            && let Err(e) = self.held.release().await
        {
            tracing::warn!(lease = self.held.name(), error = %e, "could not delete the sync lease; it expires by itself");
        }
    }
}

async fn put(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    holder: &str,
    mode: PutMode,
) -> object_store::Result<Option<String>> {
    let body = Body {
        holder: holder.to_string(),
        expires: Utc::now() + TTL,
    };
    // Each body is new (the expiry moves), so each write gets a new ETag.
    let bytes = serde_json::to_vec(&body).expect("a lease body serialises");
    let opts = PutOptions {
        mode,
        ..Default::default()
    };
    Ok(store
        .put_opts(path, PutPayload::from(bytes), opts)
        .await?
        .e_tag)
}

async fn read(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> object_store::Result<(Body, Option<String>)> {
    let got = store.get(path).await?;
    let etag = got.meta.e_tag.clone();
    let bytes = got.bytes().await?;
    // An unreadable lease is treated as expired: it holds nobody.
    let body = serde_json::from_slice(&bytes).unwrap_or(Body {
        holder: "an unreadable lease".into(),
        expires: DateTime::<Utc>::MIN_UTC,
    });
    Ok((body, etag))
}

/// Renews the lease until aborted; marks it lost if another holder has it
/// or it could not be renewed before it expired.
async fn renew(held: Held, holder: String, mut etag: Option<String>, lost: Arc<AtomicBool>) {
    let mut expires = Utc::now() + TTL;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
    loop {
        tick.tick().await;
        match held.renew(&holder, &mut etag).await {
            Renewal::Renewed => expires = Utc::now() + TTL,
            Renewal::Taken => {
                tracing::error!(
                    lease = held.name(),
                    "the sync lease was taken by another holder; stopping the run"
                );
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Renewal::Failed(e) if Utc::now() >= expires => {
                tracing::error!(
                    lease = held.name(),
                    error = e,
                    "the sync lease expired before it could be renewed; stopping the run"
                );
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Renewal::Failed(e) => {
                tracing::warn!(
                    lease = held.name(),
                    error = e,
                    "renewing the sync lease failed; retrying"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_dead_process_of_this_host_lets_go_early() {
        let me = super::holder_name();
        assert!(!super::holder_is_dead_here(&me));
        let host = super::host_name();
        // Pid 2^22 + 1 is above Linux's pid_max: never running.
        assert!(super::holder_is_dead_here(&format!("{host}/pid 4194305/1")));
        assert!(!super::holder_is_dead_here("elsewhere/pid 4194305/1"));
        assert!(!super::holder_is_dead_here("garbage"));
    }
}
