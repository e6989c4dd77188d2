//! Who may be connected. A new connection is first checked against the
//! bans (see [`Bans`]), then admitted as *not logged in*: those are counted
//! apart from sessions, per source and for the whole gateway, and each has
//! a deadline, so connections that never log in cannot keep anyone else
//! out. At login it becomes a session: `[server].max_sessions` for the
//! whole gateway and `max_sessions` per user. A slot is held for the life
//! of what it counts and given back when its guard drops, however the
//! connection ends.

use super::Bans;
use super::bans::Source;
use crate::config::{SecurityConfig, ServerConfig, UserConfig};
use crate::metrics::{Metrics, ProtocolLabel};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Connections not logged in yet, oldest first, and how many per source.
#[derive(Debug, Default)]
struct Unauthenticated {
    next_id: u64,
    by_id: BTreeMap<u64, (Source, CancellationToken)>,
    per_source: HashMap<Source, usize>,
    /// The gateway's `unauthenticated` gauge.
    gauge: Gauge,
}

impl Unauthenticated {
    /// Forgets connection `id`; false if it was already gone (evicted).
    fn remove(&mut self, id: u64) -> bool {
        let Some((source, _)) = self.by_id.remove(&id) else {
            return false;
        };
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
        self.gauge.dec();
        true
    }
}

#[derive(Debug, Default)]
struct Counts {
    sessions: usize,
    per_user: HashMap<String, usize>,
    unauthenticated: Unauthenticated,
    /// The gateway's `sessions` gauges, by protocol.
    gauges: Family<ProtocolLabel, Gauge>,
    /// Sessions each user has at the fleet's other nodes (`[cluster]`),
    /// as last heard: counted toward their `max_sessions` here.
    elsewhere: HashMap<String, usize>,
    /// Where a user's count goes when it changes, to be shared with the
    /// fleet; unset on a gateway of its own.
    shared: Option<tokio::sync::mpsc::Sender<String>>,
    /// A change the channel could not take: the fleet needs every count.
    missed: bool,
}

impl Counts {
    /// Tells the fleet that `user`'s sessions here changed. Never waits: a
    /// change the channel cannot take is marked, and every count is
    /// written again.
    fn tell(&mut self, user: &str) {
        if let Some(to) = &self.shared
            && to.try_send(user.to_string()).is_err()
        {
            self.missed = true;
        }
    }
}

/// The limits on connections and sessions across every frontend.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    max_sessions: usize,
    max_unauthenticated: usize,
    max_unauthenticated_per_source: usize,
    login_timeout: Duration,
    counts: Arc<Mutex<Counts>>,
    bans: Bans,
    /// The gateway's `banned_connections`.
    banned: Counter,
}

/// Which limit refused a connection or a login.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("banned after repeated failed logins, for {}s more", .0.as_secs())]
    Banned(Duration),
    #[error(
        "this source already has {0} connections that have not logged in (max_unauthenticated_per_source)"
    )]
    SourceBusy(usize),
    #[error("the server has reached its max_sessions ({0})")]
    Server(usize),
    #[error("user {0:?} has reached their max_sessions ({1})")]
    User(String, usize),
    #[error("this connection is logged in already")]
    LoggedIn,
}

/// A connection admitted but not logged in. It holds its place among the
/// unauthenticated until it logs in or ends; [`PreLogin::closed`] tells the
/// connection's task when it must close instead.
#[derive(Debug)]
pub struct PreLogin {
    counts: Arc<Mutex<Counts>>,
    id: u64,
    peer: IpAddr,
    protocol: &'static str,
    /// Cancelled when a newer connection took this one's place.
    evicted: CancellationToken,
    /// Cancelled at login: the deadline no longer applies.
    logged_in: CancellationToken,
    deadline: Duration,
}

/// Why a connection was closed before it logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLoggedIn {
    /// `login_timeout` passed.
    Deadline,
    /// `max_unauthenticated` was reached and this was the oldest.
    Evicted,
}

impl std::fmt::Display for NotLoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotLoggedIn::Deadline => "no login within login_timeout",
            NotLoggedIn::Evicted => {
                "the oldest of max_unauthenticated connections not logged in, closed for a new one"
            }
        })
    }
}

