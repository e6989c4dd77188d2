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
    pub result: Result<(), &'a FsError>,
}

impl<'a> Ended<'a> {
    pub fn failed(e: &'a FsError) -> Self {
        Ended {
            bytes: None,
            digests: None,
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

/// The hooks the layers above set on one transfer, each layer its own.
#[derive(Default)]
pub struct Observers {
    ends: Vec<EndHook>,
    progress: Vec<Progress>,
    /// The most bytes an upload's file may hold, and the rule that says so.
    most: Option<(u64, String)>,
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

    /// An upload whose file would pass `bytes` fails, told `rule`; the
    /// lowest of several limits holds.
    pub fn limit(&mut self, bytes: u64, rule: String) {
        if self.most.as_ref().is_none_or(|(most, _)| bytes < *most) {
            self.most = Some((bytes, rule));
        }
    }

    /// Refuses a write that would make the file `end` bytes long.
    pub fn allows(&self, end: u64) -> Result<(), FsError> {
        match &self.most {
            Some((most, rule)) if end > *most => Err(FsError::PermissionDenied(rule.clone())),
            _ => Ok(()),
        }
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
