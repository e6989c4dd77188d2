//! Continuing an object inside S3: its bytes become the first parts of a
//! new multipart upload by UploadPartCopy, never passing through the
//! gateway; the client's new bytes follow as ordinary parts.

use super::Credentials;
use super::S3Api;
use super::unsigned::UnsignedParts;
use crate::base::{FsError, FsResult, lock};
use bytes::Bytes;
use http::{HeaderMap, Method};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, MultipartUpload, PutPayload, PutResult, UploadPart};
use serde::Deserialize;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// S3's smallest part but the last, and so the smallest prefix worth copying.
pub const MIN_COPY: u64 = 5 << 20;
/// S3's largest UploadPartCopy.
const MAX_COPY: u64 = 5 << 30;

/// An upload that already holds an object's bytes, copied in the store.
pub struct Continued {
    pub upload: Box<dyn MultipartUpload>,
    /// What S3 stores of each part, where they are checked (`wire_checksums`).
    pub etags: Option<PartEtags>,
    /// How many parts are in: the client's bytes start after them.
    pub parts: usize,
    /// The multipart upload's id: what takes it up again ([`PartCopier::resume`]).
    pub id: String,
}

/// What continues uploads on one S3 remote.
#[derive(Clone)]
pub struct PartCopier {
    pub(super) api: Arc<S3Api>,
    pub(super) store: Arc<dyn MultipartStore>,
    /// Over HTTPS, where the client's parts go unsigned (`unsigned.rs`).
    pub(super) unsigned: Option<Arc<UnsignedParts>>,
}

impl PartCopier {
    /// The credentials the remote signs with, replaced at a reload.
    pub fn credentials(&self) -> &Credentials {
        &self.api.credentials
    }

    /// Starts a multipart upload of `key` whose parts' ETags stay readable
    /// ([`PartEtags`]), so each part can be checked against what was sent.
    pub async fn start(&self, path: &Path) -> object_store::Result<(PartsUpload, PartEtags)> {
        let what = format!("starting {path}");
        let create = |store: &Arc<dyn MultipartStore>| {
            let store = store.clone();
            self.credentials().again_if_refused(&what, move || {
                let (store, path) = (store.clone(), path.clone());
                async move { store.create_multipart(&path).await }
            })
        };
        let unsigned = self.unsigned.as_ref().and_then(|u| Some((u, u.store()?)));
        let (store, id, unsigned) = match unsigned {
            Some((unsigned, store)) => match create(&store).await {
                Ok(id) => (store, id, Some(unsigned.clone())),
                Err(e) if unsigned.refused_by(path.as_ref(), &e) => {
                    (self.store.clone(), create(&self.store).await?, None)
                }
                Err(e) => return Err(e),
            },
            None => (self.store.clone(), create(&self.store).await?, None),
        };
        let upload = PartsUpload {
            store,
            credentials: self.api.credentials.clone(),
            unsigned,
            path: path.clone(),
            id,
            parts: Arc::new(Mutex::new(Vec::new())),
        };
        let etags = PartEtags::new(upload.parts.clone());
        Ok((upload, etags))
    }

    /// Starts a multipart upload of `key` whose first parts are the
    /// object's first `size` bytes (at least [`MIN_COPY`]); aborted if a
    /// copy fails.
    pub async fn continue_object(&self, key: &str, size: u64) -> FsResult<Continued> {
        let path = crate::remote::object_path(key)?;
        let (upload, etags) = self.start(&path).await?;
        for (i, range) in copy_ranges(size).into_iter().enumerate() {
            match self
                .api
                .upload_part_copy(key, &upload.id, i + 1, key, range, None)
                .await
            {
                Ok(etag) => lock(&upload.parts).push(Some(PartId { content_id: etag })),
                Err(e) => {
                    if let Err(abort) = self.store.abort_multipart(&path, &upload.id).await {
                        tracing::warn!(%key, error = %abort, "aborting a failed resume left its upload; lifecycle rules must clean it");
                    }
                    return Err(e);
                }
            }
        }
        let parts = lock(&upload.parts).len();
        Ok(Continued {
            id: upload.id.clone(),
            upload: Box::new(upload),
            etags: Some(etags),
            parts,
        })
    }

