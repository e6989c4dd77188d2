//! Policy around the VFS (DESIGN §1): what the gateway does beside moving
//! a file — the audit line, the webhook events, the console's view, the
//! byte counters, the file rules. Each is a [`Layer`], written once in a file of its own
//! and wrapped around any [`Vfs`] by [`Layered`]; `vfs/` below knows none
//! of them, as libunftp's storage backends know nothing of its middleware.
//!
//! [`SessionVfs`] is a user's VFS with every layer, what both frontends
//! serve; `session.rs` builds it.

pub mod audit;
pub mod bandwidth;
pub mod counted;
pub mod events;
pub mod live;
pub mod quota;
pub mod rules;

use crate::base::{Algorithm, FsResult};
use crate::vfs::transfers::{Ended, Observers, Progress};
use crate::vfs::{Download, FileStat, Located, Upload, UserPath, UserVfs, Vfs, WriteMode};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::time::Instant;

/// One file operation as the layers see it: a call (`mkdir`, `rename`…)
/// or a transfer (`upload`, `download`), from its start.
#[derive(Debug, Clone)]
pub struct Op {
    pub name: &'static str,
    pub path: UserPath,
    /// The destination of a rename.
    pub to: Option<UserPath>,
    pub started: Instant,
}

impl Op {
    fn new(name: &'static str, path: &UserPath, to: Option<&UserPath>) -> Op {
        Op {
            name,
            path: path.clone(),
            to: to.cloned(),
            started: Instant::now(),
        }
    }
}

/// One kind of policy around the VFS.
pub trait Layer: Send + Sync + 'static {
    /// What [`Layer::before`] hands to [`Layer::after`] (an event's room).
    type Ticket: Send + Sync + 'static;

    /// Before an operation runs, with the VFS below for what the layer
    /// must know of it. An error refuses the operation: it does not run,
    /// and every layer's `after` is told the refusal (this one's without
    /// a ticket).
    fn before(&self, below: &dyn Vfs, op: &Op) -> FsResult<Self::Ticket>;

    /// When the operation has ended: a call at once, a transfer when it is
    /// closed or dropped. What the future waits for (an event on disk) is
    /// waited for before the reply; a download's or an abandoned upload's
    /// is dropped, so the work must be done before it is returned.
    fn after(
        &self,
        op: &Op,
        ticket: Option<Self::Ticket>,
        ended: Ended<'_>,
    ) -> BoxFuture<'static, ()>;

    /// Told the bytes of a transfer as they move; `size` is a download's.
    fn progress(&self, _op: &Op, _size: Option<u64>) -> Option<Progress> {
        None
    }

    /// Sets what a transfer keeps to as it moves (a rate), once opened.
    fn shape(&self, _op: &Op, _hooks: &mut Observers) {}
}

/// What an operation that is not a transfer tells `after`.
fn done<T>(result: &FsResult<T>) -> Ended<'_> {
    Ended {
        bytes: None,
        digests: None,
        size: None,
        etag: None,
        result: result.as_ref().map(|_| ()),
    }
}

/// `layer` around the VFS `inner`.
#[derive(Debug)]
pub struct Layered<L, V> {
    layer: Arc<L>,
    inner: V,
}

impl<L: Layer, V: Vfs> Layered<L, V> {
    pub fn new(layer: L, inner: V) -> Self {
        Layered {
            layer: Arc::new(layer),
            inner,
        }
    }

    pub fn inner(&self) -> &V {
        &self.inner
    }

    /// Runs one call between the layer's `before` and `after`.
    async fn run<T>(
        &self,
        name: &'static str,
        path: &UserPath,
        to: Option<&UserPath>,
        call: impl Future<Output = FsResult<T>>,
    ) -> FsResult<T> {
        let op = Op::new(name, path, to);
        let (ticket, result) = match self.layer.before(&self.inner, &op) {
            Ok(ticket) => (Some(ticket), call.await),
            Err(e) => (None, Err(e)),
        };
        self.layer.after(&op, ticket, done(&result)).await;
        result
    }

    /// Opens a transfer between the layer's `before` and, when it ends,
    /// `after`; `observers` reaches an opened transfer's hooks.
    async fn open<T>(
        &self,
        name: &'static str,
        path: &UserPath,
        open: impl Future<Output = FsResult<T>>,
        observers: fn(&mut T) -> (&mut Observers, Option<u64>),
    ) -> FsResult<T> {
        let op = Op::new(name, path, None);
        let ticket = match self.layer.before(&self.inner, &op) {
            Ok(ticket) => ticket,
            Err(e) => {
                self.layer.after(&op, None, Ended::failed(&e)).await;
                return Err(e);
            }
        };
        let mut transfer = match open.await {
            Ok(transfer) => transfer,
            Err(e) => {
                self.layer.after(&op, Some(ticket), Ended::failed(&e)).await;
                return Err(e);
            }
        };
        let (hooks, size) = observers(&mut transfer);
        if let Some(progress) = self.layer.progress(&op, size) {
            hooks.on_progress(progress);
        }
        self.layer.shape(&op, hooks);
        let layer = self.layer.clone();
        hooks.on_end(Box::new(move |ended| layer.after(&op, Some(ticket), ended)));
        Ok(transfer)
    }
}

