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

use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

/// Shared by every session and sync run of a gateway. Every transfer
/// draws from it, so it also tracks the transfers open, for shutdown.
#[derive(Debug, Clone)]
pub struct Budget {
    main: Pool,
    ahead: Pool,
    transfers: TaskTracker,
}

#[derive(Debug, Clone)]
struct Pool {
    free: Arc<Semaphore>,
    /// What the pool holds in all: no request may ask for more.
    size: usize,
    /// The bytes held now, as the metrics show them.
    held: Gauge,
}

impl Pool {
    fn new(size: usize, held: Gauge) -> Self {
        Pool {
            free: Arc::new(Semaphore::new(size)),
            size,
            held,
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
        self.held(permit)
    }

    fn held(&self, permit: OwnedSemaphorePermit) -> Held {
        self.held.inc_by(permit.num_permits() as i64);
        Held {
            permit,
            gauge: self.held.clone(),
        }
    }

    /// `bytes` if they are free now.
    fn try_take(&self, bytes: usize) -> Option<Held> {
        let n = u32::try_from(bytes).ok()?;
        let permit = self.free.clone().try_acquire_many_owned(n).ok()?;
        Some(self.held(permit))
    }
}

/// Bytes held from the budget; given back on drop.
#[derive(Debug)]
pub struct Held {
    permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Held {
    pub fn bytes(&self) -> usize {
        self.permit.num_permits()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(self.permit.num_permits() as i64);
    }
}

impl Budget {
    /// `bytes` in all; `held` shows how many are taken now (the gateway's
    /// `buffered_bytes`).
    pub fn new(bytes: u64, held: Gauge) -> Self {
        let bytes = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let ahead = bytes / 4;
        Budget {
            main: Pool::new(bytes - ahead, held.clone()),
            ahead: Pool::new(ahead, held),
            transfers: TaskTracker::new(),
        }
    }

    /// The transfers open now, which shutdown waits on.
    pub fn transfers(&self) -> &TaskTracker {
        &self.transfers
    }

    /// Counts one transfer open until the token is dropped.
    pub fn transfer(&self) -> super::transfers::Transfer {
        self.transfers.token()
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
