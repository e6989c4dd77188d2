//! A webhook's events on disk, in `state_dir/webhooks/NAME/`:
//! `events.jsonl` (each event's body, a line, appended), `acked` (the ids
//! delivered since the last compaction) and `failed.jsonl` (events given
//! up). What is in `events.jsonl` and not in `acked` is undelivered.
//!
//! One writer thread owns the files. It takes every operation waiting at
//! once and ends the batch with one `fdatasync`, so a burst of small
//! uploads pays one sync, not one each, and each event is told it is on
//! disk only after that sync. Acks are written without a sync: one lost in
//! a crash means the event is sent once more, which at-least-once allows.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, oneshot};

/// Compaction waits for this many lines, and for half of them acked.
const COMPACT_AFTER: usize = 1024;

/// What the writer thread is asked to do.
enum Op {
    Append {
        id: String,
        body: Bytes,
        born: DateTime<Utc>,
        done: oneshot::Sender<()>,
    },
    Ack(String),
    GiveUp {
        id: String,
        body: Bytes,
    },
    /// Puts the given-up events back to be delivered; answers how many.
    Retry(oneshot::Sender<io::Result<usize>>),
}

/// What the writer needs from the queue: where a stored event goes, and
/// every event still undelivered (for compaction).
pub trait Owner: Send + Sync + 'static {
    fn stored(&self, id: String, body: Bytes, born: DateTime<Utc>);
    /// A given-up event put back: it counts toward the backlog again, and
    /// its `retry_for` starts over.
    fn retried(&self, id: String, body: Bytes);
    fn undelivered(&self) -> Vec<(String, Bytes)>;
}

