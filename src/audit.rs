//! The audit trail: one line per file operation, under target `audit`.
//!
//! The session span around it carries user, peer and protocol, so a line
//! here adds only what happened: operation, path, bytes, duration, result.

use crate::vfs::{FsResult, UserPath};
use std::fmt::Display;
use std::time::Instant;

/// What one finished file operation did.
#[derive(Debug)]
pub struct FileOp<'a> {
    pub op: &'static str,
    pub path: &'a str,
    /// The destination of a rename.
    pub to: Option<&'a str>,
    /// Bytes moved by an upload or download.
    pub bytes: Option<u64>,
    pub started: Instant,
}

impl FileOp<'_> {
    /// Writes the audit line with the operation's outcome.
    pub fn finish<E: Display>(self, result: Result<(), &E>) {
        tracing::info!(
            target: "audit",
            op = self.op,
            path = self.path,
            to = self.to,
            bytes = self.bytes,
            ms = self.started.elapsed().as_millis() as u64,
            result = if result.is_ok() { "ok" } else { "error" },
            error = result.err().map(tracing::field::display),
        );
    }
}

/// Runs one VFS call and writes its audit line; both frontends call this.
pub async fn audited<T>(
    op: &'static str,
    path: &UserPath,
    to: Option<&UserPath>,
    call: impl Future<Output = FsResult<T>>,
) -> FsResult<T> {
    let started = Instant::now();
    let result = call.await;
    FileOp {
        op,
        path: path.as_str(),
        to: to.map(UserPath::as_str),
        bytes: None,
        started,
    }
    .finish(result.as_ref().map(|_| ()));
    result
}
