//! Read-ahead downloads (DESIGN §3 "Downloads read ahead").
//!
//! From the read offset to the end, the object is fetched as streaming GETs
//! that run ahead of the reader: one for a small object, up to [`PARALLEL`]
//! contiguous segments for a large one, each buffering at most
//! [`SEGMENT_BUFFER`] bytes before TCP backpressure pauses it. A sequential
//! client never waits on an S3 round trip per request, memory stays bounded,
//! and each byte is requested once (S3 servers that copy the object per
//! ranged GET are not asked for it hundreds of times). A read elsewhere
//! restarts the segments at that offset. Every GET is pinned to the ETag
//! seen at open: an object replaced mid-download fails the read instead of
//! mixing two versions.

use super::{FileStat, VfsError, VfsResult};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, ObjectStore};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Segments fetched at once for a large object.
const PARALLEL: u64 = 4;
/// The smallest segment worth its own GET.
const MIN_SEGMENT: u64 = 32 << 20;
/// Bytes a segment may hold ahead of the reader.
const SEGMENT_BUFFER: usize = 8 << 20;

type Chunk = VfsResult<(Bytes, OwnedSemaphorePermit)>;

/// One GET of a byte range, streaming into a bounded buffer.
struct Segment {
    end: u64,
    rx: mpsc::UnboundedReceiver<Chunk>,
    task: JoinHandle<()>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Contiguous segments covering `offset..size`: one per [`MIN_SEGMENT`],
/// at most [`PARALLEL`].
fn plan(offset: u64, size: u64) -> Vec<(u64, u64)> {
    if offset >= size {
        return Vec::new();
    }
    let len = size - offset;
    let count = (len / MIN_SEGMENT).clamp(1, PARALLEL);
    let each = len.div_ceil(count);
    (0..count)
        .map(|i| (offset + i * each, (offset + (i + 1) * each).min(size)))
        .filter(|(a, b)| a < b)
        .collect()
}

type Body = BoxStream<'static, object_store::Result<Bytes>>;

/// Forwards `len` bytes of the body `open` yields into a bounded buffer.
fn spawn_segment(
    end: u64,
    len: u64,
    open: impl Future<Output = object_store::Result<Body>> + Send + 'static,
) -> Segment {
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(SEGMENT_BUFFER));
    let task = tokio::spawn(async move {
        let mut body = match open.await {
            Ok(body) => body,
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                return;
            }
        };
        let mut left = len;
        while left > 0 {
            let mut chunk = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
                None => return,
            };
            if chunk.len() as u64 > left {
                chunk.truncate(left as usize);
            }
            left -= chunk.len() as u64;
            let cost = chunk.len().clamp(1, SEGMENT_BUFFER) as u32;
            let Ok(permit) = budget.clone().acquire_many_owned(cost).await else {
                return;
            };
            if tx.send(Ok((chunk, permit))).is_err() {
                return;
            }
        }
    });
    Segment { end, rx, task }
}

/// An open file being read.
pub struct Download {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// The object as it was opened: what FSTAT answers without a request.
    stat: FileStat,
    etag: Option<String>,
    size: u64,
    /// Bytes at `buf_start..buf_start + buf.len()`, next to hand out, and the
    /// budget they hold in their segment.
    buf: Bytes,
    buf_permit: Option<OwnedSemaphorePermit>,
    buf_start: u64,
    /// Segments in order, the first one feeding `buf`.
    segments: std::collections::VecDeque<Segment>,
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
        etag: Option<String>,
        offset: u64,
    ) -> Self {
        let mut d = Download {
            store,
            path,
            size: stat.size,
            stat,
            etag,
            buf: Bytes::new(),
            buf_permit: None,
            buf_start: offset,
            segments: Default::default(),
        };
        d.restart(offset);
        d
    }

    /// Starts reading from the answer to a whole-object GET, so a small
    /// file costs one request; a large one adds ranged GETs for the
    /// segments after the first.
    pub(crate) fn from_response(
        store: Arc<dyn ObjectStore>,
        path: Path,
        stat: FileStat,
        response: GetResult,
    ) -> Self {
        let mut d = Download {
            store,
            path,
            size: stat.size,
            stat,
            etag: response.meta.e_tag.clone(),
            buf: Bytes::new(),
            buf_permit: None,
            buf_start: 0,
            segments: Default::default(),
        };
        let mut first = Some(response);
        for (start, end) in plan(0, d.size) {
            let segment = match first.take() {
                Some(response) => {
                    spawn_segment(end, end - start, async move { Ok(response.into_stream()) })
                }
                None => d.fetch(start, end),
            };
            d.segments.push_back(segment);
        }
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
        self.segments.clear();
        self.buf = Bytes::new();
        self.buf_permit = None;
        self.buf_start = offset;
        for (start, end) in plan(offset, self.size) {
            let segment = self.fetch(start, end);
            self.segments.push_back(segment);
        }
    }

    fn fetch(&self, start: u64, end: u64) -> Segment {
        let store = self.store.clone();
        let path = self.path.clone();
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            if_match: self.etag.clone(),
            ..Default::default()
        };
        spawn_segment(end, end - start, async move {
            Ok(store.get_opts(&path, options).await?.into_stream())
        })
    }

    /// The next bytes after `buf`, from the first segment that has any.
    async fn refill(&mut self) -> VfsResult<bool> {
        loop {
            let Some(segment) = self.segments.front_mut() else {
                return Ok(false);
            };
            match segment.rx.recv().await {
                Some(Ok((chunk, permit))) => {
                    self.buf = chunk;
                    self.buf_permit = Some(permit);
                    return Ok(true);
                }
                Some(Err(e)) => {
                    self.segments.clear();
                    return Err(match e {
                        VfsError::AlreadyExists => VfsError::storage_msg(format!(
                            "{} changed while it was being read; open it again",
                            self.path
                        )),
                        other => other,
                    });
                }
                None if self.buf_start < segment.end => {
                    self.segments.clear();
                    return Err(VfsError::storage_msg(format!(
                        "the object {} ended early",
                        self.path
                    )));
                }
                None => {
                    self.segments.pop_front();
                }
            }
        }
    }

    /// Up to `len` bytes at `offset`; empty at end of file.
    pub async fn read_at(&mut self, offset: u64, len: usize) -> VfsResult<Bytes> {
        if offset >= self.size || len == 0 {
            return Ok(Bytes::new());
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if offset < self.buf_start
            || offset > buf_end
            || (offset == buf_end && self.segments.is_empty())
        {
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
                self.buf_permit = None;
                if !self.refill().await? {
                    break;
                }
            }
            let take = (want - got).min(self.buf.len());
            parts.push(self.buf.split_to(take));
            self.buf_start += take as u64;
            got += take;
        }
        if got == 0 {
            return Err(VfsError::storage_msg(format!(
                "the object {} ended early",
                self.path
            )));
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
            if offset >= d.size {
                return Ok(None);
            }
            let chunk = d.read_at(offset, 256 << 10).await?;
            Ok::<_, VfsError>(Some((chunk, d)))
        })
    }
}
