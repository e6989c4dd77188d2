//! Quota usage: what each quota target — a user's home, a mount's target,
//! each a remote and a prefix — holds, and what it may hold.
//!
//! Usage is listed once (in the background: until it is known, uploads go
//! on), then kept by what the gateway commits: an upload's end counts its
//! size minus what it replaced, a delete gives back, a rename between
//! targets moves, a sync run's writes count. Other S3 writers exist, so
//! every target is listed again each `quota_scan`. The counts survive a
//! restart in `state_dir/quota-usage.json`, or live in the cluster
//! database, where every node's commits add to one total.
//!
//! Uploads on this node reserve what they grow by, so that concurrent
//! uploads into one target stop at its quota together; what other nodes
//! have in flight is seen only once committed (README "Quotas and limits").

mod kept;
mod names;

use crate::cluster::Cluster;
use crate::cluster::quotas::Usage;
use crate::config::units::format_amount;
use crate::config::{Location, Quota};
use crate::metrics::Metrics;
use crate::vfs::Storage;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the usage file is written when something changed: what a
/// node killed outright loses (the next listing restores it).
const SAVE_EVERY: Duration = Duration::from_secs(2);

/// Why a target is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Its usage is not known here yet.
    First,
    /// Now: a folder moved in or out of it, its names outgrew their room,
    /// or an upload's replaced size could not be known.
    Now,
    /// Its last listing is `quota_scan` old.
    Due,
}

/// Every quota target this gateway has met, and how usage is kept.
#[derive(Debug)]
pub struct Quotas {
    targets: Mutex<BTreeMap<(String, String), Arc<Target>>>,
    storage: Storage,
    kept: kept::Kept,
    scan_every: Duration,
    metrics: Arc<Metrics>,
}

/// One remote and prefix whose usage is counted.
#[derive(Debug)]
pub struct Target {
    pub place: Location,
    state: Mutex<State>,
    /// What uploads open on this node may still add, reserved as they grow.
    reserved: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    limit: Quota,
    /// `None` until listed (or read back from what was kept).
    used: Option<Usage>,
    scanning: bool,
    scanned: Option<SystemTime>,
    /// Shown in the metrics: a target of the config file, never one of a
    /// user a hook or the directory made up.
    exported: bool,
    /// Changes counted here, so that a listing that ran while one was
    /// made (and may or may not have seen it) is not taken as the truth.
    changes: u64,
    /// Listings set aside in a row for that; past a few, one is taken.
    set_aside: u8,
    /// The names it holds, once listed here (one node only: in a fleet
    /// the other nodes' uploads are not seen here, so every upload asks).
    names: Option<names::Names>,
    /// Names committed while a listing runs, for the filter it builds;
    /// `None` past [`names::MOST_NAMES`] (the filter is not built).
    /// A count read back from disk has no names until the next listing.
    committed: Option<Vec<u64>>,
    /// Folders renamed inside the target since its names were built: what
    /// is under them is not named, so uploads there ask. At most
    /// [`names::MOST_MOVED`]; past that the names go until the next listing.
    moved: Vec<String>,
    /// Folders moved in so far: names built by a listing that ran while
    /// one moved may have missed it, and are not taken.
    moves: u64,
}

/// What `/api/v1/usage` and the console show of a target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shown {
    pub target: String,
    pub used_bytes: Option<i64>,
    pub used_files: Option<i64>,
    pub quota_bytes: Option<u64>,
    pub quota_files: Option<u64>,
    pub scanned: Option<chrono::DateTime<chrono::Utc>>,
}

impl Target {
    /// The name it is kept and shown under: `remote:/prefix`.
    pub fn name(&self) -> String {
        self.place.to_string()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::base::lock(&self.state)
    }

    pub fn limit(&self) -> Quota {
        self.state().limit
    }

    /// The usage as last known here.
    pub fn used(&self) -> Option<Usage> {
        self.state().used
    }

    /// Reserves `more` bytes for an upload growing into this target;
    /// refused with the client's message when the quota would be passed.
    pub fn reserve(&self, more: u64) -> Result<(), String> {
        let state = self.state();
        let reserved = self.reserved.fetch_add(more, Ordering::SeqCst) + more;
        if let (Some(limit), Some(used)) = (state.limit.bytes, state.used) {
            let total = (used.bytes.max(0) as u64).saturating_add(reserved);
            if total > limit {
                self.reserved.fetch_sub(more, Ordering::SeqCst);
                return Err(exceeded(used.bytes.max(0) as u64, limit));
            }
        }
        Ok(())
    }

