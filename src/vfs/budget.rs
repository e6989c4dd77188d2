//! The gateway-wide memory budget (`[server].memory_budget`): every byte a
//! client can make the gateway buffer for a transfer — read-ahead, upload
//! parts — is drawn from here first, and waits when there is none left.
//! That wait is the backpressure: a WRITE or READ is answered later, the
//! client sends slower, and memory stays under the bound whatever the
//! number of sessions.
//!
//! Two pools, so that no set of transfers can wedge each other:
//!
//! * the **main** pool (three quarters) feeds what a transfer needs to
//!   move at all: an upload's parts (taken a whole part at a time, so an
//!   upload holding a part can always finish and send it) and the first
//!   GET of a download, whose bytes the reader frees as it goes;
//! * the **ahead** pool (a quarter) feeds the extra ranged GETs a fast
//!   download adds further along the object, and the small files fetched
//!   ahead of a client walking a folder (`prefetch.rs`). Their bytes wait
//!   until the reader gets there, so they must never take the memory the
//!   reader needs to get there.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shared by every session and sync run of a gateway.
#[derive(Debug, Clone)]
pub struct Budget {
    main: Pool,
    ahead: Pool,
}

#[derive(Debug, Clone)]
struct Pool {
    free: Arc<Semaphore>,
    /// What the pool holds in all: no request may ask for more.
    size: usize,
}

impl Pool {
    fn new(size: usize) -> Self {
        Pool {
            free: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// `bytes` (at most the pool's size), waiting until they are free.
    async fn take(&self, bytes: usize) -> Held {
        let n = bytes.clamp(1, self.size.max(1)).min(u32::MAX as usize) as u32;
        let permit = self
            .free
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the budget's semaphores are never closed");
        held(permit)
    }

    /// `bytes` if they are free now.
    fn try_take(&self, bytes: usize) -> Option<Held> {
        let n = u32::try_from(bytes).ok()?;
        self.free.clone().try_acquire_many_owned(n).ok().map(held)
    }
}

/// Bytes held from the budget; given back on drop.
#[derive(Debug)]
pub struct Held {
    permit: OwnedSemaphorePermit,
}

impl Held {
    pub fn bytes(&self) -> usize {
        self.permit.num_permits()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        crate::metrics::get()
            .buffered_bytes
            .dec_by(self.permit.num_permits() as i64);
    }
}

fn held(permit: OwnedSemaphorePermit) -> Held {
    crate::metrics::get()
        .buffered_bytes
        .inc_by(permit.num_permits() as i64);
    Held { permit }
}

impl Budget {
    pub fn new(bytes: u64) -> Self {
        let bytes = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let ahead = bytes / 4;
        Budget {
            main: Pool::new(bytes - ahead),
            ahead: Pool::new(ahead),
        }
    }

    /// `bytes` from the main pool, waiting until they are free. A request
    /// for more than the pool holds in all is cut to the pool's size.
    pub async fn take(&self, bytes: usize) -> Held {
        self.main.take(bytes).await
    }

    /// `bytes` from the read-ahead pool, waiting until they are free.
    pub async fn take_ahead(&self, bytes: usize) -> Held {
        self.ahead.take(bytes).await
    }

    /// `bytes` from the main pool if they are free now.
    pub fn try_take(&self, bytes: usize) -> Option<Held> {
        self.main.try_take(bytes)
    }

    /// `bytes` from the read-ahead pool if they are free now: for bytes
    /// fetched before anyone asked (small files fetched ahead), which
    /// must never wait nor take what a transfer needs to move.
    pub fn try_take_ahead(&self, bytes: usize) -> Option<Held> {
        self.ahead.try_take(bytes)
    }
}
