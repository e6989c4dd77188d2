//! Every node's sessions and their transfers, for the console of any
//! node, and ending a session held by another node.
//!
//! A node writes what its sessions look like (as `/api/v1/sessions`
//! shows them) at most once a second, and only the rows that changed; the
//! console of any node reads the other live nodes' rows. Ending a session
//! elsewhere is a notification its node acts on as it hears it.

use super::{Cluster, ClusterError, nodes::MISSED, within};
use crate::live::Live;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a node writes its sessions: the console's view of another
/// node is at most this old.
const EVERY: Duration = Duration::from_secs(1);

/// The notification channel: payloads `NODE ID`, a session to end.
const CHANNEL: &str = "bucketgate_end_session";

/// Writes this node's sessions and ends those the fleet asks it to, until
/// `stop`.
pub async fn share(cluster: Cluster, live: Arc<Live>, every: Duration, stop: CancellationToken) {
    let me = cluster.node().to_string();
    let on_end = live.clone();
    let hear = move |payload: &str| {
        let Some((node, id)) = payload.split_once(' ') else {
            return;
        };
        if node == me
            && let Ok(id) = id.parse::<u64>()
            && on_end.end(id)
        {
            tracing::info!(session = id, "session ended from another node's console");
        }
    };
    let resync = || Box::pin(async { Ok(()) }) as _;
    tokio::join!(
        write(&cluster, &live, &stop),
        super::notes::listen(
            &cluster,
            CHANNEL,
            "session ends",
            every,
            &stop,
            resync,
            hear
        ),
    );
}

/// Writes the sessions that changed since the last write, once a second.
/// Everything is written again at the start and after a failure.
async fn write(cluster: &Cluster, live: &Live, stop: &CancellationToken) {
    let mut written: Option<HashMap<u64, String>> = None;
    let mut outage = super::Outage::default();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now: HashMap<u64, (String, String)> = live
            .sessions()
            .iter()
            .map(|s| (s.id, (s.user.clone(), s.view().to_string())))
            .collect();
        let done = write_changes(cluster, written.as_ref(), &now).await;
        outage.note(
            &done,
            "sessions not shown to the cluster's consoles",
            "sessions shown to the cluster's consoles again",
        );
        written = done
            .ok()
            .map(|()| now.into_iter().map(|(id, (_, view))| (id, view)).collect());
    }
}

async fn write_changes(
    cluster: &Cluster,
    written: Option<&HashMap<u64, String>>,
    now: &HashMap<u64, (String, String)>,
) -> Result<(), ClusterError> {
    let node = cluster.node();
    let (mut ids, mut users, mut views) = (Vec::new(), Vec::new(), Vec::new());
    for (id, (user, view)) in now {
        if written.and_then(|w| w.get(id)) != Some(view) {
            ids.push(*id as i64);
            users.push(user.as_str());
            views.push(view.as_str());
        }
    }
    let gone: Vec<i64> = written
        .map(|w| {
            w.keys()
                .filter(|id| !now.contains_key(id))
                .map(|id| *id as i64)
                .collect()
        })
        .unwrap_or_default();
    if written.is_some() && ids.is_empty() && gone.is_empty() {
        return Ok(());
    }
    let mut client = cluster.client().await?;
    let tx = within(client.transaction()).await?;
    match written {
        None => {
            within(tx.execute("DELETE FROM bucketgate_sessions WHERE node = $1", &[&node])).await?
        }
        Some(_) => {
            within(tx.execute(
                "DELETE FROM bucketgate_sessions WHERE node = $1 AND id = ANY($2)",
                &[&node, &gone],
            ))
            .await?
        }
    };
    within(tx.execute(
        "INSERT INTO bucketgate_sessions (node, id, user_name, view)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[]::jsonb[])
         ON CONFLICT (node, id) DO UPDATE SET view = excluded.view",
        &[&node, &ids, &users, &views],
    ))
    .await?;
    within(tx.commit()).await?;
    Ok(())
}

/// The sessions of the fleet's other live nodes, each with its `node`.
pub async fn elsewhere(cluster: &Cluster) -> Result<Vec<Value>, ClusterError> {
    let client = cluster.client().await?;
    let rows = within(client.query(
        "SELECT s.node, s.view::text FROM bucketgate_sessions s
         JOIN bucketgate_nodes n ON n.name = s.node
         WHERE s.node <> $1
           AND n.heartbeat_at > now() - make_interval(secs => n.heartbeat_ms * $2 / 1000.0)
         ORDER BY s.node, s.id",
        &[&cluster.node(), &(MISSED as i32)],
    ))
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let mut view: Value = serde_json::from_str(r.get::<_, &str>(1)).ok()?;
            view["node"] = Value::String(r.get(0));
            Some(view)
        })
        .collect())
}

/// Asks `node` to end its session `id`: false if the fleet has no such
/// session.
pub async fn end(cluster: &Cluster, node: &str, id: u64) -> Result<bool, ClusterError> {
    let client = cluster.client().await?;
    let found = within(client.query_opt(
        "SELECT 1 FROM bucketgate_sessions WHERE node = $1 AND id = $2",
        &[&node, &(id as i64)],
    ))
    .await?;
    if found.is_none() {
        return Ok(false);
    }
    let note = format!("{node} {id}");
    within(client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &note])).await?;
    Ok(true)
}
