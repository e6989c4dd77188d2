//! The uploads open on one remote, by key, shared by every session: what
//! `stat` and a second writer of the same file need to know of an upload
//! still open.

use crate::base::lock;
use crate::vfs::watches::Watches;
use chrono::{DateTime, Utc};
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// What `stat` needs to know of an upload still open.
#[derive(Debug, Default)]
pub struct UploadStatus {
    pub bytes: AtomicU64,
    pub started: DateTime<Utc>,
    /// A client-set mtime to store on commit (`preserve_mtime`).
    pub mtime: Mutex<Option<DateTime<Utc>>>,
}

/// Open uploads of one remote, by key: shared by every session.
#[derive(Debug, Default)]
pub struct OpenUploads {
    open: Mutex<HashMap<String, Arc<UploadStatus>>>,
    /// Told when an upload ends: its object may have changed.
    watches: Arc<Watches>,
    /// The gateway's `uploads_in_flight`.
    in_flight: Gauge,
}

impl OpenUploads {
    pub fn new(watches: Arc<Watches>, in_flight: Gauge) -> Self {
        OpenUploads {
            open: Mutex::default(),
            watches,
            in_flight,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<UploadStatus>>> {
        lock(&self.open)
    }

    pub fn get(&self, key: &str) -> Option<Arc<UploadStatus>> {
        self.map().get(key).cloned()
    }

    pub(super) fn register(&self, key: &str) -> Arc<UploadStatus> {
        let p = Arc::new(UploadStatus {
            started: Utc::now(),
            ..Default::default()
        });
        self.map().insert(key.to_string(), p.clone());
        self.in_flight.inc();
        p
    }

    /// Called once per upload, when it commits or is dropped.
    pub(super) fn unregister(&self, key: &str, p: &Arc<UploadStatus>) {
        self.in_flight.dec();
        {
            let mut map = self.map();
            if map.get(key).is_some_and(|q| Arc::ptr_eq(q, p)) {
                map.remove(key);
            }
        }
        // After the commit, committed or not: a prefetch that raced it
        // may hold the old bytes.
        self.watches.changed(key);
    }
}
