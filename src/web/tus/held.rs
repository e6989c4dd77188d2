//! The unfinished uploads a node holds in memory, each an open
//! [`Upload`] kept between requests, and how a request finds its upload:
//! here if this node holds it, else taken up from its [`Record`] where
//! the store has it (after a restart, or from another node).
//!
//! An upload held here is let go without being aborted (set aside) when
//! its session ends, when it idles past its expiry, when another node
//! takes it, and at shutdown: its record and its parts in the store stay
//! for the client to resume. Only a client's `DELETE`, a failure, or the
//! record's expiry abort it.

use super::records::{Record, Records};
use super::{not_found, store_failed};
use crate::base::lock;
use crate::vfs::{Storage, Upload, UserPath, Vfs, WriteMode};
use crate::web::ApiError;
use crate::web::sessions::WebSession;
use chrono::{DateTime, Utc};
use http::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long an upload may keep the bytes of its unsent part between
/// requests: then they go back to the memory budget, and the upload stands
/// at the end of its last part sent (what `HEAD` says from then on).
pub const HOLD_IDLE: Duration = Duration::from_secs(30);

/// How long a `PATCH` waits for an earlier one on the same upload (a
/// client resuming before the gateway noticed its old connection drop).
const TAKE_OVER: Duration = Duration::from_secs(10);

/// One unfinished upload held here.
pub struct Pending {
    pub length: u64,
    pub offset: u64,
    /// `None` once finished, failed or aborted.
    pub upload: Option<Upload>,
    /// When its last request ended.
    pub touched: Instant,
    /// The session's end: then the upload is set aside.
    end: CancellationToken,
}

impl Pending {
    pub fn new(length: u64, upload: Upload, end: CancellationToken) -> Self {
        Pending {
            length,
            offset: 0,
            upload: Some(upload),
            touched: Instant::now(),
            end,
        }
    }

    /// Aborts the upload: nothing of it is stored, its parts are deleted.
    pub fn abort(&mut self) {
        drop(self.upload.take());
    }
}

impl Drop for Pending {
    /// Let go, not aborted: the client may resume it here or elsewhere.
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            upload.set_aside();
        }
    }
}

pub type Held = tokio::sync::OwnedMutexGuard<Pending>;

/// An upload held here and its user, who alone may reach it.
struct Entry {
    user: String,
    pending: Arc<tokio::sync::Mutex<Pending>>,
}

/// The unfinished uploads: those this node holds, and the records of all.
pub struct Uploads {
    by_id: Mutex<HashMap<String, Entry>>,
    pub records: Records,
    /// Where a recorded upload is aborted from, with no session.
    storage: Storage,
    expiry: Duration,
    /// Held while an upload is taken up from its record, so that two
    /// requests for it do not both take it up.
    taking_up: tokio::sync::Mutex<()>,
}

impl Uploads {
    pub fn new(expiry: Duration, records: Records, storage: Storage) -> Self {
        Uploads {
            by_id: Mutex::default(),
            records,
            storage,
            expiry,
            taking_up: Default::default(),
        }
    }

    /// When an upload touched now expires.
    pub fn expires(&self) -> DateTime<Utc> {
        Utc::now() + self.expiry
    }

    fn get(&self, id: &str, user: &str) -> Option<Arc<tokio::sync::Mutex<Pending>>> {
        let by_id = lock(&self.by_id);
        let entry = by_id.get(id).filter(|e| e.user == user)?;
        Some(entry.pending.clone())
    }

    /// Holds `pending` here as upload `id`, and takes it for the request.
    pub async fn hold(&self, id: &str, user: &str, pending: Pending) -> Held {
        let pending = Arc::new(tokio::sync::Mutex::new(pending));
        let entry = Entry {
            user: user.to_string(),
            pending: pending.clone(),
        };
        lock(&self.by_id).insert(id.to_string(), entry);
        pending.lock_owned().await
    }

    /// Forgets upload `id` here (what the request holds stays with it).
    pub fn forget(&self, id: &str) {
        lock(&self.by_id).remove(id);
    }

    /// Ends upload `id` for good: its record goes.
    pub async fn end(&self, id: &str) -> Result<(), ApiError> {
        self.forget(id);
        self.records.remove(id).await.map_err(store_failed)
    }

