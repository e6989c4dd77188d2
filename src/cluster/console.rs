//! Console sessions shared by the fleet: a balancer without stickiness
//! sends each of a console's requests to any node, and each node must
//! know its cookie. Rows are keyed by the cookie's SHA-256, as the
//! node's own table is: the database holds no usable cookie.

use super::{Cluster, ClusterError, within};
use std::time::Duration;

/// A console session as the fleet keeps it.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub role: String,
    pub csrf: String,
}

/// Keeps a new session; past `per_user` sessions of its user, or `all`,
/// the oldest end.
pub async fn insert(
    cluster: &Cluster,
    key: &str,
    row: &Row,
    per_user: usize,
    all: usize,
    idle: Duration,
    longest: Duration,
) -> Result<(), ClusterError> {
    let client = cluster.client().await?;
    within(client.execute(
        "DELETE FROM bucketgate_console_sessions
         WHERE seen < now() - make_interval(secs => $1) OR created < now() - make_interval(secs => $2)",
        &[&idle.as_secs_f64(), &longest.as_secs_f64()],
    ))
    .await?;
    within(client.execute(
        "INSERT INTO bucketgate_console_sessions (key, name, role, csrf) VALUES ($1, $2, $3, $4)",
        &[&key, &row.name, &row.role, &row.csrf],
    ))
    .await?;
    within(client.execute(
        "DELETE FROM bucketgate_console_sessions WHERE key IN (
             SELECT key FROM bucketgate_console_sessions WHERE name = $1
             ORDER BY created DESC OFFSET $2)",
        &[&row.name, &(per_user as i64)],
    ))
    .await?;
    within(client.execute(
        "DELETE FROM bucketgate_console_sessions WHERE key IN (
             SELECT key FROM bucketgate_console_sessions ORDER BY created DESC OFFSET $1)",
        &[&(all as i64)],
    ))
    .await?;
    Ok(())
}

/// The session of `key` if it is still valid, marked seen now.
pub async fn touch(
    cluster: &Cluster,
    key: &str,
    idle: Duration,
    longest: Duration,
) -> Result<Option<Row>, ClusterError> {
    let client = cluster.client().await?;
    let row = within(client.query_opt(
        "UPDATE bucketgate_console_sessions SET seen = now()
         WHERE key = $1 AND seen >= now() - make_interval(secs => $2)
           AND created >= now() - make_interval(secs => $3)
         RETURNING name, role, csrf",
        &[&key, &idle.as_secs_f64(), &longest.as_secs_f64()],
    ))
    .await?;
    Ok(row.map(|r| Row {
        name: r.get(0),
        role: r.get(1),
        csrf: r.get(2),
    }))
}

pub async fn remove(cluster: &Cluster, key: &str) -> Result<(), ClusterError> {
    let client = cluster.client().await?;
    within(client.execute(
        "DELETE FROM bucketgate_console_sessions WHERE key = $1",
        &[&key],
    ))
    .await?;
    Ok(())
}
