//! With `[cluster]`, a job's lease and its run reports live in the fleet's
//! database: every node's `sync status` and console show every node's
//! runs, and the lease is one row that a node takes only while it is free
//! or expired, so two nodes never run a job at once. (Without a cluster,
//! the lease is an object in the job's bucket: `lease.rs`.)

use super::report::Report;
use super::state::KEEP_REPORTS;
use crate::cluster::{Cluster, ClusterError, within};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Takes `job`'s lease for `holder` for `ttl` if it is free or expired,
/// or says who holds it.
pub async fn take(
    cluster: &Cluster,
    job: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Result<(), (String, DateTime<Utc>)>, ClusterError> {
    let client = cluster.client().await?;
    let ttl = ttl.as_secs_f64();
    let taken = within(client.query_opt(
        "INSERT INTO bucketgate_sync_leases (job, holder, expires)
         VALUES ($1, $2, now() + make_interval(secs => $3))
         ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
         WHERE bucketgate_sync_leases.expires < now()
         RETURNING holder",
        &[&job, &holder, &ttl],
    ))
    .await?;
    if taken.is_some() {
        return Ok(Ok(()));
    }
    let Some(row) = within(client.query_opt(
        "SELECT holder, expires FROM bucketgate_sync_leases WHERE job = $1",
        &[&job],
    ))
    .await?
    else {
        // Released between the two: try again.
        return Box::pin(take(cluster, job, holder, Duration::from_secs_f64(ttl))).await;
    };
    Ok(Err((row.get(0), row.get(1))))
}

/// Takes `job`'s lease from `current` (a holder known dead) for `holder`:
/// false if someone else took it first.
pub async fn take_over(
    cluster: &Cluster,
    job: &str,
    current: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, ClusterError> {
    let client = cluster.client().await?;
    let replaced = within(client.execute(
        "UPDATE bucketgate_sync_leases SET holder = $3, expires = now() + make_interval(secs => $4)
         WHERE job = $1 AND holder = $2",
        &[&job, &current, &holder, &ttl.as_secs_f64()],
    ))
    .await?;
    Ok(replaced == 1)
}

/// Renews `holder`'s lease of `job` for `ttl`: false if it is not theirs
/// any more.
pub async fn renew(
    cluster: &Cluster,
    job: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, ClusterError> {
    let client = cluster.client().await?;
    let n = within(client.execute(
        "UPDATE bucketgate_sync_leases SET expires = now() + make_interval(secs => $3)
         WHERE job = $1 AND holder = $2",
        &[&job, &holder, &ttl.as_secs_f64()],
    ))
    .await?;
    Ok(n == 1)
}

pub async fn release(cluster: &Cluster, job: &str, holder: &str) -> Result<(), ClusterError> {
    let client = cluster.client().await?;
    within(client.execute(
        "DELETE FROM bucketgate_sync_leases WHERE job = $1 AND holder = $2",
        &[&job, &holder],
    ))
    .await?;
    Ok(())
}

/// Keeps `report` with the job's recent ones, at most [`KEEP_REPORTS`].
pub async fn add_report(cluster: &Cluster, report: &Report) -> Result<(), ClusterError> {
    let json = serde_json::to_string(report).expect("a report serialises");
    let client = cluster.client().await?;
    within(client.execute(
        "INSERT INTO bucketgate_sync_reports (job, node, report) VALUES ($1, $2, $3::text::jsonb)",
        &[&report.job, &cluster.node(), &json],
    ))
    .await?;
    within(client.execute(
        "DELETE FROM bucketgate_sync_reports WHERE job = $1 AND id <= (
             SELECT id FROM bucketgate_sync_reports WHERE job = $1
             ORDER BY id DESC OFFSET $2 LIMIT 1)",
        &[&report.job, &(KEEP_REPORTS as i64)],
    ))
    .await?;
    Ok(())
}

/// `job`'s latest run reports at every node, newest first.
pub async fn reports(
    cluster: &Cluster,
    job: &str,
    limit: usize,
) -> Result<Vec<Report>, ClusterError> {
    let client = cluster.client().await?;
    let rows = within(client.query(
        "SELECT report::text FROM bucketgate_sync_reports WHERE job = $1
         ORDER BY id DESC LIMIT $2",
        &[&job, &(limit.min(KEEP_REPORTS) as i64)],
    ))
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
        .collect())
}
