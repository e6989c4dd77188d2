//! Digests the gateway knows of objects that do not carry them: those of
//! its own multipart uploads (S3 takes no metadata at completion, and a
//! copy to add it costs as much as the object), and those it computed by
//! reading an object another client wrote. Remembered per key and ETag, so
//! the answer is for that version only; a second ask costs a HEAD, not a
//! read. Bounded: the oldest go.

use crate::base::{Algorithm, Digests, lock};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How many computed digests one remote remembers.
const CAPACITY: usize = 4096;

/// An object's key and ETag, and the algorithm.
type Key = (String, String, Algorithm);

/// The digests, and their keys oldest first.
#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, Vec<u8>>,
    order: VecDeque<Key>,
}

#[derive(Debug, Default)]
pub struct DigestCache(Mutex<Entries>);

impl DigestCache {
    pub fn get(&self, key: &str, etag: &str, algorithm: Algorithm) -> Option<Vec<u8>> {
        let k = (key.to_string(), etag.to_string(), algorithm);
        lock(&self.0).map.get(&k).cloned()
    }

    /// Every digest of `digests` for this version of `key`.
    pub fn insert_all(&self, key: &str, etag: &str, digests: &Digests) {
        for a in Algorithm::ALL {
            if let Some(d) = digests.get(a) {
                self.insert(key, etag, a, d.to_vec());
            }
        }
    }

    pub fn insert(&self, key: &str, etag: &str, algorithm: Algorithm, digest: Vec<u8>) {
        let k = (key.to_string(), etag.to_string(), algorithm);
        let e = &mut *lock(&self.0);
        if e.map.insert(k.clone(), digest).is_none() {
            e.order.push_back(k);
        }
        while e.order.len() > CAPACITY {
            if let Some(old) = e.order.pop_front() {
                e.map.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past its capacity the cache forgets the oldest version first.
    #[test]
    fn holds_at_most_its_capacity() {
        let cache = DigestCache::default();
        for i in 0..=CAPACITY {
            cache.insert(&format!("k{i}"), "e", Algorithm::Sha256, vec![1]);
        }
        assert_eq!(cache.get("k0", "e", Algorithm::Sha256), None);
        assert_eq!(cache.get("k1", "e", Algorithm::Sha256), Some(vec![1]));
        assert_eq!(
            cache.get(&format!("k{CAPACITY}"), "e", Algorithm::Sha256),
            Some(vec![1])
        );
        assert_eq!(cache.get("k1", "other", Algorithm::Sha256), None);
        assert_eq!(lock(&cache.0).map.len(), CAPACITY);
    }
}
