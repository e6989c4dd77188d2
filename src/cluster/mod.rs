//! `[cluster]`: what the nodes of a fleet share, in PostgreSQL.
//!
//! One machine with no `[cluster]` keeps everything in `state_dir`, as it
//! always has; nothing here runs. With it, each node connects a small pool
//! at start, brings the schema up to date (`schema.rs`), and says it is
//! alive every `heartbeat` (`nodes.rs`). Every call has a deadline: a
//! database that is down or slow must never hold up a file transfer, so
//! callers treat [`ClusterError`] as "use the local view", never as fatal
//! once the gateway serves.

pub mod bans;
pub mod console;
pub mod live;
pub mod nodes;
mod notes;
pub mod quotas;
pub mod schema;
pub mod sessions;
pub mod shares;
pub mod uploads;

use crate::config::ClusterConfig;
use crate::metrics::Metrics;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// The longest any one database call may take before the caller goes on
/// without it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the database's TLS settings: {0}")]
    Tls(String),
    #[error("no database connection: {0}")]
    Connect(String),
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("database: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Schema(String),
}

/// The pool and this node's name: what every shared-state call needs.
#[derive(Clone)]
pub struct Cluster {
    pool: Pool,
    node: String,
    /// For the one connection outside the pool that listens for
    /// notifications.
    pg: tokio_postgres::Config,
    tls: rustls_tokio_postgres::MakeRustlsConnect,
    /// [`Standing`] as a number, for `/healthz`.
    standing: Arc<AtomicU8>,
    metrics: Arc<Metrics>,
}

/// Where this node stands with the fleet, as `/healthz` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not joined yet since the start.
    Joining,
    Up,
    /// The database did not answer the last heartbeat (or join): this
    /// node serves on its own state.
    Degraded,
}

impl Standing {
    pub fn name(self) -> &'static str {
        match self {
            Standing::Joining => "joining",
            Standing::Up => "up",
            Standing::Degraded => "degraded",
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish()
    }
}

impl Cluster {
    /// A pool for `config`. No connection is made yet: [`Cluster::client`]
    /// makes them as they are needed.
    pub fn new(config: &ClusterConfig, metrics: &Arc<Metrics>) -> Result<Cluster, ClusterError> {
        let mut pg: tokio_postgres::Config = config
            .database
            .parse()
            .map_err(|e| ClusterError::Connect(format!("{e}")))?;
        pg.connect_timeout(CALL_TIMEOUT);
        pg.application_name(format!("bucketgate {}", config.node));
        let tls =
            crate::base::tls_client_config(config.ca_file.as_deref()).map_err(ClusterError::Tls)?;
        let tls = rustls_tokio_postgres::MakeRustlsConnect::new(tls);
        let manager = Manager::from_config(
            pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(CALL_TIMEOUT))
            .recycle_timeout(Some(CALL_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| ClusterError::Connect(e.to_string()))?;
        Ok(Cluster {
            pool,
            node: config.node.clone(),
            pg,
            tls,
            standing: Arc::new(AtomicU8::new(Standing::Joining as u8)),
            metrics: metrics.clone(),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn standing(&self) -> Standing {
        match self.standing.load(Ordering::Relaxed) {
            0 => Standing::Joining,
            1 => Standing::Up,
            _ => Standing::Degraded,
        }
    }

    /// Notes how the last call that judges the node's standing (a join
    /// or a heartbeat) went.
    fn judge<T>(&self, result: &Result<T, ClusterError>) {
        let standing = match result {
            Ok(_) => Standing::Up,
            Err(_) => {
                self.metrics.cluster_errors.inc();
                Standing::Degraded
            }
        };
        self.metrics
            .cluster_degraded
            .set(i64::from(standing == Standing::Degraded));
        self.standing.store(standing as u8, Ordering::Relaxed);
    }

    /// A connection of its own, outside the pool: what `LISTEN` needs,
    /// since its notifications arrive on the connection that asked.
    pub async fn dedicated(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                <rustls_tokio_postgres::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
                    tokio_postgres::Socket,
                >>::Stream,
            >,
        ),
        ClusterError,
    > {
        within(self.pg.connect(self.tls.clone())).await
    }

    /// A connection from the pool, within [`CALL_TIMEOUT`].
    pub async fn client(&self) -> Result<deadpool_postgres::Object, ClusterError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Timeout(_) => ClusterError::Timeout(CALL_TIMEOUT),
            deadpool_postgres::PoolError::Backend(e) => ClusterError::Connect(e.to_string()),
            other => ClusterError::Connect(other.to_string()),
        })
    }
}

/// A call that fails again and again is logged once (WARN), and once more
/// (info) when it works again: the database may be down for long, and
/// the gateway serves on meanwhile.
#[derive(Debug, Default)]
pub struct Outage(bool);

impl Outage {
    pub fn note<T>(&mut self, result: &Result<T, ClusterError>, lost: &str, back: &str) {
        match (result, self.0) {
            (Ok(_), true) => {
                self.0 = false;
                tracing::info!("{back}");
            }
            (Err(e), false) => {
                self.0 = true;
                tracing::warn!(error = %e, "{lost}");
            }
            _ => {}
        }
    }
}

/// Runs one database call within [`CALL_TIMEOUT`].
pub async fn within<T>(
    call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ClusterError::Timeout(CALL_TIMEOUT)),
    }
}

/// Joins the fleet and stays in it until `stop`: brings the schema up to
/// date, registers this node, then beats and shares its bans, its
/// sessions' counts (`limits`) and views (`live`). While the
/// database cannot be reached it tries again every `every`, and the
/// gateway serves meanwhile.
pub async fn join(
    cluster: Cluster,
    every: Duration,
    limits: crate::auth::SessionLimits,
    live: std::sync::Arc<crate::live::Live>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut told = false;
    loop {
        let joined = async {
            let migrated = schema::migrate(&cluster).await?;
            let registration = nodes::register(&cluster, every).await?;
            Ok::<_, ClusterError>((migrated, registration))
        };
        let joined = joined.await;
        cluster.judge(&joined);
        match joined {
            Ok((migrated, registration)) => {
                match migrated.from == migrated.to {
                    true => tracing::info!(
                        node = cluster.node(),
                        schema = migrated.to,
                        "joined the cluster; schema up to date"
                    ),
                    false => tracing::info!(
                        node = cluster.node(),
                        from = migrated.from,
                        to = migrated.to,
                        "joined the cluster; schema migrated"
                    ),
                }
                tokio::join!(
                    registration.beat_until(stop.clone()),
                    bans::share(cluster.clone(), limits.bans().clone(), every, stop.clone()),
                    sessions::share(cluster.clone(), limits, every, stop.clone()),
                    live::share(cluster.clone(), live, every, stop)
                );
                return;
            }
            Err(e) => {
                if !told {
                    tracing::warn!(error = %e, "cannot join the cluster yet; serving on, trying again every heartbeat");
                    told = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}
