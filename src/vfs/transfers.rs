//! Open transfers (uploads and downloads, of sessions and sync jobs),
//! counted for graceful shutdown: `serve` lets them finish within
//! `shutdown_grace`, then ends the sessions and waits for the uploads they
//! leave to be aborted, so the process exits with no multipart upload of
//! its own left open.

use super::FsError;
use crate::base::Digests;
use crate::events::Receipt;
use std::sync::OnceLock;
use tokio::sync::watch;

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

/// Told the bytes of each write or read as it is done: the console's
/// live transfers.
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Called once, when a transfer ends however it ends; what it returns is
/// waited for before a committed upload's close is answered (its event on
/// disk).
pub type EndHook = Box<dyn FnOnce(Ended<'_>) -> Receipt + Send + Sync>;

fn open() -> &'static watch::Sender<usize> {
    static OPEN: OnceLock<watch::Sender<usize>> = OnceLock::new();
    OPEN.get_or_init(|| watch::channel(0).0)
}

/// Held by one open transfer; dropping it ends the transfer. An aborted
/// upload moves it into its abort task, so the transfer ends when the abort
/// has.
#[derive(Debug)]
pub struct Transfer(());

impl Transfer {
    pub fn start() -> Self {
        open().send_modify(|n| *n += 1);
        Transfer(())
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        open().send_modify(|n| *n -= 1);
    }
}

/// How many transfers are open now.
pub fn open_now() -> usize {
    *open().borrow()
}

/// Waits until no transfer is open.
pub async fn all_done() {
    let mut rx = open().subscribe();
    let _ = rx.wait_for(|n| *n == 0).await;
}
