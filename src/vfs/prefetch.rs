//! Listing-driven prefetch of small files.
//!
//! `sftp get -r`, FileZilla, WinSCP and `lftp mirror` list a folder, then
//! fetch its files one after another: open, read, close. Each open would
//! wait one S3 first byte (15–40 ms), in series, so a folder of small
//! files downloads at a few dozen files a second whatever the bandwidth.
//! The session has just listed the folder, so the gateway knows what the
//! client will ask for next: after an open of a listed file, the next
//! small files of that listing are fetched, several at once, and an open
//! of one of them is answered from memory.
//!
//! How far ahead grows like the read-ahead of a download, for each listing
//! on its own: two files after the first open, doubled at each open the
//! prefetch had ready, back to two at an open out of the listing's order.
//! A session walking a tree keeps its pace from folder to folder: the
//! first files of the next folder it lists are fetched as they are
//! listed, so `get -r` does not wait for each folder's first file. The
//! pace carries over only from a folder the client walked through (it
//! opened at least half of what was fetched ahead there): one that lists
//! and opens little starts each folder at two. A client that lists a
//! thousand files and fetches one costs two GETs more.
//!
//! One prefetch serves all of a user's sessions on a gateway
//! (`Storage::prefetch_of`): FileZilla browses on one connection and
//! transfers on two others, `lftp mirror --parallel` likewise, so the
//! listing one session made is what the opens of another follow.
//!
//! Bounds, per user on a gateway: files of at most [`MAX_FILE`], at most
//! [`MAX_AHEAD`] fetched or in flight (16 MiB), at most [`MAX_DEBT`]
//! fetched that its opens have not paid for (so its GETs stay within
//! twice its opens plus that, however it browses), every byte drawn from the
//! read-ahead pool of the gateway's memory budget, never waited for (when
//! it is short, nothing is prefetched); names of recent listings up to
//! [`LISTED_BYTES`]. What the client has gone past in a listing is
//! dropped, and so is all that was fetched ahead in a listing none of the
//! user's last opens were in (their last [`WALKERS`] listings keep theirs:
//! `lftp mirror --parallel` walks several folders at once); everything
//! goes when the user's last session here ends.
//!
//! Never stale beyond the remote's `prefetch_window`, never wrong: a body
//! is fetched by a GET conditional on the ETag the listing showed, served
//! only while that GET is younger than the window, and never once any
//! session of this gateway has written, moved or deleted the file
//! (`watches.rs`). A change through any of the user's sessions drops all
//! their prefetches.

use super::download::Whole;
use super::objects::{ObjectLayer, parent_key};
use super::watches::Watch;
use crate::base::lock;
use prometheus_client::metrics::counter::Counter;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The largest file fetched ahead.
pub const MAX_FILE: u64 = 256 << 10;
/// Files fetched ahead or in flight at once, per user: at S3's 20–40 ms
/// per small GET, enough to keep up with a client on loopback.
pub const MAX_AHEAD: usize = 64;
/// How far ahead after an open the prefetch did not have ready.
const FIRST_DEPTH: usize = 2;
/// Listings walked at once by one user, each keeping its files fetched
/// ahead: `lftp mirror --parallel=2` walks two folders at a time, one per
/// connection, and each open in one must not drop what the other's next
/// open will take.
const WALKERS: usize = 4;
/// Bytes of names kept of recent listings, per user.
pub const LISTED_BYTES: usize = 1 << 20;

/// One user's prefetch on this gateway: the listings their sessions saw
/// and the files fetched ahead.
#[derive(Default)]
pub struct Prefetch(Mutex<State>);

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Oldest first.
    listings: VecDeque<Listing>,
    listed_bytes: usize,
    next_id: u64,
    /// By listing and place in it.
    ahead: HashMap<(u64, usize), Ahead>,
    /// The listings of the last opens, latest first, at most [`WALKERS`]:
    /// only these keep files fetched ahead.
    walked: VecDeque<u64>,
    /// Files fetched ahead that no open has paid for yet: each fetch adds
    /// one, each open of a listed file takes one away, and one more when
    /// it was fetched ahead. At [`MAX_DEBT`] nothing more is fetched.
    debt: usize,
}

/// The most a session fetches ahead beyond what its opens paid for: its
/// prefetch GETs stay within twice its opens plus this, whatever it does
/// (ramp up in one folder, then list others and open little).
pub const MAX_DEBT: usize = MAX_AHEAD;