    pub fn release(&self, n: u64) {
        self.reserved.fetch_sub(n, Ordering::SeqCst);
    }

    /// Refuses a new upload (`new_file`: not replacing one) into a target
    /// already full, before any byte moves.
    pub fn admits(&self, new_file: bool, size: Option<u64>) -> Result<(), String> {
        let state = self.state();
        let Some(used) = state.used else {
            return Ok(());
        };
        if let Some(files) = state.limit.files
            && new_file
            && used.files.max(0) as u64 >= files
        {
            return Err(format!("quota exceeded: {} of {files} files", used.files));
        }
        if let Some(limit) = state.limit.bytes {
            let held = (used.bytes.max(0) as u64)
                .saturating_add(self.reserved.load(Ordering::SeqCst))
                .saturating_add(size.unwrap_or(0));
            let full = used.bytes.max(0) as u64 >= limit;
            if full || held > limit {
                return Err(exceeded(used.bytes.max(0) as u64, limit));
            }
        }
        Ok(())
    }

    /// Whether a new byte or a new file would pass the quota: only what
    /// an upload replaces can let it through.
    pub fn full(&self) -> bool {
        let state = self.state();
        let Some(used) = state.used else {
            return false;
        };
        let held = (used.bytes.max(0) as u64).saturating_add(self.reserved.load(Ordering::SeqCst));
        state.limit.bytes.is_some_and(|limit| held >= limit)
            || state
                .limit
                .files
                .is_some_and(|files| used.files.max(0) as u64 >= files)
    }

    /// What is left to write, for `statvfs`: (quota, free).
    pub fn space(&self) -> Option<(u64, u64)> {
        let state = self.state();
        let limit = state.limit.bytes?;
        let used = state.used.map_or(0, |u| u.bytes.max(0) as u64);
        Some((limit, limit.saturating_sub(used)))
    }

    fn shown(&self) -> Shown {
        let state = self.state();
        Shown {
            target: self.name(),
            used_bytes: state.used.map(|u| u.bytes),
            used_files: state.used.map(|u| u.files),
            quota_bytes: state.limit.bytes,
            quota_files: state.limit.files,
            scanned: state.scanned.map(chrono::DateTime::from),
        }
    }
}

fn exceeded(used: u64, limit: u64) -> String {
    format!(
        "quota exceeded: {} of {} used",
        format_amount(used),
        format_amount(limit)
    )
}