/// The handle to one webhook's spool.
#[derive(Clone)]
pub struct Spool {
    ops: mpsc::UnboundedSender<Op>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` and gives what it holds
    /// undelivered, oldest first, after rewriting the files to hold only
    /// that.
    pub fn open(
        dir: &Path,
        owner: impl Owner,
        syncs: prometheus_client::metrics::counter::Counter,
    ) -> io::Result<(Spool, Vec<(String, Bytes)>)> {
        std::fs::create_dir_all(dir)?;
        let files = Files::new(dir);
        let undelivered = files.load()?;
        files.rewrite(&undelivered)?;
        let mut writer = Writer {
            events: files.append(&files.events)?,
            acked: files.append(&files.acked)?,
            lines: undelivered.len(),
            acked_lines: 0,
            files,
            syncs,
        };
        let (ops, mut rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("event-spool".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while let Ok(op) = rx.try_recv() {
                        batch.push(op);
                    }
                    writer.apply(batch, &owner);
                }
            })?;
        Ok((Spool { ops }, undelivered))
    }

    /// Appends an event that happened at `born`; `done` is told once it
    /// is on disk.
    pub fn append(&self, id: String, body: Bytes, born: DateTime<Utc>, done: oneshot::Sender<()>) {
        let _ = self.ops.send(Op::Append {
            id,
            body,
            born,
            done,
        });
    }

    pub fn ack(&self, id: String) {
        let _ = self.ops.send(Op::Ack(id));
    }

    /// Puts every event of `failed.jsonl` back to be delivered: they are
    /// in `events.jsonl`, synced, before `failed.jsonl` is emptied (a
    /// crash between the two keeps them twice, which at-least-once allows).
    pub fn retry_failed(&self) -> oneshot::Receiver<io::Result<usize>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.ops.send(Op::Retry(tx));
        rx
    }

    /// Moves an event to `failed.jsonl`: it is not sent again.
    pub fn give_up(&self, id: String, body: Bytes) {
        let _ = self.ops.send(Op::GiveUp { id, body });
    }
}

struct Files {
    dir: PathBuf,
    events: PathBuf,
    acked: PathBuf,
    failed: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            dir: dir.to_path_buf(),
            events: dir.join("events.jsonl"),
            acked: dir.join("acked"),
            failed: dir.join("failed.jsonl"),
        }
    }

    fn append(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    /// The events not acked, in the order they were appended. A line that
    /// does not parse (the tail of a write a crash cut short, which was
    /// never confirmed) is skipped.
    fn load(&self) -> io::Result<Vec<(String, Bytes)>> {
        let acked: HashSet<String> = match File::open(&self.acked) {
            Ok(f) => io::BufReader::new(f).lines().collect::<io::Result<_>>()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(e),
        };
        let file = match File::open(&self.events) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for line in io::BufReader::new(file).split(b'\n') {
            let line = line?;
            let id = serde_json::from_slice::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
            match id {
                Some(id) if !acked.contains(&id) && seen.insert(id.clone()) => {
                    out.push((id, Bytes::from(line)));
                }
                Some(_) => {}
                None if line.is_empty() => {}
                None => {
                    tracing::warn!(spool = %self.dir.display(), "skipping an unreadable line of the event spool (a write cut short)")
                }
            }
        }
        Ok(out)
    }

    /// Replaces `events.jsonl` by `events` and empties `acked`: written
    /// beside, synced, renamed over, so a crash leaves one or the other.
    fn rewrite(&self, events: &[(String, Bytes)]) -> io::Result<()> {
        let tmp = self.dir.join("events.jsonl.tmp");
        let mut f = File::create(&tmp)?;
        let mut out = io::BufWriter::new(&mut f);
        for (_, body) in events {
            out.write_all(body)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        drop(out);
        f.sync_data()?;
        // Acks go first: a crash before the rename leaves the old events
        // with no acks, sent again (at least once), never an id acked in
        // the new file that is still to deliver (a retried event).
        File::create(&self.acked)?.sync_data()?;
        std::fs::rename(&tmp, &self.events)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

struct Writer {
    files: Files,
    events: File,
    acked: File,
    /// Lines in `events.jsonl`, and ids in `acked`.
    lines: usize,
    acked_lines: usize,
    /// Counts the syncs: fewer than events when they come together.
    syncs: prometheus_client::metrics::counter::Counter,
}

impl Writer {
    fn apply(&mut self, batch: Vec<Op>, owner: &impl Owner) {
        let mut events = Vec::new();
        let mut stored = Vec::new();
        let mut acks = Vec::new();
        let mut failed = Vec::new();
        let mut retries = Vec::new();
        for op in batch {
            match op {
                Op::Append {
                    id,
                    body,
                    born,
                    done,
                } => {
                    events.extend_from_slice(&body);
                    events.push(b'\n');
                    stored.push((id, body, born, done));
                }
                Op::Ack(id) => {
                    acks.extend_from_slice(id.as_bytes());
                    acks.push(b'\n');
                    self.acked_lines += 1;
                }
                Op::GiveUp { id, body } => {
                    failed.extend_from_slice(&body);
                    failed.push(b'\n');
                    acks.extend_from_slice(id.as_bytes());
                    acks.push(b'\n');
                    self.acked_lines += 1;
                }
                Op::Retry(done) => retries.push(done),
            }
        }
        if !failed.is_empty()
            && let Err(e) = self.write_failed(&failed)
        {
            tracing::error!(spool = %self.files.dir.display(), error = %e, "cannot keep given-up events in failed.jsonl");
        }
        if !acks.is_empty()
            && let Err(e) = self.acked.write_all(&acks)
        {
            tracing::warn!(spool = %self.files.dir.display(), error = %e, "cannot record delivered events; they may be sent again after a restart");
        }
        if !events.is_empty() {
            let written = self
                .events
                .write_all(&events)
                .and_then(|()| self.events.sync_data());
            self.syncs.inc();
            match written {
                Ok(()) => self.lines += stored.len(),
                Err(e) => {
                    tracing::error!(spool = %self.files.dir.display(), error = %e, events = stored.len(), "EVENTS NOT SPOOLED: the webhook spool cannot be written; these events are delivered only if this process keeps running");
                }
            }
            // Delivered either way: an event that could not be written
            // is still sent while the process lives.
            for (id, body, born, done) in stored {
                owner.stored(id, body, born);
                let _ = done.send(());
            }
        }
        for done in retries {
            let _ = done.send(self.retry(owner));
        }
        if self.lines >= COMPACT_AFTER && self.acked_lines * 2 >= self.lines {
            self.compact(owner);
        }
    }

    /// The events of `failed.jsonl` back in the queue, then the spool
    /// rewritten with everything undelivered (their ids were acked when
    /// they were given up), then `failed.jsonl` emptied: a crash at any
    /// point keeps each event in one file or both, never in none.
    fn retry(&mut self, owner: &impl Owner) -> io::Result<usize> {
        let text = match std::fs::read(&self.files.failed) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let events: Vec<(String, Bytes)> = text
            .split(|b| *b == b'\n')
            .filter_map(|line| {
                let v: serde_json::Value = serde_json::from_slice(line).ok()?;
                let id = v.get("id")?.as_str()?.to_string();
                Some((id, Bytes::copy_from_slice(line)))
            })
            .collect();
        let n = events.len();
        for (id, body) in events {
            owner.retried(id, body);
        }
        self.rewrite(owner)?;
        File::create(&self.files.failed)?.sync_data()?;
        Ok(n)
    }

    fn write_failed(&self, lines: &[u8]) -> io::Result<()> {
        let mut f = self.files.append(&self.files.failed)?;
        f.write_all(lines)?;
        f.sync_data()
    }

    /// Rewrites the spool with only what is undelivered.
    fn compact(&mut self, owner: &impl Owner) {
        if let Err(e) = self.rewrite(owner) {
            tracing::warn!(spool = %self.files.dir.display(), error = %e, "compacting the event spool failed; it goes on growing");
        }
    }

    fn rewrite(&mut self, owner: &impl Owner) -> io::Result<()> {
        let undelivered = owner.undelivered();
        self.files.rewrite(&undelivered)?;
        self.events = self.files.append(&self.files.events)?;
        self.acked = self.files.append(&self.files.acked)?;
        (self.lines, self.acked_lines) = (undelivered.len(), 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Kept(Mutex<Vec<(String, Bytes)>>);

    impl Owner for std::sync::Arc<Kept> {
        fn stored(&self, id: String, body: Bytes, _: DateTime<Utc>) {
            self.0.lock().unwrap().push((id, body));
        }
        fn undelivered(&self) -> Vec<(String, Bytes)> {
            self.0.lock().unwrap().clone()
        }
        fn retried(&self, id: String, body: Bytes) {
            let mut kept = self.0.lock().unwrap();
            kept.retain(|(i, _)| *i != id);
            kept.push((id, body));
        }
    }

    fn body(id: &str) -> Bytes {
        Bytes::from(format!("{{\"id\":\"{id}\"}}"))
    }

    #[tokio::test]
    async fn what_was_not_acked_comes_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let kept = std::sync::Arc::new(Kept::default());
        let syncs = prometheus_client::metrics::counter::Counter::default();
        let (spool, before) = Spool::open(dir.path(), kept.clone(), syncs.clone()).unwrap();
        assert!(before.is_empty());
        let mut done = Vec::new();
        for id in ["a", "b", "c"] {
            let (tx, rx) = oneshot::channel();
            spool.append(id.into(), body(id), Utc::now(), tx);
            done.push(rx);
        }
        for rx in done {
            rx.await.unwrap();
        }
        spool.ack("b".into());
        spool.give_up("c".into(), body("c"));
        // The writer has taken the acks once a later append is confirmed.
        let (tx, rx) = oneshot::channel();
        spool.append("d".into(), body("d"), Utc::now(), tx);
        rx.await.unwrap();
        drop(spool);
        // A torn last line, as a crash mid-write leaves.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.jsonl"))
            .unwrap();
        f.write_all(b"{\"id\":\"e").unwrap();

        assert!(
            syncs.get() <= 3,
            "three appends sent at once, {} syncs",
            syncs.get()
        );
        let (_spool, after) = Spool::open(dir.path(), kept, syncs).unwrap();
        let ids: Vec<&str> = after.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "d"]);
        let failed = std::fs::read_to_string(dir.path().join("failed.jsonl")).unwrap();
        assert_eq!(failed, "{\"id\":\"c\"}\n");
    }

    #[tokio::test]
    async fn a_given_up_event_put_back_is_undelivered_again() {
        let dir = tempfile::tempdir().unwrap();
        let kept = std::sync::Arc::new(Kept::default());
        let syncs = prometheus_client::metrics::counter::Counter::default();
        let (spool, _) = Spool::open(dir.path(), kept.clone(), syncs.clone()).unwrap();
        let (tx, rx) = oneshot::channel();
        spool.append("a".into(), body("a"), Utc::now(), tx);
        rx.await.unwrap();
        spool.give_up("a".into(), body("a"));
        assert_eq!(spool.retry_failed().await.unwrap().unwrap(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("failed.jsonl")).unwrap(),
            ""
        );
        assert_eq!(spool.retry_failed().await.unwrap().unwrap(), 0);
        drop(spool);
        // After a restart it is still there to deliver.
        let (_spool, after) = Spool::open(dir.path(), kept, syncs).unwrap();
        let ids: Vec<&str> = after.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a"]);
    }
}
