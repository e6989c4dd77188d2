//! The running check of a download read from start to end against the
//! SHA-256 kept with its object: the bytes served are hashed off the async
//! threads a few MiB at a time, and the last read fails if they do not
//! match. A read out of order ends the check, unchecked.

use super::super::hashing::Hashing;
use super::Chunks;
use crate::base::{Algorithm, Checksums, FsError, FsResult, hex};
use bytes::Bytes;
use object_store::PutPayload;
use object_store::path::Path;

/// How much a verified download hands to its hashing at once.
const VERIFY_BATCH: usize = 4 << 20;

pub(super) struct Verify {
    expected: [u8; 32],
    hashing: Hashing,
    /// Bytes served so far, from 0.
    upto: u64,
    /// Served, not yet handed to the hashing: it gets a few MiB at a time,
    /// so the reads never wait for a hash and pay no thread hop each.
    pending: Vec<Bytes>,
    pending_len: usize,
}

impl Verify {
    pub fn new(expected: [u8; 32]) -> Self {
        Verify {
            expected,
            hashing: Hashing::start(Checksums::only(Algorithm::Sha256)),
            upto: 0,
            pending: Vec::new(),
            pending_len: 0,
        }
    }

    /// Takes `chunks`, served at `offset` of the object of `size` bytes at
    /// `path`. `Ok(true)` while the check goes on; `Ok(false)` once it is
    /// over (done and matching, or ended by a read out of order); an error
    /// when the whole file's bytes do not match.
    pub async fn served(
        &mut self,
        offset: u64,
        chunks: &Chunks,
        size: u64,
        path: &Path,
    ) -> FsResult<bool> {
        if offset != self.upto || chunks.is_empty() {
            return Ok(false);
        }
        self.pending.extend(chunks.parts().iter().cloned());
        self.pending_len += chunks.len();
        self.upto += chunks.len() as u64;
        let done = self.upto >= size;
        if self.pending_len >= VERIFY_BATCH || done {
            let batch: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
            self.pending_len = 0;
            self.hashing.feed(batch);
        }
        if !done {
            return Ok(true);
        }
        match self.hashing.finish().await.sha256 {
            Some(got) if got != self.expected => {
                tracing::error!(
                    %path,
                    kept = %hex(&self.expected),
                    read = %hex(&got),
                    "storage integrity failure: the object's bytes do not match the SHA-256 kept with it"
                );
                Err(FsError::failed(
                    "integrity check failed: the file's bytes do not match the SHA-256 kept with it",
                ))
            }
            _ => Ok(false),
        }
    }
}