    /// The upload `id` of the session's user for one request, with its
    /// new expiry, once no other request holds it: the one held here, or
    /// taken up from its record.
    pub async fn take(
        &self,
        session: &WebSession,
        id: &str,
    ) -> Result<(Held, DateTime<Utc>), ApiError> {
        let user = &session.user.name;
        let expires = self.expires();
        let claimed = self.records.claim(id, user, expires).await;
        let Some((record, moved)) = claimed.map_err(store_failed)? else {
            self.forget(id);
            return Err(not_found());
        };
        if moved {
            // Another node held it since: what is held here is stale.
            self.forget(id);
        }
        let held = match self.get(id, user) {
            Some(pending) => pending,
            None => {
                let _one = self.taking_up.lock().await;
                match self.get(id, user) {
                    Some(pending) => pending,
                    None => return Ok((self.take_up(session, record).await?, expires)),
                }
            }
        };
        let taken = tokio::time::timeout(TAKE_OVER, held.lock_owned()).await;
        let taken = taken.map_err(|_| {
            ApiError(
                StatusCode::LOCKED,
                "another request is writing this upload".into(),
            )
        })?;
        Ok((taken, expires))
    }

    /// Opens the recorded upload for the session, through every policy
    /// layer, and continues its multipart upload where the store has it.
    async fn take_up(&self, session: &WebSession, record: Record) -> Result<Held, ApiError> {
        let path = UserPath::parse(&record.path)?;
        let mut upload = session.vfs.open_write(&path, WriteMode::Truncate).await?;
        if upload.target() != (record.remote.as_str(), record.key.as_str()) {
            // The user's tree changed: the upload's bytes are elsewhere.
            drop(upload);
            self.end(&record.id).await?;
            abort_recorded(&self.storage, &record).await;
            return Err(not_found());
        }
        let offset = match &record.multipart {
            Some(multipart) => match upload.take_up(multipart).await {
                Ok(offset) => offset,
                Err(e) => {
                    // Completed, aborted or lost in the store: gone.
                    self.end(&record.id).await?;
                    return Err(match e {
                        crate::base::FsError::NotFound => not_found(),
                        e => e.into(),
                    });
                }
            },
            None => 0,
        };
        tracing::info!(path = %record.path, offset, "tus upload taken up from its record");
        let pending = Pending {
            length: record.length,
            offset,
            upload: Some(upload),
            touched: Instant::now(),
            end: session.ended().clone(),
        };
        Ok(self.hold(&record.id, &record.user, pending).await)
    }

    /// Sets aside the uploads of ended sessions and those idle past their
    /// expiry, gives the memory of those idle past [`HOLD_IDLE`] back (one
    /// in a request is left to it), and aborts the recorded uploads past
    /// their expiry, wherever they were held.
    pub async fn sweep(&self) {
        let now = Instant::now();
        let set_aside: Vec<Arc<tokio::sync::Mutex<Pending>>> = {
            let mut by_id = lock(&self.by_id);
            let mut gone = Vec::new();
            by_id.retain(|_, e| match e.pending.try_lock() {
                Ok(mut p) => {
                    let idle = now.duration_since(p.touched);
                    let keep = p.upload.is_some() && idle < self.expiry && !p.end.is_cancelled();
                    if keep && idle >= HOLD_IDLE {
                        let released = p.upload.as_mut().map(Upload::release_tail);
                        p.offset = released.unwrap_or(p.offset);
                    }
                    if !keep {
                        gone.push(e.pending.clone());
                    }
                    keep
                }
                Err(_) => true,
            });
            gone
        };
        drop(set_aside);
        match self.records.take_expired().await {
            Ok(expired) => {
                for record in expired {
                    self.forget(&record.id);
                    abort_recorded(&self.storage, &record).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "expired tus uploads not swept; trying again"),
        }
    }

    /// How many unfinished uploads `user` has, here or anywhere.
    pub async fn open_of(&self, user: &str) -> Result<usize, ApiError> {
        self.records.count_of(user).await.map_err(store_failed)
    }
}

/// Aborts a recorded upload in the store, with no session: its parts go.
async fn abort_recorded(storage: &Storage, record: &Record) {
    let Some(multipart) = &record.multipart else {
        return;
    };
    let Some(layer) = storage.layer(&record.remote) else {
        return;
    };
    match layer.remote().abort_upload(&record.key, multipart).await {
        Ok(()) | Err(crate::base::FsError::NotFound) => {
            tracing::info!(user = %record.user, path = %record.path, "an unfinished tus upload expired and was aborted")
        }
        Err(e) => {
            tracing::warn!(key = %record.key, error = %e, "aborting an expired tus upload failed; the bucket's lifecycle rules must clean it")
        }
    }
}
