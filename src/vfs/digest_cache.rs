//! Digests the gateway computed by reading an object nobody kept digests
//! for (written by another S3 client), remembered per ETag: a second ask
//! costs a HEAD, not a read of the whole object. Bounded: the oldest go.

use crate::base::{Algorithm, lock};
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
