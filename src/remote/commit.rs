//! What follows an upload's bytes into the store: the object's metadata
//! (a client-set mtime, the digests) kept as this kind of store can keep
//! it, and, when S3 answered CompleteMultipartUpload with an error, whether
//! it stored the object anyway. The object layer says what it knows of the
//! upload; the store's ways (ETag formulas, copies onto itself, extended
//! attributes) stay here.

use super::http::ContentMd5;
use super::{Kept, Remote};
use crate::base::{Digests, FsResult};
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

impl Remote {
    /// Deletes object `key`.
    pub async fn delete(&self, key: &str) -> FsResult<()> {
        Ok(self.store().delete(&super::object_path(key)?).await?)
    }

    /// Stores a file in one PUT, with `kept` where objects carry metadata
    /// and its MD5 where the store checks it (`md5` if the upload hashed
    /// it). Returns the new object's ETag.
    pub async fn put_whole(
        &self,
        path: &Path,
        payload: PutPayload,
        mode: PutMode,
        kept: &Kept,
        md5: Option<[u8; 16]>,
    ) -> FsResult<Option<String>> {
        let mut opts = PutOptions {
            mode,
            attributes: match self.keeps_metadata() {
                true => kept.attributes(),
                false => Default::default(),
            },
            ..Default::default()
        };
        if self.sends_content_md5() {
            // The object is the payload: its MD5 is the file's.
            let md5 = match md5 {
                Some(md5) => md5,
                None => {
                    self.metrics()
                        .hashed("content_md5", payload.content_length() as u64);
                    md5_of(payload.clone())
                }
                .await
                .map_err(crate::base::FsError::storage)?,
            };
            opts.extensions.insert(ContentMd5::of(&md5));
        }
        let put = || self.store().put_opts(path, payload.clone(), opts.clone());
        let put = match &self.parts {
            // A key rotated away under it: sent again with the reload's.
            Some(parts) => {
                let what = format!("storing {path}");
                parts.credentials().again_if_refused(&what, put).await?
            }
            None => put().await?,
        };
        Ok(put.e_tag)
    }

    /// Once an upload's object is stored with `etag`, keeps what a PUT
    /// could not carry. Returns the object's ETag now: `None` when a copy
    /// onto itself gave it a new one.
    ///
    /// S3 takes no metadata at CompleteMultipartUpload. A client-set mtime
    /// is stored by a copy of the object onto itself (a new ETag), only
    /// while it is the object just completed, and the digests ride along.
    /// Digests alone are worth that copy only where tools read them from
    /// the bucket (`keep_digests_by_copy`): it costs the store as much as
    /// the object is large. Otherwise the remote remembers them for this
    /// version, and another gateway, or this one after a restart, computes
    /// them by reading once. A filesystem keeps digests beside the file
    /// (an extended attribute).
    pub async fn after_commit(
        &self,
        key: &str,
        etag: Option<String>,
        kept: Kept,
        multipart: bool,
    ) -> FsResult<Option<String>> {
        let some_digests = kept.digests != Digests::default();
        if !self.keeps_metadata() {
            if some_digests {
                let digests = Kept {
                    mtime: None,
                    digests: kept.digests,
                };
                self.namespace().keep(key, &digests, None).await?;
            }
            return Ok(etag);
        }
        if !multipart {
            return Ok(etag);
        }
        if kept.mtime.is_some() || (self.keeps_digests_by_copy() && some_digests) {
            match self.namespace().keep(key, &kept, etag.as_deref()).await {
                Ok(()) => return Ok(None),
                Err(e) => {
                    tracing::warn!(key, error = %e, "the object is stored, but its mtime and digests could not be written into its metadata (its digests are remembered by this gateway)");
                }
            }
        }
        if let Some(e) = &etag {
            self.known_digests().insert_all(key, e, &kept.digests);
        }
        Ok(etag)
    }

    /// After CompleteMultipartUpload failed with `failure`: whether S3
    /// stored the object anyway. A retried Complete whose first attempt
    /// did succeed (the answer was lost: a stall, a cut connection) fails
    /// with InvalidPart or NoSuchUpload while the object is whole in the
    /// bucket; the client must be told what the bucket holds. The object
    /// counts as stored when it has the `size` uploaded and the multipart
    /// ETag of the parts sent (MD5 of their MD5s, "-N"); a resume, whose
    /// copied parts the gateway did not hash (`None`), is judged by its
    /// size and part count alone. Returns its ETag, or the failure.
    pub async fn recover_complete(
        &self,
        (path, key): (&Path, &str),
        size: u64,
        part_md5s: &[Option<[u8; 16]>],
        failure: object_store::Error,
    ) -> FsResult<Option<String>> {
        let head = match self.store().head(path).await {
            Ok(head) => head,
            Err(_) => return Err(failure.into()),
        };
        let parts = part_md5s.len();
        let etag = head.e_tag.as_deref().unwrap_or("").trim_matches('"');
        let same = head.size == size
            && match multipart_etag(part_md5s) {
                Some(expected) => etag.eq_ignore_ascii_case(&expected),
                None => etag.ends_with(&format!("-{parts}")),
            };
        if !same {
            return Err(failure.into());
        }
        tracing::info!(key, etag, error = %failure, "CompleteMultipartUpload answered an error, but S3 holds the whole object: it is stored");
        Ok(head.e_tag)
    }
}

/// The ETag S3 gives a multipart object: the MD5 of the parts' MD5s, then
/// `-` and their number. `None` when a part's MD5 is not known.
fn multipart_etag(parts: &[Option<[u8; 16]>]) -> Option<String> {
    let mut md5 = Md5::new();
    for part in parts {
        md5.update(part.as_ref()?);
    }
    Some(format!(
        "{}-{}",
        crate::base::hex(&md5.finalize()),
        parts.len()
    ))
}

/// The MD5 of `payload`, hashed on the blocking pool: what S3 checks a
/// PUT or a part by.
pub(crate) fn md5_of(payload: PutPayload) -> tokio::task::JoinHandle<[u8; 16]> {
    tokio::task::spawn_blocking(move || {
        let mut md5 = Md5::new();
        payload.iter().for_each(|b| md5.update(b));
        <[u8; 16]>::from(md5.finalize())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_etag_is_the_md5_of_the_parts_md5s() {
        let a = <[u8; 16]>::from(Md5::digest(b"a"));
        let b = <[u8; 16]>::from(Md5::digest(b"b"));
        let mut both = Vec::new();
        both.extend_from_slice(&a);
        both.extend_from_slice(&b);
        let expected = format!("{}-2", crate::base::hex(&Md5::digest(&both)));
        assert_eq!(multipart_etag(&[Some(a), Some(b)]), Some(expected));
        assert_eq!(multipart_etag(&[Some(a), None]), None);
    }
}