impl Quotas {
    /// The gateway's quotas: usage kept in `cluster` when there is one,
    /// else under `state_dir`; each target listed again every `scan_every`.
    pub fn new(
        storage: Storage,
        cluster: Option<Cluster>,
        state_dir: &Path,
        scan_every: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Quotas> {
        let kept = kept::Kept::new(cluster, state_dir);
        let quotas = Arc::new(Quotas {
            targets: Mutex::default(),
            storage,
            kept,
            scan_every,
            metrics,
        });
        quotas.kept.load(&quotas);
        quotas
    }

    /// Quotas that count nothing (what runs without a gateway: the fuzz
    /// target, tests of one layer).
    pub fn none() -> Arc<Quotas> {
        Arc::new(Quotas {
            targets: Mutex::default(),
            storage: Storage::default(),
            kept: kept::Kept::new(None, Path::new("")),
            scan_every: Duration::from_secs(3600),
            metrics: Arc::new(Metrics::default()),
        })
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Arc<Target>>> {
        crate::base::lock(&self.targets)
    }

    /// Starts counting `place` with `limit` (a later call sets the limit
    /// again: a reloaded config); its usage is listed in the background
    /// when it is not known. `exported`: a target of the config file, in
    /// the metrics.
    pub fn track(self: &Arc<Self>, place: &Location, limit: Quota, exported: bool) -> Arc<Target> {
        let target = {
            let mut targets = self.targets();
            targets
                .entry((place.remote.clone(), place.prefix.clone()))
                .or_insert_with(|| {
                    Arc::new(Target {
                        place: place.clone(),
                        state: Mutex::default(),
                        reserved: AtomicU64::new(0),
                    })
                })
                .clone()
        };
        let scan = {
            let mut state = target.state();
            state.limit = limit;
            state.exported |= exported;
            let due = state.used.is_none() && !state.scanning;
            state.scanning |= due;
            due
        };
        self.export(&target);
        if scan {
            let (quotas, target) = (self.clone(), target.clone());
            tokio::spawn(async move { quotas.scan(&target, Why::First).await });
        }
        target
    }

    /// The object layer of `remote`, to ask what a key holds now.
    pub fn layer(&self, remote: &str) -> Option<Arc<crate::vfs::objects::ObjectLayer>> {
        self.storage.layer(remote).cloned()
    }

    /// Counts `user`'s home and mounts that have a quota.
    pub fn track_user(self: &Arc<Self>, user: &crate::config::UserConfig, exported: bool) {
        if user.limits.quota.is_set() {
            self.track(&user.home, user.limits.quota, exported);
        }
        for m in user.mounts.iter().filter(|m| m.quota.is_set()) {
            self.track(&m.target, m.quota, exported);
        }
    }

    /// Every target `key` of `remote` counts toward, outermost first.
    pub fn covering(&self, remote: &str, key: &str) -> Vec<Arc<Target>> {
        let targets = self.targets();
        if targets.is_empty() {
            return Vec::new();
        }
        let ends = key.match_indices('/').map(|(i, _)| i).chain([key.len()]);
        let prefixes = std::iter::once("").chain(ends.map(|i| &key[..i]));
        let mut found: Vec<Arc<Target>> = prefixes
            .filter_map(|p| targets.get(&(remote.to_string(), p.to_string())).cloned())
            .collect();
        found.dedup_by(|a, b| Arc::ptr_eq(a, b));
        found
    }

    /// `delta` committed at `key` of `remote`: added to every target that
    /// counts it, before the client is answered.
    pub async fn changed(self: &Arc<Self>, remote: &str, key: &str, delta: Usage) {
        let targets = self.covering(remote, key);
        if delta.files >= 0 {
            self.name_in(&targets, key);
        }
        if delta == Usage::default() {
            return;
        }
        for target in targets {
            let total = self.kept.add(&target, delta).await;
            let mut state = target.state();
            match (total, state.used.as_mut()) {
                (Some(total), _) => {
                    state.used = Some(total);
                }
                (None, Some(used)) => {
                    used.bytes += delta.bytes;
                    used.files += delta.files;
                }
                (None, None) => {}
            }
            state.changes += 1;
            drop(state);
            self.export(&target);
        }
        self.kept.changed();
    }

    /// Reads the fleet's count of `target` (one query, as an upload into
    /// it opens: what other nodes committed counts); nothing on one node.
    pub async fn refresh(&self, target: &Target) {
        if let Some(used) = self.kept.read(target).await {
            let mut state = target.state();
            state.used = Some(used);
        }
    }

    /// Lists `target` again soon (a folder moved in or out of it).
    pub fn rescan(self: &Arc<Self>, target: &Arc<Target>) {
        // What moved in is not named: uploads ask until it is listed.
        let mut state = target.state();
        state.names = None;
        state.moved.clear();
        state.moves += 1;
        drop(state);
        self.relist(target);
    }

    /// Lists `target` again soon, unless a listing runs already.
    fn relist(self: &Arc<Self>, target: &Arc<Target>) {
        let due = {
            let mut state = target.state();
            let due = !state.scanning;
            state.scanning = true;
            due
        };
        if due {
            let (quotas, target) = (self.clone(), target.clone());
            tokio::spawn(async move { quotas.scan(&target, Why::Now).await });
        }
    }

    /// Lists `target` and sets its usage to what is there. In a fleet a
    /// scheduled listing is done by the node that takes the turn.
    async fn scan(&self, target: &Target, why: Why) {
        let name = target.name();
        if why == Why::First
            && let Some(used) = self.kept.read(target).await
        {
            // Another node, or this one before a restart, listed it.
            let mut state = target.state();
            state.used = Some(used);
            state.scanning = false;
            drop(state);
            tracing::info!(target = %name, bytes = used.bytes, files = used.files, "quota usage read from the cluster database");
            return;
        }
        if why == Why::Due && !self.kept.take_scan(&name, self.scan_every).await {
            target.state().scanning = false;
            return;
        }
        let started = Instant::now();
        let (seen, moves) = {
            let mut state = target.state();
            state.committed = self.kept.alone().then(Vec::new);
            (state.changes, state.moves)
        };
        let mut hashes = Some(Vec::new());
        let mut each = |key: &str| names::gather(&mut hashes, names::hash(key));
        let listed = match self.storage.layer(&target.place.remote) {
            Some(layer) => layer.usage(&target.place.prefix, &mut each).await,
            None => Err(crate::base::FsError::failed("the remote is not configured")),
        };
        {
            let mut state = target.state();
            let committed = state.committed.take();
            if let (Ok(_), Some(mut hashes), Some(committed)) = (&listed, hashes, committed)
                && state.moves == moves
            {
                hashes.extend(committed);
                state.names = Some(names::Names::new(&hashes));
                state.moved.clear();
            }
        }
        match listed {
            Ok((bytes, files)) => {
                let usage = Usage {
                    bytes: bytes as i64,
                    files: files as i64,
                };
                {
                    let mut state = target.state();
                    if state.changes != seen && state.used.is_some() && state.set_aside < 3 {
                        // The count kept here is as good; the next tick lists again.
                        state.set_aside += 1;
                        state.scanning = false;
                        return;
                    }
                    state.set_aside = 0;
                }
                self.kept.set(&name, usage).await;
                let mut state = target.state();
                state.used = Some(usage);
                state.scanned = Some(SystemTime::now());
                state.scanning = false;
                drop(state);
                tracing::info!(target = %name, bytes, files, took_ms = started.elapsed().as_millis() as u64, "quota usage listed");
                self.export(target);
                self.kept.changed();
            }
            Err(e) => {
                target.state().scanning = false;
                tracing::warn!(target = %name, error = %e, "listing a quota target's usage failed; trying again at the next scan");
            }
        }
    }

    /// Lists every target whose last listing is `quota_scan` old, until
    /// `stop`; and keeps the counts on disk (one node).
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let tick = (self.scan_every / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let saving = async {
            let mut every = tokio::time::interval(SAVE_EVERY);
            loop {
                every.tick().await;
                self.kept.save(&self).await;
            }
        };
        let scanning = async {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let due: Vec<Arc<Target>> = self
                    .targets()
                    .values()
                    .filter(|t| {
                        let mut state = t.state();
                        let old = state
                            .scanned
                            .is_none_or(|at| at.elapsed().unwrap_or_default() >= self.scan_every);
                        // A target read back from disk that no user has
                        // claimed since the start has nothing to enforce.
                        let due = old && !state.scanning && state.limit.is_set();
                        state.scanning |= due;
                        due
                    })
                    .cloned()
                    .collect();
                for target in due {
                    self.scan(&target, Why::Due).await;
                }
            }
        };
        tokio::select! {
            () = saving => {}
            () = scanning => {}
            () = stop => self.kept.save(&self).await,
        }
    }

    /// Every target, for the API and the console.
    pub fn shown(&self) -> Vec<Shown> {
        self.targets().values().map(|t| t.shown()).collect()
    }

    fn export(&self, target: &Target) {
        let state = target.state();
        if !state.exported {
            return;
        }
        let label = crate::metrics::TargetLabel {
            target: target.name(),
        };
        if let Some(used) = state.used {
            self.metrics
                .quota_used_bytes
                .get_or_create(&label)
                .set(used.bytes);
            self.metrics
                .quota_used_files
                .get_or_create(&label)
                .set(used.files);
        }
        if let Some(limit) = state.limit.bytes {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            self.metrics
                .quota_limit_bytes
                .get_or_create(&label)
                .set(limit);
        }
    }

    /// The targets as they are now, for what is kept on disk.
    fn all(&self) -> Vec<Arc<Target>> {
        self.targets().values().cloned().collect()
    }

    /// A target read back from disk at start: known, and listed again when
    /// its last listing is `quota_scan` old.
    fn restore(&self, place: Location, used: Usage, scanned: SystemTime) {
        let target = Arc::new(Target {
            place: place.clone(),
            state: Mutex::new(State {
                used: Some(used),
                scanned: Some(scanned),
                ..State::default()
            }),
            reserved: AtomicU64::new(0),
        });
        self.targets().insert((place.remote, place.prefix), target);
    }
}
