//! Committing an upload: the object becomes visible in one PUT, or by
//! completing its multipart upload, then the remote keeps what the store
//! could not take with it (see `remote/commit.rs`).

use super::{Stored, Upload, WriteMode};
use crate::base::{Digests, FsError, FsResult, lock};
use crate::remote::Kept;
use object_store::{Attributes, PutMode, PutPayload};

impl Upload {
    /// What is kept with the object: the client's mtime where the remote
    /// keeps them, and `digests`.
    fn kept(&self, digests: Digests) -> Kept {
        let mtime = *lock(&self.progress.mtime);
        Kept {
            mtime: mtime.filter(|_| self.remote.keeps_client_mtimes()),
            digests,
        }
    }

    pub(super) fn attributes(&self, digests: Digests) -> Attributes {
        match self.remote.keeps_metadata() {
            true => self.kept(digests).attributes(),
            false => Attributes::new(),
        }
    }

    pub(super) async fn commit(&mut self) -> FsResult<Stored> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Some(size) = self.old.take() {
            // Opened to resume and closed unwritten: the object stays, with
            // a file time the client set meanwhile.
            let mtime = *lock(&self.progress.mtime);
            if let (Some(t), true) = (mtime, self.remote.keeps_client_mtimes()) {
                self.remote.keep_mtime(&self.key, t).await?;
            }
            self.done = true;
            self.uploads.unregister(&self.key, &self.progress);
            return Ok(Stored {
                size,
                etag: None,
                digests: Digests::default(),
            });
        }
        if let Some(gap) = self.pending.first() {
            return Err(FsError::Unsupported(format!(
                "the file has a hole: bytes {}..{gap} were never written",
                self.next
            )));
        }
        let multipart = self.parts_upload.is_some();
        let (etag, digests) = match multipart {
            false => {
                let payload: PutPayload = std::mem::take(&mut self.part).into_iter().collect();
                self.digest(payload.clone());
                let digests = self.hashing.finish().await;
                let mode = match self.mode {
                    WriteMode::CreateNew => PutMode::Create,
                    WriteMode::Truncate | WriteMode::Append => PutMode::Overwrite,
                };
                let kept = self.kept(digests.clone());
                let etag = self
                    .remote
                    .put_whole(&self.path, payload, mode, &kept, digests.md5)
                    .await?;
                (etag, digests)
            }
            true => {
                if self.part_len > 0 {
                    self.send_part().await?;
                }
                while !self.in_flight.is_empty() {
                    self.finish_oldest().await?;
                }
                let upload = self.parts_upload.as_mut().expect("multipart");
                let etag = match upload.complete().await {
                    Ok(done) => done.e_tag,
                    Err(e) => {
                        let at = (&self.path, self.key.as_str());
                        let sent = &self.part_md5s;
                        self.remote.recover_complete(at, self.next, sent, e).await?
                    }
                };
                self.parts_upload = None;
                (etag, self.hashing.finish().await)
            }
        };
        let kept = self.kept(digests.clone());
        let etag = self
            .remote
            .after_commit(&self.key, etag, kept, multipart)
            .await?;
        self.done = true;
        self.uploads.unregister(&self.key, &self.progress);
        Ok(Stored {
            size: self.next,
            etag,
            digests,
        })
    }
}
