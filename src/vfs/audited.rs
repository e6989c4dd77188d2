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
//!
//! The same place emits the file events of `[[webhooks]]` (upload,
//! download, delete, rename, mkdir, rmdir), and the operation's reply
//! waits until its event is in the spool: an upload's when its close
//! commits the object, never for one aborted.

use super::transfers::{Ended, Progress};
use super::{Download, FileStat, FsResult, Upload, UserPath, Vfs, WriteMode};
use crate::base::Algorithm;
use crate::config::EventKind;
use crate::events::{Event, Events, Origin, Receipt, Reservation};
use crate::live::{Direction, LiveSession, RecentOp};
use crate::remote::Space;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use std::sync::Arc;
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

/// A session's VFS with its audit line on every file operation, and its
/// events.
#[derive(Debug)]
pub struct Audited<V> {
    vfs: V,
    events: Arc<Events>,
    origin: Origin,
    /// The session as the console sees it: its transfers in flight, and
    /// the ring of recent operations each line also goes to.
    live: Option<Arc<LiveSession>>,
}

impl<V: Vfs> Audited<V> {
    pub fn new(vfs: V, events: Arc<Events>, origin: Origin) -> Self {
        Audited {
            vfs,
            events,
            origin,
            live: None,
        }
    }

    /// Shows the session's transfers and operations to the console.
    pub fn watched(mut self, live: Arc<LiveSession>) -> Self {
        self.live = Some(live);
        self
    }

    /// Counts a transfer's bytes into its session as they move; it leaves
    /// the session's list when the transfer is dropped.
    fn meter(&self, path: &UserPath, direction: Direction, total: Option<u64>) -> Option<Progress> {
        let entry = self
            .live
            .as_ref()?
            .transfer(path.as_str(), direction, total);
        Some(Arc::new(move |n| entry.meter.add(n)))
    }

    /// The VFS below, for what is not a file operation (the user's name).
    pub fn inner(&self) -> &V {
        &self.vfs
    }

    /// What a finished operation tells the webhooks; `None` for an
    /// operation no event names.
    fn event(&self, op: &'static str, path: &UserPath, to: Option<&UserPath>) -> Option<Event> {
        if !self.events.any() {
            return None;
        }
        let kind = match op {
            "upload" => EventKind::Upload,
            "download" => EventKind::Download,
            "remove" => EventKind::Delete,
            "rename" => EventKind::Rename,
            "mkdir" => EventKind::Mkdir,
            "rmdir" => EventKind::Rmdir,
            _ => return None,
        };
        let at = self.vfs.locate(path).unwrap_or_default();
        Some(Event {
            path: Some(path.to_string()),
            to: to.map(UserPath::to_string),
            to_key: to.and_then(|t| self.vfs.locate(t)).map(|l| l.key),
            remote: Some(at.remote).filter(|r| !r.is_empty()),
            bucket: at.bucket,
            key: Some(at.key).filter(|k| !k.is_empty()),
            ..self.origin.event(kind)
        })
    }

    /// Runs one call, writes its line and spools its event.
    async fn line<T>(
        &self,
        op: &'static str,
        path: &UserPath,
        to: Option<&UserPath>,
        call: impl Future<Output = FsResult<T>>,
    ) -> FsResult<T> {
        let started = Instant::now();
        let event = self.event(op, path, to);
        // An operation is told for sure: room for its event first, or no operation.
        let reserved = event.as_ref().map(|e| self.events.reserve(e)).transpose();
        let result = match &reserved {
            Ok(_) => call.await,
            Err(e) => Err(e.clone()),
        };
        FileOp {
            op,
            path: path.as_str(),
            to: to.map(UserPath::as_str),
            bytes: None,
            sha256: None,
            started,
        }
        .finish(result.as_ref().map(|_| ()));
        if let Some(live) = &self.live
            && op != "list"
        {
            live.record(recent(
                &self.origin,
                op,
                path,
                to,
                None,
                started,
                result.as_ref().err(),
            ));
        }
        if let (Some(event), Ok(Some(room))) = (event, reserved) {
            let event = Event {
                duration_ms: Some(started.elapsed().as_millis() as u64),
                ..event
            };
            let event = event.failed(result.as_ref().err().map(|e| e.client_message()));
            room.emit(event).wait().await;
        }
        result
    }

