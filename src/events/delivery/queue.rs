//! A webhook's undelivered events in memory, by when each is due: what
//! the spool holds, and the room held for events to come.

use super::super::Backlog;
use super::super::spool::Owner;
use crate::base::lock;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The share of `spool_limit` that events of unauthenticated sources
/// (login_failed, ban) may hold: a flood of failed logins cannot crowd out
/// the file events.
const ANONYMOUS_SHARE: u64 = 16;

/// An event waiting for delivery.
pub(super) struct Item {
    pub(super) body: Bytes,
    pub(super) attempts: u32,
    /// When it happened: `retry_for` counts from here.
    pub(super) born: DateTime<Utc>,
}

#[derive(Default)]
pub(super) struct QueueState {
    pub(super) items: HashMap<String, Item>,
    /// Items to attempt, by when: (due, order of arrival, id). An item
    /// being attempted is in `items` but not here.
    pub(super) due: BTreeSet<(Instant, u64, String)>,
    pub(super) arrivals: u64,
    /// Bytes of every undelivered event, those still being spooled too.
    pub(super) bytes: u64,
    /// Of which events of unauthenticated sources, by id.
    pub(super) anonymous: std::collections::HashSet<String>,
    pub(super) anonymous_bytes: u64,
    /// Room held for events not yet emitted (uploads in progress).
    pub(super) reserved: u64,
}

impl QueueState {
    /// Bytes held for file events: spooled or reserved, unauthenticated
    /// sources' events left out (they have their own share).
    pub(super) fn file_bytes(&self) -> u64 {
        self.bytes - self.anonymous_bytes + self.reserved
    }

    /// Counts an undelivered event's body.
    pub(super) fn count(&mut self, id: &str, len: u64, anonymous: bool) {
        self.bytes += len;
        if anonymous {
            self.anonymous_bytes += len;
            self.anonymous.insert(id.to_string());
        }
    }
}

/// What of `spool_limit` file events may use, and what unauthenticated
/// sources' events may.
pub(super) fn shares(limit: u64) -> (u64, u64) {
    (limit - limit / ANONYMOUS_SHARE, limit / ANONYMOUS_SHARE)
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) state: Mutex<QueueState>,
    pub(super) wake: Notify,
}

impl Queue {
    pub(super) fn insert(&self, id: String, body: Bytes, born: DateTime<Utc>) {
        let at = Instant::now();
        let mut s = lock(&self.state);
        s.arrivals += 1;
        let order = s.arrivals;
        s.due.insert((at, order, id.clone()));
        s.items.insert(
            id,
            Item {
                body,
                attempts: 0,
                born,
            },
        );
        drop(s);
        self.wake.notify_one();
    }

    /// Waits for the next item due, and takes it out of the schedule.
    pub(super) async fn next_due(&self) -> (String, Bytes, u32) {
        loop {
            let wait_until = {
                let mut s = lock(&self.state);
                match s.due.first().cloned() {
                    Some((at, _, id)) if at <= Instant::now() => {
                        s.due.pop_first();
                        if let Some(item) = s.items.get(&id) {
                            return (id, item.body.clone(), item.attempts);
                        }
                        continue;
                    }
                    Some((at, _, _)) => Some(at),
                    None => None,
                }
            };
            match wait_until {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Takes up to `max` items due now out of the schedule, with when
    /// each was born.
    pub(super) fn due_now(&self, max: usize) -> Vec<(String, Bytes, DateTime<Utc>)> {
        let mut s = lock(&self.state);
        let mut due = Vec::new();
        while due.len() < max {
            match s.due.first().cloned() {
                Some((at, _, id)) if at <= Instant::now() => {
                    s.due.pop_first();
                    if let Some(item) = s.items.get(&id) {
                        due.push((id, item.body.clone(), item.born));
                    }
                }
                _ => break,
            }
        }
        due
    }

    /// An item taken out of the schedule is due again after `delay`.
    pub(super) fn later(&self, id: String, delay: Duration) {
        let mut s = lock(&self.state);
        s.arrivals += 1;
        let order = s.arrivals;
        s.due.insert((Instant::now() + delay, order, id));
        drop(s);
        self.wake.notify_one();
    }

    /// An event counted by [`QueueState::count`] that went to the outbox
    /// instead of the spool.
    pub(super) fn uncount(&self, id: &str, len: u64) {
        let mut s = lock(&self.state);
        s.bytes = s.bytes.saturating_sub(len);
        if s.anonymous.remove(id) {
            s.anonymous_bytes = s.anonymous_bytes.saturating_sub(len);
        }
    }

    /// A delivered (or given-up) item leaves.
    pub(super) fn remove(&self, id: &str) {
        let mut s = lock(&self.state);
        if let Some(item) = s.items.remove(id) {
            let len = item.body.len() as u64;
            s.bytes = s.bytes.saturating_sub(len);
            if s.anonymous.remove(id) {
                s.anonymous_bytes = s.anonymous_bytes.saturating_sub(len);
            }
        }
    }

    /// A failed item is tried again at `at`; `Err(born)` if it is older
    /// than `retry_for` and must be given up instead.
    pub(super) fn retry(&self, id: &str, retry_for: Duration) -> Result<u32, ()> {
        let mut s = lock(&self.state);
        let Some(item) = s.items.get_mut(id) else {
            return Err(());
        };
        item.attempts += 1;
        let attempts = item.attempts;
        let age = (Utc::now() - item.born).to_std().unwrap_or_default();
        if age > retry_for {
            return Err(());
        }
        let delay = backoff(attempts);
        s.arrivals += 1;
        let order = s.arrivals;
        s.due
            .insert((Instant::now() + delay, order, id.to_string()));
        drop(s);
        self.wake.notify_one();
        Ok(attempts)
    }

    pub(super) fn backlog(&self) -> Backlog {
        let s = lock(&self.state);
        let oldest = s.items.values().map(|i| i.born).min();
        Backlog {
            pending: s.items.len(),
            oldest_seconds: oldest
                .map(|t| (Utc::now() - t).num_seconds().max(0) as u64)
                .unwrap_or(0),
            given_up: 0,
        }
    }
}

/// 1 s, 2 s, 4 s … after the first, second, third failure, at most
/// [`MAX_BACKOFF`], each within ±25 %.
pub(super) fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(1)
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    base.mul_f64(rand::random_range(0.75..1.25))
}

impl Owner for Arc<Queue> {
    fn stored(&self, id: String, body: Bytes, born: DateTime<Utc>) {
        self.insert(id, body, born);
    }

    fn retried(&self, id: String, body: Bytes) {
        lock(&self.state).bytes += body.len() as u64;
        self.insert(id, body, Utc::now());
    }

    fn undelivered(&self) -> Vec<(String, Bytes)> {
        let s = lock(&self.state);
        let mut items: Vec<_> = s.items.iter().collect();
        items.sort_by_key(|(_, item)| item.born);
        items
            .into_iter()
            .map(|(id, item)| (id.clone(), item.body.clone()))
            .collect()
    }
}
