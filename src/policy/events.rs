//! The file events of `[[webhooks]]` (upload, download, delete, rename,
//! mkdir, rmdir). An operation is told for sure: its event's room in the
//! spool is held before it runs — with the spool full, the operation is
//! refused — and its reply waits until the event is on disk: an upload's
//! when its close commits the object, never for one aborted.

use super::{Layer, Op};
use crate::base::{Algorithm, FsResult};
use crate::config::EventKind;
use crate::events::{Event, Events, Origin, Reservation};
use crate::vfs::Vfs;
use crate::vfs::transfers::Ended;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;

/// The layer that tells a session's file operations to the webhooks.
#[derive(Debug)]
pub struct Told {
    events: Arc<Events>,
    origin: Origin,
}

impl Told {
    pub fn new(events: Arc<Events>, origin: Origin) -> Self {
        Told { events, origin }
    }

    /// What an operation tells the webhooks, as far as is known before it
    /// runs; `None` for an operation no event names.
    fn event(&self, below: &dyn Vfs, op: &Op) -> Option<Event> {
        if !self.events.any() {
            return None;
        }
        let kind = match op.name {
            "upload" => EventKind::Upload,
            "download" => EventKind::Download,
            "remove" => EventKind::Delete,
            "rename" => EventKind::Rename,
            "mkdir" => EventKind::Mkdir,
            "rmdir" => EventKind::Rmdir,
            _ => return None,
        };
        let at = below.locate(&op.path).unwrap_or_default();
        Some(Event {
            path: Some(op.path.to_string()),
            to: op.to.as_ref().map(|t| t.to_string()),
            to_key: op.to.as_ref().and_then(|t| below.locate(t)).map(|l| l.key),
            remote: Some(at.remote).filter(|r| !r.is_empty()),
            bucket: at.bucket,
            key: Some(at.key).filter(|k| !k.is_empty()),
            ..self.origin.event(kind)
        })
    }
}

impl Layer for Told {
    /// The event, and the room held for it.
    type Ticket = Option<(Event, Reservation)>;

    fn before(&self, below: &dyn Vfs, op: &Op) -> FsResult<Self::Ticket> {
        let Some(event) = self.event(below, op) else {
            return Ok(None);
        };
        let room = self.events.reserve(&event)?;
        Ok(Some((event, room)))
    }

    fn after(
        &self,
        op: &Op,
        ticket: Option<Self::Ticket>,
        ended: Ended<'_>,
    ) -> BoxFuture<'static, ()> {
        let Some(Some((event, room))) = ticket else {
            return super::nothing_to_wait();
        };
        let digest = |a| ended.digests.and_then(|d| d.hex(a));
        let event = Event {
            size: ended.bytes,
            md5: digest(Algorithm::Md5),
            sha1: digest(Algorithm::Sha1),
            sha256: digest(Algorithm::Sha256),
            duration_ms: Some(op.started.elapsed().as_millis() as u64),
            ..event
        };
        let event = event.failed(ended.result.err().map(|e| e.client_message()));
        room.emit(event).wait().boxed()
    }
}
