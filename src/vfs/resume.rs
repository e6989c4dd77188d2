//! Resumed uploads (DESIGN §3): the new object is the existing bytes
//! followed by the client's new ones, written as one upload so the old
//! object stays whole until close.
//!
//! Nothing of the old object is read or copied at OPEN: a client that
//! opens without truncating may still rewrite the file from offset 0
//! (the upload then replaces it), so the work waits for the first write at
//! the file's size. Then, where the remote can continue an object in the
//! store (S3, 5 MiB and more: [`Remote::continue_in_store`]), its bytes are
//! not read back through the gateway; smaller objects, and other remotes,
//! stream their bytes through the upload, with its usual memory bound.

use super::budget::Budget;
use super::download::Download;
use super::upload::{OpenUploads, Upload};
use super::{FileStat, FsError, FsResult};
use crate::remote::{Continued, Remote};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;

/// An upload of `key` that may continue the `size` bytes there.
pub(crate) fn continue_object(
    remote: Arc<Remote>,
    uploads: Arc<OpenUploads>,
    budget: Budget,
    key: &str,
    size: u64,
) -> FsResult<Upload> {
    if uploads.get(key).is_some() {
        return Err(FsError::Unsupported(
            "the file is being uploaded by another session; resume it after that upload ends"
                .into(),
        ));
    }
    Upload::resuming(remote, uploads, budget, key.to_string(), size)
}

/// How the old object's bytes become the start of the new one.
pub(crate) enum OldBytes {
    /// Already parts of a multipart upload, copied in the store.
    InStore(Continued),
    /// To be written through the upload, as they stream from the store.
    Streamed(BoxStream<'static, FsResult<Bytes>>),
}

/// The first `size` bytes of `key`, as the remote can best provide them.
pub(crate) async fn old_bytes(
    remote: &Remote,
    budget: &Budget,
    key: &str,
    size: u64,
) -> FsResult<OldBytes> {
    if let Some(continued) = remote.continue_in_store(key, size).await? {
        return Ok(OldBytes::InStore(continued));
    }
    let path = crate::remote::object_path(key)?;
    let old = FileStat::file(String::new(), size, chrono::Utc::now());
    let download = Download::new(remote.store().clone(), path, old, None, 0, budget.clone());
    Ok(OldBytes::Streamed(download.into_stream().boxed()))
}