    /// Takes up multipart upload `id` of `key` where S3 has it: its parts
    /// from the first on without a gap, and how many bytes they hold. A
    /// part past a gap (still in flight when the gateway holding the
    /// upload stopped) is sent again and replaced. `NotFound` once the
    /// upload was completed or aborted.
    pub async fn resume(&self, key: &str, id: &str) -> FsResult<(Continued, u64)> {
        let path = crate::remote::object_path(key)?;
        let mut stored = self.api.list_parts(key, id).await?;
        stored.sort_by_key(|p| p.part_number);
        let held: Vec<_> = stored
            .into_iter()
            .enumerate()
            .take_while(|(i, p)| p.part_number == i + 1)
            .map(|(_, p)| p)
            .collect();
        let bytes = held.iter().map(|p| p.size).sum();
        let parts: Vec<_> = held
            .into_iter()
            .map(|p| Some(PartId { content_id: p.etag }))
            .collect();
        let count = parts.len();
        let upload = PartsUpload {
            store: self.store.clone(),
            credentials: self.api.credentials.clone(),
            unsigned: None,
            path,
            id: id.to_string(),
            parts: Arc::new(Mutex::new(parts)),
        };
        let etags = PartEtags::new(upload.parts.clone());
        let continued = Continued {
            id: id.to_string(),
            upload: Box::new(upload),
            etags: Some(etags),
            parts: count,
        };
        Ok((continued, bytes))
    }

    /// Aborts multipart upload `id` of `key`: its parts are deleted.
    pub async fn abort(&self, key: &str, id: &str) -> FsResult<()> {
        let path = crate::remote::object_path(key)?;
        Ok(self.store.abort_multipart(&path, &id.to_string()).await?)
    }
}

impl PartCopier {
    /// Copies object `from` to `to` inside S3 by a multipart upload of
    /// copied parts (at most 5 GiB each): the way past CopyObject's 5 GiB.
    /// The copy keeps the source's metadata and type, and is of the
    /// version first seen or fails ([`crate::base::FsError::Changed`]);
    /// a failed copy is aborted, leaving no object at `to`.
    pub async fn copy_object(&self, from: &str, to: &str) -> FsResult<()> {
        use crate::base::FsError;
        let head = self.api.head(from).await?;
        let text = |name| {
            head.get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        let size: u64 = text("content-length")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| FsError::failed(format!("S3 gave no size for {from:?}")))?;
        let etag = text("etag").map(str::to_string);
        let mut kept = http::HeaderMap::new();
        for (name, value) in &head {
            if name.as_str().starts_with("x-amz-meta-") || name == http::header::CONTENT_TYPE {
                kept.insert(name.clone(), value.clone());
            }
        }
        let path = crate::remote::object_path(to)?;
        let id = self.api.create_multipart(to, kept).await?;
        let copied = async {
            let mut parts = Vec::new();
            for (i, range) in copy_ranges(size).into_iter().enumerate() {
                let etag = self
                    .api
                    .upload_part_copy(to, &id, i + 1, from, range, etag.as_deref())
                    .await?;
                parts.push(PartId { content_id: etag });
            }
            self.store
                .complete_multipart(&path, &id, parts)
                .await
                .map(|_| ())
                .map_err(FsError::from)
        };
        let result = copied.await;
        if result.is_err()
            && let Err(abort) = self.store.abort_multipart(&path, &id).await
        {
            tracing::warn!(key = %to, error = %abort, "aborting a failed copy left its upload; lifecycle rules must clean it");
        }
        result
    }
}

/// A part of a multipart upload, as ListParts gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoredPart {
    pub part_number: usize,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
}

