//! One webhook: its filters, its spool, and the task that posts what the
//! spool holds, `concurrency` at a time, oldest due first. A failed
//! attempt (no answer within `timeout`, or anything but a 2xx; redirects
//! are not followed) is retried after 1 s, 2 s, 4 s … up to 5 min, with
//! ±25 % jitter, until `retry_for` has passed since the event happened;
//! then it is given up (logged, counted, kept in `failed.jsonl`).

mod outboxed;
mod queue;

use super::outbox::{Claimed, Outbox, Pending, Rows};
use super::spool::Spool;
use super::{Backlog, Event, parse_time, wanted};
use crate::base::lock;
use crate::config::WebhookConfig;
use crate::metrics::{Metrics, WebhookLabel};
use bytes::Bytes;
use chrono::Utc;
use hmac::{KeyInit, Mac};
use outboxed::LEASE_MARGIN;
use queue::{Queue, backoff, shares};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::time::Instant;

/// How often a webhook logs that its deliveries fail, or that it drops.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// `v1=` and the hex HMAC-SHA256, keyed by `secret`, of the timestamp, a
/// `.` and the body: what the `Bucketgate-Signature` header carries.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", crate::base::hex(&mac.finalize().into_bytes()))
}

/// A log line at most once per [`WARN_EVERY`], with how many times it was
/// held back.
#[derive(Default)]
struct Every {
    last: Mutex<Option<Instant>>,
    held: std::sync::atomic::AtomicU64,
}

