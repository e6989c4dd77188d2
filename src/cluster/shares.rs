//! Share links for the fleet: a link made at one node opens at any, and
//! its uses are counted by one atomic update, so a link for three uses
//! gives three across all nodes. The link itself is JSON the web frontend
//! reads; what every node must agree on is in columns.

use super::{Cluster, ClusterError, within};
use chrono::{DateTime, Utc};

/// A link as stored: its JSON, uses and whether it is revoked.
#[derive(Debug, Clone)]
pub struct Stored {
    pub body: String,
    pub uses: i64,
    pub revoked: bool,
}

fn stored(row: &tokio_postgres::Row) -> Stored {
    Stored {
        body: row.get(0),
        uses: row.get(1),
        revoked: row.get(2),
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn create(
    cluster: &Cluster,
    id: &str,
    token_hash: &str,
    user: &str,
    body: &str,
    max_uses: Option<i64>,
    expires: DateTime<Utc>,
) -> Result<(), ClusterError> {
    let client = cluster.client().await?;
    within(client.execute(
        "INSERT INTO bucketgate_shares (id, token_hash, user_name, body, max_uses, expires)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&id, &token_hash, &user, &body, &max_uses, &expires],
    ))
    .await?;
    // Links past their expiry for a day are of no use to anyone.
    within(client.execute(
        "DELETE FROM bucketgate_shares WHERE expires < now() - interval '1 day'",
        &[],
    ))
    .await?;
    Ok(())
}

/// The links of `user`, or all.
pub async fn list(cluster: &Cluster, user: Option<&str>) -> Result<Vec<Stored>, ClusterError> {
    let client = cluster.client().await?;
    let rows = within(client.query(
        "SELECT body, uses, revoked FROM bucketgate_shares
         WHERE $1::text IS NULL OR user_name = $1 ORDER BY expires",
        &[&user],
    ))
    .await?;
    Ok(rows.iter().map(stored).collect())
}

/// The link whose token has this digest.
pub async fn find(cluster: &Cluster, token_hash: &str) -> Result<Option<Stored>, ClusterError> {
    let client = cluster.client().await?;
    let row = within(client.query_opt(
        "SELECT body, uses, revoked FROM bucketgate_shares WHERE token_hash = $1",
        &[&token_hash],
    ))
    .await?;
    Ok(row.as_ref().map(stored))
}

/// Counts one use of link `id` if it has one left (not revoked, not
/// expired, under its limit); `false` if not.
pub async fn take_use(cluster: &Cluster, id: &str) -> Result<bool, ClusterError> {
    let client = cluster.client().await?;
    let taken = within(client.execute(
        "UPDATE bucketgate_shares SET uses = uses + 1
         WHERE id = $1 AND NOT revoked AND expires > now()
           AND (max_uses IS NULL OR uses < max_uses)",
        &[&id],
    ))
    .await?;
    Ok(taken == 1)
}

/// Revokes link `id` (of `user`, if given); `false` if there is none.
pub async fn revoke(cluster: &Cluster, id: &str, user: Option<&str>) -> Result<bool, ClusterError> {
    let client = cluster.client().await?;
    let done = within(client.execute(
        "UPDATE bucketgate_shares SET revoked = true
         WHERE id = $1 AND ($2::text IS NULL OR user_name = $2)",
        &[&id, &user],
    ))
    .await?;
    Ok(done == 1)
}
