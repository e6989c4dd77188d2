//! Login protection (`[security]`): failed logins are counted per source,
//! across SFTP and FTP; a source with `ban_threshold` failures within
//! `ban_window` is refused at accept for `ban_time`.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host or one customer
//! network: a host can pick any address of its /64). The table holds at
//! most [`MAX_SOURCES`] sources: past that, the one that failed longest
//! ago makes room, so an attacker spraying addresses cannot grow memory.
//!
//! A password check takes a [`Turn`] of its source first: at most
//! [`CHECKS_PER_SOURCE`] at once, and never more in flight than the
//! failures the source has left before its ban. A burst of guesses
//! released together is then checked at most `ban_threshold` times, not
//! once each, and cannot hold more than two of the password checker
//! threads every other login shares.

use crate::config::SecurityConfig;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sources the table keeps at most.
pub const MAX_SOURCES: usize = 65_536;

/// Password checks of one source in flight at once.
pub const CHECKS_PER_SOURCE: usize = 2;

/// Logins of one source waiting for a turn; past that they are refused at
/// once, so a burst from one source queues no further. (An office behind
/// one address logging in at nine: the session listeners already hold at
/// most `max_unauthenticated_per_source`, 16, connections of a source.)
pub const WAITING_PER_SOURCE: usize = 32;

/// An IPv4 address, or the /64 an IPv6 address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(u32),
    V6Net(u64),
}

impl std::fmt::Display for Source {
    /// `192.0.2.7`, or `2001:db8:1:2::/64`: what the console shows and
    /// what lifting a ban names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4(v4) => write!(f, "{}", std::net::Ipv4Addr::from(*v4)),
            Source::V6Net(net) => {
                write!(f, "{}/64", std::net::Ipv6Addr::from((*net as u128) << 64))
            }
        }
    }
}

impl std::str::FromStr for Source {
    type Err = String;
    /// What `Display` writes; an IPv6 address also names its /64.
    fn from_str(text: &str) -> Result<Self, String> {
        let ip = text.strip_suffix("/64").unwrap_or(text);
        ip.parse::<IpAddr>()
            .map(Source::from)
            .map_err(|_| format!("{text:?} is not an IPv4 address or an IPv6 /64"))
    }
}

/// A source banned now, as the console lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Banned {
    pub source: String,
    pub seconds_left: u64,
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.into()),
                None => Source::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    /// Failures within the window, oldest first; never more than the threshold.
    failures: VecDeque<Instant>,
    banned_until: Option<Instant>,
    /// Password checks in flight ([`Turn`]s held).
    checking: usize,
    /// Logins waiting for a turn.
    waiting: usize,
    /// Whether a connection refused during the current ban was logged.
    refusal_logged: bool,
}

impl Record {
    fn last_seen(&self) -> Option<Instant> {
        self.failures.back().copied().max(self.banned_until)
    }

    fn forget_old(&mut self, now: Instant, window: Duration) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
    }

    /// Whether the record says anything a later login needs.
    fn matters(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|t| t > now)
            || !self.failures.is_empty()
            || self.checking > 0
            || self.waiting > 0
    }
}

/// Why a login got no turn to check its password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoTurn {
    #[error("the source is banned for {}s more", .0.as_secs().max(1))]
    Banned(Duration),
    #[error("too many logins from this source at once")]
    Busy,
}

/// A password check of one source in flight: held until the check's
/// failure, if it failed, has been counted ([`Bans::failed`]); dropping it
/// lets the next login of the source take its turn.
#[derive(Debug)]
#[must_use = "the turn ends when it is dropped"]
pub struct Turn {
    bans: Bans,
    source: Source,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut table = crate::base::lock(&self.bans.table);
        if let Some(r) = table.get_mut(&self.source) {
            r.checking = r.checking.saturating_sub(1);
            if !r.matters(Instant::now()) {
                table.remove(&self.source);
            }
        }
        drop(table);
        self.bans.turns.notify_waiters();
    }
}