impl Every {
    /// `Some(n)` when a line is due now, n being the times held back since.
    fn due(&self) -> Option<u64> {
        let mut last = lock(&self.last);
        if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(Instant::now());
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

/// A running webhook.
pub struct Webhook {
    config: Mutex<Arc<WebhookConfig>>,
    client: Mutex<reqwest::Client>,
    queue: Arc<Queue>,
    spool: Spool,
    /// How many events `failed.jsonl` holds (counted at start, then kept).
    given_up: std::sync::atomic::AtomicUsize,
    /// Removed from the config: takes no new events.
    retired: AtomicBool,
    label: WebhookLabel,
    metrics: Arc<Metrics>,
    failing: Every,
    dropping: Every,
    /// With `[cluster]`: the fleet's outbox, which this webhook's events
    /// go to, and what it held when last counted, with what this node
    /// committed since (so that `spool_limit` holds between counts).
    outbox: Option<Outbox>,
    outbox_rows: Arc<Mutex<Rows>>,
    /// Told when this node commits events to the outbox for any node to
    /// claim: its deliveries need not wait for their next look.
    committed: Arc<Notify>,
    /// Events this node committed leased to itself, to post from memory;
    /// the receiving end is taken by the delivery task.
    handoff: mpsc::Sender<Claimed>,
    handed: Mutex<Option<mpsc::Receiver<Claimed>>>,
}

impl Webhook {
    /// Opens the spool in `dir` and starts delivering: from the spool on
    /// a gateway of its own; from the fleet's `outbox` with one, the spool
    /// holding only what could not reach it.
    pub fn start(
        config: WebhookConfig,
        dir: &Path,
        metrics: Arc<Metrics>,
        outbox: Option<Outbox>,
    ) -> std::io::Result<Arc<Webhook>> {
        let client = client(&config)?;
        let queue = Arc::new(Queue::default());
        let label = WebhookLabel {
            webhook: config.name.clone(),
        };
        let syncs = metrics.event_spool_syncs.get_or_create(&label).clone();
        let (spool, undelivered) = Spool::open(dir, queue.clone(), syncs)?;
        for (id, body) in undelivered {
            let json = serde_json::from_slice::<serde_json::Value>(&body).ok();
            let born = json
                .as_ref()
                .and_then(|v| v.get("time").and_then(|t| t.as_str()).and_then(parse_time))
                .unwrap_or_else(Utc::now);
            let anonymous = json
                .as_ref()
                .and_then(|v| v.get("event").and_then(|e| e.as_str()))
                .and_then(crate::config::EventKind::parse)
                .is_some_and(|k| k.unauthenticated());
            lock(&queue.state).count(&id, body.len() as u64, anonymous);
            queue.insert(id, body, born);
        }
        // As many events as posts at once wait in memory; past that they
        // wait in the outbox, for a claim.
        let (handoff, handed) = mpsc::channel(config.concurrency);
        let hook = Arc::new(Webhook {
            label,
            metrics,
            config: Mutex::new(Arc::new(config)),
            client: Mutex::new(client),
            queue,
            spool,
            // Counted as it is read: the file may be large.
            given_up: std::sync::atomic::AtomicUsize::new(
                std::fs::File::open(dir.join("failed.jsonl")).map_or(0, |f| {
                    std::io::BufRead::split(std::io::BufReader::new(f), b'\n').count()
                }),
            ),
            retired: AtomicBool::new(false),
            failing: Every::default(),
            dropping: Every::default(),
            outbox,
            outbox_rows: Arc::default(),
            committed: Arc::default(),
            handoff,
            handed: Mutex::new(Some(handed)),
        });
        match &hook.outbox {
            None => {
                tokio::spawn(hook.clone().deliver());
            }
            Some(outbox) => {
                tokio::spawn(hook.clone().move_to_outbox(outbox.clone()));
                tokio::spawn(hook.clone().deliver_outbox(outbox.clone()));
            }
        }
        tokio::spawn(hook.clone().gauges());
        Ok(hook)
    }

    pub fn name(&self) -> &str {
        &self.label.webhook
    }

    fn config(&self) -> Arc<WebhookConfig> {
        lock(&self.config).clone()
    }

    pub fn update(&self, config: WebhookConfig) {
        match client(&config) {
            Ok(c) => *lock(&self.client) = c,
            Err(e) => {
                tracing::error!(webhook = config.name, error = %e, "webhook reload: the receiver's CA file cannot be read; the old client stays")
            }
        }
        *lock(&self.config) = Arc::new(config);
        self.retired.store(false, Ordering::Relaxed);
    }

    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    pub fn wants(&self, event: &Event) -> bool {
        !self.retired.load(Ordering::Relaxed) && wanted(&self.config(), event)
    }

    pub fn backlog(&self) -> Backlog {
        let here = self.queue.backlog();
        let rows = *lock(&self.outbox_rows);
        let oldest = rows
            .oldest
            .map(|t| (Utc::now() - t).num_seconds().max(0) as u64)
            .unwrap_or(0);
        Backlog {
            pending: here.pending + rows.pending,
            oldest_seconds: here.oldest_seconds.max(oldest),
            given_up: self.given_up.load(Ordering::Relaxed) + rows.given_up,
        }
    }

    /// Puts the events given up back to be delivered (the fleet's too,
    /// with `[cluster]`); how many.
    pub async fn retry_given_up(&self) -> std::io::Result<usize> {
        let mut n = self
            .spool
            .retry_failed()
            .await
            .map_err(|_| std::io::Error::other("the spool's writer has stopped"))??;
        let spooled = n;
        if let Some(outbox) = &self.outbox {
            n += outbox
                .retry_given_up(self.name())
                .await
                .map_err(std::io::Error::other)?;
            lock(&self.outbox_rows).given_up = 0;
            self.committed.notify_one();
        }
        let _ = self
            .given_up
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| {
                Some(g.saturating_sub(spooled))
            });
        tracing::info!(
            webhook = self.name(),
            events = n,
            "given-up events put back to be delivered"
        );
        Ok(n)
    }

    /// Holds `room` bytes of the spool for an event to come ([`Webhook::take`]
    /// with it); false when the spool has no such room for file events.
    pub fn reserve(&self, room: u64) -> bool {
        let limit = self.config().spool_limit;
        let outboxed = lock(&self.outbox_rows).bytes;
        let mut s = lock(&self.queue.state);
        if s.file_bytes() + outboxed + room > shares(limit).0 {
            drop(s);
            self.metrics.events_refused.get_or_create(&self.label).inc();
            if let Some(held) = self.dropping.due() {
                tracing::error!(
                    webhook = self.name(),
                    limit = crate::config::units::format_size(limit),
                    refused_since_last_line = held,
                    "the webhook's spool is full (spool_limit): operations whose events it cannot take are refused until its receiver takes events"
                );
            }
            return false;
        }
        s.reserved += room;
        true
    }

    /// Gives back room held and not used.
    pub fn release(&self, room: u64) {
        let mut s = lock(&self.queue.state);
        s.reserved = s.reserved.saturating_sub(room);
    }

    /// Spools `event` (its JSON `body`) into the bytes `reserved` for it,
    /// if any; the receiver resolves once it is on disk. An event with room
    /// held is always taken. Without, a file event takes what room is left;
    /// an event of an unauthenticated source only its small share, and is
    /// the one dropped (counted) when that is spent.
    pub fn take(&self, event: &Event, body: Bytes, reserved: Option<u64>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let limit = self.config().spool_limit;
        let outboxed = lock(&self.outbox_rows).bytes;
        let len = body.len() as u64;
        let anonymous = event.event.unauthenticated();
        let metrics = &self.metrics;
        {
            let mut s = lock(&self.queue.state);
            let (files, anonymous_share) = shares(limit);
            let fits = match reserved {
                Some(room) => {
                    s.reserved = s.reserved.saturating_sub(room);
                    true
                }
                None if anonymous => s.anonymous_bytes + len <= anonymous_share,
                None => s.file_bytes() + outboxed + len <= files,
            };
            if !fits {
                drop(s);
                match anonymous {
                    true => &metrics.events_anonymous_dropped,
                    false => &metrics.events_refused,
                }
                .get_or_create(&self.label)
                .inc();
                if let Some(held) = self.dropping.due() {
                    tracing::error!(
                        webhook = self.name(),
                        event = event.event.name(),
                        id = event.id,
                        limit = crate::config::units::format_size(limit),
                        dropped_since_last_line = held,
                        "EVENT DROPPED: the webhook's spool is full (spool_limit): its receiver has not taken events for a while"
                    );
                }
                let _ = tx.send(());
                return rx;
            }
            s.count(&event.id, len, anonymous);
        }
        metrics.events_emitted.get_or_create(&self.label).inc();
        let born = parse_time(&event.time).unwrap_or_else(Utc::now);
        let Some(outbox) = &self.outbox else {
            self.spool.append(event.id.clone(), body, born, tx);
            return rx;
        };
        let (queue, spool, committed, rows) = (
            self.queue.clone(),
            self.spool.clone(),
            self.committed.clone(),
            self.outbox_rows.clone(),
        );
        let (id, kept) = (event.id.clone(), body.clone());
        let handoff = self.handoff.clone().try_reserve_owned().ok();
        let lease = handoff
            .is_some()
            .then(|| self.config().timeout + LEASE_MARGIN);
        outbox.append(Pending {
            webhook: self.name().to_string(),
            id: event.id.clone(),
            body,
            born,
            lease,
            then: Box::new(move |in_outbox| match in_outbox {
                true => {
                    {
                        let mut rows = lock(&rows);
                        rows.bytes += len;
                        rows.pending += 1;
                    }
                    queue.uncount(&id, len);
                    let _ = tx.send(());
                    match handoff {
                        Some(permit) => {
                            permit.send(Claimed {
                                id,
                                body: kept,
                                attempts: 0,
                                born,
                            });
                        }
                        None => committed.notify_one(),
                    }
                }
                false => spool.append(id, kept, born, tx),
            }),
        });
        rx
    }

    /// Posts what is due, `concurrency` at a time, for ever.
    async fn deliver(self: Arc<Webhook>) {
        let slots = Arc::new(Semaphore::new(self.config().concurrency));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (id, body, attempts) = self.queue.next_due().await;
            let hook = self.clone();
            tokio::spawn(async move {
                hook.attempt(id, body, attempts).await;
                drop(slot);
            });
        }
    }

