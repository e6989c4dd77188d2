//! Events: what happened (an upload committed, a login, a sync run), told
//! to the `[[webhooks]]` that asked for it, at least once.
//!
//! [`Events::emit`] hands an event to every webhook whose filters match;
//! each appends it to its own spool in `state_dir/webhooks/NAME/`
//! (`spool.rs`, fsync batched over the events that arrive together) and
//! the returned [`Receipt`] resolves once it is on disk: the layer that
//! emits waits for it before the client's reply. Delivery (`delivery.rs`)
//! runs in the background, signed, retried with backoff until a 2xx or
//! `retry_for`, so a slow or absent receiver never slows a client.

mod delivery;
mod outbox;
mod spool;

use crate::config::{EventKind, WebhookConfig};
use crate::metrics::Metrics;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use delivery::sign;

/// One event, as its JSON body is posted (fields without a value are left
/// out). docs/webhooks.md shows an example.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The receiver's idempotency key: the same on every attempt.
    pub id: String,
    pub time: String,
    #[serde(serialize_with = "kind_name")]
    pub event: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A rename's destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A rename's destination key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_key: Option<String>,
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// A sync run's job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// A sync run's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    /// The share link of a `share_download` or `share_upload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareOrigin>,
}

fn kind_name<S: serde::Serializer>(kind: &EventKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

impl Event {
    /// An event of `kind` happening now, with a new id; the rest is filled
    /// in by whoever emits it.
    pub fn new(kind: EventKind) -> Event {
        let id: u128 = rand::random();
        Event {
            id: format!("evt_{id:032x}"),
            time: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event: kind,
            protocol: None,
            user: None,
            ip: None,
            path: None,
            to: None,
            size: None,
            md5: None,
            sha1: None,
            sha256: None,
            remote: None,
            bucket: None,
            key: None,
            to_key: None,
            result: "ok",
            error: None,
            duration_ms: None,
            job: None,
            report: None,
            share: None,
        }
    }

    /// Records a failure: `result = "error"` and its message.
    pub fn failed(mut self, error: Option<String>) -> Event {
        if let Some(e) = error {
            self.result = "error";
            self.error = Some(e);
        }
        self
    }
}

/// Where a session's events come from: protocol, user, client address.
#[derive(Debug, Clone)]
pub struct Origin {
    pub protocol: &'static str,
    pub user: String,
    pub ip: std::net::IpAddr,
    /// The share link a visitor came through: its uploads and downloads
    /// are `share_upload` and `share_download`, with the link.
    pub share: Option<ShareOrigin>,
}

/// A share link, as its events name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShareOrigin {
    pub id: String,
    pub creator: String,
}

/// The most of a user name an event carries: a failed FTP login may
/// bring 4 KiB of it.
pub const MAX_USER_BYTES: usize = 256;

impl Origin {
    /// An event of `kind` from this session.
    pub fn event(&self, kind: EventKind) -> Event {
        let mut end = self.user.len().min(MAX_USER_BYTES);
        while !self.user.is_char_boundary(end) {
            end -= 1;
        }
        let kind = match (&self.share, kind) {
            (Some(_), EventKind::Download) => EventKind::ShareDownload,
            (Some(_), EventKind::Upload) => EventKind::ShareUpload,
            (_, kind) => kind,
        };
        Event {
            protocol: Some(self.protocol),
            user: Some(self.user[..end].to_string()),
            ip: Some(self.ip.to_string()),
            share: self.share.clone(),
            ..Event::new(kind)
        }
    }
}

/// What an event's end may add to it (size, digests, duration, an error):
/// held with the room of an event reserved before it happens.
const END_ROOM: u64 = 1024;

/// Room held in the spool of every webhook that wants an event which has
/// not happened yet (an upload's, until its close; a delete's, until the
/// object is gone): the event is then never dropped for a full spool.
/// Dropped unused, the room is given back.
#[must_use = "the room is given back when dropped"]
pub struct Reservation {
    held: Vec<(Arc<delivery::Webhook>, u64)>,
}

impl Reservation {
    /// Spools `event` into the room held for it.
    pub fn emit(mut self, event: Event) -> Receipt {
        if self.held.is_empty() {
            return Receipt::none();
        }
        let body = bytes::Bytes::from(serde_json::to_vec(&event).expect("an event serialises"));
        let receipts = self
            .held
            .drain(..)
            .map(|(hook, room)| hook.take(&event, body.clone(), Some(room)))
            .collect();
        Receipt(receipts)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        for (hook, room) in self.held.drain(..) {
            hook.release(room);
        }
    }
}

/// Events of unauthenticated sources one source may cause per minute.
pub const ANONYMOUS_PER_MINUTE: u32 = 10;

/// Counts the events of unauthenticated sources by source, per minute.
#[derive(Default)]
struct AnonymousRate {
    seen: Mutex<std::collections::HashMap<crate::auth::Source, (std::time::Instant, u32)>>,
}

