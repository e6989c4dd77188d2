//! With `[cluster]`, the webhooks' events live in the fleet's outbox table
//! rather than each node's spool: a node that dies or loses its disk
//! loses none, since any node may deliver any node's events.
//!
//! An event is committed before the client's close is answered, as the
//! spool's `fdatasync` promised. One writer per node takes every event
//! waiting at once into one `INSERT`, so a burst of small uploads shares
//! one commit. When the database cannot take them within its deadline the
//! events go to the node's spool instead, and move to the outbox once it
//! is back (`Webhook::move_to_outbox`): at least once, whatever fails.
//!
//! Delivery: each node claims due events of each of its webhooks with
//! `FOR UPDATE SKIP LOCKED` and holds them under a lease while it posts;
//! a node killed mid-delivery leaves leases that expire, and another
//! node claims the events again. An event a node has just committed is
//! inserted already leased to it and posted from memory, so the common
//! case costs no claim: one commit per event, as the spool's sync.

use crate::cluster::{Cluster, ClusterError, within};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::mpsc;

/// The most events one `INSERT` carries.
const BATCH: usize = 512;

/// An event on its way to the outbox; `then` is told whether it was
/// committed.
pub struct Pending {
    pub webhook: String,
    pub id: String,
    pub body: Bytes,
    pub born: DateTime<Utc>,
    /// Inserted leased to this node for so long: it posts the event itself.
    pub lease: Option<Duration>,
    pub then: Box<dyn FnOnce(bool) + Send>,
}

/// An event claimed for delivery.
pub struct Claimed {
    pub id: String,
    pub body: Bytes,
    pub attempts: u32,
    pub born: DateTime<Utc>,
}

/// What `/healthz` shows of a webhook's outbox rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rows {
    pub pending: usize,
    pub oldest: Option<DateTime<Utc>>,
    pub given_up: usize,
    pub bytes: u64,
}

/// The node's handle to the outbox.
#[derive(Clone)]
pub struct Outbox {
    cluster: Cluster,
    writer: mpsc::UnboundedSender<Pending>,
}

