//! Open transfers (uploads and downloads, of sessions and sync jobs),
//! counted for graceful shutdown: `serve` lets them finish within
//! `shutdown_grace`, then ends the sessions and waits for the uploads they
//! leave to be aborted, so the process exits with no multipart upload of
//! its own left open.

use std::sync::OnceLock;
use tokio::sync::watch;

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
