//! What is happening now, for the operator's console: the logged-in
//! sessions with their transfers in flight, and a bounded ring of the
//! latest file operations. Frontends register a session at login and
//! drop it at the end; the live policy layer registers each transfer and
//! counts its bytes as they move.

use crate::base::lock;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// File operations the ring keeps, newest first.
pub const RECENT: usize = 1000;

#[derive(Default)]
pub struct Live {
    next: AtomicU64,
    sessions: Mutex<BTreeMap<u64, Arc<LiveSession>>>,
    recent: Mutex<VecDeque<RecentOp>>,
}

pub struct LiveSession {
    pub id: u64,
    pub user: String,
    pub protocol: &'static str,
    pub peer: SocketAddr,
    pub since: DateTime<Utc>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    next_transfer: AtomicU64,
    transfers: Mutex<BTreeMap<u64, Arc<Meter>>>,
    /// Cancelled to end the session (an operator, or shutdown).
    end: CancellationToken,
    registry: Weak<Live>,
}

/// Upload or download, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Upload,
    Download,
}

/// One transfer in flight: its bytes, counted as they move.
pub struct Meter {
    pub path: String,
    pub direction: Direction,
    /// The file's size, when known at open (a download).
    pub total: Option<u64>,
    pub started: Instant,
    bytes: AtomicU64,
    session: Arc<LiveSession>,
    /// The last sample of the rate: when, bytes then, bytes per second.
    sample: Mutex<(Instant, u64, f64)>,
}

