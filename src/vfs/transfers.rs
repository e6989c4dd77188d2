//! What the VFS tells of a transfer (uploads and downloads, of sessions
//! and sync jobs) to the layers above: its progress and how it ended. Each
//! open transfer is also tracked by its gateway for graceful shutdown:
//! `serve` lets them finish within `shutdown_grace`, then ends the sessions
//! and waits for the uploads they leave to be aborted, so the process exits
//! with no multipart upload of its own left open.

use super::FsError;
use crate::base::Digests;
use futures::FutureExt;
use futures::future::BoxFuture;

/// How an upload or download ended, told to its end hook (the audit line).
#[derive(Debug, Clone, Copy)]
pub struct Ended<'a> {
    /// Bytes moved: received from the client by an upload that committed
    /// (not the bytes of a resumed object's earlier part), handed to the
    /// client by a download; `None` for an upload that failed.
    pub bytes: Option<u64>,
    /// What a committed upload computed of the object's bytes.
    pub digests: Option<&'a Digests>,
    /// A committed upload's object size (with a resumed object's earlier part).
    pub size: Option<u64>,
    /// A committed upload's ETag, as the store answered.
    pub etag: Option<&'a str>,
    pub result: Result<(), &'a FsError>,
}

impl<'a> Ended<'a> {
    pub fn failed(e: &'a FsError) -> Self {
        Ended {
            bytes: None,
            digests: None,
            size: None,
            etag: None,
            result: Err(e),
        }
    }
}

/// Told the bytes of each write or read as it is done (the console's
/// live transfers, the byte counters).
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Called once, when a transfer ends however it ends. The future it
/// returns is awaited before a committed upload's close is answered (a
/// layer's record of the end made durable); for anything else it is
/// dropped, so the hook must have done its work before returning it.
pub type EndHook = Box<dyn FnOnce(Ended<'_>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Asked before an upload's file grows to a length (`max_file_size`, a
/// quota's reservation); an error fails the upload. Asynchronous so that
/// a guard about to refuse may first wait for what it needs to know.
pub type Guard = Box<dyn Fn(u64) -> BoxFuture<'static, Result<(), FsError>> + Send + Sync>;

/// A rate a transfer keeps to (`bandwidth_up`, `bandwidth_down`): takes
/// `n` bytes' worth and says how long to wait before they may move.
pub trait Pace: Send + Sync {
    fn take(&self, n: u64) -> std::time::Duration;
}

/// The hooks the layers above set on one transfer, each layer its own.
#[derive(Default)]
pub struct Observers {
    ends: Vec<EndHook>,
    progress: Vec<Progress>,
    guards: Vec<Guard>,
    paces: Vec<std::sync::Arc<dyn Pace>>,
    /// The longest the file has been allowed to grow.
    allowed: u64,
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observers")
            .field("ends", &self.ends.len())
            .field("progress", &self.progress.len())
            .finish()
    }
}

impl Observers {
    pub fn on_end(&mut self, hook: EndHook) {
        self.ends.push(hook);
    }

    pub fn on_progress(&mut self, progress: Progress) {
        self.progress.push(progress);
    }

    /// Moves the transfer's bytes no faster than `pace` allows.
    pub fn pace(&mut self, pace: std::sync::Arc<dyn Pace>) {
        self.paces.push(pace);
    }

    /// Waits until `n` more bytes may move: backpressure, so a throttled
    /// client is read from (or served) more slowly, and nothing piles up.
    pub async fn paced(&self, n: u64) {
        let wait = self.paces.iter().map(|p| p.take(n)).max();
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Asks `guard` each time the upload's file would grow.
    pub fn guard(&mut self, guard: Guard) {
        self.guards.push(guard);
    }

    /// Refuses a write that would make the file `end` bytes long. Only
    /// growth is asked about: a write inside what was allowed costs nothing.
    pub async fn allows(&mut self, end: u64) -> Result<(), FsError> {
        if end <= self.allowed || self.guards.is_empty() {
            return Ok(());
        }
        for guard in &self.guards {
            guard(end).await?;
        }
        self.allowed = end;
        Ok(())
    }

    /// `n` more bytes moved.
    pub fn moved(&self, n: u64) {
        for p in &self.progress {
            p(n);
        }
    }

    /// Tells every end hook, once: what comes back completes when all of
    /// theirs have.
    pub fn end(&mut self, ended: Ended<'_>) -> BoxFuture<'static, ()> {
        let waits: Vec<_> = self.ends.drain(..).map(|hook| hook(ended)).collect();
        futures::future::join_all(waits).map(|_| ()).boxed()
    }
}

/// Held by one open transfer; dropping it ends the transfer. An aborted
/// upload moves it into its abort task, so the transfer ends when the abort
/// has. A token of the gateway's transfer tracker (see [`super::Budget`]),
/// which shutdown waits on.
pub type Transfer = tokio_util::task::task_tracker::TaskTrackerToken;