impl S3Api {
    /// The parts S3 holds of multipart upload `upload_id` on `key`, in
    /// order: each one's number, ETag and size. `NotFound` once the upload
    /// was completed or aborted.
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> FsResult<Vec<StoredPart>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct ListPartsResult {
            #[serde(default)]
            is_truncated: bool,
            next_part_number_marker: Option<String>,
            #[serde(default, rename = "Part")]
            parts: Vec<StoredPart>,
        }
        let mut all = Vec::new();
        let mut marker = String::from("0");
        loop {
            let query = [
                ("part-number-marker", marker.as_str()),
                ("uploadId", upload_id),
            ];
            let (_, body) = self
                .send(Method::GET, key, &query, HeaderMap::new(), Bytes::new())
                .await?;
            let page: ListPartsResult = quick_xml::de::from_reader(body.as_ref()).map_err(|e| {
                FsError::storage_detail(format!("unreadable S3 ListParts of {key:?}: {e}"))
            })?;
            all.extend(page.parts);
            match page.next_part_number_marker {
                Some(next) if page.is_truncated && next != marker => marker = next,
                _ => return Ok(all),
            }
        }
    }
}

/// The ETags S3 gave the parts of one upload, by part index, and whether
/// each part is checked against what was sent (`wire_checksums`).
#[derive(Clone)]
pub struct PartEtags {
    parts: Arc<Mutex<Vec<Option<PartId>>>>,
    checked: bool,
}

/// What S3 answered for a stored part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartStored {
    /// The part's ETag, where it is an MD5 (not under SSE-KMS or SSE-C):
    /// what a multipart object's ETag is computed from.
    pub md5: Option<[u8; 16]>,
    /// S3 echoed the checksum the part carried: it computed the checksum
    /// of the bytes it received and took them because it matched (a
    /// mismatch is refused, BadDigest; a server that ignores checksums
    /// echoes none).
    pub verified: bool,
}

impl PartEtags {
    fn new(parts: Arc<Mutex<Vec<Option<PartId>>>>) -> Self {
        PartEtags {
            parts,
            checked: true,
        }
    }

    /// These ETags, with each part checked or not.
    pub fn checking(self, checked: bool) -> Self {
        PartEtags { checked, ..self }
    }

    /// Whether each part is checked against what was sent.
    pub fn checked(&self) -> bool {
        self.checked
    }

    /// What S3 answered for part `index`, once it has.
    pub fn stored(&self, index: usize) -> Option<PartStored> {
        let part = lock(&self.parts).get(index).cloned().flatten()?;
        let (etag, verified) = part_answer(part);
        Some(PartStored {
            md5: md5_of_etag(&etag),
            verified,
        })
    }

    /// Whether part `index` is stored as the bytes whose MD5 is `md5`: S3
    /// gives a part the MD5 of the bytes it received as its ETag, so a
    /// part changed on the way shows here before anything is visible.
    /// `Ok` where the ETag is not an MD5 (a server's own form).
    pub fn check(&self, index: usize, md5: &[u8; 16]) -> Result<(), String> {
        let Some(PartStored {
            md5: Some(etag), ..
        }) = self.stored(index)
        else {
            return Ok(());
        };
        if &etag == md5 {
            return Ok(());
        }
        Err(format!(
            "S3 stored part {} as bytes with MD5 {}, but the gateway sent bytes with MD5 {}: the part was changed on the way (or the bucket encrypts with SSE-KMS or SSE-C, whose ETags are no MD5: set wire_checksums = false)",
            index + 1,
            crate::base::hex(&etag),
            crate::base::hex(md5)
        ))
    }
}

/// The MD5 an ETag is, if it is one (32 hex digits, quoted or not).
fn md5_of_etag(etag: &str) -> Option<[u8; 16]> {
    crate::base::unhex(etag.trim_matches('"'))
}