struct Listing {
    id: u64,
    layer: Arc<ObjectLayer>,
    dir: String,
    /// The small files with an ETag, in the listing's order.
    files: Vec<Listed>,
    bytes: usize,
    /// Where the last open was found: the next one is usually just after.
    cursor: usize,
    /// How many files after an open are fetched ahead.
    depth: usize,
    /// Whether its first files were fetched ahead as it was listed, and
    /// whether the client opened any of its files since.
    started_ahead: bool,
    opened: bool,
    /// Files of it fetched ahead, and of those the ones an open took.
    fetched: usize,
    hits: usize,
}

struct Listed {
    name: String,
    size: u64,
    etag: String,
}

impl Listed {
    fn cost(&self) -> usize {
        self.name.len() + self.etag.len() + std::mem::size_of::<Listed>()
    }
}

/// A file fetched ahead, or being fetched: the task fills the slot, holding
/// its lock until then, so an open that comes early waits for that GET
/// instead of sending its own.
struct Ahead {
    slot: Arc<tokio::sync::Mutex<Option<Ready>>>,
    task: JoinHandle<()>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A body fetched ahead; counted as wasted if it is dropped unserved.
struct Ready {
    whole: Option<Whole>,
    fetched: Instant,
    watch: Watch,
    /// The gateway's `prefetch_wasted_bytes`.
    wasted: Counter,
}

impl Drop for Ready {
    fn drop(&mut self) {
        if let Some(w) = &self.whole {
            self.wasted.inc_by(w.body.len() as u64);
        }
    }
}

/// Records the files of a listing as the client reads it.
pub struct Recorder {
    prefetch: Weak<Prefetch>,
    id: u64,
}

impl Recorder {
    /// A listed entry: a small file with an ETag is remembered.
    pub fn saw(&self, name: &str, is_dir: bool, size: u64, etag: Option<&str>) {
        let (Some(etag), false, true) = (etag, is_dir, size <= MAX_FILE) else {
            return;
        };
        let Some(prefetch) = self.prefetch.upgrade() else {
            return;
        };
        let listed = Listed {
            name: name.to_string(),
            size,
            etag: etag.to_string(),
        };
        let mut s = lock(&prefetch.0);
        let cost = listed.cost();
        // Room from the oldest other listings; this one stops growing
        // when it alone fills the bound.
        while s.listed_bytes + cost > LISTED_BYTES
            && s.listings.front().is_some_and(|l| l.id != self.id)
        {
            s.drop_oldest();
        }
        if s.listed_bytes + cost > LISTED_BYTES {
            return;
        }
        let Some(l) = s.listings.iter_mut().rev().find(|l| l.id == self.id) else {
            return;
        };
        l.files.push(listed);
        l.bytes += cost;
        let (listed, depth) = (l.files.len(), l.depth);
        s.listed_bytes += cost;
        if listed == depth {
            s.start_walk(self.id);
        }
    }
}

impl Drop for Recorder {
    /// The listing ended (or the client stopped reading it) with fewer
    /// small files than the session fetches ahead.
    fn drop(&mut self) {
        if let Some(prefetch) = self.prefetch.upgrade() {
            lock(&prefetch.0).start_walk(self.id);
        }
    }
}

impl State {
    fn drop_oldest(&mut self) {
        self.remove_listing(0);
    }

    /// Forgets the listing at `at`, and what was fetched ahead of it.
    fn remove_listing(&mut self, at: usize) {
        if let Some(l) = self.listings.remove(at) {
            self.listed_bytes -= l.bytes;
            self.ahead.retain(|(id, _), _| *id != l.id);
            self.walked.retain(|id| *id != l.id);
        }
    }

    /// A session that is walking a tree (its last opens were served
    /// ahead) will open the first files of the folder it just listed:
    /// they are fetched as they are listed, not after the first open.
    fn start_walk(&mut self, id: u64) {
        let Some(l) = self.listings.iter_mut().rev().find(|l| l.id == id) else {
            return;
        };
        if l.depth <= FIRST_DEPTH || l.started_ahead || l.opened || l.files.is_empty() {
            return;
        }
        l.started_ahead = true;
        self.fetch_ahead(id, 0);
    }

