//! The MD5 a sync run checks a copy by, computed while the bytes stream:
//! off the runtime's threads, one chunk at a time while the next one
//! moves, so memory stays a chunk and the copy does not wait for hashing
//! unless the hash falls behind.

use super::error::ActError;
use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::task::JoinHandle;

#[derive(Default)]
pub(super) struct StreamMd5 {
    idle: Md5,
    hashing: Option<JoinHandle<Md5>>,
}

impl StreamMd5 {
    /// Hashes `chunk` after what came before it, waiting only for the
    /// chunk before.
    pub async fn update(&mut self, chunk: Bytes) -> Result<(), ActError> {
        let mut md5 = self.settled().await?;
        self.hashing = Some(tokio::task::spawn_blocking(move || {
            md5.update(&chunk);
            md5
        }));
        Ok(())
    }

    /// The hex digest of every chunk.
    pub async fn finish(mut self) -> Result<String, ActError> {
        let md5 = self.settled().await?;
        Ok(crate::base::hex(&md5.finalize()))
    }

    async fn settled(&mut self) -> Result<Md5, ActError> {
        match self.hashing.take() {
            Some(running) => running.await.map_err(|e| ActError::Hashing(e.to_string())),
            None => Ok(std::mem::take(&mut self.idle)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_hash_as_the_whole() {
        let mut md5 = StreamMd5::default();
        for chunk in ["The quick brown fox ", "jumps over ", "the lazy dog"] {
            md5.update(Bytes::from(chunk)).await.unwrap();
        }
        assert_eq!(
            md5.finish().await.unwrap(),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
    }
}
