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

#[derive(Debug, Default)]
pub struct DigestCache(Mutex<(HashMap<Key, Vec<u8>>, VecDeque<Key>)>);

impl DigestCache {
    pub fn get(&self, key: &str, etag: &str, algorithm: Algorithm) -> Option<Vec<u8>> {
        let k = (key.to_string(), etag.to_string(), algorithm);
        lock(&self.0).0.get(&k).cloned()
    }

    pub fn insert(&self, key: &str, etag: &str, algorithm: Algorithm, digest: Vec<u8>) {
        let k = (key.to_string(), etag.to_string(), algorithm);
        let (map, order) = &mut *lock(&self.0);
        if map.insert(k.clone(), digest).is_none() {
            order.push_back(k);
        }
        while order.len() > CAPACITY {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}
