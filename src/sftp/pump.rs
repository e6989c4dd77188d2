//! The SFTP request loop of one channel.
//!
//! russh-sftp's own loop reads a request only after the previous reply is
//! written. When the client's window is full (paramiko prefetches a whole
//! file's READs at once) that reply waits, unread requests pile up in
//! russh's channel buffer, and russh stops reading the socket — including
//! the WINDOW_ADJUST that would free the reply. Here a reader task keeps
//! draining the channel into a queue bounded in bytes, and requests are
//! answered one at a time, in order, by the handler.

use super::attrs::error_reply;
use super::handler::{MAX_REQUEST, SftpHandler};
use crate::vfs::{Chunks, FsError};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use russh_sftp::protocol::{Packet, Status, StatusCode};
use russh_sftp::server::{Handler, StatusReply};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Requests read ahead of the handler, in bytes (a READ counts 64 or more).
const QUEUE_BYTES: usize = 1 << 20;
/// Small replies are gathered into one channel write up to this size.
const COALESCE: usize = 32 << 10;

type Queued = (Bytes, OwnedSemaphorePermit);

/// Serves SFTP on `stream` until the client closes it. `true` when the
/// client ended it between requests and every reply went out: what the
/// session reports as exit status 0. The caller ends the channel (exit
/// status, then EOF, then CLOSE).
pub async fn run<S>(stream: S, mut handler: SftpHandler) -> bool
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
    let budget = Arc::new(Semaphore::new(QUEUE_BYTES));
    let reader = tokio::spawn(async move {
        loop {
            let len = match rd.read_u32().await {
                Ok(len) => len,
                Err(e) => return e.kind() == std::io::ErrorKind::UnexpectedEof,
            };
            if len == 0 || len > MAX_REQUEST {
                tracing::info!(
                    len,
                    "SFTP request of {len} bytes (must be 1 to {MAX_REQUEST}); closing the session"
                );
                return false;
            }
            let cost = (len as usize).max(64) as u32;
            let Ok(permit) = budget.clone().acquire_many_owned(cost).await else {
                return false;
            };
            // Not `vec![0; len]`: jemalloc zeroes a large calloc by purging
            // its pages, and each is faulted in again as the body is read
            // (two page faults per 4 KiB uploaded). Read into spare room.
            let mut body = Vec::with_capacity(len as usize);
            let read = (&mut rd).take(u64::from(len)).read_to_end(&mut body).await;
            if !matches!(read, Ok(n) if n == len as usize)
                || tx.send((body.into(), permit)).is_err()
            {
                return false;
            }
        }
    });

    let mut out = BytesMut::new();
    let mut sent_all = true;
    while let Some((body, permit)) = rx.recv().await {
        // Boxed: an idle session would otherwise hold room for the largest
        // request's future (an S3 call's) all the time.
        let reply = Box::pin(answer(&mut handler, body)).await;
        drop(permit);
        let Some(bytes) = reply else {
            continue;
        };
        // Large replies (DATA) go out as they are; small ones are gathered
        // while more requests wait, and sent when the queue runs dry.
        let sent = if bytes.len() >= COALESCE {
            let flushed = out.is_empty() || wr.write_all(&out.split()).await.is_ok();
            flushed && wr.write_all(&bytes).await.is_ok()
        } else {
            out.extend_from_slice(&bytes);
            !(rx.is_empty() || out.len() >= COALESCE) || wr.write_all(&out.split()).await.is_ok()
        };
        if !sent {
            sent_all = false;
            break;
        }
    }
    // The queue ends when the reader has returned (its sender dropped as
    // it did): its answer is to be awaited, not aborted, or a clean end
    // aborted in the instant before the task completes reads as unclean
    // (and OpenSSH's scp exited 1 after a whole upload). Only a reply that
    // could not be sent leaves a reader to stop.
    if !sent_all {
        reader.abort();
    }
    sent_all && matches!(reader.await, Ok(true))
}

/// The reply to one request, framed.
async fn answer(handler: &mut SftpHandler, mut body: Bytes) -> Option<Bytes> {
    let reply = if let Some(id) = names_not_utf8(&body) {
        let e = FsError::InvalidName("the name is not valid UTF-8; names must be UTF-8".into());
        status_of(id, error_reply(&e))
    } else if let Some((id, handle, offset, data)) = write_request(&body) {
        match handler.write_bytes(id, handle, offset, data).await {
            Ok(status) => Packet::Status(status),
            Err(e) => status_of(id, e),
        }
    } else if let Some((id, handle, offset, len)) = read_request(&body) {
        match handler.read_chunks(&handle, offset, len).await {
            Ok(chunks) => return Some(data_reply(id, &chunks)),
            Err(e) => status_of(id, e),
        }
    } else {
        match Packet::try_from(&mut body) {
            Ok(request) => dispatch(handler, request).await,
            Err(e) => {
                tracing::debug!(error = %e, "malformed SFTP request");
                Packet::error(0, StatusCode::BadMessage)
            }
        }
    };
    Bytes::try_from(reply)
        .inspect_err(|e| tracing::warn!(error = %e, "could not encode an SFTP reply"))
        .ok()
}

