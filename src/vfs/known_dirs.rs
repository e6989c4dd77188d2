//! Folders seen to exist in the last few seconds, per remote.
//!
//! A client uploading 200 files into one folder would otherwise have the
//! folder checked 200 times, each an S3 request. Only existence is kept,
//! never absence, and briefly: a folder removed behind the gateway's back
//! is at worst recreated by the next upload into it, which on object
//! storage is what an upload to `dir/name` does anyway.
//!
//! Entries expire in the order they were made, from a queue: an insert
//! costs O(1) amortised however many folders a listing shows (sweeping the
//! map past a size made a listing of N subfolders O(N²)), and the map holds
//! at most [`MAX_ENTRIES`].

use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(5);
/// Folders remembered at most; past it the oldest are forgotten early.
pub const MAX_ENTRIES: usize = 65_536;

/// When a folder was seen, and its own mtime if it has one.
type Seen = (Instant, Option<DateTime<Utc>>);

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, Seen>,
    /// Inserts, oldest first; an entry seen again later is in it twice,
    /// and only its latest insert removes it.
    order: VecDeque<(Instant, String)>,
    /// How many forgets there have been: an answer S3 gave to a question
    /// asked before a forget may describe a folder that is gone now.
    forgets: u64,
}

#[derive(Debug, Default)]
pub struct KnownDirs(Mutex<Entries>);

impl KnownDirs {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        crate::base::lock(&self.0)
    }

    /// `Some(mtime)` when `key` was seen as a folder within the TTL.
    pub fn get(&self, key: &str) -> Option<Option<DateTime<Utc>>> {
        let e = self.entries();
        let (seen, mtime) = e.map.get(key)?;
        (seen.elapsed() < TTL).then_some(*mtime)
    }

    /// What to pass to [`Self::insert_seen`] for a question about to be asked.
    pub fn epoch(&self) -> u64 {
        self.entries().forgets
    }

    /// Remembers a folder S3 showed in answer to a question asked at
    /// `epoch`, unless a folder was forgotten since: a rename or rmdir
    /// that ran meanwhile would otherwise be undone here, and the folder
    /// it removed would seem to exist for the TTL.
    pub fn insert_seen(&self, key: &str, mtime: Option<DateTime<Utc>>, epoch: u64) {
        let mut e = self.entries();
        if e.forgets == epoch {
            Self::remember(&mut e, key, mtime);
        }
    }

    /// Remembers a folder this gateway just made.
    pub fn insert(&self, key: &str, mtime: Option<DateTime<Utc>>) {
        Self::remember(&mut self.entries(), key, mtime);
    }

    fn remember(e: &mut Entries, key: &str, mtime: Option<DateTime<Utc>>) {
        let now = Instant::now();
        e.map.insert(key.to_string(), (now, mtime));
        e.order.push_back((now, key.to_string()));
        while let Some((seen, _)) = e.order.front() {
            if now.duration_since(*seen) < TTL && e.order.len() <= MAX_ENTRIES {
                break;
            }
            let Some((seen, old)) = e.order.pop_front() else {
                break;
            };
            if e.map.get(&old).is_some_and(|(latest, _)| *latest == seen) {
                e.map.remove(&old);
            }
        }
    }

    /// Forgets `key` and every folder under it (rmdir, rename).
    pub fn forget(&self, key: &str) {
        let below = format!("{key}/");
        let mut e = self.entries();
        e.forgets += 1;
        e.map.retain(|k, _| k != key && !k.starts_with(&below));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forget_takes_the_subtree_only() {
        let k = KnownDirs::default();
        for d in ["a", "a/b", "a/b/c", "ab"] {
            k.insert(d, None);
        }
        k.forget("a");
        assert!(k.get("a").is_none() && k.get("a/b/c").is_none());
        assert!(k.get("ab").is_some());
    }

    /// A stat that asked S3 before a rename forgot the folder brings an
    /// answer that is stale by the time it lands: it is not remembered.
    #[test]
    fn an_answer_older_than_a_forget_is_not_remembered() {
        let k = KnownDirs::default();
        let asked = k.epoch();
        k.forget("src");
        k.insert_seen("src", None, asked);
        assert!(k.get("src").is_none());
        k.insert_seen("src", None, k.epoch());
        assert!(k.get("src").is_some());
    }

    /// The cost of remembering the folders of one listing: N inserts
    /// within the TTL. Four times the folders take about four times as
    /// long (a ratio, not a time); a sweep of the whole map per insert
    /// past 4096 made it about seventy. The map stays within its bound.
    #[test]
    fn remembering_a_listing_is_linear_and_bounded() {
        let cost = |n: usize| {
            (0..5)
                .map(|_| {
                    let k = KnownDirs::default();
                    let started = Instant::now();
                    for i in 0..n {
                        k.insert(&format!("dir/{i:06}"), None);
                    }
                    started.elapsed()
                })
                .min()
                .unwrap_or_default()
        };
        let (small, large) = (cost(5_000), cost(20_000));
        let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-6);
        assert!(
            ratio < 12.0,
            "20 000 folders cost {ratio:.1}× 5 000 ({large:?} against {small:?})"
        );
        let k = KnownDirs::default();
        for i in 0..MAX_ENTRIES + 1000 {
            k.insert(&format!("d{i}"), None);
        }
        assert_eq!(k.entries().map.len(), MAX_ENTRIES);
        assert!(k.get("d0").is_none(), "the oldest went first");
        assert!(k.get(&format!("d{}", MAX_ENTRIES + 999)).is_some());
    }
}