impl Outbox {
    /// Starts the node's writer. Needs the runtime.
    pub fn start(cluster: Cluster) -> Outbox {
        let (writer, mut rx) = mpsc::unbounded_channel::<Pending>();
        let on = cluster.clone();
        tokio::spawn(async move {
            let mut outage = crate::cluster::Outage::default();
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let rows: Vec<_> = batch
                    .iter()
                    .map(|p| Row {
                        webhook: &p.webhook,
                        id: &p.id,
                        body: &p.body,
                        born: p.born,
                        lease: p.lease,
                    })
                    .collect();
                let done = insert(&on, &rows).await;
                outage.note(
                    &done,
                    "events cannot reach the cluster's outbox; they are spooled on this node until it is back",
                    "events reach the cluster's outbox again",
                );
                for p in batch {
                    (p.then)(done.is_ok());
                }
            }
        });
        Outbox { cluster, writer }
    }

    /// Commits `event` with those waiting beside it.
    pub fn append(&self, event: Pending) {
        if let Err(mpsc::error::SendError(p)) = self.writer.send(event) {
            (p.then)(false);
        }
    }

    /// Commits events at once (what a node's spool held), every one or none.
    pub async fn insert(&self, rows: &[Row<'_>]) -> Result<(), ClusterError> {
        insert(&self.cluster, rows).await
    }

    /// Claims up to `n` due events of `webhook` for `lease`.
    pub async fn claim(
        &self,
        webhook: &str,
        n: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, ClusterError> {
        let client = self.cluster.client().await?;
        let claim = within(client.prepare_cached(
            "UPDATE bucketgate_events SET lease_node = $2,
                 lease_until = now() + make_interval(secs => $4)
             WHERE webhook = $1 AND id IN (
                 SELECT id FROM bucketgate_events
                 WHERE webhook = $1 AND NOT given_up AND next_at <= now()
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, body, attempts, born",
        ))
        .await?;
        let rows = within(client.query(
            &claim,
            &[
                &webhook,
                &self.cluster.node(),
                &(n.min(i64::MAX as usize) as i64),
                &lease.as_secs_f64(),
            ],
        ))
        .await?;
        Ok(rows
            .iter()
            .map(|r| Claimed {
                id: r.get(0),
                body: Bytes::from(r.get::<_, String>(1)),
                attempts: r.get::<_, i32>(2).max(0) as u32,
                born: r.get(3),
            })
            .collect())
    }

    /// Delivered events leave.
    pub async fn delivered(&self, webhook: &str, ids: &[String]) -> Result<(), ClusterError> {
        let client = self.cluster.client().await?;
        let delete =
            within(client.prepare_cached(
                "DELETE FROM bucketgate_events WHERE webhook = $1 AND id = ANY($2)",
            ))
            .await?;
        within(client.execute(&delete, &[&webhook, &ids])).await?;
        Ok(())
    }

    /// A failed attempt: tried again after `delay`, or given up (kept, not
    /// sent again until retried).
    pub async fn failed(
        &self,
        webhook: &str,
        id: &str,
        delay: Option<Duration>,
        why: &str,
    ) -> Result<(), ClusterError> {
        let client = self.cluster.client().await?;
        within(client.execute(
            "UPDATE bucketgate_events SET attempts = attempts + 1,
                 next_at = now() + make_interval(secs => $3),
                 given_up = $4, last_error = $5, lease_node = NULL, lease_until = NULL
             WHERE webhook = $1 AND id = $2",
            &[
                &webhook,
                &id,
                &delay.unwrap_or_default().as_secs_f64(),
                &delay.is_none(),
                &why,
            ],
        ))
        .await?;
        Ok(())
    }

    /// Puts `webhook`'s given-up events back to be delivered, with
    /// `retry_for` counting from now; how many.
    pub async fn retry_given_up(&self, webhook: &str) -> Result<usize, ClusterError> {
        let client = self.cluster.client().await?;
        let n = within(client.execute(
            "UPDATE bucketgate_events SET given_up = false, attempts = 0, born = now(),
                 next_at = now(), lease_node = NULL, lease_until = NULL
             WHERE webhook = $1 AND given_up",
            &[&webhook],
        ))
        .await?;
        Ok(n as usize)
    }

    /// What the outbox holds of `webhook`.
    pub async fn rows(&self, webhook: &str) -> Result<Rows, ClusterError> {
        let client = self.cluster.client().await?;
        let row = within(client.query_one(
            "SELECT count(*) FILTER (WHERE NOT given_up),
                    min(born) FILTER (WHERE NOT given_up),
                    count(*) FILTER (WHERE given_up),
                    coalesce(sum(octet_length(body)), 0)::bigint
             FROM bucketgate_events WHERE webhook = $1",
            &[&webhook],
        ))
        .await?;
        Ok(Rows {
            pending: row.get::<_, i64>(0).max(0) as usize,
            oldest: row.get(1),
            given_up: row.get::<_, i64>(2).max(0) as usize,
            bytes: row.get::<_, i64>(3).max(0) as u64,
        })
    }
}

/// One event's row.
pub struct Row<'a> {
    pub webhook: &'a str,
    pub id: &'a str,
    pub body: &'a Bytes,
    pub born: DateTime<Utc>,
    /// Leased to this node for so long, or free for any node to claim.
    pub lease: Option<Duration>,
}

async fn insert(cluster: &Cluster, rows: &[Row<'_>]) -> Result<(), ClusterError> {
    let webhooks: Vec<&str> = rows.iter().map(|r| r.webhook).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.id).collect();
    // Bodies are JSON, serialised by us: UTF-8.
    let bodies: Vec<&str> = rows
        .iter()
        .map(|r| std::str::from_utf8(r.body).unwrap_or("{}"))
        .collect();
    let born: Vec<DateTime<Utc>> = rows.iter().map(|r| r.born).collect();
    let leases: Vec<Option<f64>> = rows
        .iter()
        .map(|r| r.lease.map(|l| l.as_secs_f64()))
        .collect();
    let client = cluster.client().await?;
    let insert = within(client.prepare_cached(
        "INSERT INTO bucketgate_events (webhook, id, body, born, lease_node, lease_until)
         SELECT w, i, b, t, CASE WHEN l IS NULL THEN NULL ELSE $6 END,
                now() + make_interval(secs => l)
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[])
             AS e(w, i, b, t, l)
         ON CONFLICT DO NOTHING",
    ))
    .await?;
    within(client.execute(
        &insert,
        &[&webhooks, &ids, &bodies, &born, &leases, &cluster.node()],
    ))
    .await?;
    Ok(())
}
