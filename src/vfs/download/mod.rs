//! Read-ahead downloads (DESIGN §3 "Downloads read ahead").
//!
//! From the read offset to the end, the object comes from one streaming GET
//! that runs ahead of the reader, buffering at most [`SEGMENT_BUFFER`]
//! bytes before TCP backpressure pauses it, so a sequential client never
//! waits on an S3 round trip per request and memory stays bounded. Nothing
//! is buffered before the first read (a client may open a file and never
//! read it), and the first GET starts with [`FIRST_WINDOW`] ahead, doubled
//! each time the reader has taken that much. Every buffered byte is also
//! drawn from the gateway's memory budget (see `budget.rs`). When that
//! one GET is the bottleneck — the reader has spent over a third of its
//! time waiting for bytes that arrive slower than one connection should
//! carry — the far half of what remains is split off to a ranged GET of
//! its own, up to [`PARALLEL`] at once. An endpoint that is
//! not the bottleneck is never asked for parallel ranges (some S3 servers
//! copy the whole object for each). A read elsewhere restarts at that
//! offset. Every GET is pinned to the ETag seen at open: an object replaced
//! mid-download fails the read instead of mixing two versions.

mod segment;
mod verify;

use super::budget::{Budget, Held};
use super::transfers::{Ended, Observers};
use super::{FileStat, FsError, FsResult};
use crate::base::lock;
use crate::remote::body;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, ObjectStore};
use segment::{Buffered, Pool, Segment, spawn_segment};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use verify::Verify;

/// GETs in flight at most for one download.
const PARALLEL: usize = 4;
/// The smallest range worth its own GET.
const MIN_SEGMENT: u64 = 32 << 20;
/// Bytes read before the reader's waiting is judged.
const PROBE: u64 = 16 << 20;
/// Bytes per second under which a starved reader gets another GET.
const SLOW: u64 = 96 << 20;

/// A small file read whole before a client asked for it (`prefetch.rs`).
#[derive(Debug)]
pub struct Whole {
    pub stat: FileStat,
    pub etag: Option<String>,
    /// Kept with the object: what the served bytes are checked against.
    pub sha256: Option<[u8; 32]>,
    pub body: Bytes,
    /// The body's bytes of the gateway's budget.
    pub held: Held,
}

/// Where a download starts once it is first read.
enum Unstarted {
    /// The answer to the whole-object GET that opened it (in a mutex only
    /// to be `Sync`: its body stream is not).
    Response(std::sync::Mutex<GetResult>),
    /// A ranged GET from this offset.
    At(u64),
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
    /// budget they hold.
    buf: Bytes,
    buf_permit: Option<Buffered>,
    buf_start: u64,
    /// Segments in order, the first one feeding `buf`.
    segments: std::collections::VecDeque<Segment>,
    /// The GET to start at the first read, if none ran yet since (re)start.
    unstarted: Option<Unstarted>,
    budget: Budget,
    pace: Pace,
    /// Bytes handed to the reader, and the first failure it was told of.
    handed: u64,
    failed: Option<FsError>,
    /// What the layers above are told of the transfer.
    observers: Observers,
    /// Checks a read from start to end against the SHA-256 kept with the
    /// object; dropped at the first read out of order.
    verify: Option<Box<Verify>>,
    _transfer: super::transfers::Transfer,
}

/// Since the GETs were last (re)arranged: bytes handed out, and time the
/// reader spent waiting for them.
#[derive(Debug)]
struct Pace {
    started: Instant,
    read: u64,
    waited: Duration,
}

impl Pace {
    fn new() -> Self {
        Pace {
            started: Instant::now(),
            read: 0,
            waited: Duration::ZERO,
        }
    }