    /// Fetches the files of listing `id` from place `from` on, as far as
    /// its depth and the bounds allow.
    fn fetch_ahead(&mut self, id: u64, from: usize) {
        let Some(l) = self.listings.iter_mut().rev().find(|l| l.id == id) else {
            return;
        };
        let (layer, window) = (l.layer.clone(), l.layer.remote().prefetch_window());
        let wanted: Vec<(usize, String, u64, String)> = l
            .files
            .iter()
            .enumerate()
            .skip(from)
            .take(l.depth)
            .map(|(i, f)| (i, join(&l.dir, &f.name), f.size, f.etag.clone()))
            .collect();
        let mut started = 0;
        for (i, key, size, etag) in wanted {
            if self.ahead.len() >= MAX_AHEAD || self.debt >= MAX_DEBT {
                break;
            }
            if self.ahead.contains_key(&(id, i)) {
                continue;
            }
            let Some(held) = layer.budget().try_take_ahead(size.max(1) as usize) else {
                break;
            };
            self.ahead
                .insert((id, i), fetch(layer.clone(), key, etag, held, window));
            self.debt += 1;
            started += 1;
        }
        if let Some(l) = self.listings.iter_mut().rev().find(|l| l.id == id) {
            l.fetched += started;
        }
    }
}

/// What an open found.
pub enum Found {
    /// The file is in no listing this session keeps.
    Unlisted,
    /// Listed; fetched ahead if `Some`.
    Listed(Option<Pending>),
}

/// A prefetch taken by an open: ready, or still on its way.
pub struct Pending {
    ahead: Ahead,
    window: Duration,
}

impl Pending {
    /// The body, if it came, is still fresh and nothing changed it since.
    pub async fn body(self) -> Option<Whole> {
        let mut ready = self.ahead.slot.lock().await.take()?;
        if ready.fetched.elapsed() >= self.window || ready.watch.changed() {
            return None;
        }
        ready.whole.take()
    }
}

impl Prefetch {
    /// Starts remembering a listing of folder `dir` on `layer`; `None`
    /// where the remote's `prefetch_window` is zero.
    pub fn listing(self: &Arc<Self>, layer: &Arc<ObjectLayer>, dir: &str) -> Option<Recorder> {
        if layer.remote().prefetch_window().is_zero() {
            return None;
        }
        let mut s = lock(&self.0);
        // The pace carries over to a new folder only from one the client
        // walked through: it opened most of what was fetched ahead there.
        // Otherwise it browses, and opens little of what it lists.
        let browsing = |l: &Listing| l.fetched > 0 && l.hits * 2 < l.fetched;
        let depth = match s.listings.back().is_some_and(browsing) {
            true => FIRST_DEPTH,
            false => s
                .walked
                .front()
                .and_then(|id| s.listings.iter().rev().find(|l| l.id == *id))
                .filter(|l| !browsing(l))
                .map_or(FIRST_DEPTH, |l| l.depth),
        };
        // A new listing of a folder replaces the last one.
        if let Some(at) = s
            .listings
            .iter()
            .position(|l| Arc::ptr_eq(&l.layer, layer) && l.dir == dir)
        {
            s.remove_listing(at);
        }
        let bytes = dir.len() + std::mem::size_of::<Listing>();
        while s.listed_bytes + bytes > LISTED_BYTES && !s.listings.is_empty() {
            s.drop_oldest();
        }
        let id = s.next_id;
        s.next_id += 1;
        s.listings.push_back(Listing {
            id,
            layer: layer.clone(),
            dir: dir.to_string(),
            files: Vec::new(),
            bytes,
            cursor: 0,
            depth,
            started_ahead: false,
            opened: false,
            fetched: 0,
            hits: 0,
        });
        s.listed_bytes += bytes;
        Some(Recorder {
            prefetch: Arc::downgrade(self),
            id,
        })
    }

    /// An open for reading of `key` from its start: takes what was fetched
    /// ahead for it and fetches ahead of it.
    pub fn open(&self, layer: &Arc<ObjectLayer>, key: &str) -> Found {
        let (dir, name) = (parent_key(key), key.rsplit('/').next().unwrap_or(key));
        let mut s = lock(&self.0);
        let Some(l) = s
            .listings
            .iter_mut()
            .rev()
            .find(|l| Arc::ptr_eq(&l.layer, layer) && l.dir == dir)
        else {
            return Found::Unlisted;
        };
        let at = match l.files.get(l.cursor) {
            Some(f) if f.name == name => Some(l.cursor),
            _ => l.files.iter().position(|f| f.name == name),
        };
        let Some(at) = at else {
            return Found::Unlisted;
        };
        l.cursor = at + 1;
        l.opened = true;
        let (id, depth) = (l.id, l.depth);
        let window = layer.remote().prefetch_window();
        let walking = s.ahead.keys().any(|(lid, _)| *lid == id);
        let taken = s.ahead.remove(&(id, at));
        // This open pays for one fetch ahead; one it took, for another.
        let paid = 1 + usize::from(taken.is_some());
        s.debt = s.debt.saturating_sub(paid);
        let depth = match (&taken, walking) {
            (Some(_), _) => depth * 2,
            // The first open in a folder keeps the pace of the last one.
            (None, false) => depth,
            // Out of the listing's order: start again.
            (None, true) => FIRST_DEPTH,
        }
        .clamp(FIRST_DEPTH, MAX_AHEAD);
        if let Some(l) = s.listings.iter_mut().rev().find(|l| l.id == id) {
            l.hits += usize::from(taken.is_some());
            l.depth = depth;
        }
        // The client went past these, or on from those folders.
        let State { walked, ahead, .. } = &mut *s;
        walked.retain(|w| *w != id);
        walked.push_front(id);
        walked.truncate(WALKERS);
        ahead.retain(|(lid, i), _| match *lid == id {
            true => *i > at,
            false => walked.contains(lid),
        });
        s.fetch_ahead(id, at + 1);
        Found::Listed(taken.map(|ahead| Pending { ahead, window }))
    }

