//! Bandwidth (`bandwidth_up`, `bandwidth_down`): per user, shared by all
//! of that user's sessions on this node, and for the whole gateway
//! (`[server]`). A token bucket with a small burst, applied as
//! backpressure: an upload's write waits before it is taken (the client's
//! socket is not read meanwhile), a download's read waits before it is
//! handed over (S3 is read no faster than the client is served). Nothing
//! is buffered for it, so throttling costs no memory.

use super::{Layer, Op};
use crate::base::{FsResult, lock};
use crate::config::Bandwidth;
use crate::vfs::Vfs;
use crate::vfs::transfers::{Ended, Observers, Pace};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// What a bucket may hold: this long at its rate, and at least
/// [`MIN_BURST`] (one SFTP write or FTP chunk goes through whole).
const BURST: Duration = Duration::from_millis(100);
const MIN_BURST: f64 = 64.0 * 1024.0;
/// Seconds: the shortest wait worth a sleep.
const MIN_SLEEP: f64 = 0.001;

/// One rate in bytes per second, shared by whatever takes from it.
#[derive(Debug)]
pub struct Bucket {
    rate: AtomicU64,
    /// Tokens (bytes) and when they were counted. Tokens go negative: a
    /// take larger than what is there waits for the debt to be repaid,
    /// which also makes takers share the rate in turn.
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// Full at first: a transfer starts at once.
    pub fn new(rate: u64) -> Arc<Bucket> {
        Arc::new(Bucket {
            rate: AtomicU64::new(rate),
            state: Mutex::new((burst(rate as f64), Instant::now())),
        })
    }
}

impl Pace for Bucket {
    fn take(&self, n: u64) -> Duration {
        let rate = self.rate.load(Ordering::Relaxed) as f64;
        let burst = burst(rate);
        let mut state = lock(&self.state);
        let now = Instant::now();
        let (tokens, at) = *state;
        let refilled = (tokens + now.duration_since(at).as_secs_f64() * rate).min(burst);
        let left = refilled - n as f64;
        *state = (left, now);
        // A debt shorter than the timer's tick is carried, not slept: a
        // sleep is at least a millisecond, which would cap a fast rate.
        match -left / rate {
            owed if owed >= MIN_SLEEP => Duration::from_secs_f64(owed),
            _ => Duration::ZERO,
        }
    }
}

fn burst(rate: f64) -> f64 {
    (rate * BURST.as_secs_f64()).max(MIN_BURST)
}

/// A user's two buckets on this node.
#[derive(Debug, Default)]
struct UserRates {
    up: Option<Arc<Bucket>>,
    down: Option<Arc<Bucket>>,
}

/// The gateway's buckets, and each user's while one of its sessions is open.
#[derive(Debug)]
pub struct Bandwidths {
    server: UserRates,
    users: Mutex<HashMap<String, Weak<UserRates>>>,
}

/// What one session's transfers keep to.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    up: Vec<Arc<Bucket>>,
    down: Vec<Arc<Bucket>>,
    /// Holds the user's buckets for as long as the session lives.
    _user: Option<Arc<UserRates>>,
}

fn buckets(limits: Bandwidth) -> UserRates {
    UserRates {
        up: limits.up.map(Bucket::new),
        down: limits.down.map(Bucket::new),
    }
}

impl Bandwidths {
    /// The gateway's own rates, `[server] bandwidth_up` / `bandwidth_down`.
    pub fn new(server: Bandwidth) -> Self {
        Bandwidths {
            server: buckets(server),
            users: Mutex::default(),
        }
    }

    /// What a session of `user` keeps to: the user's rates (shared with
    /// its other sessions here; a reload's new rate applies at once) and
    /// the gateway's.
    pub fn for_user(&self, user: &str, limits: Bandwidth) -> Rates {
        let own = (limits != Bandwidth::default()).then(|| {
            let mut users = lock(&self.users);
            if let Some(rates) = users.get(user).and_then(Weak::upgrade)
                && rates.up.is_some() == limits.up.is_some()
                && rates.down.is_some() == limits.down.is_some()
            {
                for (bucket, rate) in [(&rates.up, limits.up), (&rates.down, limits.down)] {
                    if let (Some(b), Some(r)) = (bucket, rate) {
                        b.rate.store(r, Ordering::Relaxed);
                    }
                }
                return rates;
            }
            if users.len() >= 1024 {
                users.retain(|_, w| w.strong_count() > 0);
            }
            let rates = Arc::new(buckets(limits));
            users.insert(user.to_string(), Arc::downgrade(&rates));
            rates
        });
        let pick = |side: fn(&UserRates) -> &Option<Arc<Bucket>>| -> Vec<Arc<Bucket>> {
            let mine = own.as_deref().and_then(|o| side(o).clone());
            mine.into_iter().chain(side(&self.server).clone()).collect()
        };
        Rates {
            up: pick(|r| &r.up),
            down: pick(|r| &r.down),
            _user: own,
        }
    }
}

/// The layer that holds a session's transfers to its [`Rates`].
#[derive(Debug)]
pub struct Throttled {
    rates: Rates,
}

impl Throttled {
    pub fn new(rates: Rates) -> Self {
        Throttled { rates }
    }
}

impl Layer for Throttled {
    type Ticket = ();

    fn before(&self, _below: &dyn Vfs, _op: &Op) -> FsResult<()> {
        super::nothing_before()
    }

    fn after(&self, _op: &Op, _: Option<()>, _ended: Ended<'_>) -> BoxFuture<'static, ()> {
        super::nothing_to_wait()
    }

    fn shape(&self, op: &Op, hooks: &mut Observers) {
        let buckets = match op.name {
            "upload" => &self.rates.up,
            _ => &self.rates.down,
        };
        for b in buckets {
            hooks.pace(b.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takers of one bucket share its rate: 21 takes of 64 KiB from a
    /// full 1 MiB/s bucket (its burst, 100 KiB, free) owe about 1.2 s.
    #[test]
    fn takers_share_the_rate() {
        let b = Bucket::new(1 << 20);
        let waited: Duration = (0..21).map(|_| b.take(64 << 10)).sum::<Duration>();
        let last = b.take(1 << 10);
        assert!(last >= Duration::from_millis(1100), "{last:?} {waited:?}");
    }

    #[test]
    fn a_session_holds_its_users_buckets_and_the_servers() {
        let all = Bandwidths::new(Bandwidth {
            up: None,
            down: Some(10 << 20),
        });
        let limits = Bandwidth {
            up: None,
            down: Some(2 << 20),
        };
        let a = all.for_user("u", limits);
        let b = all.for_user("u", limits);
        assert_eq!(a.down.len(), 2);
        assert!(Arc::ptr_eq(&a.down[0], &b.down[0]), "one bucket per user");
        assert!(all.for_user("other", Bandwidth::default()).up.is_empty());
    }
}
