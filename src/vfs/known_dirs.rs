//! Folders seen to exist in the last few seconds, per remote.
//!
//! A client uploading 200 files into one folder would otherwise have the
//! folder checked 200 times, each an S3 request. Only existence is kept,
//! never absence, and briefly: a folder removed behind the gateway's back
//! is at worst recreated by the next upload into it, which on object
//! storage is what an upload to `dir/name` does anyway.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(5);
/// Past this many entries, expired ones are swept on insert.
const SWEEP_AT: usize = 4096;

/// When a folder was seen, and its own mtime if it has one.
type Seen = (Instant, Option<DateTime<Utc>>);

#[derive(Debug, Default)]
pub struct KnownDirs(Mutex<HashMap<String, Seen>>);

impl KnownDirs {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        crate::base::lock(&self.0)
    }

    /// `Some(mtime)` when `key` was seen as a folder within the TTL.
    pub fn get(&self, key: &str) -> Option<Option<DateTime<Utc>>> {
        let map = self.map();
        let (seen, mtime) = map.get(key)?;
        (seen.elapsed() < TTL).then_some(*mtime)
    }

    pub fn insert(&self, key: &str, mtime: Option<DateTime<Utc>>) {
        let mut map = self.map();
        if map.len() >= SWEEP_AT {
            map.retain(|_, (seen, _)| seen.elapsed() < TTL);
        }
        map.insert(key.to_string(), (Instant::now(), mtime));
    }

    /// Forgets `key` and every folder under it (rmdir, rename).
    pub fn forget(&self, key: &str) {
        let below = format!("{key}/");
        self.map().retain(|k, _| k != key && !k.starts_with(&below));
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
}