/// What a connection's task waits on beside the session itself: resolves
/// when the connection must close because it did not log in in time (or
/// was evicted), and never once it has logged in.
#[derive(Debug, Clone)]
pub struct LoginWatch {
    evicted: CancellationToken,
    logged_in: CancellationToken,
    deadline: Duration,
}

impl LoginWatch {
    pub async fn closed(self) -> NotLoggedIn {
        let reason = tokio::select! {
            _ = self.logged_in.cancelled() => None,
            _ = self.evicted.cancelled() => Some(NotLoggedIn::Evicted),
            _ = tokio::time::sleep(self.deadline) => Some(NotLoggedIn::Deadline),
        };
        match reason {
            // The race is decided by login: a login at the deadline wins.
            Some(r) if !self.logged_in.is_cancelled() => r,
            _ => std::future::pending().await,
        }
    }
}

/// A logged-in session's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SessionSlot {
    counts: Arc<Mutex<Counts>>,
    protocol: &'static str,
    user: String,
}

/// Where a connection stands: admitted, then logged in.
#[derive(Debug)]
pub enum Admitted {
    Pending(PreLogin),
    LoggedIn(SessionSlot),
    /// Between the two, only while a login is concluded.
    Moving,
}

impl Admitted {
    pub fn peer_and_protocol(&self) -> Option<(IpAddr, &'static str)> {
        match self {
            Admitted::Pending(p) => Some((p.peer, p.protocol)),
            _ => None,
        }
    }
}