/// The shared failure table.
#[derive(Debug, Clone)]
pub struct Bans {
    threshold: usize,
    window: Duration,
    ban_time: Duration,
    table: Arc<Mutex<HashMap<Source, Record>>>,
    /// Told whenever a turn ends.
    turns: Arc<tokio::sync::Notify>,
    /// Where this node's failures, successes and lifts go to be shared
    /// with the fleet (`[cluster]`); unset on a gateway of its own.
    shared: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<BanChange>>>,
}

/// What this node saw happen to a source, for the fleet's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanChange {
    Failed(Source),
    Succeeded(Source),
    Lifted(Source),
}

impl Bans {
    pub fn new(config: &SecurityConfig) -> Self {
        Bans {
            threshold: config.ban_threshold.max(1) as usize,
            window: config.ban_window,
            ban_time: config.ban_time,
            table: Arc::default(),
            turns: Arc::default(),
            shared: Arc::default(),
        }
    }

    /// From now on, tells `to` of every failure, success and lift. Never
    /// waits: with the channel full, the fleet misses the change and this
    /// node's own table still holds it.
    pub fn share_with(&self, to: tokio::sync::mpsc::Sender<BanChange>) {
        let _ = self.shared.set(to);
    }

    fn tell(&self, change: BanChange) {
        if let Some(to) = self.shared.get() {
            let _ = to.try_send(change);
        }
    }

    /// A ban decided by another node of the fleet: `source` is refused for
    /// `left` from now (a longer ban it has already stays).
    pub fn impose(&self, source: Source, left: Duration) {
        let now = Instant::now();
        let mut table = crate::base::lock(&self.table);
        let record = self.record(&mut table, source, now);
        let until = now + left;
        if record.banned_until.is_none_or(|t| t < until) {
            record.banned_until = Some(until);
            record.refusal_logged = false;
        }
    }

    /// The threshold, window and ban time, for the fleet's table.
    pub fn rules(&self) -> (usize, Duration, Duration) {
        (self.threshold, self.window, self.ban_time)
    }

