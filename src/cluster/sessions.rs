//! Each user's `max_sessions` across the fleet.
//!
//! A node writes how many sessions each user has at it now (an absolute
//! count, so a lost message is mended by the next) and notifies the
//! others; each node keeps what the others hold per user and counts it at
//! login with its own (`auth::sessions`), so a login never waits on the
//! database. Every heartbeat a node reads the counts of the live nodes
//! again: a node that died stops counting once it is gone.

use super::{Cluster, ClusterError, nodes::MISSED, within};
use crate::auth::SessionLimits;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The notification channel: payloads `NODE COUNT USER`.
const CHANNEL: &str = "bucketgate_sessions";

/// Users whose count changed, waiting to be written.
const QUEUED: usize = 4096;

/// What the other nodes hold, per node and user.
type Heard = Arc<Mutex<HashMap<(String, String), usize>>>;

/// Shares `limits`' per-user sessions with the fleet until `stop`.
pub async fn share(
    cluster: Cluster,
    limits: SessionLimits,
    every: Duration,
    stop: CancellationToken,
) {
    let (tx, rx) = mpsc::channel(QUEUED);
    limits.share_with(tx);
    let heard: Heard = Arc::default();
    tokio::join!(
        write(&cluster, &limits, rx, every, &stop),
        listen(&cluster, &limits, &heard, every, &stop),
    );
}

/// Writes this node's per-user counts as they change. Everything is
/// written again at the start (what this node held before it restarted is
/// held no more), after a failure (changes lost while the database was
/// away), and after a change the channel could not take, until it works.
async fn write(
    cluster: &Cluster,
    limits: &SessionLimits,
    mut changed: mpsc::Receiver<String>,
    every: Duration,
    stop: &CancellationToken,
) {
    let mut outage = super::Outage::default();
    let mut whole = true;
    let mut retry = tokio::time::interval(every);
    loop {
        whole |= limits.take_missed();
        if whole {
            let done = write_all(cluster, limits.sessions_by_user()).await;
            whole = done.is_err();
            outage.note(&done, LOST, BACK);
        }
        let user = tokio::select! {
            user = changed.recv() => match user {
                Some(user) => user,
                None => return,
            },
            _ = retry.tick(), if whole => continue,
            _ = stop.cancelled() => return,
        };
        if !whole && !limits.missed() {
            let done = write_one(cluster, &user, limits.sessions_of(&user)).await;
            whole = done.is_err();
            outage.note(&done, LOST, BACK);
        }
    }
}

const LOST: &str = "sessions not shared with the cluster; max_sessions holds per node";
const BACK: &str = "sessions reach the cluster again";

async fn write_all(cluster: &Cluster, all: Vec<(String, usize)>) -> Result<(), ClusterError> {
    within(cluster.client().await?.execute(
        "DELETE FROM bucketgate_user_sessions WHERE node = $1",
        &[&cluster.node()],
    ))
    .await?;
    for (user, n) in all {
        write_one(cluster, &user, n).await?;
    }
    Ok(())
}

async fn write_one(cluster: &Cluster, user: &str, n: usize) -> Result<(), ClusterError> {
    let client = cluster.client().await?;
    let n = n.min(i32::MAX as usize) as i32;
    match n {
        0 => {
            within(client.execute(
                "DELETE FROM bucketgate_user_sessions WHERE node = $1 AND user_name = $2",
                &[&cluster.node(), &user],
            ))
            .await?
        }
        _ => within(client.execute(
            "INSERT INTO bucketgate_user_sessions (node, user_name, sessions) VALUES ($1, $2, $3)
             ON CONFLICT (node, user_name) DO UPDATE SET sessions = $3",
            &[&cluster.node(), &user, &n],
        ))
        .await?,
    };
    let note = format!("{} {n} {user}", cluster.node());
    within(client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &note])).await?;
    Ok(())
}

/// Hears the other nodes' counts as they change, and reads them all again
/// on each (re)connection and every heartbeat.
async fn listen(
    cluster: &Cluster,
    limits: &SessionLimits,
    heard: &Heard,
    every: Duration,
    stop: &CancellationToken,
) {
    let resync = || {
        let (cluster, limits, heard) = (cluster.clone(), limits.clone(), heard.clone());
        Box::pin(async move { read_counts(&cluster, &limits, &heard).await }) as _
    };
    let again = async {
        // Every heartbeat, the whole view again: a node gone stops counting.
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let _ = read_counts(cluster, limits, heard).await;
        }
    };
    let (me, on_note, limits_heard) = (cluster.node().to_string(), heard.clone(), limits.clone());
    let hear = move |payload: &str| {
        let mut words = payload.splitn(3, ' ');
        let (Some(node), Some(Ok(n)), Some(user)) = (
            words.next(),
            words.next().map(str::parse::<usize>),
            words.next(),
        ) else {
            return;
        };
        if node == me {
            return;
        }
        let mut all = crate::base::lock(&on_note);
        match n {
            0 => all.remove(&(node.to_string(), user.to_string())),
            n => all.insert((node.to_string(), user.to_string()), n),
        };
        let total = all
            .iter()
            .filter(|((_, u), _)| u == user)
            .map(|(_, n)| n)
            .sum();
        limits_heard.set_elsewhere([(user.to_string(), total)], false);
    };
    tokio::join!(
        super::notes::listen(cluster, CHANNEL, "sessions", every, stop, resync, hear),
        again
    );
}

/// The live other nodes' counts, replacing the whole view.
async fn read_counts(
    cluster: &Cluster,
    limits: &SessionLimits,
    heard: &Heard,
) -> Result<(), ClusterError> {
    let client = cluster.client().await?;
    let rows = within(client.query(
        "SELECT s.node, s.user_name, s.sessions FROM bucketgate_user_sessions s
         JOIN bucketgate_nodes n ON n.name = s.node
         WHERE s.node <> $1
           AND n.heartbeat_at > now() - make_interval(secs => n.heartbeat_ms * $2 / 1000.0)",
        &[&cluster.node(), &(MISSED as i32)],
    ))
    .await?;
    let mut all = crate::base::lock(heard);
    all.clear();
    for row in rows {
        let n: i32 = row.get(2);
        all.insert((row.get(0), row.get(1)), n.max(0) as usize);
    }
    limits.set_elsewhere(totals(&all), true);
    Ok(())
}

/// Per user, the sessions of every other node.
fn totals(all: &HashMap<(String, String), usize>) -> Vec<(String, usize)> {
    let mut by_user: HashMap<String, usize> = HashMap::new();
    for ((_, user), n) in all {
        *by_user.entry(user.clone()).or_default() += n;
    }
    by_user.into_iter().collect()
}
