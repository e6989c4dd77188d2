//! Unfinished tus uploads for the fleet: a client whose upload began at
//! one node resumes it at any. One node holds an upload at a time; a
//! request at another moves it there, and the node that held it lets it
//! go without aborting it. The expiry is a column, so that whichever node
//! sweeps first aborts an abandoned upload, once.

use super::{Cluster, ClusterError, within};
use chrono::{DateTime, Utc};

pub async fn insert(
    cluster: &Cluster,
    id: &str,
    user: &str,
    body: &str,
    expires: DateTime<Utc>,
) -> Result<(), ClusterError> {
    let client = cluster.client().await?;
    within(client.execute(
        "INSERT INTO bucketgate_tus_uploads (id, user_name, node, body, expires)
         VALUES ($1, $2, $3, $4, $5)",
        &[&id, &user, &cluster.node(), &body, &expires],
    ))
    .await?;
    Ok(())
}

/// Moves upload `id` of `user` to this node until `expires`: its JSON, and
/// whether another node held it.
pub async fn claim(
    cluster: &Cluster,
    id: &str,
    user: &str,
    expires: DateTime<Utc>,
) -> Result<Option<(String, bool)>, ClusterError> {
    let client = cluster.client().await?;
    let row = within(client.query_opt(
        "WITH old AS (
             SELECT node FROM bucketgate_tus_uploads
             WHERE id = $1 AND user_name = $2 AND expires > now() FOR UPDATE)
         UPDATE bucketgate_tus_uploads u SET node = $3, expires = $4
         FROM old WHERE u.id = $1
         RETURNING u.body, old.node <> $3",
        &[&id, &user, &cluster.node(), &expires],
    ))
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

pub async fn remove(cluster: &Cluster, id: &str) -> Result<(), ClusterError> {
    let client = cluster.client().await?;
    within(client.execute("DELETE FROM bucketgate_tus_uploads WHERE id = $1", &[&id])).await?;
    Ok(())
}

/// How many unfinished uploads `user` has.
pub async fn count_of(cluster: &Cluster, user: &str) -> Result<usize, ClusterError> {
    let client = cluster.client().await?;
    let row = within(client.query_one(
        "SELECT count(*) FROM bucketgate_tus_uploads WHERE user_name = $1 AND expires > now()",
        &[&user],
    ))
    .await?;
    Ok(row.get::<_, i64>(0).max(0) as usize)
}

/// Takes the uploads past their expiry off the table: each is returned to
/// one node only, which aborts it.
pub async fn take_expired(cluster: &Cluster) -> Result<Vec<String>, ClusterError> {
    let client = cluster.client().await?;
    let rows = within(client.query(
        "DELETE FROM bucketgate_tus_uploads WHERE expires <= now() RETURNING body",
        &[],
    ))
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
