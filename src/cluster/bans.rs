//! Bans shared by the fleet.
//!
//! Each node keeps its own table (`auth::bans`), which every new
//! connection consults: no database round trip on that path. What a node
//! sees — a failed login, a success, a lift from the console — goes to the
//! database in the background, where failures are counted per source for
//! the whole fleet. The failure that reaches `ban_threshold` there bans
//! the source in `bucketgate_bans` and notifies every node
//! (`LISTEN`/`NOTIFY`), which adds the ban to its table. A node that was
//! not listening (started later, or cut off) reads the bans in force when
//! it listens again.
//!
//! The fleet's window is counted from a source's first failure, where a
//! node's own table slides; a node's own threshold still bans on its own.

use super::{Cluster, ClusterError, within};
use crate::auth::{BanChange, Bans, Source};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The notification channel: payloads `ban SOURCE SECONDS` and `lift SOURCE`.
const CHANNEL: &str = "bucketgate_bans";

/// Changes waiting for the database; past this, the fleet misses them.
const QUEUED: usize = 4096;

/// Shares `bans` with the fleet until `stop`; while the database is
/// unreachable the node goes on with its own table and tries again every
/// `every`.
pub async fn share(cluster: Cluster, bans: Bans, every: Duration, stop: CancellationToken) {
    let (tx, rx) = mpsc::channel(QUEUED);
    bans.share_with(tx);
    tokio::join!(
        write(&cluster, &bans, rx, &stop),
        listen(&cluster, &bans, every, &stop)
    );
}

/// Writes this node's changes to the fleet's tables, one at a time.
async fn write(
    cluster: &Cluster,
    bans: &Bans,
    mut changes: mpsc::Receiver<BanChange>,
    stop: &CancellationToken,
) {
    let mut outage = super::Outage::default();
    loop {
        let change = tokio::select! {
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
            _ = stop.cancelled() => return,
        };
        outage.note(
            &record(cluster, bans, change).await,
            "failed logins not shared with the cluster; this node's bans hold",
            "failed logins reach the cluster again",
        );
    }
}

async fn record(cluster: &Cluster, bans: &Bans, change: BanChange) -> Result<(), ClusterError> {
    let (threshold, window, ban_time) = bans.rules();
    let mut client = cluster.client().await?;
    let tx = within(client.transaction()).await?;
    match change {
        BanChange::Failed(source) => {
            let source = source.to_string();
            let failures: i32 = within(tx.query_one(
                "INSERT INTO bucketgate_login_failures AS f (source, failures, window_start)
                 VALUES ($1, 1, now())
                 ON CONFLICT (source) DO UPDATE SET
                   failures = CASE WHEN f.window_start > now() - make_interval(secs => $2)
                              THEN f.failures + 1 ELSE 1 END,
                   window_start = CASE WHEN f.window_start > now() - make_interval(secs => $2)
                                  THEN f.window_start ELSE now() END
                 RETURNING failures",
                &[&source, &window.as_secs_f64()],
            ))
            .await?
            .get(0);
            if failures as usize >= threshold {
                within(tx.execute(
                    "DELETE FROM bucketgate_login_failures
                     WHERE source = $1 OR window_start < now() - make_interval(secs => $2)",
                    &[&source, &window.as_secs_f64()],
                ))
                .await?;
                within(tx.execute("DELETE FROM bucketgate_bans WHERE until < now()", &[])).await?;
                within(tx.execute(
                    "INSERT INTO bucketgate_bans (source, until, node)
                     VALUES ($1, now() + make_interval(secs => $2), $3)
                     ON CONFLICT (source) DO UPDATE
                     SET until = greatest(bucketgate_bans.until, excluded.until), node = excluded.node",
                    &[&source, &ban_time.as_secs_f64(), &cluster.node()],
                ))
                .await?;
                let note = format!("ban {source} {}", ban_time.as_secs());
                within(tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &note])).await?;
            }
        }
        BanChange::Succeeded(source) => {
            within(tx.execute(
                "DELETE FROM bucketgate_login_failures WHERE source = $1",
                &[&source.to_string()],
            ))
            .await?;
        }
        BanChange::Lifted(source) => {
            let source = source.to_string();
            within(tx.execute(
                "DELETE FROM bucketgate_login_failures WHERE source = $1",
                &[&source],
            ))
            .await?;
            within(tx.execute("DELETE FROM bucketgate_bans WHERE source = $1", &[&source])).await?;
            let note = format!("lift {source}");
            within(tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &note])).await?;
        }
    }
    // NOTIFY is sent at commit: never for a ban that did not happen.
    within(tx.commit()).await?;
    Ok(())
}

/// Listens for the fleet's bans; on each (re)connection, reads the bans
/// in force.
async fn listen(cluster: &Cluster, bans: &Bans, every: Duration, stop: &CancellationToken) {
    let resync = || {
        let (cluster, bans) = (cluster.clone(), bans.clone());
        Box::pin(async move { read_bans(&cluster, &bans).await }) as _
    };
    let heard = bans.clone();
    super::notes::listen(
        cluster,
        CHANNEL,
        "bans",
        every,
        stop,
        resync,
        move |payload| apply(&heard, payload),
    )
    .await;
}

/// The bans in force, into this node's table.
async fn read_bans(cluster: &Cluster, bans: &Bans) -> Result<(), ClusterError> {
    let client = cluster.client().await?;
    let rows = within(client.query(
        "SELECT source, extract(epoch FROM until - now())::float8
         FROM bucketgate_bans WHERE until > now()",
        &[],
    ))
    .await?;
    for row in rows {
        if let Ok(source) = row.get::<_, String>(0).parse::<Source>() {
            bans.impose(
                source,
                Duration::from_secs_f64(row.get::<_, f64>(1).max(0.0)),
            );
        }
    }
    Ok(())
}

/// A notification from the fleet, applied to this node's table.
fn apply(bans: &Bans, payload: &str) {
    let mut words = payload.split(' ');
    let (verb, source) = (words.next(), words.next().map(str::parse::<Source>));
    match (verb, source, words.next().map(str::parse::<u64>)) {
        (Some("ban"), Some(Ok(source)), Some(Ok(seconds))) => {
            tracing::info!(%source, seconds, "source banned by the cluster");
            bans.impose(source, Duration::from_secs(seconds));
        }
        (Some("lift"), Some(Ok(source)), None) => {
            bans.lift_here(source);
        }
        _ => tracing::debug!(payload, "a cluster ban notification not understood"),
    }
}
