//! One GET of a byte range of a download, run in a task of its own and
//! streaming into a buffer bounded twice: by a window that widens while
//! the reader keeps up, and by the gateway's memory budget.

use super::super::budget::{Budget, Held};
use crate::base::{FsResult, lock};
use crate::remote::Body;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Bytes a GET may hold ahead of the reader.
pub(super) const SEGMENT_BUFFER: usize = 8 << 20;
/// Bytes the first GET holds ahead of the reader before it has read that much.
pub(super) const FIRST_WINDOW: usize = 256 << 10;
/// What a buffered chunk holds: its place in the segment's window and its
/// bytes of the gateway's budget.
#[derive(Debug)]
pub(super) struct Buffered {
    /// `None` for a body read whole before the download opened.
    pub(super) _window: Option<OwnedSemaphorePermit>,
    pub(super) _budget: Held,
}

pub(super) type Chunk = FsResult<(Bytes, Buffered)>;

/// Which pool of the budget a GET draws from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pool {
    /// The GET the reader is waiting on.
    Main,
    /// A GET further along the object, started by a split.
    Ahead,
}

/// How far a GET has come and where it stops; the stop moves back when
/// its tail is split off to another GET.
#[derive(Debug)]
pub(super) struct Limit {
    pub(super) fetched: u64,
    pub(super) end: u64,
}

/// One GET of a byte range, streaming into a bounded buffer.
pub(super) struct Segment {
    pub(super) limit: Arc<Mutex<Limit>>,
    pub(super) rx: mpsc::UnboundedReceiver<Chunk>,
    task: JoinHandle<()>,
    /// How far ahead of the reader it may run, and what the reader has
    /// taken from it: the window doubles each time that reaches it.
    window: Arc<Semaphore>,
    window_size: usize,
    taken: usize,
}

impl Segment {
    pub(super) fn end(&self) -> u64 {
        lock(&self.limit).end
    }

    /// The reader took `n` bytes: a reader that keeps up earns a wider window.
    pub(super) fn took(&mut self, n: usize) {
        self.taken += n;
        if self.taken >= self.window_size && self.window_size < SEGMENT_BUFFER {
            self.window.add_permits(self.window_size);
            self.window_size *= 2;
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards the body `open` yields, from `start` up to the segment's
/// (movable) end, into a buffer bounded by its window and by the budget.
pub(super) fn spawn_segment(
    start: u64,
    end: u64,
    budget: Budget,
    pool: Pool,
    open: impl Future<Output = object_store::Result<Body>> + Send + 'static,
) -> Segment {
    let (tx, rx) = mpsc::unbounded_channel();
    let window = Arc::new(Semaphore::new(FIRST_WINDOW));
    let limit = Arc::new(Mutex::new(Limit {
        fetched: start,
        end,
    }));
    let (shared, room) = (limit.clone(), window.clone());
    let task = tokio::spawn(async move {
        let mut body = match open.await {
            Ok(body) => body,
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                return;
            }
        };
        loop {
            let mut chunk = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
                None => return,
            };
            {
                let mut l = lock(&shared);
                let left = l.end.saturating_sub(l.fetched);
                if chunk.len() as u64 > left {
                    chunk.truncate(left as usize);
                }
                l.fetched += chunk.len() as u64;
            }
            if chunk.is_empty() {
                return;
            }
            let cost = chunk.len().clamp(1, FIRST_WINDOW) as u32;
            let Ok(window) = room.clone().acquire_many_owned(cost).await else {
                return;
            };
            let budget = match pool {
                Pool::Main => budget.take(chunk.len()).await,
                Pool::Ahead => budget.take_ahead(chunk.len()).await,
            };
            let held = Buffered {
                _window: Some(window),
                _budget: budget,
            };
            if tx.send(Ok((chunk, held))).is_err() {
                return;
            }
        }
    });
    Segment {
        limit,
        rx,
        task,
        window,
        window_size: FIRST_WINDOW,
        taken: 0,
    }
}
