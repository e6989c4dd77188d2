//! The schema, owned by the binary: numbered migrations applied at start.
//!
//! Several nodes may start at once on an empty database: the migrations
//! run in one transaction that first takes an advisory lock, so one node
//! migrates and the others wait for it, then find nothing left to do.
//! Migrations only add (tables, columns with defaults), so a node of the
//! previous version keeps working beside a newer one during a rolling
//! upgrade; a node finding a schema newer than it knows goes on with it.

use super::{Cluster, ClusterError, within};

/// The advisory lock's key: "bktgate" in ASCII, out of the way of an
/// application sharing the database.
const LOCK: i64 = 0x62_6b_74_67_61_74_65;

/// Each migration, in order; the version is its position from 1. Never
/// edit one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the nodes of the fleet and their heartbeats.
    "CREATE TABLE bucketgate_nodes (
        name text PRIMARY KEY,
        instance text NOT NULL,
        version text NOT NULL,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        heartbeat_ms integer NOT NULL
    )",
    // 2: failed logins counted for the fleet, and the bans they decided.
    "CREATE TABLE bucketgate_login_failures (
        source text PRIMARY KEY,
        failures integer NOT NULL,
        window_start timestamptz NOT NULL
    );
    CREATE TABLE bucketgate_bans (
        source text PRIMARY KEY,
        until timestamptz NOT NULL,
        node text NOT NULL
    )",
    // 3: how many sessions each user has at each node.
    "CREATE TABLE bucketgate_user_sessions (
        node text NOT NULL,
        user_name text NOT NULL,
        sessions integer NOT NULL,
        PRIMARY KEY (node, user_name)
    )",
    // 4: the webhooks' outbox: every node's events, claimed for delivery
    // by any node under a lease.
    "CREATE TABLE bucketgate_events (
        webhook text NOT NULL,
        id text NOT NULL,
        body text NOT NULL,
        born timestamptz NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_at timestamptz NOT NULL DEFAULT now(),
        lease_node text,
        lease_until timestamptz,
        given_up boolean NOT NULL DEFAULT false,
        last_error text,
        PRIMARY KEY (webhook, id)
    );
    CREATE INDEX bucketgate_events_due ON bucketgate_events (webhook, next_at)
        WHERE NOT given_up",
    // 5: every node's sessions as its console shows them, for the
    // fleet's console.
    "CREATE TABLE bucketgate_sessions (
        node text NOT NULL,
        id bigint NOT NULL,
        user_name text NOT NULL,
        view jsonb NOT NULL,
        PRIMARY KEY (node, id)
    )",
    // 6: the sync jobs' leases and run reports, for the fleet.
    "CREATE TABLE bucketgate_sync_leases (
        job text PRIMARY KEY,
        holder text NOT NULL,
        expires timestamptz NOT NULL
    );
    CREATE TABLE bucketgate_sync_reports (
        id bigserial PRIMARY KEY,
        job text NOT NULL,
        node text NOT NULL,
        report jsonb NOT NULL
    );
    CREATE INDEX bucketgate_sync_reports_job ON bucketgate_sync_reports (job, id)",
    // 7: quota usage, one row per target, moved by atomic increments.
    "CREATE TABLE bucketgate_quota_usage (
        target text PRIMARY KEY,
        bytes bigint NOT NULL DEFAULT 0,
        files bigint NOT NULL DEFAULT 0
    )",
    // 8: console sessions, so that any node answers a console's cookie.
    "CREATE TABLE bucketgate_console_sessions (
        key text PRIMARY KEY,
        name text NOT NULL,
        role text NOT NULL,
        csrf text NOT NULL,
        created timestamptz NOT NULL DEFAULT now(),
        seen timestamptz NOT NULL DEFAULT now()
    )",
    // 9: when each quota target was last listed, so that one node of the
    // fleet lists it per quota_scan, not every node.
    "ALTER TABLE bucketgate_quota_usage ADD COLUMN scanned_at timestamptz",
    // 10: share links (`[web]`): the link as JSON, and what every node
    // must agree on (its uses, whether it is revoked) as columns.
    "CREATE TABLE bucketgate_shares (
        id text PRIMARY KEY,
        token_hash text NOT NULL UNIQUE,
        user_name text NOT NULL,
        body text NOT NULL,
        uses bigint NOT NULL DEFAULT 0,
        max_uses bigint,
        revoked boolean NOT NULL DEFAULT false,
        expires timestamptz NOT NULL
    )",
    // 11: unfinished tus uploads (`[web]`), so that a client resumes at
    // any node: the upload as JSON, the node holding it and its expiry.
    "CREATE TABLE bucketgate_tus_uploads (
        id text PRIMARY KEY,
        user_name text NOT NULL,
        node text NOT NULL,
        body text NOT NULL,
        expires timestamptz NOT NULL
    )",
];

/// The schema version this binary brings the database to.
pub fn latest() -> i32 {
    MIGRATIONS.len() as i32
}

/// Where the schema was and where it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
}

/// Brings the schema up to [`latest`], waiting for another node that is
/// doing the same.
pub async fn migrate(cluster: &Cluster) -> Result<Migrated, ClusterError> {
    let mut client = cluster.client().await?;
    let tx = within(client.transaction()).await?;
    // Waits for as long as another node migrates: that is not a call
    // that may time out, since starting without the schema is no option.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    within(tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS bucketgate_schema (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    ))
    .await?;
    let from: i32 = within(tx.query_one(
        "SELECT coalesce(max(version), 0) FROM bucketgate_schema",
        &[],
    ))
    .await?
    .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        let version = i as i32 + 1;
        within(tx.batch_execute(sql))
            .await
            .map_err(|e| ClusterError::Schema(format!("migration {version}: {e}")))?;
        within(tx.execute(
            "INSERT INTO bucketgate_schema (version) VALUES ($1)",
            &[&version],
        ))
        .await?;
    }
    within(tx.commit()).await?;
    Ok(Migrated {
        from,
        to: from.max(latest()),
    })
}

/// The database's schema version, for `cluster status`.
pub async fn version(cluster: &Cluster) -> Result<i32, ClusterError> {
    let client = cluster.client().await?;
    let row = within(client.query_one(
        "SELECT coalesce(max(version), 0) FROM bucketgate_schema",
        &[],
    ))
    .await?;
    Ok(row.get(0))
}
