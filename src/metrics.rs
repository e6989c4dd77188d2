//! The gateway's Prometheus metrics, served by the admin listener
//! (`GET /metrics`). One set per gateway, made when it is built and handed
//! down to what counts (the session context, each remote, the webhooks,
//! the sync jobs): two gateways in one process count apart, and nothing
//! reaches for a global.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use std::sync::Arc;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct S3Label {
    pub operation: &'static str,
    /// The HTTP status, or `error` when no response came.
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabel {
    pub job: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    pub webhook: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemoteLabel {
    pub remote: String,
}

/// A pass of the gateway's own over an upload's bytes: `digest_sha256`
/// (and `digest_md5`, `digest_sha1`: the kept digests), `part_md5` (a part
/// checked by its ETag, where S3 checked no checksum), `content_md5` (a
/// single PUT's Content-MD5, unless a kept digest was it).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HashLabel {
    pub pass: &'static str,
}

/// A quota target of the config file (`remote:/prefix`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

type Latency = Family<OperationLabel, Histogram, fn() -> Histogram>;

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Logged-in sessions, by protocol.
    pub sessions: Family<ProtocolLabel, Gauge>,
    /// Connections not logged in yet.
    pub unauthenticated: Gauge,
    pub logins: Family<ResultLabel, Counter>,
    /// Connections dropped at accept because their source is banned.
    pub banned_connections: Counter,
    /// Accepts that failed (out of file descriptors and the like).
    pub accept_errors: Counter,
    /// Admin connections closed at accept: the listener's caps were full.
    pub admin_refused: Counter,
    /// 1 while this node cannot reach the cluster's database (`[cluster]`).
    pub cluster_degraded: Gauge,
    /// Calls to the cluster's database that failed or timed out.
    pub cluster_errors: Counter,
    /// File bytes received from clients, by protocol.
    pub bytes_up: Family<ProtocolLabel, Counter>,
    /// File bytes sent to clients, by protocol.
    pub bytes_down: Family<ProtocolLabel, Counter>,
    pub s3_requests: Family<S3Label, Counter>,
    /// Seconds from sending an S3 request to its response's head.
    pub s3_latency: Latency,
    /// Uploads open (sessions and sync copies).
    pub uploads_in_flight: Gauge,
    /// Bytes held from the memory budget (read-ahead and upload parts).
    pub buffered_bytes: Gauge,
    pub sync_runs: Family<SyncLabel, Counter>,
    /// Events taken into a webhook's spool.
    pub events_emitted: Family<WebhookLabel, Counter>,
    /// Events a receiver answered 2xx.
    pub events_delivered: Family<WebhookLabel, Counter>,
    /// Delivery attempts that failed (the event is retried).
    pub event_attempts_failed: Family<WebhookLabel, Counter>,
    /// Events refused because the webhook's spool was full.
    pub events_refused: Family<WebhookLabel, Counter>,
    /// Events of unauthenticated sources (login_failed, ban) dropped: the
    /// webhook's budget for them was spent.
    pub events_anonymous_dropped: Family<WebhookLabel, Counter>,
    /// Events of unauthenticated sources dropped because their source sent
    /// more than its rate.
    pub events_rate_limited: Counter,
    /// Events given up after `retry_for` (kept in failed.jsonl).
    pub events_given_up: Family<WebhookLabel, Counter>,
    /// Events waiting for delivery.
    pub events_pending: Family<WebhookLabel, Gauge>,
    /// Syncs of webhook spools: fewer than events when events come together.
    pub event_spool_syncs: Family<WebhookLabel, Counter>,
    /// Age of the oldest event waiting, seconds.
    pub events_oldest_pending_seconds: Family<WebhookLabel, Gauge>,
    /// Small files fetched ahead of a client walking a listing.
    pub prefetch_fetched: Counter,
    /// Opens of a listed small file answered from its prefetch.
    pub prefetch_hits: Counter,
    /// Opens of a listed small file that had to ask the store.
    pub prefetch_misses: Counter,
    /// Bytes prefetched and never served (expired, passed over, changed).
    pub prefetch_wasted_bytes: Counter,
    /// Bytes under each quota target of the config file, as last counted.
    pub quota_used_bytes: Family<TargetLabel, Gauge>,
    pub quota_used_files: Family<TargetLabel, Gauge>,
    pub quota_limit_bytes: Family<TargetLabel, Gauge>,
    /// 1 while a remote's store refuses its credentials (its health probe
    /// answered InvalidAccessKeyId, SignatureDoesNotMatch and the like).
    pub remote_credentials_refused: Family<RemoteLabel, Gauge>,
    /// Bytes of uploads the gateway hashed itself, by pass: what tells a
    /// second pass over every byte from the one that must be.
    pub hashed_bytes: Family<HashLabel, Counter>,
}

