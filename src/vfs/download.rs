//! Read-ahead downloads (DESIGN §3 "Downloads read ahead").
//!
//! A background task fetches the object in chunks, several ranged GETs at
//! once for large objects, and queues them in order ahead of the reader, so
//! a sequential client never waits on an S3 round trip per request. A read
//! elsewhere restarts the pipeline at that offset.

use super::{FileStat, VfsError, VfsResult};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Chunk of one ranged GET.
const CHUNK: u64 = 4 << 20;
/// Ranged GETs in flight for a large object.
const PARALLEL: usize = 4;

/// An open file being read.
pub struct Download {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// The object as it was opened: what FSTAT answers without a request.
    stat: FileStat,
    size: u64,
    /// Bytes at `buf_start..buf_start + buf.len()`, next to hand out.
    buf: Bytes,
    buf_start: u64,
    /// Chunks in order, starting where `buf` ends.
    rx: Option<mpsc::Receiver<VfsResult<Bytes>>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Download {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        stat: FileStat,
        offset: u64,
    ) -> Self {
        let mut d = Download {
            store,
            path,
            size: stat.size,
            stat,
            buf: Bytes::new(),
            buf_start: offset,
            rx: None,
            task: None,
        };
        d.restart(offset);
        d
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn stat(&self) -> &FileStat {
        &self.stat
    }

    pub(crate) fn stat_mut(&mut self) -> &mut FileStat {
        &mut self.stat
    }

    fn restart(&mut self, offset: u64) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.buf = Bytes::new();
        self.buf_start = offset;
        self.rx = None;
        if offset >= self.size {
            return;
        }
        let (tx, rx) = mpsc::channel(1);
        let store = self.store.clone();
        let path = self.path.clone();
        let size = self.size;
        let parallel = if size - offset > 2 * CHUNK {
            PARALLEL
        } else {
            1
        };
        let ranges = (offset..size)
            .step_by(CHUNK as usize)
            .map(move |start| start..(start + CHUNK).min(size));
        self.task = Some(tokio::spawn(async move {
            let mut chunks = futures::stream::iter(ranges)
                .map(|range| {
                    let store = store.clone();
                    let path = path.clone();
                    async move { store.get_range(&path, range).await.map_err(VfsError::from) }
                })
                .buffered(parallel);
            while let Some(chunk) = chunks.next().await {
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        }));
        self.rx = Some(rx);
    }

    /// Up to `len` bytes at `offset`; empty at end of file.
    pub async fn read_at(&mut self, offset: u64, len: usize) -> VfsResult<Bytes> {
        if offset >= self.size || len == 0 {
            return Ok(Bytes::new());
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if offset < self.buf_start || offset > buf_end || (offset == buf_end && self.rx.is_none()) {
            self.restart(offset);
        } else {
            // Skip what lies before `offset` in the buffer.
            let _ = self.buf.split_to((offset - self.buf_start) as usize);
            self.buf_start = offset;
        }
        let want = len.min((self.size - offset) as usize);
        let mut parts: Vec<Bytes> = Vec::new();
        let mut got = 0;
        while got < want {
            if self.buf.is_empty() {
                let Some(rx) = self.rx.as_mut() else { break };
                match rx.recv().await {
                    Some(Ok(chunk)) => self.buf = chunk,
                    Some(Err(e)) => {
                        self.rx = None;
                        return Err(e);
                    }
                    None => {
                        self.rx = None;
                        if got == 0 {
                            return Err(VfsError::storage_msg(format!(
                                "the object {} ended early",
                                self.path
                            )));
                        }
                        break;
                    }
                }
            }
            let take = (want - got).min(self.buf.len());
            parts.push(self.buf.split_to(take));
            self.buf_start += take as u64;
            got += take;
        }
        Ok(match parts.len() {
            1 => parts.pop().expect("one part"),
            _ => parts.concat().into(),
        })
    }

    /// The rest of the object from `offset` as a stream, for protocols that
    /// send a whole file (FTP RETR).
    pub fn into_stream(self) -> impl futures::Stream<Item = VfsResult<Bytes>> {
        futures::stream::try_unfold(self, |mut d| async move {
            let offset = d.buf_start;
            let chunk = d.read_at(offset, 256 << 10).await?;
            Ok::<_, VfsError>((!chunk.is_empty()).then_some((chunk, d)))
        })
        .into_stream()
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
