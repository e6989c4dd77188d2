//! The nodes of the fleet: each registers at start, says it is alive every
//! `heartbeat`, and leaves at a graceful stop. A node whose heartbeat is
//! older than three of its own intervals is gone (killed, or cut off from
//! the database), which `cluster status` and the console show.

use super::{Cluster, ClusterError, within};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Heartbeats a node may miss before the others count it gone.
pub const MISSED: u32 = 3;

/// The tables of a node's sessions, cleared when it leaves or is gone.
const SESSION_TABLES: [&str; 2] = ["bucketgate_user_sessions", "bucketgate_sessions"];

/// This process's registration: its node name, and an instance id that
/// tells it from an earlier process of the same name.
#[derive(Debug, Clone)]
pub struct Registration {
    cluster: Cluster,
    instance: String,
    every: Duration,
}

/// Registers this node. A row of the same name whose heartbeat is still
/// fresh belongs to another live process: most likely two gateways given
/// one name, which the operator must hear of; this one takes the row over
/// (a restart after a crash looks the same).
pub async fn register(cluster: &Cluster, every: Duration) -> Result<Registration, ClusterError> {
    let instance = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>())
    };
    let client = cluster.client().await?;
    let ms = every.as_millis().min(i32::MAX as u128) as i32;
    let fresh = within(client.query_opt(
        "SELECT instance FROM bucketgate_nodes
         WHERE name = $1 AND heartbeat_at > now() - make_interval(secs => heartbeat_ms * $2 / 1000.0)",
        &[&cluster.node(), &(MISSED as i32)],
    ))
    .await?;
    if fresh.is_some() {
        tracing::warn!(
            node = cluster.node(),
            "another gateway with this node name sent a heartbeat within the last {MISSED}; \
             each node of a fleet needs its own [cluster] node"
        );
    }
    within(client.execute(
        "INSERT INTO bucketgate_nodes (name, instance, version, started_at, heartbeat_at, heartbeat_ms)
         VALUES ($1, $2, $3, now(), now(), $4)
         ON CONFLICT (name) DO UPDATE SET instance = $2, version = $3,
             started_at = now(), heartbeat_at = now(), heartbeat_ms = $4",
        &[&cluster.node(), &instance, &env!("CARGO_PKG_VERSION"), &ms],
    ))
    .await?;
    Ok(Registration {
        cluster: cluster.clone(),
        instance,
        every,
    })
}

impl Registration {
    /// Says this node is alive every interval until `stop`, then leaves
    /// the fleet. A failed beat is logged once until one succeeds again:
    /// the database may be down, and the gateway serves on.
    pub async fn beat_until(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut outage = super::Outage::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            let beat = self.beat().await;
            self.cluster.judge(&beat);
            outage.note(
                &beat,
                "cluster heartbeat failed; serving on",
                "cluster heartbeat sent again",
            );
        }
        if let Err(e) = self.leave().await {
            tracing::info!(error = %e, "could not leave the cluster; the others will see this node gone");
        }
    }

    /// Says this node is alive, and clears what gone nodes left of their
    /// sessions (any node may: the statements are idempotent).
    async fn beat(&self) -> Result<(), ClusterError> {
        let client = self.cluster.client().await?;
        within(client.execute(
            "UPDATE bucketgate_nodes SET heartbeat_at = now() WHERE name = $1 AND instance = $2",
            &[&self.cluster.node(), &self.instance],
        ))
        .await?;
        for table in SESSION_TABLES {
            within(client.execute(
                &format!(
                    "DELETE FROM {table} WHERE node NOT IN (SELECT name FROM bucketgate_nodes
                     WHERE heartbeat_at > now() - make_interval(secs => heartbeat_ms * $1 / 1000.0))"
                ),
                &[&(MISSED as i32)],
            ))
            .await?;
        }
        Ok(())
    }

    async fn leave(&self) -> Result<(), ClusterError> {
        let client = self.cluster.client().await?;
        within(client.execute(
            "DELETE FROM bucketgate_nodes WHERE name = $1 AND instance = $2",
            &[&self.cluster.node(), &self.instance],
        ))
        .await?;
        for table in SESSION_TABLES {
            within(client.execute(
                &format!("DELETE FROM {table} WHERE node = $1"),
                &[&self.cluster.node()],
            ))
            .await?;
        }
        Ok(())
    }
}

/// A node as `cluster status` shows it.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// Since its last heartbeat, by the database's clock.
    pub silent_for: Duration,
    pub gone: bool,
}

/// Every registered node, by name.
pub async fn list(cluster: &Cluster) -> Result<Vec<Node>, ClusterError> {
    let client = cluster.client().await?;
    let rows = within(client.query(
        "SELECT name, version, started_at,
                (extract(epoch FROM now() - heartbeat_at) * 1000)::bigint,
                heartbeat_ms
         FROM bucketgate_nodes ORDER BY name",
        &[],
    ))
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let silent = Duration::from_millis(r.get::<_, i64>(3).max(0) as u64);
            let every = Duration::from_millis(r.get::<_, i32>(4).max(0) as u64);
            Node {
                name: r.get(0),
                version: r.get(1),
                started_at: r.get(2),
                silent_for: silent,
                gone: silent > every * MISSED,
            }
        })
        .collect())
}