    /// The record of `source`, made if new (room made first, within
    /// [`MAX_SOURCES`]), its failures past the window forgotten.
    fn record<'t>(
        &self,
        table: &'t mut HashMap<Source, Record>,
        source: Source,
        now: Instant,
    ) -> &'t mut Record {
        if !table.contains_key(&source) && table.len() >= MAX_SOURCES {
            make_room(table, now);
        }
        let record = table.entry(source).or_default();
        record.forget_old(now, self.window);
        record
    }

    /// Waits for the turn of `ip` to check a password: one of
    /// [`CHECKS_PER_SOURCE`], and only while the checks in flight, all
    /// failing, would not pass the source's ban threshold.
    pub async fn turn(&self, ip: IpAddr) -> Result<Turn, NoTurn> {
        let source = Source::from(ip);
        let mut queued = false;
        let result = loop {
            let notified = self.turns.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let now = Instant::now();
                let mut table = crate::base::lock(&self.table);
                let r = self.record(&mut table, source, now);
                if let Some(until) = r.banned_until.filter(|t| *t > now) {
                    break Err(NoTurn::Banned(until - now));
                }
                if r.checking < CHECKS_PER_SOURCE && r.failures.len() + r.checking < self.threshold
                {
                    r.checking += 1;
                    break Ok(Turn {
                        bans: self.clone(),
                        source,
                    });
                }
                if !queued {
                    if r.waiting >= WAITING_PER_SOURCE {
                        break Err(NoTurn::Busy);
                    }
                    r.waiting += 1;
                    queued = true;
                }
            }
            notified.await;
        };
        if queued {
            let mut table = crate::base::lock(&self.table);
            if let Some(r) = table.get_mut(&source) {
                r.waiting -= 1;
            }
        }
        result
    }

    /// How much longer `ip` is banned, if it is.
    pub fn banned(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let table = crate::base::lock(&self.table);
        let until = table.get(&Source::from(ip))?.banned_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failed login from `ip`; true when this failure bans it.
    pub fn failed(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let source = Source::from(ip);
        self.tell(BanChange::Failed(source));
        let mut table = crate::base::lock(&self.table);
        let record = self.record(&mut table, source, now);
        record.failures.push_back(now);
        if record.failures.len() >= self.threshold {
            record.failures.clear();
            record.banned_until = Some(now + self.ban_time);
            record.refusal_logged = false;
            return true;
        }
        false
    }

    /// Whether a connection of banned `ip` refused now is the first of its
    /// ban: only that one is logged, so a flood does not fill the log.
    pub fn first_refusal(&self, ip: IpAddr) -> bool {
        let mut table = crate::base::lock(&self.table);
        match table.get_mut(&Source::from(ip)) {
            Some(r) if !r.refusal_logged => {
                r.refusal_logged = true;
                true
            }
            _ => false,
        }
    }

    /// A login from `ip` succeeded: its failures are forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        let now = Instant::now();
        let source = Source::from(ip);
        let mut table = crate::base::lock(&self.table);
        if let Some(r) = table.get_mut(&source)
            && r.banned_until.is_none_or(|t| t <= now)
        {
            if !r.failures.is_empty() {
                self.tell(BanChange::Succeeded(source));
            }
            r.failures.clear();
            r.banned_until = None;
            if !r.matters(now) {
                table.remove(&source);
            }
        }
        drop(table);
        self.turns.notify_waiters();
    }

    pub fn ban_time(&self) -> Duration {
        self.ban_time
    }

    /// The sources banned now, the longest left first.
    pub fn list(&self) -> Vec<Banned> {
        let now = Instant::now();
        let table = crate::base::lock(&self.table);
        let mut banned: Vec<Banned> = table
            .iter()
            .filter_map(|(source, r)| {
                let until = r.banned_until.filter(|t| *t > now)?;
                Some(Banned {
                    source: source.to_string(),
                    seconds_left: (until - now).as_secs().max(1),
                })
            })
            .collect();
        banned.sort_by(|a, b| {
            b.seconds_left
                .cmp(&a.seconds_left)
                .then(a.source.cmp(&b.source))
        });
        banned
    }

    /// Lifts the ban of `source` (and forgets its failures), here and at
    /// every node of the fleet: false if it was not banned here.
    pub fn lift(&self, source: Source) -> bool {
        self.tell(BanChange::Lifted(source));
        self.lift_here(source)
    }

    /// Lifts the ban of `source` on this node only: another node lifted it.
    pub fn lift_here(&self, source: Source) -> bool {
        let now = Instant::now();
        let mut table = crate::base::lock(&self.table);
        let banned = table
            .get(&source)
            .and_then(|r| r.banned_until)
            .is_some_and(|t| t > now);
        if banned && let Some(r) = table.get_mut(&source) {
            r.failures.clear();
            r.banned_until = None;
            if !r.matters(now) {
                table.remove(&source);
            }
        }
        banned
    }
}