    /// The session changed something: what was fetched ahead may be
    /// what it changed.
    pub fn forget(&self) {
        lock(&self.0).ahead.clear();
    }
}

fn join(dir: &str, name: &str) -> String {
    match dir {
        "" => name.to_string(),
        _ => format!("{dir}/{name}"),
    }
}

/// Fetches `key` ahead, holding it for `window` at most.
fn fetch(
    layer: Arc<ObjectLayer>,
    key: String,
    etag: String,
    held: super::budget::Held,
    window: Duration,
) -> Ahead {
    let slot = Arc::new(tokio::sync::Mutex::new(None));
    let mut filling = slot
        .clone()
        .try_lock_owned()
        .expect("a new slot is not locked");
    // Before the GET: a change from here on must be seen.
    let watch = layer.watch(&key);
    let expiring = slot.clone();
    let metrics = layer.remote().metrics().clone();
    metrics.prefetch_fetched.inc();
    let task = tokio::spawn(async move {
        let fetched = Instant::now();
        let whole = match layer.read_whole(&key, &etag, held).await {
            Ok(Some(whole)) => whole,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%key, error = %e, "prefetch failed; the open will ask again");
                return;
            }
        };
        *filling = Some(Ready {
            whole: Some(whole),
            fetched,
            watch,
            wasted: metrics.prefetch_wasted_bytes.clone(),
        });
        drop(filling);
        tokio::time::sleep_until((fetched + window).into()).await;
        expiring.lock().await.take();
    });
    Ahead { slot, task }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::remote::Remote;
    use crate::vfs::Budget;

    fn layer() -> Arc<ObjectLayer> {
        let config = Config::parse(
            "[remotes.mem]\nkind = \"memory\"\n[[users]]\nname = \"a\"\npassword = \"$argon2id$v=19$m=19456,t=2,p=1$zbURedr/3LNZOR44c0aY6A$+xFJJgF1BW2u2HQD7E1eR9O5gcRrh9Fhtk/e5e317mI\"\nhome = \"mem:/a\"\n",
            &|_| None,
        )
        .expect("a memory remote");
        let remote =
            Arc::new(Remote::build(&config.remotes["mem"], &Default::default()).expect("built"));
        Arc::new(ObjectLayer::new(
            remote,
            Budget::new(64 << 20, Default::default()),
        ))
    }

    /// Whatever a client lists, the names kept stay within
    /// [`LISTED_BYTES`]; however it walks, at most [`MAX_AHEAD`] files are
    /// fetched ahead at once, and a steady walk reaches that many.
    #[tokio::test]
    async fn listings_and_fetches_stay_within_their_bounds() {
        let (p, layer) = (Arc::new(Prefetch::default()), layer());
        let long = "n".repeat(200);
        for d in 0..300 {
            let r = p.listing(&layer, &format!("d{d}")).expect("on");
            for i in 0..100 {
                r.saw(&format!("{long}{i}"), false, 10, Some("\"etag\""));
            }
            drop(r);
            let listed = lock(&p.0).listed_bytes;
            assert!(listed <= LISTED_BYTES, "{listed} bytes of names kept");
        }
        assert!(
            lock(&p.0).listed_bytes > LISTED_BYTES / 2,
            "the bound was reached"
        );
        let r = p.listing(&layer, "walk").expect("on");
        for i in 0..1000 {
            r.saw(&format!("f{i:04}"), false, 10, Some("\"etag\""));
        }
        drop(r);
        let mut most = 0;
        for i in 0..1000 {
            // The files do not exist: each fetch ahead fails and the open
            // asks the store; the bound is on what was started.
            if let Found::Listed(Some(pending)) = p.open(&layer, &format!("walk/f{i:04}")) {
                assert!(pending.body().await.is_none());
            }
            let ahead = lock(&p.0).ahead.len();
            assert!(ahead <= MAX_AHEAD, "{ahead} fetched ahead at once");
            most = most.max(ahead);
        }
        assert_eq!(most, MAX_AHEAD);
    }
}
