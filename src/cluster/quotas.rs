//! Quota usage counted for the fleet: one row per quota target (a user, a
//! group), moved by atomic increments, so that uploads at every node count
//! toward one total. What a quota is and when it refuses belongs to the
//! policy layer that enforces it; this is only the shared counter.

use super::{Cluster, ClusterError, within};

/// A target's usage: bytes stored and files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: i64,
    pub files: i64,
}

/// Adds `delta` (negative to give back) to `target`'s usage; the total
/// after it, as every node's changes made it.
pub async fn add(cluster: &Cluster, target: &str, delta: Usage) -> Result<Usage, ClusterError> {
    let client = cluster.client().await?;
    let row = within(client.query_one(
        "INSERT INTO bucketgate_quota_usage (target, bytes, files) VALUES ($1, $2, $3)
         ON CONFLICT (target) DO UPDATE
             SET bytes = bucketgate_quota_usage.bytes + excluded.bytes,
                 files = bucketgate_quota_usage.files + excluded.files
         RETURNING bytes, files",
        &[&target, &delta.bytes, &delta.files],
    ))
    .await?;
    Ok(Usage {
        bytes: row.get(0),
        files: row.get(1),
    })
}

/// `target`'s usage now, once some node has listed it (`None` before).
pub async fn usage(cluster: &Cluster, target: &str) -> Result<Option<Usage>, ClusterError> {
    let client = cluster.client().await?;
    let row = within(client.query_opt(
        "SELECT bytes, files FROM bucketgate_quota_usage
         WHERE target = $1 AND scanned_at IS NOT NULL",
        &[&target],
    ))
    .await?;
    Ok(row.map(|r| Usage {
        bytes: r.get(0),
        files: r.get(1),
    }))
}

/// Whether this node should list `target` now: nobody has, or not
/// within `every`. Taking the turn marks it listed, so one node of the
/// fleet lists each target per interval.
pub async fn take_scan(
    cluster: &Cluster,
    target: &str,
    every: std::time::Duration,
) -> Result<bool, ClusterError> {
    let client = cluster.client().await?;
    let secs = every.as_secs_f64();
    let taken = within(client.execute(
        "INSERT INTO bucketgate_quota_usage (target, scanned_at) VALUES ($1, now())
         ON CONFLICT (target) DO UPDATE SET scanned_at = now()
         WHERE bucketgate_quota_usage.scanned_at IS NULL
            OR bucketgate_quota_usage.scanned_at < now() - make_interval(secs => $2)",
        &[&target, &secs],
    ))
    .await?;
    Ok(taken == 1)
}

/// Sets `target`'s usage to what a listing found.
pub async fn set(cluster: &Cluster, target: &str, usage: Usage) -> Result<(), ClusterError> {
    let client = cluster.client().await?;
    within(client.execute(
        "INSERT INTO bucketgate_quota_usage (target, bytes, files, scanned_at)
         VALUES ($1, $2, $3, now())
         ON CONFLICT (target) DO UPDATE
             SET bytes = excluded.bytes, files = excluded.files, scanned_at = now()",
        &[&target, &usage.bytes, &usage.files],
    ))
    .await?;
    Ok(())
}
