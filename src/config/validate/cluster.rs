//! `[cluster]` → [`ClusterConfig`]: the fleet's database and this node.

use super::*;

pub(super) fn validate_cluster(cx: &mut Ctx<'_>, spanned: &Spanned<RawCluster>) -> ClusterConfig {
    let t = spanned.get_ref();
    let line = cx.lines.of(spanned);
    let database = cx.secret(
        &t.database,
        "cluster.database",
        line,
        "is required: a postgres:// URL, normally \"env:NAME\"",
    );
    if !database.is_empty()
        && let Err(why) = check_database_url(&database)
        && let Some(v) = &t.database
    {
        cx.at(v, "cluster.database", why);
    }
    let node = match &t.node {
        Some(n) => {
            let name = n.get_ref().clone();
            if let Err(why) = check_node_name(&name) {
                cx.at(n, "cluster.node", why);
            }
            name
        }
        None => host_name(),
    };
    let heartbeat = cx.duration(&t.heartbeat, "cluster.heartbeat", Duration::from_secs(5));
    if let Some(h) = &t.heartbeat
        && !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&heartbeat)
    {
        cx.at(h, "cluster.heartbeat", "must be from 1s to 60s");
    }
    ClusterConfig {
        database,
        node,
        heartbeat,
        max_connections: cx.count(&t.max_connections, "cluster.max_connections", 8, 2..=256),
        ca_file: cx.file(&t.ca_file, "cluster.ca_file"),
    }
}

/// A URL the PostgreSQL client takes, without echoing it (it holds the
/// password).
fn check_database_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must be a postgres:// URL".into());
    }
    url.parse::<tokio_postgres::Config>()
        .map(drop)
        .map_err(|e| format!("is not a PostgreSQL URL the client takes: {e}"))
}

/// Node names go into the database and the console: short, printable, and
/// the same characters as a host name.
fn check_node_name(name: &str) -> Result<(), String> {
    let fits = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    match fits {
        true => Ok(()),
        false => Err("must be 1 to 64 letters, digits, '-', '_' or '.'".into()),
    }
}

/// The default node name: the host's, which a fleet's machines or
/// containers have each of their own.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| check_node_name(h).is_ok())
        .unwrap_or_else(|| "node".into())
}