impl SessionLimits {
    pub fn new(server: &ServerConfig, security: &SecurityConfig, metrics: &Metrics) -> Self {
        let counts = Counts {
            unauthenticated: Unauthenticated {
                gauge: metrics.unauthenticated.clone(),
                ..Default::default()
            },
            gauges: metrics.sessions.clone(),
            ..Default::default()
        };
        SessionLimits {
            max_sessions: server.max_sessions,
            max_unauthenticated: server.max_unauthenticated.max(1),
            max_unauthenticated_per_source: server.max_unauthenticated_per_source.max(1),
            login_timeout: server.login_timeout,
            counts: Arc::new(Mutex::new(counts)),
            bans: Bans::new(security),
            banned: metrics.banned_connections.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        crate::base::lock(&self.counts)
    }

    /// Admits a new connection from `peer`, not logged in yet. A banned
    /// source is refused; so is a source that already has
    /// `max_unauthenticated_per_source` such connections (which counts as a
    /// failed login toward its ban). When the whole gateway has
    /// `max_unauthenticated` of them, the oldest is closed to make room: a
    /// flood cannot keep a real client from getting to its login.
    pub fn connection(&self, peer: IpAddr, protocol: &'static str) -> Result<PreLogin, LimitError> {
        if let Some(left) = self.bans.banned(peer) {
            self.banned.inc();
            return Err(LimitError::Banned(left));
        }
        let source = Source::from(peer);
        let mut c = self.lock();
        let pending = &mut c.unauthenticated;
        let from_source = pending.per_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.max_unauthenticated_per_source {
            drop(c);
            self.bans.failed(peer);
            return Err(LimitError::SourceBusy(from_source));
        }
        while pending.by_id.len() >= self.max_unauthenticated {
            let Some((&oldest, (_, token))) = pending.by_id.iter().next() else {
                break;
            };
            token.cancel();
            pending.remove(oldest);
        }
        let id = pending.next_id;
        pending.next_id += 1;
        let evicted = CancellationToken::new();
        pending.by_id.insert(id, (source, evicted.clone()));
        *pending.per_source.entry(source).or_default() += 1;
        pending.gauge.inc();
        Ok(PreLogin {
            counts: self.counts.clone(),
            id,
            peer,
            protocol,
            evicted,
            logged_in: CancellationToken::new(),
            deadline: self.login_timeout,
        })
    }

    /// A connection closed before it logged in counts as a failed login
    /// of its source: a source that keeps doing it is banned. True when
    /// this one banned it.
    pub fn closed_before_login(&self, peer: IpAddr, reason: NotLoggedIn) -> bool {
        reason == NotLoggedIn::Deadline && self.login_failed(peer)
    }

    /// A session slot for `user`, within the server's and the user's limits.
    fn session(
        &self,
        protocol: &'static str,
        user: &str,
        max: usize,
    ) -> Result<SessionSlot, LimitError> {
        let mut c = self.lock();
        if c.sessions >= self.max_sessions {
            return Err(LimitError::Server(self.max_sessions));
        }
        let elsewhere = c.elsewhere.get(user).copied().unwrap_or(0);
        let n = c.per_user.entry(user.to_string()).or_default();
        if *n + elsewhere >= max {
            return Err(LimitError::User(user.to_string(), max));
        }
        *n += 1;
        c.sessions += 1;
        c.gauges.get_or_create(&ProtocolLabel { protocol }).inc();
        c.tell(user);
        Ok(SessionSlot {
            counts: self.counts.clone(),
            protocol,
            user: user.to_string(),
        })
    }

    /// A logged-in user's connection becomes a session: it takes a slot
    /// within the server's and the user's limits and leaves the connections
    /// not logged in.
    /// The failure table, which the console lists and lifts bans in.
    pub fn bans(&self) -> &Bans {
        &self.bans
    }

    /// From now on, sends the name of each user whose sessions here
    /// change to `to`, for the fleet's count.
    pub fn share_with(&self, to: tokio::sync::mpsc::Sender<String>) {
        self.lock().shared = Some(to);
    }

    /// Whether a change was not taken since [`SessionLimits::take_missed`].
    pub fn missed(&self) -> bool {
        self.lock().missed
    }

    /// Whether a change was not taken, and forgets it: the caller writes
    /// every count.
    pub fn take_missed(&self) -> bool {
        std::mem::take(&mut self.lock().missed)
    }

    /// The sessions `user` has at this node now.
    pub fn sessions_of(&self, user: &str) -> usize {
        self.lock().per_user.get(user).copied().unwrap_or(0)
    }

    /// The users with sessions at this node, and how many each.
    pub fn sessions_by_user(&self) -> Vec<(String, usize)> {
        let c = self.lock();
        c.per_user.iter().map(|(u, n)| (u.clone(), *n)).collect()
    }

    /// What the fleet's other nodes hold: replaces the whole view (`all`)
    /// or one user's count.
    pub fn set_elsewhere(&self, counts: impl IntoIterator<Item = (String, usize)>, all: bool) {
        let mut c = self.lock();
        if all {
            c.elsewhere.clear();
        }
        for (user, n) in counts {
            match n {
                0 => c.elsewhere.remove(&user),
                n => c.elsewhere.insert(user, n),
            };
        }
    }

    pub fn log_in(&self, admitted: &mut Admitted, user: &UserConfig) -> Result<(), LimitError> {
        let Some((peer, protocol)) = admitted.peer_and_protocol() else {
            return Err(LimitError::LoggedIn);
        };
        self.bans.succeeded(peer);
        let slot = self.session(protocol, &user.name, user.max_sessions)?;
        if let Admitted::Pending(p) = std::mem::replace(admitted, Admitted::Moving) {
            p.logged_in.cancel();
        }
        *admitted = Admitted::LoggedIn(slot);
        Ok(())
    }

    /// A failed login counts toward the ban of its source. True when
    /// this one banned it.
    pub fn login_failed(&self, peer: IpAddr) -> bool {
        let banned = self.bans.failed(peer);
        if banned {
            tracing::warn!(source = %peer, for_secs = self.bans.ban_time().as_secs(), "source banned after repeated failed logins");
        }
        banned
    }
}

impl PreLogin {
    pub fn watch(&self) -> LoginWatch {
        LoginWatch {
            evicted: self.evicted.clone(),
            logged_in: self.logged_in.clone(),
            deadline: self.deadline,
        }
    }