    /// Posts one event: `None` when the receiver took it, or why not.
    async fn post(&self, config: &WebhookConfig, id: &str, body: &Bytes) -> Option<String> {
        let client = lock(&self.client).clone();
        let timestamp = Utc::now().timestamp();
        let sent = client
            .post(config.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("Bucketgate-Event-Id", id)
            .header("Bucketgate-Timestamp", timestamp.to_string())
            .header(
                "Bucketgate-Signature",
                sign(&config.secret, timestamp, body),
            )
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) if r.status().is_redirection() => Some(format!(
                "answered {} (redirects are not followed)",
                r.status()
            )),
            Ok(r) => Some(format!("answered {}", r.status())),
            Err(e) => Some(e.without_url().to_string()),
        }
    }

    async fn attempt(&self, id: String, body: Bytes, attempts: u32) {
        let config = self.config();
        let Some(why) = self.post(&config, &id, &body).await else {
            self.queue.remove(&id);
            self.spool.ack(id.clone());
            self.note_delivered(&id, attempts);
            return;
        };
        self.metrics
            .event_attempts_failed
            .get_or_create(&self.label)
            .inc();
        match self.queue.retry(&id, config.retry_for) {
            Ok(attempt) => self.note_failed(&config, &id, attempt, &why),
            Err(()) => {
                self.queue.remove(&id);
                self.spool.give_up(id.clone(), body);
                self.given_up.fetch_add(1, Ordering::Relaxed);
                self.note_given_up(&config, &id, &why, "kept in the spool's failed.jsonl");
            }
        }
    }

    fn note_delivered(&self, id: &str, attempts: u32) {
        self.metrics
            .events_delivered
            .get_or_create(&self.label)
            .inc();
        tracing::debug!(
            webhook = self.name(),
            id,
            attempts = attempts + 1,
            "event delivered"
        );
    }

    fn note_failed(&self, config: &WebhookConfig, id: &str, attempt: u32, why: &str) {
        match self.failing.due() {
            Some(held) => tracing::warn!(
                webhook = self.name(),
                url = config.shown_url(),
                id,
                attempt,
                error = why,
                failed_since_last_line = held,
                "webhook deliveries fail; they are retried (this line at most once a minute)"
            ),
            None => tracing::debug!(
                webhook = self.name(),
                id,
                attempt,
                error = why,
                "webhook delivery failed; it will be retried"
            ),
        }
    }

    fn note_given_up(&self, config: &WebhookConfig, id: &str, why: &str, kept: &str) {
        self.metrics
            .events_given_up
            .get_or_create(&self.label)
            .inc();
        tracing::error!(webhook = self.name(), url = config.shown_url(), id, error = why, retry_for = %humantime::format_duration(config.retry_for), "EVENT GIVEN UP after retry_for: {kept}");
    }

    /// Keeps the pending gauges current, once a second; with `[cluster]`
    /// they count the fleet's outbox.
    async fn gauges(self: Arc<Webhook>) {
        let metrics = &self.metrics;
        loop {
            if let Some(outbox) = &self.outbox
                && let Ok(rows) = outbox.rows(self.name()).await
            {
                *lock(&self.outbox_rows) = rows;
            }
            let b = self.backlog();
            metrics
                .events_pending
                .get_or_create(&self.label)
                .set(b.pending as i64);
            metrics
                .events_oldest_pending_seconds
                .get_or_create(&self.label)
                .set(b.oldest_seconds as i64);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The HTTP client of one webhook.
fn client(config: &WebhookConfig) -> std::io::Result<reqwest::Client> {
    crate::base::http_client(config.timeout, config.ca_file.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes_with_jitter() {
        for (attempts, base) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (9, 256.0),
            (10, 300.0),
            (40, 300.0),
        ] {
            let d = backoff(attempts).as_secs_f64();
            assert!(d >= base * 0.75 && d <= base * 1.25, "{attempts}: {d}");
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Python: hmac.new(b'Jefe', b'1700000000.{"id":"evt_1"}', hashlib.sha256).hexdigest()
        assert_eq!(
            sign("Jefe", 1_700_000_000, br#"{"id":"evt_1"}"#),
            "v1=ae90bb4509f017c63ec08005a4e4a0eb80caf1e18d7ad32b33c33403be906199"
        );
    }
}