    /// A transfer's end hook, its event's room held in the spool before a
    /// byte moves: its end never finds the spool full. The error, if the
    /// spool has no room: then the transfer must not start.
    fn reserved_end(
        &self,
        op: &'static str,
        path: &UserPath,
    ) -> (
        impl FnOnce(Ended<'_>) -> Receipt + Send + Sync + 'static + use<V>,
        Option<super::FsError>,
    ) {
        let started = Instant::now();
        let reserved = self.event(op, path, None).map(|e| self.events.reserve(&e));
        let (reserved, refused) = match reserved.transpose() {
            Ok(r) => (r, None),
            Err(e) => (None, Some(e)),
        };
        (self.at_end(op, path, started, reserved), refused)
    }

    /// The hook that writes a transfer's line and spools its event when it
    /// ends.
    fn at_end(
        &self,
        op: &'static str,
        path: &UserPath,
        started: Instant,
        reserved: Option<Reservation>,
    ) -> impl FnOnce(Ended<'_>) -> Receipt + Send + Sync + 'static + use<V> {
        let path = path.clone();
        let (events, event) = (self.events.clone(), self.event(op, &path, None));
        let (live, origin) = (self.live.clone(), self.origin.clone());
        move |ended| {
            FileOp {
                op,
                path: path.as_str(),
                to: None,
                bytes: ended.bytes,
                sha256: ended.digests.and_then(|d| d.hex(Algorithm::Sha256)),
                started,
            }
            .finish(ended.result);
            if let Some(live) = live {
                live.record(recent(
                    &origin,
                    op,
                    &path,
                    None,
                    ended.bytes,
                    started,
                    ended.result.err(),
                ));
            }
            let Some(event) = event else {
                return Receipt::none();
            };
            let digest = |a| ended.digests.and_then(|d| d.hex(a));
            let event = Event {
                size: ended.bytes,
                md5: digest(Algorithm::Md5),
                sha1: digest(Algorithm::Sha1),
                sha256: digest(Algorithm::Sha256),
                duration_ms: Some(started.elapsed().as_millis() as u64),
                ..event
            };
            let event = event.failed(ended.result.err().map(|e| e.client_message()));
            match reserved {
                Some(room) => room.emit(event),
                None => events.emit(event),
            }
        }
    }
}

/// A finished operation as the console's ring keeps it.
fn recent(
    origin: &Origin,
    op: &'static str,
    path: &UserPath,
    to: Option<&UserPath>,
    bytes: Option<u64>,
    started: Instant,
    error: Option<&super::FsError>,
) -> RecentOp {
    RecentOp {
        time: Utc::now(),
        user: origin.user.clone(),
        protocol: origin.protocol,
        op,
        path: path.to_string(),
        to: to.map(UserPath::to_string),
        bytes,
        ms: started.elapsed().as_millis() as u64,
        result: if error.is_none() { "ok" } else { "error" },
        error: error.map(|e| e.client_message()),
    }
}

/// An opened transfer gets `end` as its end hook; one that failed to open
/// is told at once.
async fn ending<T, E: FnOnce(Ended<'_>) -> Receipt + Send + Sync + 'static>(
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
            end(Ended::failed(&e)).wait().await;
            Err(e)
        }
    }
}

#[async_trait]
impl<V: Vfs> Vfs for Audited<V> {
    async fn stat(&self, path: &UserPath) -> FsResult<FileStat> {
        self.vfs.stat(path).await
    }

    async fn list(&self, path: &UserPath) -> FsResult<BoxStream<'static, FsResult<FileStat>>> {
        self.line("list", path, None, self.vfs.list(path)).await
    }

    async fn open_read(&self, path: &UserPath, offset: u64) -> FsResult<Download> {
        let (end, refused) = self.reserved_end("download", path);
        let mut opened = match refused {
            Some(e) => Err(e),
            None => self.vfs.open_read(path, offset).await,
        };
        if let Ok(d) = &mut opened
            && let Some(meter) = self.meter(path, Direction::Download, Some(d.stat().size))
        {
            d.on_progress(meter);
        }
        ending(opened, end, Download::on_end).await
    }

    async fn open_write(&self, path: &UserPath, mode: WriteMode) -> FsResult<Upload> {
        let (end, refused) = self.reserved_end("upload", path);
        let mut opened = match refused {
            Some(e) => Err(e),
            None => self.vfs.open_write(path, mode).await,
        };
        if let Ok(u) = &mut opened
            && let Some(meter) = self.meter(path, Direction::Upload, None)
        {
            u.on_progress(meter);
        }
        ending(opened, end, Upload::on_end).await
    }

    async fn mkdir(&self, path: &UserPath) -> FsResult<()> {
        self.line("mkdir", path, None, self.vfs.mkdir(path)).await
    }

    async fn rmdir(&self, path: &UserPath) -> FsResult<()> {
        self.line("rmdir", path, None, self.vfs.rmdir(path)).await
    }

    async fn remove(&self, path: &UserPath) -> FsResult<()> {
        self.line("remove", path, None, self.vfs.remove(path)).await
    }

    async fn rename(&self, from: &UserPath, to: &UserPath, overwrite: bool) -> FsResult<()> {
        self.line(
            "rename",
            from,
            Some(to),
            self.vfs.rename(from, to, overwrite),
        )
        .await
    }

    async fn set_times(&self, path: &UserPath, mtime: DateTime<Utc>) -> FsResult<()> {
        self.line("setstat", path, None, self.vfs.set_times(path, mtime))
            .await
    }

    async fn statvfs(&self, path: &UserPath) -> FsResult<Space> {
        self.vfs.statvfs(path).await
    }

    async fn digest(&self, path: &UserPath, algorithm: Algorithm) -> FsResult<Vec<u8>> {
        self.line("checksum", path, None, self.vfs.digest(path, algorithm))
            .await
    }
}
