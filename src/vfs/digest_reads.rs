//! Digests computed by reading an object through (no digest kept with it):
//! each can cost `checksum_read_limit` of S3 reads for a hundred bytes of
//! answer, so they are shared, bounded and cancelled.
//!
//! * Requests for one version (key, ETag, algorithm) while it is being
//!   read wait for that one read.
//! * A read runs only while someone waits for it: when every requester has
//!   gone (the SSH channel closed, the session ended), it stops.
//! * At most [`PER_USER`] reads of one user and [`PER_GATEWAY`] in all are
//!   in progress; past that a request is refused at once (`busy`).

use super::{FsError, FsResult};
use crate::base::{Algorithm, lock};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Reads of one user in progress at once.
pub const PER_USER: usize = 2;
/// Reads in progress at once, all users and remotes together.
pub const PER_GATEWAY: usize = 8;

type Reading = Shared<BoxFuture<'static, FsResult<Vec<u8>>>>;

/// An object version's digest being read: remote, key, ETag, algorithm.
pub type ReadKey = (String, String, String, Algorithm);

#[derive(Default)]
struct State {
    reading: HashMap<ReadKey, WeakShared<BoxFuture<'static, FsResult<Vec<u8>>>>>,
    per_user: HashMap<String, usize>,
    total: usize,
}

/// The digest reads of one gateway, shared by its remotes' object layers.
#[derive(Clone, Default)]
pub struct DigestReads(Arc<Mutex<State>>);

impl std::fmt::Debug for DigestReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestReads").finish_non_exhaustive()
    }
}

/// A read's place among those in progress, given back when it ends or is
/// dropped.
struct Place {
    reads: DigestReads,
    user: String,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut s = lock(&self.reads.0);
        s.total -= 1;
        if let Some(n) = s.per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                s.per_user.remove(&self.user);
            }
        }
    }
}

impl DigestReads {
    /// The digest of `key`'s version, from the read in progress for it or
    /// from a new one that `read` starts for `user`, within the bounds.
    pub async fn digest(
        &self,
        user: &str,
        key: ReadKey,
        read: impl FnOnce() -> BoxFuture<'static, FsResult<Vec<u8>>>,
    ) -> FsResult<Vec<u8>> {
        self.join(user, key, read)?.await
    }

    fn join(
        &self,
        user: &str,
        key: ReadKey,
        read: impl FnOnce() -> BoxFuture<'static, FsResult<Vec<u8>>>,
    ) -> FsResult<Reading> {
        let mut s = lock(&self.0);
        if let Some(reading) = s.reading.get(&key).and_then(WeakShared::upgrade) {
            return Ok(reading);
        }
        s.reading.retain(|_, r| r.upgrade().is_some());
        let theirs = s.per_user.get(user).copied().unwrap_or(0);
        if theirs >= PER_USER || s.total >= PER_GATEWAY {
            return Err(FsError::Busy(format!(
                "{} checksums are being computed by reading files through ({} of them yours); this one can be asked again once they are done (at most {PER_USER} per user, {PER_GATEWAY} in all)",
                s.total, theirs
            )));
        }
        s.total += 1;
        *s.per_user.entry(user.to_string()).or_default() += 1;
        let place = Place {
            reads: self.clone(),
            user: user.to_string(),
        };
        let reading = read();
        let reading = async move {
            let _place = place;
            reading.await
        }
        .boxed()
        .shared();
        if let Some(weak) = reading.downgrade() {
            s.reading.insert(key, weak);
        }
        Ok(reading)
    }

    /// Reads in progress now.
    pub fn in_progress(&self) -> usize {
        lock(&self.0).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(k: &str) -> ReadKey {
        ("r".into(), k.into(), "etag".into(), Algorithm::Sha256)
    }

    /// Requests for one version share one read; a request past the bounds
    /// is refused; a read nobody waits for any more stops and frees its place.
    #[tokio::test]
    async fn shared_bounded_and_cancelled() {
        let reads = DigestReads::default();
        let started = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = rx.shared();
        let slow = |started: Arc<AtomicUsize>, rx: Shared<tokio::sync::oneshot::Receiver<()>>| {
            move || {
                started.fetch_add(1, Ordering::SeqCst);
                async move {
                    let _ = rx.await;
                    Ok(vec![7])
                }
                .boxed()
            }
        };
        let a = reads
            .join("alice", key("a"), slow(started.clone(), rx.clone()))
            .unwrap();
        let a2 = reads
            .join("bob", key("a"), slow(started.clone(), rx.clone()))
            .unwrap();
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "one read for one version"
        );
        let b = reads
            .join("alice", key("b"), slow(started.clone(), rx.clone()))
            .unwrap();
        let refused = reads.join("alice", key("c"), slow(started.clone(), rx.clone()));
        assert!(matches!(refused, Err(FsError::Busy(_))));
        // Nobody waits for b any more: its place is free again.
        drop(b);
        assert_eq!(reads.in_progress(), 1);
        let c = reads
            .join("alice", key("c"), slow(started.clone(), rx.clone()))
            .unwrap();
        tx.send(()).unwrap();
        assert_eq!(a.await.unwrap(), vec![7]);
        assert_eq!(a2.await.unwrap(), vec![7]);
        assert_eq!(c.await.unwrap(), vec![7]);
        assert_eq!(reads.in_progress(), 0);
    }
}