impl AnonymousRate {
    /// The sources it keeps at most: past that a new one waits for the
    /// table to age.
    const MAX_SOURCES: usize = 4096;

    fn allow(&self, ip: &str) -> bool {
        let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
            return true;
        };
        let source = crate::auth::Source::from(ip);
        let now = std::time::Instant::now();
        let minute = std::time::Duration::from_secs(60);
        let mut seen = crate::base::lock(&self.seen);
        if !seen.contains_key(&source) && seen.len() >= Self::MAX_SOURCES {
            seen.retain(|_, (since, _)| now.duration_since(*since) < minute);
            if seen.len() >= Self::MAX_SOURCES {
                return false;
            }
        }
        let (since, count) = seen.entry(source).or_insert((now, 0));
        if now.duration_since(*since) >= minute {
            *since = now;
            *count = 0;
        }
        *count += 1;
        *count <= ANONYMOUS_PER_MINUTE
    }
}

/// Resolves when an emitted event is in every matching webhook's spool on
/// disk (or was refused there, which is logged).
#[must_use = "the event is durable only once the receipt resolves"]
pub struct Receipt(Vec<tokio::sync::oneshot::Receiver<()>>);

impl Receipt {
    pub fn none() -> Receipt {
        Receipt(Vec::new())
    }

    pub async fn wait(self) {
        for r in self.0 {
            let _ = r.await;
        }
    }
}

/// Every configured webhook, shared by the sessions and the sync jobs.
#[derive(Default)]
pub struct Events {
    hooks: Mutex<Vec<Arc<delivery::Webhook>>>,
    state_dir: PathBuf,
    anonymous: AnonymousRate,
    metrics: Arc<Metrics>,
    /// With `[cluster]`, where events go rather than the spools.
    outbox: Option<outbox::Outbox>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// A webhook whose spool could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("webhook {name:?}: its spool in {dir} cannot be used: {source}")]
pub struct SpoolError {
    pub name: String,
    pub dir: String,
    pub source: std::io::Error,
}

/// What `/healthz` shows of one webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    pub pending: usize,
    pub oldest_seconds: u64,
    /// Kept in `failed.jsonl` after `retry_for`.
    pub given_up: usize,
}

impl Events {
    /// No webhooks: events go nowhere (the CLI's sync runs, tests).
    pub fn none() -> Arc<Events> {
        Arc::new(Events::default())
    }

    /// Opens each webhook's spool under `state_dir` (what a previous run
    /// left undelivered is sent first) and starts its deliveries, from
    /// the fleet's outbox when `cluster` is given. Needs the runtime.
    pub fn start(
        configs: &[WebhookConfig],
        state_dir: &Path,
        metrics: Arc<Metrics>,
        cluster: Option<&crate::cluster::Cluster>,
    ) -> Result<Arc<Events>, SpoolError> {
        let events = Events {
            state_dir: state_dir.to_path_buf(),
            metrics,
            outbox: cluster.map(|c| outbox::Outbox::start(c.clone())),
            ..Events::default()
        };
        events.reload(configs)?;
        Ok(Arc::new(events))
    }

    /// SIGHUP: webhooks keep their spools and deliveries by name and take
    /// the new settings; new ones start; removed ones take no new events
    /// and deliver what they hold.
    pub fn reload(&self, configs: &[WebhookConfig]) -> Result<(), SpoolError> {
        let mut hooks = crate::base::lock(&self.hooks);
        for hook in hooks.iter() {
            if !configs.iter().any(|c| c.name == hook.name()) {
                hook.retire();
            }
        }
        for config in configs {
            match hooks.iter().find(|h| h.name() == config.name) {
                Some(hook) => hook.update(config.clone()),
                None => {
                    let dir = self.state_dir.join("webhooks").join(&config.name);
                    let hook = delivery::Webhook::start(
                        config.clone(),
                        &dir,
                        self.metrics.clone(),
                        self.outbox.clone(),
                    )
                    .map_err(|source| SpoolError {
                        name: config.name.clone(),
                        dir: dir.display().to_string(),
                        source,
                    })?;
                    tracing::info!(
                        webhook = config.name,
                        url = config.shown_url(),
                        pending = hook.backlog().pending,
                        "webhook ready"
                    );
                    hooks.push(hook);
                }
            }
        }
        Ok(())
    }

    /// Whether any webhook is configured: without one, emitters need not
    /// build their events.
    pub fn any(&self) -> bool {
        !crate::base::lock(&self.hooks).is_empty()
    }