#[async_trait]
impl<L: Layer, V: Vfs> Vfs for Layered<L, V> {
    async fn stat(&self, path: &UserPath) -> FsResult<FileStat> {
        self.inner.stat(path).await
    }

    async fn list(&self, path: &UserPath) -> FsResult<BoxStream<'static, FsResult<FileStat>>> {
        self.run("list", path, None, self.inner.list(path)).await
    }

    async fn open_read(&self, path: &UserPath, offset: u64) -> FsResult<Download> {
        let open = self.inner.open_read(path, offset);
        self.open("download", path, open, |d| {
            let size = d.stat().size;
            (d.observers(), Some(size))
        })
        .await
    }

    async fn open_write(&self, path: &UserPath, mode: WriteMode) -> FsResult<Upload> {
        let open = self.inner.open_write(path, mode);
        self.open("upload", path, open, |u| (u.observers(), None))
            .await
    }

    async fn mkdir(&self, path: &UserPath) -> FsResult<()> {
        self.run("mkdir", path, None, self.inner.mkdir(path)).await
    }

    async fn rmdir(&self, path: &UserPath) -> FsResult<()> {
        self.run("rmdir", path, None, self.inner.rmdir(path)).await
    }

    async fn remove(&self, path: &UserPath) -> FsResult<()> {
        self.run("remove", path, None, self.inner.remove(path))
            .await
    }

    async fn rename(&self, from: &UserPath, to: &UserPath, overwrite: bool) -> FsResult<()> {
        let call = self.inner.rename(from, to, overwrite);
        self.run("rename", from, Some(to), call).await
    }

    async fn set_times(&self, path: &UserPath, mtime: DateTime<Utc>) -> FsResult<()> {
        let call = self.inner.set_times(path, mtime);
        self.run("setstat", path, None, call).await
    }

    async fn statvfs(&self, path: &UserPath) -> FsResult<crate::remote::Space> {
        self.inner.statvfs(path).await
    }

    async fn digest(&self, path: &UserPath, algorithm: Algorithm) -> FsResult<Vec<u8>> {
        let call = self.inner.digest(path, algorithm);
        self.run("checksum", path, None, call).await
    }

    fn locate(&self, path: &UserPath) -> Option<Located> {
        self.inner.locate(path)
    }
}

/// Every layer, outermost first: the console sees what the audit line
/// says; what the file rules, the quotas or the events layer (its event cannot be
/// taken) refuse is audited as refused, and a refused upload posts no
/// event.
pub type Stack = Layered<
    live::Watched,
    Layered<
        audit::Audited,
        rules::Ruled<
            quota::Quoted<Throttled<Layered<counted::Counted, Layered<events::Told, UserVfs>>>>,
        >,
    >,
>;

type Throttled<V> = Layered<bandwidth::Throttled, V>;

/// What a user may do beside its permissions, as one session applies it.
pub struct Governance<'a> {
    pub filters: &'a [crate::config::FilterConfig],
    pub max_file_size: Option<u64>,
    pub quotas: Arc<crate::quota::Quotas>,
    pub rates: bandwidth::Rates,
}

/// A user's VFS as a session serves it, with every layer of policy.
#[derive(Debug)]
pub struct SessionVfs {
    vfs: Stack,
}

impl SessionVfs {
    /// Wraps `vfs` for one session of `origin`'s user: its operations
    /// held to the user's file rules, quotas and rates (`rules`), audited, told to `events`, counted
    /// into `metrics` and shown on the console's `live` entry.
    pub fn new(
        vfs: UserVfs,
        rules: Governance<'_>,
        events: Arc<crate::events::Events>,
        origin: crate::events::Origin,
        live: Arc<crate::live::LiveSession>,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let protocol = origin.protocol;
        let told = Layered::new(events::Told::new(events, origin.clone()), vfs);
        let counted = Layered::new(counted::Counted::new(metrics, protocol), told);
        let throttled = Layered::new(bandwidth::Throttled::new(rules.rates), counted);
        let quoted = quota::Quoted::new(rules.quotas, throttled);
        let ruled = rules::Ruled::new(rules.filters, rules.max_file_size, quoted);
        let audited = Layered::new(audit::Audited, ruled);
        SessionVfs {
            vfs: Layered::new(live::Watched::new(live, origin), audited),
        }
    }

    /// Whether a file of `size` bytes may be written in `dir`: within
    /// `max_file_size`, and with room in the quotas over `dir`. What a
    /// client that says the size first is told before any byte moves.
    pub async fn room(&self, dir: &UserPath, size: u64) -> FsResult<()> {
        let ruled = self.vfs.inner().inner();
        ruled.fits(size)?;
        ruled.inner().room(dir, size).await
    }

    /// The user whose files these are.
    pub fn user(&self) -> &str {
        let quoted = self.vfs.inner().inner().inner();
        quoted.inner().inner().inner().inner().user()
    }
}

impl std::ops::Deref for SessionVfs {
    type Target = Stack;

    fn deref(&self) -> &Stack {
        &self.vfs
    }
}

/// A layer that needs nothing before an operation.
fn nothing_before() -> FsResult<()> {
    Ok(())
}

/// What a layer whose `after` waits for nothing returns.
fn nothing_to_wait() -> BoxFuture<'static, ()> {
    std::future::ready(()).boxed()
}
