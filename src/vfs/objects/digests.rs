//! A file's digests: the one its upload kept (with the object, or
//! remembered by this gateway for its version), or one computed by reading
//! the object through, bounded and shared (`digest_reads.rs`).

use super::*;

impl ObjectLayer {
    /// The digest kept with file `key` or remembered for its version, from
    /// one HEAD; `None` when only reading the file could tell.
    pub async fn kept_digest(&self, key: &str, algorithm: Algorithm) -> FsResult<Option<Vec<u8>>> {
        let got = self.head(key).await?;
        self.known_digest(key, &got.meta, &got.attributes, algorithm)
            .await
    }

    /// What a HEAD of `key` (`meta`, `attributes`) carries of
    /// `algorithm`'s digest, or what is kept beside the file or remembered
    /// for that ETag.
    async fn known_digest(
        &self,
        key: &str,
        meta: &object_store::ObjectMeta,
        attributes: &object_store::Attributes,
        algorithm: Algorithm,
    ) -> FsResult<Option<Vec<u8>>> {
        let kept = match self.remote.keeps_metadata() {
            true => Some(Kept::from_attributes(attributes).digests),
            false => self.remote.namespace().kept_digests(key).await?,
        };
        if let Some(d) = kept.as_ref().and_then(|d| d.get(algorithm)) {
            return Ok(Some(d.to_vec()));
        }
        Ok(meta
            .e_tag
            .as_deref()
            .and_then(|e| self.remote.known_digests().get(key, e, algorithm)))
    }

    /// The digest of file `key`: kept with the object by the upload that
    /// wrote it, or computed by reading it through (one read-ahead's worth
    /// of memory), up to the remote's `checksum_read_limit`, for `reader`:
    /// such reads are shared, bounded and stopped when nobody waits for
    /// them ([`DigestReads`]).
    pub async fn digest(&self, key: &str, algorithm: Algorithm, reader: &str) -> FsResult<Vec<u8>> {
        if key.is_empty() || self.uploads.get(key).is_some() {
            return Err(FsError::Unsupported(
                "not a file, or one still being written".into(),
            ));
        }
        let got = match self.head(key).await {
            Err(FsError::NotFound) if self.dir_info(key).await?.is_some() => {
                return Err(FsError::Unsupported("is a folder".into()));
            }
            other => other?,
        };
        if let Some(d) = self
            .known_digest(key, &got.meta, &got.attributes, algorithm)
            .await?
        {
            return Ok(d);
        }
        let etag = got.meta.e_tag.clone();
        let stat = self.file_stat(key, &got);
        let limit = self.remote.checksum_read_limit();
        if stat.size > limit {
            return Err(FsError::Unsupported(format!(
                "no {} is kept for this file, and at {} it is larger than the {} this gateway reads to compute one (checksum_read_limit)",
                algorithm.name(),
                crate::config::units::format_size(stat.size),
                crate::config::units::format_size(limit),
            )));
        }
        let version = (
            self.remote.name().to_string(),
            key.to_string(),
            etag.clone().unwrap_or_default(),
            algorithm,
        );
        let (remote, budget, path) = (self.remote.clone(), self.budget.clone(), object_path(key)?);
        let key = key.to_string();
        let read = move || {
            async move {
                // Pinned to the ETag seen: the digest is of that version, or none.
                let store = remote.store().clone();
                let mut download = Download::new(store, path, stat, etag.clone(), 0, budget);
                // Each MiB is hashed off the async threads while the read-ahead
                // fetches the next; one at a time, so memory stays the read-ahead's.
                let mut hashers = Hashers::new(Checksums::only(algorithm));
                loop {
                    let chunk = download.read_next(1 << 20).await?;
                    if chunk.is_empty() {
                        break;
                    }
                    let hashing = move || {
                        hashers.update(&chunk);
                        hashers
                    };
                    hashers = tokio::task::spawn_blocking(hashing)
                        .await
                        .map_err(FsError::storage)?;
                }
                let digest = hashers
                    .finish()
                    .get(algorithm)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                if let Some(e) = &etag {
                    remote
                        .known_digests()
                        .insert(&key, e, algorithm, digest.clone());
                }
                Ok(digest)
            }
            .boxed()
        };
        self.digest_reads.digest(reader, version, read).await
    }
}