/// The request id of a request whose path names are not UTF-8.
/// russh-sftp decodes them with replacement characters, which would store
/// a name nobody sent; the raw bytes are checked here instead.
fn names_not_utf8(body: &[u8]) -> Option<u32> {
    let (&kind, rest) = body.split_first()?;
    // Packet types (draft-ietf-secsh-filexfer-02): OPEN, LSTAT, SETSTAT,
    // OPENDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, READLINK carry one
    // name first; RENAME and SYMLINK two.
    let names = match kind {
        3 | 7 | 9 | 11 | 13 | 14 | 15 | 16 | 17 | 19 => 1,
        18 | 20 => 2,
        _ => return None,
    };
    let (id, mut rest) = rest.split_first_chunk::<4>()?;
    for _ in 0..names {
        let (len, after) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        let name = after.get(..len)?;
        if std::str::from_utf8(name).is_err() {
            return Some(u32::from_be_bytes(*id));
        }
        rest = &after[len..];
    }
    None
}

/// SSH_FXP_WRITE, taken apart here: its data goes to the handler as a
/// slice of the request as it was read, where russh-sftp's parse would
/// copy it into a `Vec` of its own (a copy of every uploaded byte).
/// `None` for any other request, or a WRITE that is not exactly one
/// (left to russh-sftp's parse and its error).
fn write_request(body: &Bytes) -> Option<(u32, String, u64, Bytes)> {
    const SSH_FXP_WRITE: u8 = 6;
    let (id, handle, offset, mut rest) = handle_request(body, SSH_FXP_WRITE)?;
    let data_len = rest.try_get_u32().ok()? as usize;
    (rest.remaining() == data_len).then_some((id, handle, offset, rest))
}

/// SSH_FXP_READ, taken apart here so that its reply is framed from the
/// download's buffers in one copy ([`data_reply`]), where russh-sftp's
/// `Data` would take a joined copy and its encoding another.
fn read_request(body: &Bytes) -> Option<(u32, String, u64, u32)> {
    const SSH_FXP_READ: u8 = 5;
    let (id, handle, offset, mut rest) = handle_request(body, SSH_FXP_READ)?;
    let len = rest.try_get_u32().ok()?;
    (!rest.has_remaining()).then_some((id, handle, offset, len))
}

/// The id, handle and offset that begin a request of type `kind` (READ
/// and WRITE), and what follows them.
fn handle_request(body: &Bytes, kind: u8) -> Option<(u32, String, u64, Bytes)> {
    let mut rest = body.clone();
    if rest.try_get_u8().ok()? != kind {
        return None;
    }
    let id = rest.try_get_u32().ok()?;
    let handle_len = rest.try_get_u32().ok()? as usize;
    if rest.remaining() < handle_len {
        return None;
    }
    let handle = String::from_utf8(rest.split_to(handle_len).to_vec()).ok()?;
    let offset = rest.try_get_u64().ok()?;
    Some((id, handle, offset, rest))
}

/// SSH_FXP_DATA with `chunks` as its data, framed as russh-sftp frames it
/// (length, type, id, then the data as an SSH string).
fn data_reply(id: u32, chunks: &Chunks) -> Bytes {
    const SSH_FXP_DATA: u8 = 103;
    const HEAD: usize = 1 + 4 + 4;
    let mut out = BytesMut::with_capacity(4 + HEAD + chunks.len());
    out.put_u32((HEAD + chunks.len()) as u32);
    out.put_u8(SSH_FXP_DATA);
    out.put_u32(id);
    out.put_u32(chunks.len() as u32);
    for part in chunks.parts() {
        out.extend_from_slice(part);
    }
    out.freeze()
}

fn status_of(id: u32, reply: StatusReply) -> Packet {
    Packet::Status(Status {
        id,
        status_code: reply.status_code,
        error_message: reply
            .error_message
            .unwrap_or_else(|| reply.status_code.to_string()),
        language_tag: reply.language_tag.unwrap_or_else(|| "en-US".into()),
    })
}