impl Metrics {
    /// Counts `bytes` hashed in `pass` (see [`HashLabel`]).
    pub fn hashed(&self, pass: &'static str, bytes: u64) {
        self.hashed_bytes
            .get_or_create(&HashLabel { pass })
            .inc_by(bytes);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// A set of its own, counted apart from any gateway's (what runs
    /// without one: `Events::none()`, tests).
    fn default() -> Self {
        Metrics::registered()
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    /// A gateway's metrics, shared by every handle of it.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Arc<Metrics> {
        Arc::new(Self::registered())
    }

    fn registered() -> Self {
        let mut registry = Registry::with_prefix("bucketgate");
        let m = Metrics {
            sessions: Family::default(),
            unauthenticated: Gauge::default(),
            logins: Family::default(),
            banned_connections: Counter::default(),
            accept_errors: Counter::default(),
            admin_refused: Counter::default(),
            cluster_degraded: Gauge::default(),
            cluster_errors: Counter::default(),
            bytes_up: Family::default(),
            bytes_down: Family::default(),
            s3_requests: Family::default(),
            s3_latency: Family::new_with_constructor(latency_histogram),
            uploads_in_flight: Gauge::default(),
            buffered_bytes: Gauge::default(),
            sync_runs: Family::default(),
            events_emitted: Family::default(),
            events_delivered: Family::default(),
            event_attempts_failed: Family::default(),
            events_refused: Family::default(),
            events_anonymous_dropped: Family::default(),
            events_rate_limited: Counter::default(),
            events_given_up: Family::default(),
            events_pending: Family::default(),
            events_oldest_pending_seconds: Family::default(),
            event_spool_syncs: Family::default(),
            prefetch_fetched: Counter::default(),
            prefetch_hits: Counter::default(),
            prefetch_misses: Counter::default(),
            prefetch_wasted_bytes: Counter::default(),
            quota_used_bytes: Family::default(),
            quota_used_files: Family::default(),
            quota_limit_bytes: Family::default(),
            remote_credentials_refused: Family::default(),
            hashed_bytes: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sessions",
            "Logged-in sessions, by protocol",
            m.sessions.clone(),
        );
        registry.register(
            "unauthenticated_connections",
            "Connections not logged in yet",
            m.unauthenticated.clone(),
        );
        registry.register("logins", "Login attempts, by result", m.logins.clone());
        registry.register(
            "banned_connections",
            "Connections dropped at accept because their source is banned",
            m.banned_connections.clone(),
        );
        registry.register(
            "accept_errors",
            "Accepts that failed (out of file descriptors and the like)",
            m.accept_errors.clone(),
        );
        registry.register(
            "cluster_degraded",
            "1 while this node cannot reach the cluster's database; it serves on its own state",
            m.cluster_degraded.clone(),
        );
        registry.register(
            "hashed_bytes",
            "Bytes of uploads the gateway hashed itself, by pass (S3's SigV4 hashing not included)",
            m.hashed_bytes.clone(),
        );
        registry.register(
            "remote_credentials_refused",
            "1 while a remote's store refuses its credentials (see /healthz)",
            m.remote_credentials_refused.clone(),
        );
        registry.register(
            "cluster_errors",
            "Calls to the cluster's database that failed or timed out",
            m.cluster_errors.clone(),
        );
        registry.register(
            "admin_connections_refused",
            "Admin connections closed at accept: the listener's connection caps were full",
            m.admin_refused.clone(),
        );
        registry.register(
            "bytes_received",
            "File bytes received from clients",
            m.bytes_up.clone(),
        );
        registry.register(
            "bytes_sent",
            "File bytes sent to clients",
            m.bytes_down.clone(),
        );
        registry.register(
            "s3_requests",
            "Requests to S3 remotes, by operation and HTTP status",
            m.s3_requests.clone(),
        );
        registry.register(
            "s3_request_seconds",
            "Time from sending an S3 request to its response head",
            m.s3_latency.clone(),
        );
        registry.register(
            "buffered_bytes",
            "Bytes held from memory_budget: read-ahead and upload parts",
            m.buffered_bytes.clone(),
        );
        registry.register(
            "uploads_in_flight",
            "Uploads open now (sessions and sync copies)",
            m.uploads_in_flight.clone(),
        );
        registry.register(
            "sync_runs",
            "Sync runs, by job and outcome",
            m.sync_runs.clone(),
        );
        let events: [(&str, &str, &Family<WebhookLabel, Counter>); 7] = [
            (
                "event_spool_syncs",
                "Syncs to disk of webhook spools (one per batch of events)",
                &m.event_spool_syncs,
            ),
            (
                "events_emitted",
                "Events taken into a webhook's spool",
                &m.events_emitted,
            ),
            (
                "events_delivered",
                "Events a webhook's receiver accepted (2xx)",
                &m.events_delivered,
            ),
            (
                "event_attempts_failed",
                "Webhook delivery attempts that failed (retried)",
                &m.event_attempts_failed,
            ),
            (
                "events_refused",
                "Events refused because the webhook's spool was full",
                &m.events_refused,
            ),
            (
                "events_anonymous_dropped",
                "Events of unauthenticated sources (login_failed, ban) dropped: their share of the spool was spent",
                &m.events_anonymous_dropped,
            ),
            (
                "events_given_up",
                "Events given up after retry_for (kept in failed.jsonl)",
                &m.events_given_up,
            ),
        ];
        register_each(&mut registry, events);
        registry.register(
            "events_rate_limited",
            "Events of unauthenticated sources dropped: their source passed its rate",
            m.events_rate_limited.clone(),
        );
        registry.register(
            "events_pending",
            "Events waiting for delivery, by webhook",
            m.events_pending.clone(),
        );
        registry.register(
            "events_oldest_pending_seconds",
            "Age of the oldest event waiting for delivery, by webhook",
            m.events_oldest_pending_seconds.clone(),
        );
        let prefetch: [(&str, &str, &Counter); 4] = [
            (
                "prefetch_fetched",
                "Small files fetched ahead of a client walking a listing",
                &m.prefetch_fetched,
            ),
            (
                "prefetch_hits",
                "Opens of a listed small file answered from its prefetch",
                &m.prefetch_hits,
            ),
            (
                "prefetch_misses",
                "Opens of a listed small file that had to ask the store",
                &m.prefetch_misses,
            ),
            (
                "prefetch_wasted_bytes",
                "Bytes prefetched and never served (expired, passed over or changed)",
                &m.prefetch_wasted_bytes,
            ),
        ];
        register_each(&mut registry, prefetch);
        registry.register(
            "quota_used_bytes",
            "Bytes under each quota target of the config file",
            m.quota_used_bytes.clone(),
        );
        registry.register(
            "quota_used_files",
            "Files under each quota target of the config file",
            m.quota_used_files.clone(),
        );
        registry.register(
            "quota_limit_bytes",
            "Each quota target's quota, bytes",
            m.quota_limit_bytes.clone(),
        );
        // The series a dashboard expects exist from the start, at zero.
        for protocol in ["sftp", "ftp", "ftps-implicit"] {
            let label = ProtocolLabel { protocol };
            m.sessions.get_or_create(&label).set(0);
            m.bytes_up.get_or_create(&label).inc_by(0);
            m.bytes_down.get_or_create(&label).inc_by(0);
        }
        for result in ["ok", "failed", "refused"] {
            m.logins.get_or_create(&ResultLabel { result }).inc_by(0);
        }
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Registers each `(name, help, metric)` of a table.
fn register_each<'a, M: Metric + Clone>(
    registry: &mut Registry,
    table: impl IntoIterator<Item = (&'static str, &'static str, &'a M)>,
) {
    for (name, help, metric) in table {
        registry.register(name, help, metric.clone());
    }
}

/// Names an S3 request for the metrics, from its method and query.
pub fn s3_operation(method: &http::Method, uri: &http::Uri, copy: bool) -> &'static str {
    let query = uri.query().unwrap_or("");
    let has = |k: &str| query.split('&').any(|p| p.split('=').next() == Some(k));
    match *method {
        http::Method::GET if has("list-type") => "ListObjectsV2",
        http::Method::GET if has("uploads") => "ListMultipartUploads",
        http::Method::GET => "GetObject",
        http::Method::HEAD => "HeadObject",
        http::Method::PUT if has("partNumber") && copy => "UploadPartCopy",
        http::Method::PUT if has("partNumber") => "UploadPart",
        http::Method::PUT if copy => "CopyObject",
        http::Method::PUT => "PutObject",
        http::Method::POST if has("uploads") => "CreateMultipartUpload",
        http::Method::POST if has("uploadId") => "CompleteMultipartUpload",
        http::Method::POST if has("delete") => "DeleteObjects",
        http::Method::DELETE if has("uploadId") => "AbortMultipartUpload",
        http::Method::DELETE => "DeleteObject",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_operations_are_named() {
        let op = |m: &str, uri: &str, copy| {
            s3_operation(&m.parse().unwrap(), &uri.parse().unwrap(), copy)
        };
        assert_eq!(
            op("GET", "http://h/b?list-type=2&prefix=a", false),
            "ListObjectsV2"
        );
        assert_eq!(
            op("PUT", "http://h/b/k?partNumber=2&uploadId=x", false),
            "UploadPart"
        );
        assert_eq!(
            op("PUT", "http://h/b/k?partNumber=2&uploadId=x", true),
            "UploadPartCopy"
        );
        assert_eq!(
            op("POST", "http://h/b/k?uploads", false),
            "CreateMultipartUpload"
        );
        assert_eq!(
            op("DELETE", "http://h/b/k?uploadId=x", false),
            "AbortMultipartUpload"
        );
        assert_eq!(op("PUT", "http://h/b/k", false), "PutObject");
        assert_eq!(op("HEAD", "http://h/b/k", false), "HeadObject");
    }

    #[test]
    fn the_exposition_names_every_metric() {
        let m = Metrics::new();
        m.logins.get_or_create(&ResultLabel { result: "ok" }).inc();
        // Families by operation and job show once something was counted.
        m.s3_latency
            .get_or_create(&OperationLabel {
                operation: "PutObject",
            })
            .observe(0.01);
        m.sync_runs
            .get_or_create(&SyncLabel {
                job: "j".into(),
                outcome: "done",
            })
            .inc();
        let text = m.render();
        for name in [
            "bucketgate_sessions",
            "bucketgate_logins_total{result=\"ok\"}",
            "bucketgate_bytes_received",
            "bucketgate_s3_request_seconds",
            "bucketgate_uploads_in_flight",
            "bucketgate_sync_runs",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}

/// Requests to one remote with one operation, for the console.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Calls {
    pub requests: u64,
    /// No response, or a 5xx.
    pub errors: u64,
    /// Mean seconds from sending to the response's head.
    pub mean_seconds: f64,
}

/// One remote's requests, by operation: held by its connection pool,
/// which counts each request without a lookup by name.
#[derive(Default)]
pub struct OpCalls(std::sync::Mutex<std::collections::BTreeMap<&'static str, Calls>>);

impl OpCalls {
    pub fn count(&self, operation: &'static str, failed: bool, took: std::time::Duration) {
        let mut calls = crate::base::lock(&self.0);
        let c = calls.entry(operation).or_default();
        c.mean_seconds =
            (c.mean_seconds * c.requests as f64 + took.as_secs_f64()) / (c.requests + 1) as f64;
        c.requests += 1;
        c.errors += failed as u64;
    }

    pub fn by_operation(&self) -> std::collections::BTreeMap<&'static str, Calls> {
        crate::base::lock(&self.0).clone()
    }
}