/// Drops the records that no longer matter; if that is not enough, the
/// eighth of the table seen longest ago (in one sweep, so a flood of new
/// sources costs one sweep per eight thousand, not one per failure).
fn make_room(table: &mut HashMap<Source, Record>, now: Instant) {
    table.retain(|_, r| r.matters(now));
    if table.len() >= MAX_SOURCES {
        let mut seen: Vec<Option<Instant>> = table.values().map(Record::last_seen).collect();
        let cut = seen.len() / 8;
        let (_, oldest_kept, _) = seen.select_nth_unstable(cut);
        let cutoff = *oldest_kept;
        table.retain(|_, r| r.last_seen() > cutoff || r.checking > 0 || r.waiting > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bans(threshold: u32) -> Bans {
        Bans::new(&SecurityConfig {
            ban_threshold: threshold,
            ban_window: Duration::from_secs(300),
            ban_time: Duration::from_secs(900),
        })
    }

    #[test]
    fn the_threshold_bans_and_success_forgets() {
        let b = bans(3);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(!b.failed(ip));
        assert!(!b.failed(ip));
        b.succeeded(ip);
        assert!(!b.failed(ip));
        assert!(!b.failed(ip));
        assert!(b.banned(ip).is_none());
        assert!(b.failed(ip));
        let left = b.banned(ip).unwrap();
        assert!(left > Duration::from_secs(890), "{left:?}");
        // A success from a banned source does not lift the ban.
        b.succeeded(ip);
        assert!(b.banned(ip).is_some());
        assert!(b.banned("192.0.2.8".parse().unwrap()).is_none());
    }

    #[test]
    fn an_ipv6_host_is_its_64() {
        let b = bans(2);
        b.failed("2001:db8:1:2::1".parse().unwrap());
        b.failed("2001:db8:1:2:ffff::9".parse().unwrap());
        assert!(b.banned("2001:db8:1:2::77".parse().unwrap()).is_some());
        assert!(b.banned("2001:db8:1:3::1".parse().unwrap()).is_none());
        // An IPv4-mapped address is its IPv4 address.
        b.failed("::ffff:192.0.2.1".parse().unwrap());
        b.failed("192.0.2.1".parse().unwrap());
        assert!(b.banned("192.0.2.1".parse().unwrap()).is_some());
    }

    #[test]
    fn a_ban_is_listed_by_its_source_and_lifted() {
        let b = bans(1);
        b.failed("192.0.2.9".parse().unwrap());
        b.failed("2001:db8:1:2::1".parse().unwrap());
        let listed: Vec<String> = b.list().into_iter().map(|x| x.source).collect();
        assert_eq!(listed, ["192.0.2.9", "2001:db8:1:2::/64"]);
        assert!(b.lift("2001:db8:1:2::/64".parse().unwrap()));
        assert!(b.banned("2001:db8:1:2::5".parse().unwrap()).is_none());
        assert!(!b.lift("2001:db8:1:2::/64".parse().unwrap()));
        assert!("nonsense".parse::<Source>().is_err());
    }

    #[test]
    fn spraying_addresses_cannot_grow_the_table() {
        let b = bans(5);
        for i in 0..(MAX_SOURCES as u32 + 1000) {
            b.failed(IpAddr::V4((0x0a00_0000 + i).into()));
        }
        assert!(crate::base::lock(&b.table).len() <= MAX_SOURCES);
    }

    /// 300 guesses released together: at most the threshold are checked
    /// before the source is banned, at most two at once, and the rest are
    /// refused without a check.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_burst_of_guesses_is_checked_at_most_threshold_times() {
        let b = bans(5);
        let ip: IpAddr = "192.0.2.50".parse().unwrap();
        let checked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let at_once = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut guesses = tokio::task::JoinSet::new();
        for _ in 0..300 {
            let (b, checked, at_once, most) =
                (b.clone(), checked.clone(), at_once.clone(), most.clone());
            guesses.spawn(async move {
                use std::sync::atomic::Ordering::SeqCst;
                let turn = b.turn(ip).await?;
                checked.fetch_add(1, SeqCst);
                let now = at_once.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                at_once.fetch_sub(1, SeqCst);
                b.failed(ip);
                drop(turn);
                Ok::<(), NoTurn>(())
            });
        }
        let mut refused = 0;
        while let Some(r) = guesses.join_next().await {
            if r.unwrap().is_err() {
                refused += 1;
            }
        }
        use std::sync::atomic::Ordering::SeqCst;
        assert_eq!(checked.load(SeqCst), 5, "checked");
        assert_eq!(refused, 295);
        assert!(most.load(SeqCst) <= CHECKS_PER_SOURCE);
        assert!(b.banned(ip).is_some());
        // Another source is not held up.
        let other = b.turn("192.0.2.51".parse().unwrap()).await;
        assert!(other.is_ok());
    }

    /// Past the checks in flight and the waiting room, a login is refused
    /// at once; a success frees the source's turns.
    #[tokio::test]
    async fn waiting_is_bounded_per_source() {
        let b = bans(100);
        let ip: IpAddr = "192.0.2.60".parse().unwrap();
        let first = b.turn(ip).await.unwrap();
        let second = b.turn(ip).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..WAITING_PER_SOURCE {
            let b = b.clone();
            waiting.push(tokio::spawn(async move { b.turn(ip).await.map(drop) }));
        }
        while crate::base::lock(&b.table)[&Source::from(ip)].waiting < WAITING_PER_SOURCE {
            tokio::task::yield_now().await;
        }
        assert_eq!(b.turn(ip).await.unwrap_err(), NoTurn::Busy);
        b.succeeded(ip);
        drop((first, second));
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert!(
            crate::base::lock(&b.table).get(&Source::from(ip)).is_none(),
            "nothing left to remember"
        );
    }
}
