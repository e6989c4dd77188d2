//! Uploads a client takes up again across requests, restarts and nodes
//! (tus): the upload stands where its parts in the store end, and a
//! gateway that stops, or hands the upload to another node, lets it go
//! without aborting it.

use super::Upload;
use crate::base::{FsError, FsResult};
use std::sync::atomic::Ordering;

impl Upload {
    /// Gives back the bytes of the part not sent yet, and the memory they
    /// hold: the upload then stands at the end of what it sent in parts,
    /// and its writer must go on from there (the offset returned). For a
    /// writer that may be away a long while between writes (a tus upload
    /// between requests), so that the budget serves others meanwhile.
    /// Writes waiting out of order go too. Not for a resume not begun.
    pub fn release_tail(&mut self) -> u64 {
        if self.old.is_some() {
            return self.bytes_received();
        }
        self.next -= self.part_len as u64;
        self.part.clear();
        self.part_len = 0;
        self.pending = Default::default();
        let needed = self.buffered().div_ceil(self.part_size);
        self.slots.truncate(needed);
        self.progress.bytes.store(self.next, Ordering::Relaxed);
        self.next
    }

    /// Where the upload stands durably: gives back the unsent tail (see
    /// [`Upload::release_tail`]) and waits for the parts in flight. What a
    /// tus `HEAD` answers, so that a client resumes from bytes the store
    /// holds, whichever gateway it reaches next.
    pub async fn settle(&mut self) -> FsResult<u64> {
        let at = self.release_tail();
        while !self.in_flight.is_empty() {
            self.finish_oldest().await?;
        }
        Ok(at)
    }

    /// Starts the multipart upload now, so that its id can be recorded
    /// before any part is sent: for an upload known to span parts.
    pub async fn begin_parts(&mut self) -> FsResult<()> {
        self.start_parts().await
    }

    /// The multipart upload's id, where the store can take it up later.
    pub fn multipart_id(&self) -> Option<&str> {
        self.multipart_id.as_deref()
    }

    /// The remote and key this upload writes.
    pub fn target(&self) -> (&str, &str) {
        (self.remote.name(), &self.key)
    }

    /// Takes up multipart upload `id` of this upload's key where the store
    /// holds it, for an upload nothing was written to yet: returns the
    /// bytes already in, where the client goes on. 0 where the store keeps
    /// no unfinished upload (not S3).
    pub async fn take_up(&mut self, id: &str) -> FsResult<u64> {
        if self.next > 0 || self.parts_upload.is_some() {
            return Err(FsError::failed("only a fresh upload takes up another"));
        }
        match self.remote.resume_upload(&self.key, id).await? {
            Some((continued, bytes)) => {
                self.continue_parts(continued, bytes);
                self.continued = bytes;
                Ok(bytes)
            }
            None => Ok(0),
        }
    }

    /// Lets the upload go without aborting what the store holds of it,
    /// for a client to take up later (here, or at another node). Parts in
    /// flight are cut; the layers above are told it ended unfinished.
    pub fn set_aside(mut self) {
        self.fail(FsError::Aborted(
            "the upload was set aside; its client may resume it".into(),
        ));
        for (handle, _) in self.in_flight.drain(..) {
            handle.abort();
        }
        // Without its parts upload, dropping aborts nothing in the store.
        self.parts_upload = None;
    }
}
