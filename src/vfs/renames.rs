//! Renames in progress on one remote. A folder rename is many requests
//! (a copy and a delete per object); two of them over the same keys at
//! once would both copy the tree. A rename here waits until no other
//! rename touches its source or target, at any depth, within this gateway.

use crate::base::lock;
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Renames {
    /// The keys (sources and targets) of the renames running now.
    busy: Mutex<Vec<String>>,
    freed: Notify,
}

/// Held while a rename runs; frees its keys on drop.
pub struct Busy<'a> {
    renames: &'a Renames,
    keys: [String; 2],
}

/// Whether one key is the other or inside it, or the other way round.
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        outer.is_empty()
            || inner
                .strip_prefix(outer)
                .is_some_and(|r| r.starts_with('/'))
    };
    a == b || inside(a, b) || inside(b, a)
}

impl Renames {
    /// Waits until no running rename overlaps `from` or `to`, then holds both.
    pub async fn hold(&self, from: &str, to: &str) -> Busy<'_> {
        loop {
            let freed = self.freed.notified();
            {
                let mut busy = lock(&self.busy);
                let clash = busy.iter().any(|k| overlaps(k, from) || overlaps(k, to));
                if !clash {
                    busy.extend([from.to_string(), to.to_string()]);
                    return Busy {
                        renames: self,
                        keys: [from.to_string(), to.to_string()],
                    };
                }
            }
            freed.await;
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut busy = lock(&self.renames.busy);
        for key in &self.keys {
            if let Some(i) = busy.iter().position(|k| k == key) {
                busy.swap_remove(i);
            }
        }
        drop(busy);
        self.renames.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_keys() {
        assert!(overlaps("a", "a"));
        assert!(overlaps("a", "a/b"));
        assert!(overlaps("a/b", "a"));
        assert!(overlaps("", "x"));
        assert!(!overlaps("a", "ab"));
        assert!(!overlaps("a/b", "a/c"));
    }

    #[tokio::test]
    async fn a_second_rename_of_the_same_folder_waits_for_the_first() {
        let renames = Renames::default();
        let first = renames.hold("src", "dst").await;
        let second = renames.hold("src/sub", "other");
        tokio::pin!(second);
        assert!(
            futures::poll!(&mut second).is_pending(),
            "overlapping rename ran at once"
        );
        let _unrelated = renames.hold("elsewhere", "x").await;
        drop(first);
        second.await;
    }
}