/// The ETag in object_store's part id, and whether S3 echoed a checksum:
/// the id is the plain ETag, or the XML object_store writes when parts
/// carry a checksum, with the checksum S3 answered, if any.
fn part_answer(part: PartId) -> (String, bool) {
    #[derive(serde::Deserialize)]
    struct PartMetadata {
        e_tag: String,
        checksum_sha256: Option<String>,
        checksum_crc64nvme: Option<String>,
    }
    match quick_xml::de::from_str::<PartMetadata>(&part.content_id) {
        Ok(meta) => {
            let echoed = meta.checksum_sha256.or(meta.checksum_crc64nvme);
            (meta.e_tag, echoed.is_some_and(|c| !c.is_empty()))
        }
        Err(_) => (part.content_id, false),
    }
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

/// A multipart upload driven part by part, so it can begin with copied
/// parts, its parts' ETags can be read, and a part S3 refuses in a key
/// rotation is sent again under its own number with the new key.
pub struct PartsUpload {
    store: Arc<dyn MultipartStore>,
    credentials: Arc<Credentials>,
    /// Set when the parts go unsigned: told of a part the server refuses.
    unsigned: Option<Arc<UnsignedParts>>,
    path: Path,
    id: MultipartId,
    /// By part index; `None` while a part is still uploading.
    parts: Arc<Mutex<Vec<Option<PartId>>>>,
}

impl PartsUpload {
    pub fn id(&self) -> &str {
        &self.id
    }
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
        let (store, credentials, path, id, parts) = (
            self.store.clone(),
            self.credentials.clone(),
            self.path.clone(),
            self.id.clone(),
            self.parts.clone(),
        );
        let unsigned = self.unsigned.clone();
        Box::pin(async move {
            let what = format!("part {} of {path}", index + 1);
            let sent = credentials
                .again_if_refused(&what, || store.put_part(&path, &id, index, data.clone()))
                .await;
            if let (Err(e), Some(unsigned)) = (&sent, &unsigned) {
                unsigned.refused_by(path.as_ref(), e);
            }
            let part = sent?;
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
        let what = format!("completing {}", self.path);
        self.credentials
            .again_if_refused(&what, || {
                self.store
                    .complete_multipart(&self.path, &self.id, parts.clone())
            })
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
    fn a_part_is_checked_by_its_etag_in_either_form() {
        let md5 = [0xab; 16];
        let sent = crate::base::hex(&md5);
        let etags = PartEtags::new(Arc::new(Mutex::new(vec![
            Some(PartId {
                content_id: format!("\"{sent}\""),
            }),
            Some(PartId {
                content_id: format!(
                    "<PartMetadata><e_tag>\"{}\"</e_tag><checksum_sha256>x</checksum_sha256></PartMetadata>",
                    "0".repeat(32)
                ),
            }),
            Some(PartId {
                content_id: "\"not-an-md5\"".into(),
            }),
            None,
        ])));
        assert_eq!(etags.check(0, &md5), Ok(()));
        let changed = etags.check(1, &md5).unwrap_err();
        assert!(
            changed.contains("part 2") && changed.contains(&sent),
            "{changed}"
        );
        // A server's own ETag form, a part not back yet, one never sent: nothing to compare.
        assert_eq!(etags.check(2, &md5), Ok(()));
        assert_eq!(etags.check(3, &md5), Ok(()));
        assert_eq!(etags.check(9, &md5), Ok(()));
        // What S3 answered: the ETag as an MD5, and whether a checksum came back.
        assert_eq!(
            etags.stored(0),
            Some(PartStored {
                md5: Some(md5),
                verified: false
            })
        );
        assert_eq!(
            etags.stored(1),
            Some(PartStored {
                md5: Some([0; 16]),
                verified: true
            })
        );
        assert_eq!(
            etags.stored(2),
            Some(PartStored {
                md5: None,
                verified: false
            })
        );
        assert_eq!(etags.stored(3), None);
    }

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
