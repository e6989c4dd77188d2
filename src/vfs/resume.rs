//! Resumed uploads (DESIGN §3): the new object is the existing bytes
//! followed by the client's new ones, written as one upload so the old
//! object stays whole until close.
//!
//! Where the remote can continue an object in the store (S3, 5 MiB and
//! more: [`Remote::continue_in_store`]), its bytes are not read back through
//! the gateway. Smaller objects, and other remotes, stream their bytes
//! through the upload, with its usual memory bound.

use super::budget::Budget;
use super::download::Download;
use super::upload::{OpenUploads, Upload, WriteMode};
use super::{FileStat, FsError, FsResult};
use crate::remote::Remote;
use futures::StreamExt;
use object_store::path::Path;
use std::sync::Arc;

/// Starts an upload of `key` that already holds the first `size` bytes of
/// the object there.
pub(crate) async fn continue_object(
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
    if let Some(continued) = remote.continue_in_store(key, size).await? {
        return Upload::continuing(
            remote,
            uploads,
            budget,
            key.to_string(),
            continued.upload,
            continued.parts,
            size,
        );
    }
    let path = Path::parse(key).map_err(|e| FsError::InvalidName(e.to_string()))?;
    let store = remote.store().clone();
    let mut upload = Upload::new(
        remote,
        uploads,
        budget.clone(),
        key.to_string(),
        WriteMode::Append,
    )?;
    let old = FileStat::file(String::new(), size, chrono::Utc::now());
    let mut old = Box::pin(Download::new(store, path, old, None, 0, budget).into_stream());
    let mut offset = 0;
    while let Some(chunk) = old.next().await {
        let chunk = chunk?;
        let len = chunk.len() as u64;
        upload.write_at(offset, chunk).await?;
        offset += len;
    }
    Ok(upload)
}
