//! `[[webhooks]]`: where events are posted, which ones, and how hard the
//! gateway tries.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What happened, as a webhook's `events` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Upload,
    Download,
    Delete,
    Rename,
    Mkdir,
    Rmdir,
    Login,
    LoginFailed,
    Ban,
    SyncRun,
    /// A file taken through a share link (`[web]`).
    ShareDownload,
    /// A file left through an upload link.
    ShareUpload,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        EventKind::Upload,
        EventKind::Download,
        EventKind::Delete,
        EventKind::Rename,
        EventKind::Mkdir,
        EventKind::Rmdir,
        EventKind::Login,
        EventKind::LoginFailed,
        EventKind::Ban,
        EventKind::SyncRun,
        EventKind::ShareDownload,
        EventKind::ShareUpload,
    ];

    /// The name in the config and in the payload's `event`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Upload => "upload",
            EventKind::Download => "download",
            EventKind::Delete => "delete",
            EventKind::Rename => "rename",
            EventKind::Mkdir => "mkdir",
            EventKind::Rmdir => "rmdir",
            EventKind::Login => "login",
            EventKind::LoginFailed => "login_failed",
            EventKind::Ban => "ban",
            EventKind::SyncRun => "sync_run",
            EventKind::ShareDownload => "share_download",
            EventKind::ShareUpload => "share_upload",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether anyone can cause it without logging in: its events share a
    /// small budget of the spool and are the ones dropped when it is spent.
    pub fn unauthenticated(self) -> bool {
        matches!(self, EventKind::LoginFailed | EventKind::Ban)
    }

    /// Whether the event is about a path (the `paths` filter applies).
    pub fn has_path(self) -> bool {
        !matches!(
            self,
            EventKind::Login | EventKind::LoginFailed | EventKind::Ban | EventKind::SyncRun
        )
    }
}

#[derive(Clone)]
pub struct WebhookConfig {
    pub name: String,
    pub url: url::Url,
    pub events: Vec<EventKind>,
    /// Only these users' events; empty: everyone's.
    pub users: Vec<String>,
    /// Only events whose path matches one of these globs; empty: any.
    pub paths: Option<globset::GlobSet>,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: String,
    /// One delivery attempt, connect to last byte.
    pub timeout: Duration,
    /// How long an event is retried before it is given up (and kept in
    /// the spool's `failed.jsonl`).
    pub retry_for: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// The most bytes of undelivered events kept; past it, new events
    /// for this webhook are refused (logged, counted).
    pub spool_limit: u64,
    /// Extra CA certificates (PEM) for an https receiver.
    pub ca_file: Option<PathBuf>,
}

impl WebhookConfig {
    /// The URL as a log line may show it: credentials and query left out.
    pub fn shown_url(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.to_string()
    }
}

impl fmt::Debug for WebhookConfig {
    /// Hand-written so neither the secret nor URL credentials reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.shown_url())
            .field("events", &self.events)
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}
