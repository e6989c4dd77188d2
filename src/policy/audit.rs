//! The audit trail (STYLE practice 8): one line per file operation, under
//! target `audit`, written here and nowhere else. The session span around
//! a line carries user, peer and protocol, so a line adds only what
//! happened: operation, path, bytes, duration, result. Sync runs, which
//! act on object layers rather than a user's VFS, write their lines with
//! the same [`FileOp`].

use super::{Layer, Op};
use crate::base::{Algorithm, FsResult};
use crate::vfs::Vfs;
use crate::vfs::transfers::Ended;
use futures::future::BoxFuture;
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
    /// The SHA-256 of an upload's bytes, where its remote computes it.
    pub sha256: Option<String>,
    pub started: Instant,
}

impl FileOp<'_> {
    /// Writes the audit line with the operation's outcome.
    pub fn finish<E: std::fmt::Display>(self, result: Result<(), &E>) {
        tracing::info!(
            target: "audit",
            op = self.op,
            path = self.path,
            to = self.to,
            bytes = self.bytes,
            sha256 = self.sha256,
            ms = self.started.elapsed().as_millis() as u64,
            result = if result.is_ok() { "ok" } else { "error" },
            error = result.err().map(tracing::field::display),
        );
    }
}

/// The layer that writes a session's audit lines.
#[derive(Debug)]
pub struct Audited;

impl Layer for Audited {
    /// The span the operation began in: a transfer may end elsewhere (a
    /// web download's body dropped by the HTTP connection, a tus upload
    /// closed by a later request), and its line still names its session.
    type Ticket = tracing::Span;

    fn before(&self, _below: &dyn Vfs, _op: &Op) -> FsResult<tracing::Span> {
        Ok(tracing::Span::current())
    }

    fn after(
        &self,
        op: &Op,
        span: Option<tracing::Span>,
        ended: Ended<'_>,
    ) -> BoxFuture<'static, ()> {
        let _entered = span.as_ref().map(tracing::Span::enter);
        FileOp {
            op: op.name,
            path: op.path.as_str(),
            to: op.to.as_ref().map(|t| t.as_str()),
            bytes: ended.bytes,
            sha256: ended.digests.and_then(|d| d.hex(Algorithm::Sha256)),
            started: op.started,
        }
        .finish(ended.result);
        super::nothing_to_wait()
    }
}
