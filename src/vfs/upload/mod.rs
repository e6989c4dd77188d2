//! Streaming uploads (DESIGN §3 "Uploads stream").
//!
//! Bytes go out as they arrive: the first part is buffered; a file that ends
//! within it is one PUT, a longer one a multipart upload with
//! `upload_concurrency` parts in flight. Memory stays under
//! `(upload_concurrency + 1) × part_size`, out-of-order bytes included. The
//! object appears only on a successful [`Upload::close`]; an error or a drop
//! aborts the multipart upload, so no truncated object is ever visible.

mod commit;
mod registry;
mod reorder;
mod resumable;

use super::budget::{Budget, Held};
use super::hashing::Hashing;
use super::resume::{OldBytes, old_bytes};
use super::transfers::{Ended, Observers, Transfer};
use super::{FsError, FsResult};
use crate::base::Digests;
use crate::remote::{Continued, PartEtags, Remote, Started, md5_of, object_path};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{MultipartUpload, PutMultipartOptions, PutPayload};
pub use registry::{OpenUploads, UploadStatus};
use reorder::{Place, Reorder};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::task::JoinHandle;

/// An object an upload made visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    /// As the store answered the last PUT; `None` if it gave none.
    pub etag: Option<String>,
    /// What the upload computed of the object's bytes (empty after a
    /// resume whose old bytes were copied in the store).
    pub digests: Digests,
}

/// How an upload treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create or replace.
    Truncate,
    /// Fail if the object exists (SFTP EXCL).
    CreateNew,
    /// Keep the existing bytes and continue after them (resume, SFTP APPEND).
    /// The new object is the old bytes followed by the new ones; until
    /// close, the old object stays as it was.
    Append,
}

/// An upload in progress. Dropping it without [`Upload::close`] aborts it.
pub struct Upload {
    remote: Arc<Remote>,
    uploads: Arc<OpenUploads>,
    key: String,
    path: Path,
    mode: WriteMode,
    part_size: usize,
    concurrency: usize,
    /// Bytes received contiguously from offset 0.
    next: u64,
    /// The part being assembled.
    part: Vec<Bytes>,
    part_len: usize,
    /// Out-of-order writes waiting for the gap before them to fill.
    pending: Reorder,
    parts_upload: Option<Box<dyn MultipartUpload>>,
    /// Its id, where the store can take it up again (S3).
    multipart_id: Option<String>,
    /// What S3 stored of each part, checked against what was sent.
    part_etags: Option<PartEtags>,
    /// Each part on its way, and its length.
    in_flight: VecDeque<(PartSent, usize)>,
    /// The MD5 of each part stored, in order, as S3's ETag or the upload's
    /// own check gave it: what a lost Complete's object is recognised by.
    /// `None` where neither did (copies of a resume, ETags that are no
    /// MD5, stores other than S3).
    part_md5s: Vec<Option<[u8; 16]>>,
    in_flight_len: usize,
    peak: usize,
    /// Whole parts held from the gateway's budget, enough for what is buffered.
    budget: Budget,
    slots: Vec<Held>,
    progress: Arc<UploadStatus>,
    /// A resume not begun yet: the size of the object whose bytes come
    /// first. The first write decides (see `resume.rs`).
    old: Option<u64>,
    /// Bytes of the old object this upload continues: not the client's.
    continued: u64,
    failed: Option<FsError>,
    done: bool,
    /// What the layers above are told of the transfer.
    observers: Observers,
    hashing: Hashing,
    /// Ends when the upload is committed, or when its abort has finished.
    transfer: Option<Transfer>,
}

/// A part on its way: its MD5 once stored (see `Upload::part_md5s`).
type PartSent = JoinHandle<object_store::Result<Option<[u8; 16]>>>;

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("key", &self.key)
            .field("received", &self.next)
            .finish_non_exhaustive()
    }
}

impl Upload {
    pub(crate) fn new(
        remote: Arc<Remote>,
        uploads: Arc<OpenUploads>,
        budget: Budget,
        key: String,
        mode: WriteMode,
    ) -> FsResult<Self> {
        let path = object_path(&key)?;
        let progress = uploads.register(&key);
        let hashing = Hashing::start(remote.checksums());
        let part_size = remote.part_size() as usize;
        let concurrency = remote.upload_concurrency();
        let transfer = budget.transfer();
        Ok(Upload {
            remote,
            uploads,
            key,
            path,
            mode,
            part_size,
            concurrency,
            next: 0,
            part: Vec::new(),
            part_len: 0,
            pending: Reorder::default(),
            parts_upload: None,
            multipart_id: None,
            part_etags: None,
            in_flight: VecDeque::new(),
            part_md5s: Vec::new(),
            in_flight_len: 0,
            peak: 0,
            budget,
            slots: Vec::new(),
            progress,
            old: None,
            continued: 0,
            failed: None,
            done: false,
            observers: Observers::default(),
            hashing,
            transfer: Some(transfer),
        })
    }

