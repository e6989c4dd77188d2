//! What the console shows of a session while it runs: its transfers in
//! flight with their bytes, and its file operations in the ring of recent
//! ones (`crate::live`).

use super::{Layer, Op};
use crate::base::FsResult;
use crate::events::Origin;
use crate::live::{Direction, LiveSession, RecentOp};
use crate::vfs::Vfs;
use crate::vfs::transfers::{Ended, Progress};
use chrono::Utc;
use futures::future::BoxFuture;
use std::sync::Arc;

/// The layer that shows a session on the console.
#[derive(Debug)]
pub struct Watched {
    live: Arc<LiveSession>,
    origin: Origin,
}

impl Watched {
    pub fn new(live: Arc<LiveSession>, origin: Origin) -> Self {
        Watched { live, origin }
    }
}

impl Layer for Watched {
    type Ticket = ();

    fn before(&self, _below: &dyn Vfs, _op: &Op) -> FsResult<()> {
        super::nothing_before()
    }

    fn after(&self, op: &Op, _: Option<()>, ended: Ended<'_>) -> BoxFuture<'static, ()> {
        // A listing is no change: the ring keeps what was done to files.
        if op.name != "list" {
            let error = ended.result.err();
            self.live.record(RecentOp {
                time: Utc::now(),
                user: self.origin.user.clone(),
                protocol: self.origin.protocol,
                op: op.name,
                path: op.path.to_string(),
                to: op.to.as_ref().map(|t| t.to_string()),
                bytes: ended.bytes,
                ms: op.started.elapsed().as_millis() as u64,
                result: if error.is_none() { "ok" } else { "error" },
                error: error.map(|e| e.client_message()),
            });
        }
        super::nothing_to_wait()
    }

    /// Counts a transfer's bytes into its session as they move; it leaves
    /// the session's list when the transfer is dropped.
    fn progress(&self, op: &Op, size: Option<u64>) -> Option<Progress> {
        let direction = match op.name {
            "upload" => Direction::Upload,
            _ => Direction::Download,
        };
        let entry = self.live.transfer(op.path.as_str(), direction, size);
        Some(Arc::new(move |n| entry.meter.add(n)))
    }
}