    /// Hands `event` to every webhook that wants it, within the room its
    /// spool has. An event of an unauthenticated source past its source's
    /// rate ([`ANONYMOUS_PER_MINUTE`]) is dropped, counted.
    pub fn emit(&self, event: Event) -> Receipt {
        let hooks = crate::base::lock(&self.hooks);
        if hooks.is_empty() {
            return Receipt::none();
        }
        if event.event.unauthenticated()
            && !event
                .ip
                .as_deref()
                .is_none_or(|ip| self.anonymous.allow(ip))
        {
            self.metrics.events_rate_limited.inc();
            return Receipt::none();
        }
        let mut body = None;
        let mut receipts = Vec::new();
        for hook in hooks.iter().filter(|h| h.wants(&event)) {
            let body = body.get_or_insert_with(|| {
                bytes::Bytes::from(serde_json::to_vec(&event).expect("an event serialises"))
            });
            receipts.push(hook.take(&event, body.clone(), None));
        }
        Receipt(receipts)
    }

    /// Holds room for `event` (as it is known before it happens) in the
    /// spool of every webhook that wants it; a webhook without that room
    /// refuses, and the operation must not happen.
    pub fn reserve(&self, event: &Event) -> Result<Reservation, crate::base::FsError> {
        let hooks = crate::base::lock(&self.hooks);
        let mut reservation = Reservation { held: Vec::new() };
        let mut room = None;
        for hook in hooks.iter().filter(|h| h.wants(event)) {
            let room = *room.get_or_insert_with(|| {
                serde_json::to_vec(event).map_or(0, |b| b.len() as u64) + END_ROOM
            });
            if !hook.reserve(room) {
                return Err(crate::base::FsError::Busy(format!(
                    "webhook {:?} cannot take the event of this operation (its spool is full); try again later",
                    hook.name()
                )));
            }
            reservation.held.push((hook.clone(), room));
        }
        Ok(reservation)
    }

    /// Puts webhook `name`'s given-up events back to be delivered: `None`
    /// if there is no such webhook.
    pub async fn retry(&self, name: &str) -> Option<std::io::Result<usize>> {
        let hook = crate::base::lock(&self.hooks)
            .iter()
            .find(|h| h.name() == name)
            .cloned()?;
        Some(hook.retry_given_up().await)
    }

    /// Each webhook's backlog, by name.
    pub fn backlog(&self) -> Vec<(String, Backlog)> {
        crate::base::lock(&self.hooks)
            .iter()
            .map(|h| (h.name().to_string(), h.backlog()))
            .collect()
    }
}

/// Whether `config`'s filters let `event` through.
fn wanted(config: &WebhookConfig, event: &Event) -> bool {
    if !config.events.contains(&event.event) {
        return false;
    }
    if !config.users.is_empty()
        && !event
            .user
            .as_ref()
            .is_some_and(|u| config.users.contains(u))
    {
        return false;
    }
    match (&config.paths, event.event.has_path()) {
        (Some(globs), true) => [&event.path, &event.to]
            .into_iter()
            .flatten()
            .any(|p| globs.is_match(p)),
        _ => true,
    }
}

/// When `time` (an event's RFC 3339 `time`) was.
fn parse_time(time: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(toml: &str) -> WebhookConfig {
        let text = format!(
            "[[webhooks]]\nname = \"h\"\nurl = \"http://127.0.0.1:1/\"\nsecret = \"s\"\n{toml}"
        );
        crate::config::Config::parse(&text, &|_| None)
            .unwrap()
            .webhooks
            .remove(0)
    }

    fn upload(user: &str, path: &str) -> Event {
        Event {
            user: Some(user.into()),
            path: Some(path.into()),
            ..Event::new(EventKind::Upload)
        }
    }

    #[test]
    fn filters_by_kind_user_and_path_glob() {
        let any = hook("");
        assert!(wanted(&any, &upload("bob", "/x.txt")));
        assert!(!wanted(&any, &Event::new(EventKind::Delete)));
        let some =
            hook("events = [\"upload\", \"login\"]\nusers = [\"alice\"]\npaths = [\"/in/**\"]");
        assert!(wanted(&some, &upload("alice", "/in/a/b.csv")));
        assert!(!wanted(&some, &upload("alice", "/out/b.csv")));
        assert!(!wanted(&some, &upload("bob", "/in/b.csv")));
        // `*` stays inside one folder; events without a path ignore `paths`.
        let star = hook("paths = [\"/in/*.csv\"]");
        assert!(wanted(&star, &upload("x", "/in/b.csv")));
        assert!(!wanted(&star, &upload("x", "/in/deep/b.csv")));
        let login = Event {
            user: Some("alice".into()),
            ..Event::new(EventKind::Login)
        };
        assert!(wanted(&some, &login));
    }

    #[test]
    fn an_event_leaves_out_what_it_has_not() {
        let json = serde_json::to_value(upload("alice", "/a")).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, ["event", "id", "path", "result", "time", "user"]);
        assert_eq!(json["event"], "upload");
        assert!(parse_time(json["time"].as_str().unwrap()).is_some());
    }
}