    /// An upload that continues the `size` bytes of the object there if
    /// the client's first write is at `size`, and replaces it if that
    /// write is at 0. Nothing is read before.
    pub(crate) fn resuming(
        remote: Arc<Remote>,
        uploads: Arc<OpenUploads>,
        budget: Budget,
        key: String,
        size: u64,
    ) -> FsResult<Self> {
        let mut upload = Upload::new(remote, uploads, budget, key, WriteMode::Append)?;
        upload.old = Some(size);
        upload.progress.bytes.store(size, Ordering::Relaxed);
        Ok(upload)
    }

    /// Where the layers above set what they are told of this upload: its
    /// bytes as they move, and its end (committed, failed, or dropped).
    pub fn observers(&mut self) -> &mut Observers {
        &mut self.observers
    }

    /// Records why the upload cannot finish (the client's data connection
    /// broke): close fails with it, and the end hook is told it.
    pub fn fail(&mut self, why: FsError) {
        self.failed.get_or_insert(why);
    }

    /// Makes the old object's bytes the start of this upload.
    async fn continue_old(&mut self, size: u64) -> FsResult<()> {
        let result: FsResult<()> = async {
            match old_bytes(&self.remote, &self.budget, &self.key, size).await? {
                OldBytes::InStore(c) => self.continue_parts(c, size),
                OldBytes::Streamed(mut bytes) => {
                    while let Some(chunk) = bytes.next().await {
                        self.append(chunk?).await?;
                    }
                }
            }
            self.continued = self.next;
            Ok(())
        }
        .await;
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        result
    }

    /// Makes `continued`'s parts, `size` bytes already in the store, the
    /// start of this upload.
    fn continue_parts(&mut self, continued: Continued, size: u64) {
        // Those bytes stay in the store, unread: no digest can cover them.
        self.hashing = Hashing::Off;
        self.parts_upload = Some(continued.upload);
        self.multipart_id = Some(continued.id);
        self.part_etags = continued.etags;
        self.part_md5s = vec![None; continued.parts];
        self.next = size;
        self.progress.bytes.store(size, Ordering::Relaxed);
    }

    /// The reorder window: how far past the contiguous end a write may land.
    pub fn window(&self) -> u64 {
        self.part_size as u64
    }

    /// The most bytes this upload has held at once (parts in flight included).
    pub fn peak_buffered(&self) -> usize {
        self.peak
    }

    /// The file's size so far: where a resume continues.
    pub fn bytes_received(&self) -> u64 {
        self.old.unwrap_or(self.next)
    }