    pub fn peer(&self) -> IpAddr {
        self.peer
    }
}

impl Drop for PreLogin {
    fn drop(&mut self) {
        crate::base::lock(&self.counts)
            .unauthenticated
            .remove(self.id);
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut c = crate::base::lock(&self.counts);
        c.gauges
            .get_or_create(&ProtocolLabel {
                protocol: self.protocol,
            })
            .dec();
        c.sessions -= 1;
        if let Some(n) = c.per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                c.per_user.remove(&self.user);
            }
        }
        c.tell(&self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(sessions: usize, unauthenticated: usize, per_source: usize) -> SessionLimits {
        let security = SecurityConfig {
            ban_threshold: 3,
            ban_window: Duration::from_secs(300),
            ban_time: Duration::from_secs(900),
        };
        let server = ServerConfig {
            keys_dir: "keys".into(),
            state_dir: "state".into(),
            idle_timeout: Duration::from_secs(600),
            max_sessions: sessions,
            shutdown_grace: Duration::from_secs(30),
            shutdown_drain: Duration::ZERO,
            login_timeout: Duration::from_secs(30),
            max_unauthenticated: unauthenticated,
            max_unauthenticated_per_source: per_source,
            memory_budget: 1 << 30,
            bandwidth: Default::default(),
            quota_scan: Duration::from_secs(3600),
        };
        SessionLimits::new(&server, &security, &Metrics::new())
    }

    #[test]
    fn sessions_are_counted_and_given_back() {
        let limits = limits(2, 10, 10);
        let a = limits.session("sftp", "ann", 1).unwrap();
        assert!(matches!(
            limits.session("sftp", "ann", 1),
            Err(LimitError::User(..))
        ));
        let _b = limits.session("sftp", "bob", 1).unwrap();
        assert_eq!(
            limits.session("sftp", "cid", 1).unwrap_err(),
            LimitError::Server(2)
        );
        drop(a);
        limits.session("sftp", "ann", 1).unwrap();
    }

    /// The fleet's sessions count toward a user's max_sessions; a change
    /// the fleet's channel cannot take is marked, so that every count is
    /// written again rather than one left stale.
    #[test]
    fn sessions_elsewhere_count_and_a_missed_change_is_marked() {
        let limits = limits(10, 10, 10);
        limits.set_elsewhere([("ann".to_string(), 1)], true);
        assert!(matches!(
            limits.session("sftp", "ann", 1),
            Err(LimitError::User(..))
        ));
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        limits.share_with(tx);
        let b = limits.session("sftp", "bob", 2).unwrap();
        assert!(!limits.missed());
        drop(b);
        assert!(
            limits.take_missed(),
            "the second change found the channel full"
        );
        assert!(!limits.missed());
        assert_eq!(rx.try_recv().unwrap(), "bob");
        assert_eq!(limits.sessions_of("bob"), 0);
    }

    #[test]
    fn a_busy_source_is_refused_and_banned_others_are_not() {
        let limits = limits(10, 100, 2);
        let attacker: IpAddr = "192.0.2.9".parse().unwrap();
        let held: Vec<_> = (0..2)
            .map(|_| limits.connection(attacker, "sftp").unwrap())
            .collect();
        for _ in 0..3 {
            assert_eq!(
                limits.connection(attacker, "sftp").unwrap_err(),
                LimitError::SourceBusy(2)
            );
        }
        assert!(matches!(
            limits.connection(attacker, "sftp"),
            Err(LimitError::Banned(_))
        ));
        limits
            .connection("192.0.2.10".parse().unwrap(), "sftp")
            .unwrap();
        drop(held);
    }

    #[test]
    fn the_oldest_unauthenticated_connection_makes_room() {
        let limits = limits(10, 3, 10);
        let ip = |i: u8| IpAddr::from([192, 0, 2, i]);
        let first = limits.connection(ip(1), "sftp").unwrap();
        let second = limits.connection(ip(2), "sftp").unwrap();
        let _third = limits.connection(ip(3), "sftp").unwrap();
        assert!(!first.evicted.is_cancelled());
        let _fourth = limits.connection(ip(4), "sftp").unwrap();
        assert!(first.evicted.is_cancelled());
        assert!(!second.evicted.is_cancelled());
        drop(first); // already counted out: nothing counted twice
        assert_eq!(limits.lock().unauthenticated.by_id.len(), 3);
        drop(second);
        assert_eq!(limits.lock().unauthenticated.by_id.len(), 2);
    }
}
