//! The accept loop every listener runs (SFTP, FTP, implicit FTPS, admin, web),
//! and the connection caps of the listeners whose connections are not
//! sessions (the admin endpoint).

pub mod http;

use crate::auth::Source;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest pause between accepts after an error: an accept that fails
/// because the process is out of file descriptors is retried no faster,
/// and the other listeners, each with its own loop, go on.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How often one listener logs that accepting fails.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Where a listener's connections run: a gateway's tracker, which
/// shutdown waits on, and its count of failed accepts.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    pub tracker: tokio_util::task::TaskTracker,
    pub accept_errors: prometheus_client::metrics::counter::Counter,
}

/// Accepts connections on `listener` until `stop` completes, each handed to
/// `serve` in a task of `tasks` (the gateway's, which shutdown waits on). An accept error (out of file descriptors
/// and the like) backs off, doubling up to [`MAX_BACKOFF`], and is logged
/// once a minute with the number of failures, never spun on.
pub async fn accept_until<F, S>(
    listener: &TcpListener,
    what: &'static str,
    tasks: &Tasks,
    stop: impl Future<Output = ()>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> S,
    S: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(stop);
    let mut backoff = Duration::from_millis(10);
    let mut failures = 0u64;
    let mut warned: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    backoff = Duration::from_millis(10);
                    tasks.tracker.spawn(serve(socket, peer));
                }
                Err(e) => {
                    failures += 1;
                    if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        tracing::warn!(listener = what, error = %e, failures, "accepting connections fails; retrying with a pause (out of file descriptors? see docs/operations.md, file descriptors)");
                        warned = Some(Instant::now());
                        failures = 0;
                    }
                    tasks.accept_errors.inc();
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            },
        }
    }
}

/// At most `total` connections at once, and `per_source` from one source
/// (an IPv4 address or an IPv6 /64), for a listener whose connections are
/// not sessions and so not under the session limits.
#[derive(Debug, Clone)]
pub struct ConnectionCap {
    total: Arc<Semaphore>,
    per_source: usize,
    open: Arc<Mutex<HashMap<Source, usize>>>,
}

/// One admitted connection; its place is given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    _total: OwnedSemaphorePermit,
    source: Source,
    open: Arc<Mutex<HashMap<Source, usize>>>,
}

impl ConnectionCap {
    pub fn new(total: usize, per_source: usize) -> Self {
        ConnectionCap {
            total: Arc::new(Semaphore::new(total)),
            per_source,
            open: Arc::default(),
        }
    }

    /// A place for a connection from `peer`, if there is one.
    pub fn admit(&self, peer: SocketAddr) -> Option<Admitted> {
        let total = self.total.clone().try_acquire_owned().ok()?;
        let source = Source::from(peer.ip());
        let mut open = crate::base::lock(&self.open);
        let n = open.entry(source).or_default();
        if *n >= self.per_source {
            return None;
        }
        *n += 1;
        Some(Admitted {
            _total: total,
            source,
            open: self.open.clone(),
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = crate::base::lock(&self.open);
        if let Some(n) = open.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// Raises the soft limit of open files to the hard limit: every session
/// holds a socket (FTP two), and systemd's default soft limit of 1024
/// would make accepts fail long before `max_sessions`. The figure is logged.
pub fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            let raised = soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok();
            let open_files = if raised { hard } else { soft };
            tracing::info!(open_files, "open file limit");
        }
        Err(e) => tracing::info!(error = %e, "the open file limit could not be read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_in_total_and_per_source() {
        let cap = ConnectionCap::new(3, 2);
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:1000".parse().unwrap();
        let a1 = cap.admit(a).unwrap();
        let _a2 = cap.admit(a).unwrap();
        assert!(cap.admit(a).is_none(), "per source");
        let _b1 = cap.admit(b).unwrap();
        assert!(cap.admit(b).is_none(), "in total");
        drop(a1);
        assert!(cap.admit(a).is_some(), "a place given back");
    }
}