    /// Reports a part that already failed (SFTP fsync), without waiting on
    /// parts still in flight.
    pub async fn check(&mut self) -> FsResult<()> {
        while self.in_flight.front().is_some_and(|(h, _)| h.is_finished()) {
            self.finish_oldest().await?;
        }
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn limit(&self) -> usize {
        (self.concurrency + 1) * self.part_size
    }

    fn buffered(&self) -> usize {
        self.in_flight_len + self.part_len + self.pending.len()
    }

    fn note_peak(&mut self) {
        self.peak = self.peak.max(self.buffered());
    }

    /// Writes `data` at `offset`. Returns at once unless memory is at its bound.
    pub async fn write_at(&mut self, offset: u64, data: Bytes) -> FsResult<()> {
        let len = data.len() as u64;
        // Past a limit the whole upload fails: nothing of it is stored.
        if let Err(e) = self.observers.allows(offset.saturating_add(len)).await {
            self.fail(e.clone());
            return Err(e);
        }
        self.observers.paced(len).await;
        let written = self.write(offset, data).await;
        if written.is_ok() {
            self.observers.moved(len);
        }
        written
    }

    /// Writes `data` after the last byte of the file (SFTP `APPEND`): a
    /// resume's first write continues the old object, as FTP `APPE` does.
    pub async fn write_at_end(&mut self, data: Bytes) -> FsResult<()> {
        self.write_at(self.bytes_received(), data).await
    }

    async fn write(&mut self, offset: u64, data: Bytes) -> FsResult<()> {
        // A part that failed since the last write is reported now, not at close.
        self.check().await?;
        if data.is_empty() {
            return Ok(());
        }
        if let Some(size) = self.old.take() {
            if offset == 0 {
                // Opened without truncating, written from the start: a rewrite.
                self.mode = WriteMode::Truncate;
            } else {
                self.continue_old(size).await?;
            }
        }
        let place = self
            .pending
            .place(self.next, offset, data.len(), self.window())?;
        if place == Place::Later {
            self.reserve(data.len()).await?;
            self.pending.insert(offset, data);
            self.note_peak();
            return Ok(());
        }
        self.append(data).await?;
        while let Some(data) = self.pending.take_at(self.next) {
            self.append(data).await?;
        }
        Ok(())
    }

    /// Appends contiguous bytes, a part at a time.
    async fn append(&mut self, mut data: Bytes) -> FsResult<()> {
        while !data.is_empty() {
            let take = data.len().min(self.part_size - self.part_len);
            let piece = data.split_to(take);
            self.reserve(piece.len()).await?;
            self.part_len += piece.len();
            self.next += piece.len() as u64;
            self.part.push(piece);
            self.progress.bytes.store(self.next, Ordering::Relaxed);
            self.note_peak();
            if self.part_len == self.part_size {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// Waits until `extra` more bytes fit in the upload's bound and in the
    /// parts it holds from the gateway's budget. A part is taken whole, so
    /// an upload holding one can always fill and send it: uploads waiting
    /// for the budget hold nothing they need from each other. With parts
    /// in flight, one that finishes makes room when the budget has none.
    async fn reserve(&mut self, extra: usize) -> FsResult<()> {
        while self.buffered() + extra > self.limit() && !self.in_flight.is_empty() {
            self.finish_oldest().await?;
        }
        while self.buffered() + extra > self.slots.len() * self.part_size {
            if self.in_flight.is_empty() {
                let slot = self.budget.take(self.part_size).await;
                self.slots.push(slot);
            } else if let Some(slot) = self.budget.try_take(self.part_size) {
                self.slots.push(slot);
            } else {
                self.finish_oldest().await?;
            }
        }
        Ok(())
    }

    async fn finish_oldest(&mut self) -> FsResult<()> {
        let Some((handle, len)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let result = handle.await;
        self.in_flight_len -= len;
        // Parts no longer needed go back to the budget.
        let needed = self.buffered().div_ceil(self.part_size);
        self.slots.truncate(needed);
        let failure = match result {
            Ok(Ok(md5)) => {
                self.part_md5s.push(md5);
                return Ok(());
            }
            Ok(Err(e)) => {
                FsError::failed_with(format!("uploading a part of {:?} failed", self.key), e)
            }
            Err(e) => FsError::failed_with(format!("uploading a part of {:?} failed", self.key), e),
        };
        self.failed = Some(failure.clone());
        Err(failure)
    }

    /// Sends the assembled part; starts the multipart upload on the first.
    async fn send_part(&mut self) -> FsResult<()> {
        while self.in_flight.len() >= self.concurrency {
            self.finish_oldest().await?;
        }
        self.start_parts().await?;
        let index = self.part_md5s.len() + self.in_flight.len();
        let etags = self.part_etags.clone();
        let payload: PutPayload = std::mem::take(&mut self.part).into_iter().collect();
        let len = std::mem::take(&mut self.part_len);
        self.digest(payload.clone());
        let sent_bytes = payload.clone();
        let part = self
            .parts_upload
            .as_mut()
            .expect("started above")
            .put_part(payload);
        let metrics = self.remote.metrics().clone();
        let sent = async move {
            part.await?;
            // Not S3: no ETag to check, nor to find a lost Complete's object by.
            let Some(etags) = etags else { return Ok(None) };
            match etags.stored(index) {
                // S3 checked the bytes by the checksum they carried (its
                // SHA-256 is SigV4's, hashed once): its ETag is their MD5.
                Some(stored) if stored.verified || !etags.checked() => Ok(stored.md5),
                // A server that checks no checksum: the part's MD5, hashed
                // off the async threads, must be its ETag.
                _ => {
                    metrics.hashed("part_md5", len as u64);
                    let md5 =
                        md5_of(sent_bytes)
                            .await
                            .map_err(|e| object_store::Error::Generic {
                                store: "multipart",
                                source: e.into(),
                            })?;
                    match etags.check(index, &md5) {
                        Ok(()) => Ok(Some(md5)),
                        Err(changed) => Err(object_store::Error::Generic {
                            store: "S3",
                            source: changed.into(),
                        }),
                    }
                }
            }
        };
        self.in_flight.push_back((tokio::spawn(sent), len));
        self.in_flight_len += len;
        Ok(())
    }

    /// Feeds `payload` to the kept digests, counting each pass.
    fn digest(&mut self, payload: PutPayload) {
        if self.hashing.is_on() {
            let set = self.remote.checksums();
            let passes = [
                (set.md5, "digest_md5"),
                (set.sha1, "digest_sha1"),
                (set.sha256, "digest_sha256"),
            ];
            for (_, pass) in passes.into_iter().filter(|(on, _)| *on) {
                self.remote
                    .metrics()
                    .hashed(pass, payload.content_length() as u64);
            }
        }
        self.hashing.feed(payload);
    }

    /// Starts the multipart upload unless it is.
    async fn start_parts(&mut self) -> FsResult<()> {
        if self.parts_upload.is_some() {
            return Ok(());
        }
        let opts = PutMultipartOptions {
            attributes: self.attributes(Digests::default()),
            ..Default::default()
        };
        let started = start_multipart(self.remote.clone(), self.path.clone(), opts).await;
        let started = started.map_err(|e| {
            let e = FsError::from(e);
            self.failed = Some(e.clone());
            e
        })?;
        self.parts_upload = Some(started.upload);
        self.part_etags = started.etags;
        self.multipart_id = started.id;
        Ok(())
    }

    /// Commits the object and gives its size. Until this returns `Ok`,
    /// nothing is visible; on an error, the upload is aborted.
    pub async fn close(self) -> FsResult<u64> {
        self.close_stored().await.map(|s| s.size)
    }

    /// As [`Upload::close`], with the ETag the store gave the new object:
    /// what a sync run records without asking again.
    pub async fn close_stored(mut self) -> FsResult<Stored> {
        let result = self.commit().await;
        if result.is_err() {
            self.abort_now().await;
        }
        // The close is answered once the layers above have recorded it.
        let ended = match &result {
            Ok(stored) => Ended {
                bytes: Some(self.next - self.continued),
                digests: Some(&stored.digests),
                size: Some(stored.size),
                etag: stored.etag.as_deref(),
                result: Ok(()),
            },
            Err(e) => Ended::failed(e),
        };
        self.observers.end(ended).await;
        result
    }

    async fn abort_now(&mut self) {
        for (handle, _) in self.in_flight.drain(..) {
            handle.abort();
        }
        if let Some(mut upload) = self.parts_upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(key = %self.key, error = %e, "aborting a multipart upload failed; the bucket's lifecycle rules must clean it");
        }
        self.done = true;
        self.uploads.unregister(&self.key, &self.progress);
    }
}

/// Starts a multipart upload in a task of its own, so that an upload
/// dropped while S3 creates it (the client aborted) cannot leave it behind:
/// the task aborts what nobody waits for any more.
async fn start_multipart(
    remote: Arc<Remote>,
    path: Path,
    opts: PutMultipartOptions,
) -> object_store::Result<Started> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let started = remote.start_upload(&path, opts).await;
        if let Err(Ok(mut orphan)) = tx.send(started)
            && let Err(e) = orphan.upload.abort().await
        {
            tracing::warn!(%path, error = %e, "aborting an upload started for a client that left failed");
        }
    });
    rx.await.map_err(|_| object_store::Error::Generic {
        store: "multipart",
        source: "the task starting the upload ended early".into(),
    })?
}

impl Drop for Upload {
    /// An upload dropped before close (client gone, session ended) leaves no object.
    fn drop(&mut self) {
        let why = self.failed.take().unwrap_or_else(|| {
            FsError::Aborted("the file was not closed: the upload was abandoned".into())
        });
        // Told all the same; nothing is left to wait for it.
        drop(self.observers.end(Ended::failed(&why)));
        if self.done {
            return;
        }
        self.uploads.unregister(&self.key, &self.progress);
        let handles: Vec<_> = self.in_flight.drain(..).map(|(h, _)| h).collect();
        let parts_upload = self.parts_upload.take();
        let key = std::mem::take(&mut self.key);
        if parts_upload.is_none() && handles.is_empty() {
            return;
        }
        let transfer = self.transfer.take();
        let abort = async move {
            let _transfer = transfer;
            for h in handles {
                h.abort();
                let _ = h.await;
            }
            if let Some(mut upload) = parts_upload {
                match upload.abort().await {
                    Ok(()) => tracing::debug!(%key, "aborted an unfinished upload"),
                    Err(e) => tracing::warn!(%key, error = %e, "aborting a dropped upload failed"),
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(abort);
            }
            Err(_) => tracing::warn!(
                "upload dropped outside the runtime; its multipart upload stays until the bucket's lifecycle rules remove it"
            ),
        }
    }
}
