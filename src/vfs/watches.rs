//! Keys watched for a change made through this gateway: a body fetched
//! ahead of a client (`prefetch.rs`) must not be served once any session
//! has replaced, moved or deleted its file, even a moment after the fetch.
//!
//! Only what is watched is remembered, so memory follows the prefetches
//! alive (a few per session), never the rate of writes.

use crate::base::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The watched keys of one object layer.
#[derive(Debug, Default)]
pub struct Watches(Mutex<Watched>);

#[derive(Debug, Default)]
struct Watched {
    next_id: u64,
    keys: HashMap<String, Vec<(u64, Arc<AtomicBool>)>>,
}

/// Set once `key` changes; stops watching when dropped.
#[derive(Debug)]
pub struct Watch {
    watches: Arc<Watches>,
    key: String,
    id: u64,
    changed: Arc<AtomicBool>,
}

impl Watch {
    pub fn changed(&self) -> bool {
        self.changed.load(Ordering::Acquire)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut w = lock(&self.watches.0);
        if let Some(list) = w.keys.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                w.keys.remove(&self.key);
            }
        }
    }
}

impl Watches {
    /// Watches `key` from now: call it before the request whose answer
    /// the watch guards is sent.
    pub fn watch(self: &Arc<Self>, key: &str) -> Watch {
        let changed = Arc::new(AtomicBool::new(false));
        let mut w = lock(&self.0);
        let id = w.next_id;
        w.next_id += 1;
        w.keys
            .entry(key.to_string())
            .or_default()
            .push((id, changed.clone()));
        Watch {
            watches: self.clone(),
            key: key.to_string(),
            id,
            changed,
        }
    }

    /// The object at `key` was written, replaced or deleted.
    pub fn changed(&self, key: &str) {
        if let Some(list) = lock(&self.0).keys.get(key) {
            for (_, flag) in list {
                flag.store(true, Ordering::Release);
            }
        }
    }

    /// Every object under folder `dir` moved (a folder rename).
    pub fn changed_under(&self, dir: &str) {
        let inside = format!("{dir}/");
        for (key, list) in lock(&self.0).keys.iter() {
            if dir.is_empty() || key.starts_with(&inside) {
                for (_, flag) in list {
                    flag.store(true, Ordering::Release);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reaches_the_watches_of_its_key_and_folder_only() {
        let w = Arc::new(Watches::default());
        let (a, b, c) = (w.watch("d/a"), w.watch("d/b"), w.watch("e/a"));
        w.changed("d/a");
        assert!(a.changed() && !b.changed() && !c.changed());
        w.changed_under("d");
        assert!(b.changed() && !c.changed());
        drop((a, b, c));
        assert!(lock(&w.0).keys.is_empty(), "dropped watches are forgotten");
    }
}
