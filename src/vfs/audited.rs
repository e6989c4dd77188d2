//! The audit trail (STYLE practice 8): one line per file operation, under
//! target `audit`, written here and nowhere else.
//!
//! [`Audited`] wraps a session's [`Vfs`], so SFTP and FTP call the same
//! layer and write the same lines; uploads and downloads write theirs when
//! they end (closed, failed or abandoned), through their end hook. The
//! session span around a line carries user, peer and protocol, so a line
//! adds only what happened: operation, path, bytes, duration, result. Sync
//! runs, which act on object layers rather than a user's VFS, write their
//! lines with the same [`FileOp`].

use super::transfers::Ended;
use super::{Download, FileStat, FsResult, Upload, UserPath, Vfs, WriteMode};
use crate::base::Algorithm;
use crate::remote::Space;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
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

/// A session's VFS with its audit line on every file operation.
#[derive(Debug)]
pub struct Audited<V>(V);

impl<V: Vfs> Audited<V> {
    pub fn new(vfs: V) -> Self {
        Audited(vfs)
    }

    /// The VFS below, for what is not a file operation (the user's name).
    pub fn inner(&self) -> &V {
        &self.0
    }
}

/// Runs one call and writes its line.
async fn line<T>(
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
        sha256: None,
        started,
    }
    .finish(result.as_ref().map(|_| ()));
    result
}

/// The hook that writes a transfer's line when it ends.
fn at_end(
    op: &'static str,
    path: &UserPath,
    started: Instant,
) -> impl FnOnce(Ended<'_>) + Send + Sync + 'static + use<> {
    let path = path.clone();
    move |ended| {
        FileOp {
            op,
            path: path.as_str(),
            to: None,
            bytes: ended.bytes,
            sha256: ended.digests.and_then(|d| d.hex(Algorithm::Sha256)),
            started,
        }
        .finish(ended.result)
    }
}

/// An opened transfer gets `end` as its end hook; one that failed to open
/// is told at once.
fn ending<T, E: FnOnce(Ended<'_>) + Send + Sync + 'static>(
    opened: FsResult<T>,
    end: E,
    set: fn(&mut T, E),
) -> FsResult<T> {
    match opened {
        Ok(mut transfer) => {
            set(&mut transfer, end);
            Ok(transfer)
        }
        Err(e) => {
            end(Ended::failed(&e));
            Err(e)
        }
    }
}

#[async_trait]
impl<V: Vfs> Vfs for Audited<V> {
    async fn stat(&self, path: &UserPath) -> FsResult<FileStat> {
        self.0.stat(path).await
    }

    async fn list(&self, path: &UserPath) -> FsResult<BoxStream<'static, FsResult<FileStat>>> {
        line("list", path, None, self.0.list(path)).await
    }

    async fn open_read(&self, path: &UserPath, offset: u64) -> FsResult<Download> {
        let end = at_end("download", path, Instant::now());
        let opened = self.0.open_read(path, offset).await;
        ending(opened, end, Download::on_end)
    }

    async fn open_write(&self, path: &UserPath, mode: WriteMode) -> FsResult<Upload> {
        let end = at_end("upload", path, Instant::now());
        let opened = self.0.open_write(path, mode).await;
        ending(opened, end, Upload::on_end)
    }

    async fn mkdir(&self, path: &UserPath) -> FsResult<()> {
        line("mkdir", path, None, self.0.mkdir(path)).await
    }

    async fn rmdir(&self, path: &UserPath) -> FsResult<()> {
        line("rmdir", path, None, self.0.rmdir(path)).await
    }

    async fn remove(&self, path: &UserPath) -> FsResult<()> {
        line("remove", path, None, self.0.remove(path)).await
    }

    async fn rename(&self, from: &UserPath, to: &UserPath, overwrite: bool) -> FsResult<()> {
        line("rename", from, Some(to), self.0.rename(from, to, overwrite)).await
    }

    async fn set_times(&self, path: &UserPath, mtime: DateTime<Utc>) -> FsResult<()> {
        line("setstat", path, None, self.0.set_times(path, mtime)).await
    }

    async fn statvfs(&self, path: &UserPath) -> FsResult<Space> {
        self.0.statvfs(path).await
    }

    async fn digest(&self, path: &UserPath, algorithm: Algorithm) -> FsResult<Vec<u8>> {
        line("checksum", path, None, self.0.digest(path, algorithm)).await
    }
}