macro_rules! call {
    ($id:expr, $handler:ident . $method:ident ( $($arg:expr),* )) => {
        match $handler.$method($($arg),*).await {
            Ok(reply) => reply.into(),
            Err(e) => status_of($id, e),
        }
    };
}

/// One request to the handler method that answers it.
async fn dispatch(h: &mut SftpHandler, request: Packet) -> Packet {
    let id = request.get_request_id();
    match request {
        Packet::Init(p) => call!(id, h.init(p.version, p.extensions)),
        Packet::Open(p) => call!(id, h.open(p.id, p.filename, p.pflags, p.attrs)),
        Packet::Close(p) => call!(id, h.close(p.id, p.handle)),
        Packet::Read(p) => call!(id, h.read(p.id, p.handle, p.offset, p.len)),
        Packet::Write(p) => call!(id, h.write_bytes(p.id, p.handle, p.offset, p.data.into())),
        Packet::Lstat(p) => call!(id, h.lstat(p.id, p.path)),
        Packet::Fstat(p) => call!(id, h.fstat(p.id, p.handle)),
        Packet::SetStat(p) => call!(id, h.setstat(p.id, p.path, p.attrs)),
        Packet::FSetStat(p) => call!(id, h.fsetstat(p.id, p.handle, p.attrs)),
        Packet::OpenDir(p) => call!(id, h.opendir(p.id, p.path)),
        Packet::ReadDir(p) => call!(id, h.readdir(p.id, p.handle)),
        Packet::Remove(p) => call!(id, h.remove(p.id, p.filename)),
        Packet::MkDir(p) => call!(id, h.mkdir(p.id, p.path, p.attrs)),
        Packet::RmDir(p) => call!(id, h.rmdir(p.id, p.path)),
        Packet::RealPath(p) => call!(id, h.realpath(p.id, p.path)),
        Packet::Stat(p) => call!(id, h.stat(p.id, p.path)),
        Packet::Rename(p) => call!(id, h.rename(p.id, p.oldpath, p.newpath)),
        Packet::ReadLink(p) => call!(id, h.readlink(p.id, p.path)),
        Packet::Symlink(p) => call!(id, h.symlink(p.id, p.linkpath, p.targetpath)),
        Packet::Extended(p) => call!(id, h.extended(p.id, p.request, p.data)),
        _ => Packet::error(id, StatusCode::BadMessage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WRITE as russh-sftp's client encodes it: taken apart into the
    /// same fields, its data a slice of the request (not a copy); the
    /// packet without its first byte (the length is read before) or cut
    /// short is not taken.
    #[test]
    fn a_write_is_taken_apart_without_copying_its_data() {
        let write = Packet::Write(russh_sftp::protocol::Write {
            id: 7,
            handle: "h1".into(),
            offset: 1 << 33,
            data: vec![0xab; 1000],
        });
        let framed = Bytes::try_from(write).unwrap();
        let body = framed.slice(4..);
        let (id, handle, offset, data) = write_request(&body).unwrap();
        assert_eq!((id, handle.as_str(), offset), (7, "h1", 1 << 33));
        assert_eq!(data, vec![0xab; 1000]);
        let inside = body.as_ptr_range();
        assert!(inside.contains(&data.as_ptr()), "the data was copied");
        assert!(write_request(&body.slice(..body.len() - 1)).is_none());
        let read = Packet::Read(russh_sftp::protocol::Read {
            id: 8,
            handle: "h1".into(),
            offset: 0,
            len: 10,
        });
        assert!(write_request(&Bytes::try_from(read).unwrap().slice(4..)).is_none());
    }

    /// A READ is taken apart into its fields, and the DATA reply framed
    /// from a read's chunks is what russh-sftp frames from the same bytes
    /// (what every client parses).
    #[test]
    fn a_read_s_reply_is_framed_as_russh_sftp_frames_it() {
        let read = Packet::Read(russh_sftp::protocol::Read {
            id: 8,
            handle: "h1".into(),
            offset: 1 << 40,
            len: 32768,
        });
        let body = Bytes::try_from(read).unwrap().slice(4..);
        assert_eq!(read_request(&body), Some((8, "h1".into(), 1 << 40, 32768)));
        assert!(read_request(&body.slice(..body.len() - 1)).is_none());
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(read_request(&Bytes::from(longer)).is_none());

        let chunks = Chunks::from(vec![
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from(vec![7u8; 70000]),
        ]);
        let data = [b"abc".as_slice(), &[7u8; 70000]].concat();
        let expected =
            Bytes::try_from(Packet::Data(russh_sftp::protocol::Data { id: 9, data })).unwrap();
        assert_eq!(data_reply(9, &chunks), expected);
    }
}
