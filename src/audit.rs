//! The audit trail: one line per file operation, under target `audit`.
//!
//! The session span around it carries user, peer and protocol, so a line
//! here adds only what happened: operation, path, bytes, duration, result.

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
