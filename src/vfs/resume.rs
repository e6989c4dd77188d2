//! Resumed uploads (DESIGN §3): the new object is the existing bytes
//! followed by the client's new ones, written as one upload so the old
//! object stays whole until close.
//!
//! On S3, an object of at least 5 MiB is not read back through the gateway:
//! it becomes the first parts of the multipart upload by UploadPartCopy, in
//! S3. Smaller objects, and other remotes, stream their bytes through the
//! upload, with its usual memory bound.

use super::budget::Budget;
use super::download::Download;
use super::upload::{OpenUploads, Upload, WriteMode};
use super::{FileStat, FsError, FsResult};
use crate::base::lock;
use crate::remote::Remote;
use futures::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, MultipartUpload, PutPayload, PutResult, UploadPart};
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// S3's smallest part but the last, and so the smallest prefix worth copying.
pub const MIN_COPY: u64 = 5 << 20;
/// S3's largest UploadPartCopy.
const MAX_COPY: u64 = 5 << 30;

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
    let path = Path::parse(key).map_err(|e| FsError::InvalidName(e.to_string()))?;
    if let (Some(api), Some(parts)) = (&remote.s3, &remote.multipart)
        && size >= MIN_COPY
    {
        let id = parts.create_multipart(&path).await?;
        let mut copied = Vec::new();
        for (i, range) in copy_ranges(size).into_iter().enumerate() {
            match api.upload_part_copy(key, &id, i + 1, key, range).await {
                Ok(etag) => copied.push(Some(PartId { content_id: etag })),
                Err(e) => {
                    if let Err(abort) = parts.abort_multipart(&path, &id).await {
                        tracing::warn!(%key, error = %abort, "aborting a failed resume left its upload; lifecycle rules must clean it");
                    }
                    return Err(e);
                }
            }
        }
        let copied_parts = copied.len();
        let multipart = Box::new(PartsUpload {
            store: parts.clone(),
            path,
            id,
            parts: Arc::new(Mutex::new(copied)),
        });
        return Upload::continuing(
            remote,
            uploads,
            budget,
            key.to_string(),
            multipart,
            copied_parts,
            size,
        );
    }
    let store = remote.store.clone();
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

/// Byte ranges of at most 5 GiB covering `0..size`, as even as possible so
/// none falls under S3's 5 MiB minimum.
fn copy_ranges(size: u64) -> Vec<Range<u64>> {
    let count = size.div_ceil(MAX_COPY).max(1);
    let each = size.div_ceil(count);
    (0..count)
        .map(|i| i * each..((i + 1) * each).min(size))
        .collect()
}

/// A multipart upload driven part by part, so it can begin with copied parts.
struct PartsUpload {
    store: Arc<dyn MultipartStore>,
    path: Path,
    id: MultipartId,
    /// By part index; `None` while a part is still uploading.
    parts: Arc<Mutex<Vec<Option<PartId>>>>,
}

impl std::fmt::Debug for PartsUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartsUpload")
            .field("path", &self.path)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl MultipartUpload for PartsUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let index = {
            let mut parts = lock(&self.parts);
            parts.push(None);
            parts.len() - 1
        };
        let (store, path, id, parts) = (
            self.store.clone(),
            self.path.clone(),
            self.id.clone(),
            self.parts.clone(),
        );
        Box::pin(async move {
            let part = store.put_part(&path, &id, index, data).await?;
            lock(&parts)[index] = Some(part);
            Ok(())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts: Option<Vec<PartId>> = lock(&self.parts).iter().cloned().collect();
        let parts = parts.ok_or_else(|| object_store::Error::Generic {
            store: "S3",
            source: "a part of the resumed upload never finished".into(),
        })?;
        self.store
            .complete_multipart(&self.path, &self.id, parts)
            .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.store.abort_multipart(&self.path, &self.id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_cover_and_respect_limits() {
        for size in [
            MIN_COPY,
            MAX_COPY,
            MAX_COPY + 1,
            MAX_COPY + MIN_COPY / 2,
            3 * MAX_COPY + 7,
        ] {
            let ranges = copy_ranges(size);
            assert_eq!(ranges.first().unwrap().start, 0);
            assert_eq!(ranges.last().unwrap().end, size);
            for w in ranges.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            for r in &ranges {
                assert!(
                    r.end - r.start <= MAX_COPY && r.end - r.start >= MIN_COPY,
                    "{r:?}"
                );
            }
        }
    }
}