    /// Whether the reader has waited on the network for over a third of its
    /// time while the GETs deliver less than [`SLOW`]: one connection's cap
    /// (typical of S3 across a network), not an endpoint that is simply busy
    /// — more GETs would only load that one further.
    fn starved(&self) -> bool {
        let elapsed = self.started.elapsed();
        self.read >= PROBE
            && self.waited * 3 > elapsed
            && (self.read as f64) < SLOW as f64 * elapsed.as_secs_f64()
    }
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
    /// A download with no GET started yet.
    fn idle(
        store: Arc<dyn ObjectStore>,
        path: Path,
        stat: FileStat,
        etag: Option<String>,
        budget: Budget,
    ) -> Self {
        let transfer = budget.transfer();
        Download {
            store,
            path,
            size: stat.size,
            stat,
            etag,
            buf: Bytes::new(),
            buf_permit: None,
            buf_start: 0,
            segments: Default::default(),
            unstarted: None,
            budget,
            pace: Pace::new(),
            handed: 0,
            failed: None,
            observers: Observers::default(),
            verify: None,
            _transfer: transfer,
        }
    }

    /// A download of `path` from `offset`; its first GET waits for the first read.
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        stat: FileStat,
        etag: Option<String>,
        offset: u64,
        budget: Budget,
    ) -> Self {
        let mut d = Download::idle(store, path, stat, etag, budget);
        d.restart(offset);
        d
    }

    /// Reads from the answer to a whole-object GET, so a small file costs
    /// one request; a large one adds ranged GETs after the first. Its body
    /// is not read before the client reads.
    pub(crate) fn from_response(
        store: Arc<dyn ObjectStore>,
        path: Path,
        stat: FileStat,
        response: GetResult,
        budget: Budget,
    ) -> Self {
        let etag = response.meta.e_tag.clone();
        let mut d = Download::idle(store, path, stat, etag, budget);
        if d.size > 0 {
            d.unstarted = Some(Unstarted::Response(std::sync::Mutex::new(response)));
        }
        d
    }

    /// Serves a body already in memory; a read elsewhere than where the
    /// last one ended asks the store for that version, as any download.
    pub(crate) fn from_whole(
        store: Arc<dyn ObjectStore>,
        path: Path,
        whole: Whole,
        budget: Budget,
    ) -> Self {
        let mut d = Download::idle(store, path, whole.stat, whole.etag, budget);
        d.buf = whole.body;
        d.buf_permit = Some(Buffered {
            _window: None,
            _budget: whole.held,
        });
        if let Some(sha256) = whole.sha256 {
            d.verify_against(sha256);
        }
        d
    }

    pub fn stat(&self) -> &FileStat {
        &self.stat
    }

    /// Where the layers above set what they are told of this download: its
    /// bytes as they move, and its end (committed, failed, or dropped).
    pub fn observers(&mut self) -> &mut Observers {
        &mut self.observers
    }

    /// Records a failure the reader met beyond the download (the client's
    /// connection broke), unless a read already failed.
    pub fn fail(&mut self, why: FsError) {
        self.failed.get_or_insert(why);
    }

    /// The next `len` bytes after the last read; empty at end of file.
    pub async fn read_next(&mut self, len: usize) -> FsResult<Bytes> {
        self.read_at(self.buf_start, len).await
    }

    pub(crate) fn stat_mut(&mut self) -> &mut FileStat {
        &mut self.stat
    }

    fn restart(&mut self, offset: u64) {
        self.segments.clear();
        self.buf = Bytes::new();
        self.buf_permit = None;
        self.buf_start = offset;
        self.pace = Pace::new();
        self.unstarted = (offset < self.size).then_some(Unstarted::At(offset));
    }

    /// Starts the GET a (re)start left for the first read.
    fn start(&mut self) {
        let segment = match self.unstarted.take() {
            None => return,
            Some(Unstarted::At(offset)) => self.fetch(offset, self.size, Pool::Main),
            Some(Unstarted::Response(response)) => {
                let response = response.into_inner().unwrap_or_else(|p| p.into_inner());
                let body = async move { Ok(body(response)) };
                spawn_segment(0, self.size, self.budget.clone(), Pool::Main, body)
            }
        };
        self.segments.push_back(segment);
    }

    /// Gives the far half of the last GET's remaining range to a new GET.
    fn split(&mut self) {
        if self.segments.len() >= PARALLEL {
            return;
        }
        let Some(last) = self.segments.back() else {
            return;
        };
        let (mid, end) = {
            let mut l = lock(&last.limit);
            let left = l.end.saturating_sub(l.fetched);
            if left < 2 * MIN_SEGMENT {
                return;
            }
            let mid = l.fetched + left / 2;
            let end = std::mem::replace(&mut l.end, mid);
            (mid, end)
        };
        let segment = self.fetch(mid, end, Pool::Ahead);
        self.segments.push_back(segment);
        // Judge the new arrangement on its own.
        self.pace = Pace::new();
    }

    /// GETs started since the last (re)start that are still feeding this download.
    pub fn gets_in_flight(&self) -> usize {
        self.segments.len()
    }

    fn fetch(&self, start: u64, end: u64, pool: Pool) -> Segment {
        let store = self.store.clone();
        let path = self.path.clone();
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            if_match: self.etag.clone(),
            ..Default::default()
        };
        spawn_segment(start, end, self.budget.clone(), pool, async move {
            Ok(body(store.get_opts(&path, options).await?))
        })
    }

    /// The next bytes after `buf`, from the first segment that has any.
    async fn refill(&mut self) -> FsResult<bool> {
        self.start();
        loop {
            let Some(segment) = self.segments.front_mut() else {
                return Ok(false);
            };
            let next = match segment.rx.try_recv() {
                Ok(next) => Some(next),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let since = Instant::now();
                    let next = segment.rx.recv().await;
                    self.pace.waited += since.elapsed();
                    next
                }
            };
            match next {
                Some(Ok((chunk, permit))) => {
                    segment.took(chunk.len());
                    self.pace.read += chunk.len() as u64;
                    self.buf = chunk;
                    self.buf_permit = Some(permit);
                    if self.pace.starved() {
                        self.split();
                    }
                    return Ok(true);
                }
                Some(Err(e)) => {
                    self.segments.clear();
                    return Err(match e {
                        FsError::Changed(_) => FsError::Changed(format!(
                            "{} changed while it was being read; open it again",
                            self.path
                        )),
                        other => other,
                    });
                }
                None if self.buf_start < segment.end() => {
                    self.segments.clear();
                    return Err(FsError::failed(format!(
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

    /// Up to `len` bytes at `offset`; empty at end of file. A failure is
    /// remembered for the end hook. When the object has a SHA-256 kept and
    /// the file is read in order to its end, the read that reaches the end
    /// fails if the bytes served do not match it.
    pub async fn read_at(&mut self, offset: u64, len: usize) -> FsResult<Bytes> {
        Ok(self.read_chunks(offset, len).await?.into_bytes())
    }

    /// [`Download::read_at`] as the GET's buffers hold it, for a caller
    /// that copies the bytes into a frame of its own anyway (an SFTP DATA
    /// reply): joining them here would be one more copy of every byte.
    pub async fn read_chunks(&mut self, offset: u64, len: usize) -> FsResult<Chunks> {
        let mut read = self.read(offset, len).await;
        if let Ok(chunks) = &read {
            self.handed += chunks.len() as u64;
            self.observers.paced(chunks.len() as u64).await;
            self.observers.moved(chunks.len() as u64);
            if let Err(e) = self.verified(offset, chunks).await {
                read = Err(e);
            }
        }
        if let Err(e) = &read {
            self.fail(e.clone());
        }
        read
    }

    /// Verifies whole reads against `sha256` (see [`Download::read_at`]).
    pub(crate) fn verify_against(&mut self, sha256: [u8; 32]) {
        if self.size > 0 {
            self.verify = Some(Box::new(Verify::new(sha256)));
        }
    }

    async fn verified(&mut self, offset: u64, chunks: &Chunks) -> FsResult<()> {
        let Some(v) = &mut self.verify else {
            return Ok(());
        };
        let going = v.served(offset, chunks, self.size, &self.path).await;
        if !matches!(going, Ok(true)) {
            self.verify = None;
        }
        going.map(|_| ())
    }

    async fn read(&mut self, offset: u64, len: usize) -> FsResult<Chunks> {
        if offset >= self.size || len == 0 {
            return Ok(Chunks::default());
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if offset < self.buf_start
            || offset > buf_end
            || (offset == buf_end && self.segments.is_empty() && self.unstarted.is_none())
        {
            self.restart(offset);
        } else {
            // Skip what lies before `offset` in the buffer.
            let _ = self.buf.split_to((offset - self.buf_start) as usize);
            self.buf_start = offset;
        }
        let want = len.min((self.size - offset) as usize);
        let mut parts = Vec::new();
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
            return Err(FsError::failed(format!(
                "the object {} ended early",
                self.path
            )));
        }
        Ok(parts.into())
    }

    /// The rest of the object from `offset` as a stream, for protocols that
    /// send a whole file (FTP RETR).
    pub fn into_stream(self) -> impl futures::Stream<Item = FsResult<Bytes>> {
        futures::stream::try_unfold(self, |mut d| async move {
            let chunk = d.read_next(256 << 10).await?;
            Ok::<_, FsError>((!chunk.is_empty()).then_some((chunk, d)))
        })
    }
}

/// The bytes of one read, in the buffers the GET's body came in.
#[derive(Debug, Default)]
pub struct Chunks(Vec<Bytes>);

impl From<Vec<Bytes>> for Chunks {
    fn from(parts: Vec<Bytes>) -> Self {
        Chunks(parts)
    }
}

impl Chunks {
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Bytes::is_empty)
    }

    pub fn parts(&self) -> &[Bytes] {
        &self.0
    }

    /// One buffer: the part itself when there is one, else a copy.
    pub fn into_bytes(mut self) -> Bytes {
        match self.0.len() {
            1 => self.0.pop().expect("one part"),
            _ => self.0.concat().into(),
        }
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        // Told all the same; nothing waits for a download's end.
        drop(self.observers.end(Ended {
            bytes: Some(self.handed),
            digests: None,
            size: None,
            etag: None,
            result: self.failed.as_ref().map_or(Ok(()), Err),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;
    use object_store::{ObjectStoreExt, PutPayload};

    /// Splitting hands the tail of a GET to new GETs without losing,
    /// repeating or reordering a byte.
    #[tokio::test]
    async fn splits_keep_every_byte_in_order() {
        // A store that streams in small chunks, as HTTP does.
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let data: Vec<u8> = (0..(150u32 << 20) / 4)
            .flat_map(|i| i.to_le_bytes())
            .collect();
        let path = Path::from("big");
        store
            .put(&path, PutPayload::from(data.clone()))
            .await
            .unwrap();
        let stat = FileStat::file("big".into(), data.len() as u64, chrono::Utc::now());
        let mut d = Download::new(
            store,
            path,
            stat,
            None,
            0,
            Budget::new(1 << 30, Default::default()),
        );
        let mut out = Vec::new();
        let mut most = 0;
        while out.len() < data.len() {
            let chunk = d.read_at(out.len() as u64, 255 << 10).await.unwrap();
            out.extend_from_slice(&chunk);
            if out.len() % (8 << 20) < (255 << 10) {
                d.split();
            }
            most = most.max(d.gets_in_flight());
        }
        assert!(d.read_at(out.len() as u64, 1).await.unwrap().is_empty());
        assert!(most >= 2, "the test never split a GET");
        assert!(
            out == data,
            "bytes lost, repeated or reordered across splits"
        );
    }
}
