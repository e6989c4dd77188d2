//! The names a quota target holds, as a Bloom filter: what lets an upload
//! of a new name skip the HEAD that asks what it replaces. Most uploads
//! are of new names, and on a store where a request costs a few
//! milliseconds that HEAD was the whole price of a quota (README "Quotas
//! and limits").
//!
//! Built from the target's listing and added to by every name the gateway
//! commits there; never emptied of a deleted name (a name it may hold only
//! costs a HEAD). A filter that has taken twice the names it was sized
//! for answers "may hold" too often: it says so, and the target is listed
//! again (as a vector doubles: the listings of a growing target add up to
//! about two of its final size). "Not held" is exact for what the listing
//! saw and the gateway wrote since; an object another writer put after
//! the listing is the one miss, corrected with the usage at the next
//! listing. A folder renamed inside the target takes its files' names
//! with it, unseen: the names under it are not trusted until the next
//! listing.

use super::{Quotas, Target};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Targets with more files than this keep no filter (the HEAD is asked):
/// the listing gathers 8 bytes per name, the filter keeps 2.
pub const MOST_NAMES: usize = 1 << 20;

/// Bits per name at the filter's room, which is twice the names listed
/// (at least [`LEAST_ROOM`]): false hits about 0.2 % as listed, 2.4 % full.
const BITS_PER_NAME: usize = 8;
const LEAST_ROOM: usize = 256;
const PROBES: u64 = 4;

/// Adds `h` to hashes being gathered for a filter (a listing's, or the
/// names committed while it runs); past [`MOST_NAMES`] none are kept, and
/// no filter is built from them.
pub fn gather(hashes: &mut Option<Vec<u64>>, h: u64) {
    if let Some(all) = hashes {
        match all.len() < MOST_NAMES {
            true => all.push(h),
            false => *hashes = None,
        }
    }
}

/// A name's hash, as gathered while listing.
pub fn hash(key: &str) -> u64 {
    // SipHash with fixed keys: the same on every run, and names chosen to
    // collide cost their author a HEAD, nothing else.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

#[derive(Debug)]
pub struct Names {
    bits: Vec<u64>,
    /// Names taken, and how many it is sized for.
    held: usize,
    room: usize,
}

impl Names {
    /// A filter holding `hashes`, with room for as many more.
    pub fn new(hashes: &[u64]) -> Names {
        let room = (hashes.len() * 2).max(LEAST_ROOM);
        let mut names = Names {
            bits: vec![0; (room * BITS_PER_NAME).div_ceil(64)],
            held: 0,
            room,
        };
        for &h in hashes {
            names.insert(h);
        }
        names
    }

    /// The bits of `h`: double hashing, the second hash made odd so that
    /// the probes cover the table.
    fn probes(&self, h: u64) -> impl Iterator<Item = (usize, u64)> + use<> {
        let len = self.bits.len() as u64 * 64;
        let step = h.rotate_left(32).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..PROBES).map(move |i| {
            let bit = h.wrapping_add(i.wrapping_mul(step)) % len;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    /// Takes `h`; false once past its room (it should be built again).
    pub fn insert(&mut self, h: u64) -> bool {
        for (word, mask) in self.probes(h) {
            self.bits[word] |= mask;
        }
        self.held += 1;
        self.held <= self.room
    }

    /// False when the name is certainly not held.
    pub fn may_hold(&self, h: u64) -> bool {
        self.probes(h)
            .all(|(word, mask)| self.bits[word] & mask != 0)
    }

    /// What it keeps, for the README's bound.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bits.len() * 8
    }
}

/// Folders renamed inside a target that its names make room for.
const MOST_MOVED: usize = 64;

impl Quotas {
    /// Notes that `key` of `remote` now holds a file, in the names of the
    /// targets that count it (a rename inside one target changes no
    /// usage, yet names a file).
    pub fn named(self: &Arc<Self>, remote: &str, key: &str) {
        self.name_in(&self.covering(remote, key), key);
    }

    /// [`Quotas::named`], in `targets`, the ones that count `key`.
    pub(super) fn name_in(self: &Arc<Self>, targets: &[Arc<Target>], key: &str) {
        let h = hash(key);
        for target in targets {
            let mut state = target.state();
            let full = state.names.as_mut().is_some_and(|names| !names.insert(h));
            gather(&mut state.committed, h);
            drop(state);
            if full {
                // Past its room: listed again, for a filter of its size.
                // It still answers meanwhile, with more false hits.
                self.relist(target);
            }
        }
    }

    /// Notes that `key` of `remote` may now be a folder renamed from
    /// inside the same target: the names of what it holds are not known.
    pub fn moved_in(self: &Arc<Self>, remote: &str, key: &str) {
        for target in self.covering(remote, key) {
            let mut state = target.state();
            state.moves += 1;
            if state.names.is_none() {
                continue;
            }
            if state.moved.len() < MOST_MOVED {
                state.moved.push(format!("{key}/"));
            } else {
                drop(state);
                self.rescan(&target);
            }
        }
    }

    /// Whether `key` is certainly no file yet in `targets` (the ones that
    /// count it), as the names a listing and this gateway's commits give:
    /// an upload there replaces nothing, and need not ask.
    pub fn absent(targets: &[Arc<Target>], key: &str) -> bool {
        let h = hash(key);
        targets.iter().any(|t| {
            let state = t.state();
            let moved = state.moved.iter().any(|m| key.starts_with(m.as_str()));
            !moved && state.names.as_ref().is_some_and(|n| !n.may_hold(h))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_was_given_and_rarely_what_it_was_not() {
        let listed: Vec<u64> = (0..10_000).map(|i| hash(&format!("in/f{i}"))).collect();
        let mut names = Names::new(&listed);
        assert!(listed.iter().all(|&h| names.may_hold(h)));
        assert!(names.insert(hash("in/new")));
        assert!(names.may_hold(hash("in/new")));
        let false_hits = (0..10_000)
            .filter(|i| names.may_hold(hash(&format!("other/f{i}"))))
            .count();
        // Sized at 16 bits a name: about 0.2 %.
        assert!(false_hits < 100, "{false_hits} false hits of 10000");
        assert!(names.bytes() <= 10_000 * 2 + 128);
    }

    #[test]
    fn an_empty_listing_still_answers_and_says_when_it_is_full() {
        let mut names = Names::new(&[]);
        assert!(!names.may_hold(hash("a")));
        assert!(names.insert(hash("a")));
        assert!(names.may_hold(hash("a")));
        let taken = (1..LEAST_ROOM).all(|i| names.insert(hash(&format!("f{i}"))));
        assert!(taken, "full before its room");
        assert!(!names.insert(hash("one more")));
    }
}