impl Meter {
    /// `n` more bytes moved.
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        let counter = match self.direction {
            Direction::Upload => &self.session.bytes_in,
            Direction::Download => &self.session.bytes_out,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes per second over the last second or so (since the start, in
    /// the first one): whoever asks, it is sampled at most once a second.
    pub fn rate(&self) -> f64 {
        let (now, bytes) = (Instant::now(), self.bytes());
        let mut sample = lock(&self.sample);
        let (at, then, rate) = *sample;
        let since = now.duration_since(at).as_secs_f64();
        if since >= 1.0 {
            let rate = (bytes - then) as f64 / since;
            *sample = (now, bytes, rate);
            return rate;
        }
        match now.duration_since(self.started).as_secs_f64() {
            s if s < 1.0 && s > 0.0 => bytes as f64 / s,
            _ => rate,
        }
    }
}

/// Holds a transfer's place in its session until the transfer ends.
pub struct TransferEntry {
    id: u64,
    pub meter: Arc<Meter>,
}

impl Drop for TransferEntry {
    fn drop(&mut self) {
        lock(&self.meter.session.transfers).remove(&self.id);
    }
}

/// Holds a session's place until it ends.
pub struct SessionEntry(pub Arc<LiveSession>);

impl Drop for SessionEntry {
    fn drop(&mut self) {
        if let Some(live) = self.0.registry.upgrade() {
            lock(&live.sessions).remove(&self.0.id);
        }
    }
}

/// A finished file operation, as the console lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RecentOp {
    pub time: DateTime<Utc>,
    pub user: String,
    pub protocol: &'static str,
    pub op: &'static str,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    pub ms: u64,
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Live {
    pub fn new() -> Arc<Live> {
        Arc::new(Live::default())
    }

    /// Registers a session that logged in; `end` ends it.
    pub fn register(
        self: &Arc<Self>,
        user: &str,
        protocol: &'static str,
        peer: SocketAddr,
        end: CancellationToken,
    ) -> SessionEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let session = Arc::new(LiveSession {
            id,
            user: user.to_string(),
            protocol,
            peer,
            since: Utc::now(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            next_transfer: AtomicU64::new(0),
            transfers: Mutex::default(),
            end,
            registry: Arc::downgrade(self),
        });
        lock(&self.sessions).insert(id, session.clone());
        SessionEntry(session)
    }

    pub fn sessions(&self) -> Vec<Arc<LiveSession>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// Ends session `id`: false if there is none.
    pub fn end(&self, id: u64) -> bool {
        match lock(&self.sessions).get(&id) {
            Some(s) => {
                s.end.cancel();
                true
            }
            None => false,
        }
    }

    pub fn record(&self, op: RecentOp) {
        let mut recent = lock(&self.recent);
        if recent.len() == RECENT {
            recent.pop_back();
        }
        recent.push_front(op);
    }

    /// The latest operations, newest first, those `keep` wants.
    pub fn recent(&self, keep: impl Fn(&RecentOp) -> bool, limit: usize) -> Vec<RecentOp> {
        lock(&self.recent)
            .iter()
            .filter(|op| keep(op))
            .take(limit)
            .cloned()
            .collect()
    }
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("id", &self.id)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl LiveSession {
    /// Registers a transfer; it leaves the session when the entry drops.
    pub fn transfer(
        self: &Arc<Self>,
        path: &str,
        direction: Direction,
        total: Option<u64>,
    ) -> TransferEntry {
        let id = self.next_transfer.fetch_add(1, Ordering::Relaxed);
        let meter = Arc::new(Meter {
            path: path.to_string(),
            direction,
            total,
            started: Instant::now(),
            bytes: AtomicU64::new(0),
            session: self.clone(),
            sample: Mutex::new((Instant::now(), 0, 0.0)),
        });
        lock(&self.transfers).insert(id, meter.clone());
        TransferEntry { id, meter }
    }

    pub fn transfers(&self) -> Vec<Arc<Meter>> {
        lock(&self.transfers).values().cloned().collect()
    }

    /// The session as `/api/v1/sessions` lists it (and the fleet's table
    /// holds it).
    pub fn view(&self) -> serde_json::Value {
        let transfers: Vec<serde_json::Value> = self
            .transfers()
            .iter()
            .map(|t| {
                serde_json::json!({
                    "path": t.path,
                    "direction": t.direction,
                    "bytes": t.bytes(),
                    "total": t.total,
                    "rate": t.rate(),
                    "seconds": t.started.elapsed().as_secs_f64(),
                })
            })
            .collect();
        serde_json::json!({
            "id": self.id,
            "user": self.user,
            "protocol": self.protocol,
            "peer": self.peer.to_string(),
            "since": self.since,
            "bytes_in": self.bytes_in.load(Ordering::Relaxed),
            "bytes_out": self.bytes_out.load(Ordering::Relaxed),
            "transfers": transfers,
        })
    }

    /// Where the session's events and the ring's entries go.
    pub fn record(&self, op: RecentOp) {
        if let Some(live) = self.registry.upgrade() {
            live.record(op);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(i: usize) -> RecentOp {
        RecentOp {
            time: Utc::now(),
            user: "alice".into(),
            protocol: "sftp",
            op: "upload",
            path: format!("/f{i}"),
            to: None,
            bytes: Some(1),
            ms: 0,
            result: "ok",
            error: None,
        }
    }

    #[test]
    fn the_ring_keeps_the_latest_operations_newest_first() {
        let live = Live::new();
        for i in 0..RECENT + 10 {
            live.record(op(i));
        }
        let all = live.recent(|_| true, usize::MAX);
        assert_eq!(all.len(), RECENT);
        assert_eq!(all[0].path, format!("/f{}", RECENT + 9));
        assert_eq!(all[RECENT - 1].path, "/f10");
    }

    #[test]
    fn a_session_and_its_transfers_leave_when_their_entries_drop() {
        let live = Live::new();
        let entry = live.register(
            "alice",
            "sftp",
            "127.0.0.1:1".parse().unwrap(),
            CancellationToken::new(),
        );
        let transfer = entry.0.transfer("/a", Direction::Upload, None);
        transfer.meter.add(5);
        assert_eq!(entry.0.bytes_in.load(Ordering::Relaxed), 5);
        assert_eq!(entry.0.transfers().len(), 1);
        drop(transfer);
        assert!(entry.0.transfers().is_empty());
        assert!(live.end(entry.0.id));
        drop(entry);
        assert!(live.sessions().is_empty());
    }
}
