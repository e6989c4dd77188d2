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

/// `target`'s usage now (zero if nothing was ever counted).
pub async fn usage(cluster: &Cluster, target: &str) -> Result<Usage, ClusterError> {
    let client = cluster.client().await?;
    let row = within(client.query_opt(
        "SELECT bytes, files FROM bucketgate_quota_usage WHERE target = $1",
        &[&target],
    ))
    .await?;
    Ok(row.map_or_else(Usage::default, |r| Usage {
        bytes: r.get(0),
        files: r.get(1),
    }))
}
