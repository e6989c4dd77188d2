//! The SFTP operations of one session, over its user's VFS.
//!
//! Requests come one at a time (see `pump.rs`), so none may wait on S3 in
//! the common case: READs are served from the download's read-ahead and
//! WRITEs go into the streaming upload and return at once. An upload's
//! error surfaces at the next WRITE, at fsync and at CLOSE; CLOSE finishes
//! the upload before it answers, so a client that renames right after
//! (WinSCP's `.filepart`) finds the whole file.

use super::attrs::{Reply, answered, attributes, entry, error_reply, status};
use super::extended::{
    CHECK_FILE, CHECK_FILE_HANDLE, CHECK_FILE_NAME, check_file, extended_reply, statvfs,
    take_string, take_uint,
};
use crate::policy::SessionVfs;
use crate::vfs::{Chunks, Download, FileStat, FsError, Upload, UserPath, Vfs, WriteMode};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use russh_sftp::extensions::{self, LimitsExtension};
use russh_sftp::protocol::{
    Attrs, Data, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest request accepted (`pump.rs` reads no more), as the limits
/// extension tells the client: a 255 KiB WRITE and its header fit.
pub const MAX_REQUEST: u32 = 256 * 1024 + 1024;
/// Largest READ advertised through `limits@openssh.com`: OpenSSH then
/// reads 255 KiB per request instead of 32 KiB.
pub const MAX_DATA: u32 = 255 * 1024;
/// Largest WRITE advertised there. OpenSSH's `sftp` keeps 64 requests in
/// flight; at 255 KiB each its own kernel time doubled the CPU it spent
/// per GiB put, and eight clients at once took 1.5× as long as at 64 KiB
/// (bench/README "Parallel streams"). Larger WRITEs are still taken.
const MAX_WRITE: u32 = 64 * 1024;
/// Entries per READDIR reply.
const DIR_BATCH: usize = 128;

const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// One channel's SFTP state.
pub struct SftpHandler {
    vfs: SessionVfs,
    handles: Handles,
}

/// The open handles of one SFTP channel. Each holds one of its SSH
/// connection's handle slots (`[sftp].max_handles`, shared by the
/// connection's channels), so more channels do not mean more handles.
struct Handles {
    /// Boxed: the table keeps its room after the handles close, and an
    /// idle session would hold several handles' worth of it.
    open: HashMap<String, (Box<OpenHandle>, OwnedSemaphorePermit)>,
    slots: Arc<Semaphore>,
    max: usize,
    next: u64,
}

impl Handles {
    /// A free slot, or the refusal the client sees.
    fn slot(&self) -> Reply<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            status(
                StatusCode::Failure,
                format!("too many open files (at most {} per connection)", self.max),
            )
        })
    }

    fn insert(&mut self, slot: OwnedSemaphorePermit, h: OpenHandle) -> String {
        self.next += 1;
        let handle = self.next.to_string();
        self.open.insert(handle.clone(), (Box::new(h), slot));
        handle
    }

    fn get(&self, handle: &str) -> Option<&OpenHandle> {
        self.open.get(handle).map(|(h, _)| &**h)
    }

    fn get_mut(&mut self, handle: &str) -> Option<&mut OpenHandle> {
        self.open.get_mut(handle).map(|(h, _)| &mut **h)
    }

    fn remove(&mut self, handle: &str) -> Option<OpenHandle> {
        self.open.remove(handle).map(|(h, _)| *h)
    }
}

enum OpenHandle {
    Read(ReadFile),
    Write(WriteFile),
    Dir(Listing),
}

/// Read and write handles keep their path for FSETSTAT and FSTAT.
struct ReadFile {
    path: UserPath,
    download: Download,
}

struct WriteFile {
    path: UserPath,
    upload: Upload,
    /// Opened with `SSH_FXF_APPEND`: every write goes to the end of the
    /// file, whatever its offset (draft-ietf-secsh-filexfer-02 §6.3;
    /// asyncssh writes at 0 and relies on it).
    append: bool,
}

struct Listing {
    entries: BoxStream<'static, Result<FileStat, FsError>>,
    done: bool,
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

fn unknown_handle() -> StatusReply {
    status(StatusCode::Failure, "invalid handle")
}

/// A READ on a file open for writing, or the reverse; or no such handle.
fn wrong_handle(open: bool, how: &str) -> StatusReply {
    match open {
        true => status(StatusCode::Failure, format!("the file is open for {how}")),
        false => unknown_handle(),
    }
}

fn mtime_of(attrs: &FileAttributes) -> Option<DateTime<Utc>> {
    attrs
        .mtime
        .and_then(|t| DateTime::from_timestamp(i64::from(t), 0))
}

impl SftpHandler {
    /// WRITE with its data as the request held it (see `pump.rs`).
    pub async fn write_bytes(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Bytes,
    ) -> Reply<Status> {
        let w = match self.handles.get_mut(&handle) {
            Some(OpenHandle::Write(w)) => w,
            other => return Err(wrong_handle(other.is_some(), "reading, not writing")),
        };
        let written = match w.append {
            true => w.upload.write_at_end(data).await,
            false => w.upload.write_at(offset, data).await,
        };
        written.map_err(|e| error_reply(&e))?;
        Ok(ok(id))
    }

    /// READ's bytes as the download's buffers hold them (see `pump.rs`).
    pub async fn read_chunks(&mut self, handle: &str, offset: u64, len: u32) -> Reply<Chunks> {
        let r = match self.handles.get_mut(handle) {
            Some(OpenHandle::Read(r)) => r,
            other => return Err(wrong_handle(other.is_some(), "writing, not reading")),
        };
        let len = len.min(MAX_DATA) as usize;
        let data = answered(r.download.read_chunks(offset, len)).await?;
        match data.is_empty() {
            true => Err(status(StatusCode::Eof, "end of file")),
            false => Ok(data),
        }
    }

    /// A channel's handler; `slots` are its connection's handle slots, `max` their number.
    pub fn new(vfs: SessionVfs, slots: Arc<Semaphore>, max: usize) -> Self {
        SftpHandler {
            vfs,
            handles: Handles {
                open: HashMap::new(),
                slots,
                max,
                next: 0,
            },
        }
    }

    fn path(&self, input: &str) -> Reply<UserPath> {
        UserPath::parse(input).map_err(|e| error_reply(&e))
    }

    fn add(&mut self, id: u32, slot: OwnedSemaphorePermit, h: OpenHandle) -> Handle {
        Handle {
            id,
            handle: self.handles.insert(slot, h),
        }
    }

    fn handle_path(&self, handle: &str) -> Reply<&UserPath> {
        match self.handles.get(handle) {
            Some(OpenHandle::Read(r)) => Ok(&r.path),
            Some(OpenHandle::Write(w)) => Ok(&w.path),
            Some(OpenHandle::Dir(_)) | None => Err(unknown_handle()),
        }
    }
}

async fn open_write(
    vfs: &SessionVfs,
    path: &UserPath,
    flags: OpenFlags,
) -> Result<WriteFile, FsError> {
    // EXCL creates or fails; TRUNC replaces; anything else keeps the bytes
    // already there (resume: FileZilla, OpenSSH reput, WinSCP, paramiko 'a').
    let mode = if flags.contains(OpenFlags::EXCLUDE) {
        WriteMode::CreateNew
    } else if flags.contains(OpenFlags::TRUNCATE) {
        WriteMode::Truncate
    } else {
        WriteMode::Append
    };
    let upload = vfs.open_write(path, mode).await?;
    Ok(WriteFile {
        path: path.clone(),
        upload,
        append: flags.contains(OpenFlags::APPEND),
    })
}

impl russh_sftp::server::Handler for SftpHandler {
    type Error = StatusReply;

    fn unimplemented(&self) -> StatusReply {
        status(StatusCode::OpUnsupported, "not supported by this server")
    }

    async fn init(&mut self, _version: u32, _ext: HashMap<String, String>) -> Reply<Version> {
        let mut v = Version::new();
        for (name, version) in [
            (POSIX_RENAME, "1"),
            (extensions::STATVFS, "2"),
            (extensions::FSYNC, "1"),
            (extensions::LIMITS, "1"),
            (CHECK_FILE, "1"),
            (CHECK_FILE_HANDLE, "1"),
            (CHECK_FILE_NAME, "1"),
        ] {
            v.extensions.insert(name.into(), version.into());
        }
        Ok(v)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        flags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Reply<Handle> {
        // paramiko's mode 'x' sends CREAT|EXCL without WRITE: still a write.
        let writing = flags.intersects(
            OpenFlags::WRITE
                | OpenFlags::APPEND
                | OpenFlags::TRUNCATE
                | OpenFlags::CREATE
                | OpenFlags::EXCLUDE,
        );
        let path = match writing {
            true => UserPath::parse_file(&filename).map_err(|e| error_reply(&e))?,
            false => self.path(&filename)?,
        };
        let slot = self.handles.slot()?;
        let opened = if writing {
            open_write(&self.vfs, &path, flags)
                .await
                .map(OpenHandle::Write)
        } else {
            self.vfs
                .open_read(&path, 0)
                .await
                .map(|download| OpenHandle::Read(ReadFile { path, download }))
        };
        let handle = opened.map_err(|e| error_reply(&e))?;
        Ok(self.add(id, slot, handle))
    }

    async fn close(&mut self, id: u32, handle: String) -> Reply<Status> {
        match self.handles.remove(&handle).ok_or_else(unknown_handle)? {
            OpenHandle::Write(w) => answered(w.upload.close()).await.map(|_| ok(id)),
            OpenHandle::Read(_) | OpenHandle::Dir(_) => Ok(ok(id)),
        }
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Reply<Data> {
        let chunks = self.read_chunks(&handle, offset, len).await?;
        Ok(Data {
            id,
            data: chunks.parts().concat(),
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Reply<Attrs> {
        self.stat(id, path).await
    }

    async fn stat(&mut self, id: u32, path: String) -> Reply<Attrs> {
        let path = self.path(&path)?;
        let stat = self.vfs.stat(&path).await.map_err(|e| error_reply(&e))?;
        Ok(Attrs {
            id,
            attrs: attributes(&stat),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Reply<Attrs> {
        let stat = match self.handles.get(&handle) {
            Some(OpenHandle::Read(r)) => r.download.stat().clone(),
            Some(OpenHandle::Write(w)) => FileStat::file(
                w.path.file_name().to_string(),
                w.upload.bytes_received(),
                Utc::now(),
            ),
            _ => return Err(unknown_handle()),
        };
        Ok(Attrs {
            id,
            attrs: attributes(&stat),
        })
    }

    async fn setstat(&mut self, id: u32, path: String, attrs: FileAttributes) -> Reply<Status> {
        let path = self.path(&path)?;
        // Modes and owners are accepted and ignored: WinSCP stops with an
        // error prompt on OP_UNSUPPORTED.
        let result = match mtime_of(&attrs) {
            Some(t) => answered(self.vfs.set_times(&path, t)).await,
            None => self
                .vfs
                .stat(&path)
                .await
                .map(|_| ())
                .map_err(|e| error_reply(&e)),
        };
        result.map(|_| ok(id))
    }

    async fn fsetstat(&mut self, id: u32, handle: String, attrs: FileAttributes) -> Reply<Status> {
        let path = self.handle_path(&handle)?.clone();
        if let Some(t) = mtime_of(&attrs) {
            answered(self.vfs.set_times(&path, t)).await?;
        }
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Reply<Handle> {
        let path = self.path(&path)?;
        let slot = self.handles.slot()?;
        let entries = answered(self.vfs.list(&path)).await?;
        let listing = OpenHandle::Dir(Listing {
            entries,
            done: false,
        });
        Ok(self.add(id, slot, listing))
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Reply<Name> {
        let Some(OpenHandle::Dir(listing)) = self.handles.get_mut(&handle) else {
            return Err(unknown_handle());
        };
        let now = Utc::now();
        let mut files = Vec::new();
        while !listing.done && files.len() < DIR_BATCH {
            // Entries at hand are answered rather than kept waiting for
            // the next page of a large folder.
            let next = match listing.entries.next().now_or_never() {
                Some(next) => next,
                None if !files.is_empty() => break,
                None => listing.entries.next().await,
            };
            match next {
                Some(Ok(stat)) => files.push(entry(&stat, now)),
                Some(Err(e)) => {
                    listing.done = true;
                    return Err(error_reply(&e));
                }
                None => listing.done = true,
            }
        }
        if files.is_empty() {
            return Err(status(StatusCode::Eof, "end of directory"));
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Reply<Status> {
        let path = self.path(&filename)?;
        answered(self.vfs.remove(&path)).await.map(|_| ok(id))
    }

    async fn mkdir(&mut self, id: u32, path: String, _attrs: FileAttributes) -> Reply<Status> {
        let path = self.path(&path)?;
        answered(self.vfs.mkdir(&path)).await.map(|_| ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Reply<Status> {
        let path = self.path(&path)?;
        answered(self.vfs.rmdir(&path)).await.map(|_| ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Reply<Name> {
        let path = self.path(&path)?;
        let stat = FileStat::dir(path.as_str().to_string(), Utc::now());
        let mut file = entry(&stat, Utc::now());
        file.longname = path.as_str().to_string();
        file.attrs = FileAttributes::empty();
        Ok(Name {
            id,
            files: vec![file],
        })
    }

    /// Plain RENAME fails when the target exists (SFTP v3, as OpenSSH).
    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Reply<Status> {
        let (from, to) = (self.path(&oldpath)?, self.path(&newpath)?);
        answered(self.vfs.rename(&from, &to, false))
            .await
            .map(|_| ok(id))
    }

    async fn readlink(&mut self, _id: u32, _path: String) -> Reply<Name> {
        Err(status(
            StatusCode::OpUnsupported,
            "symbolic links are not supported on object storage",
        ))
    }

    async fn symlink(&mut self, _id: u32, _link: String, _target: String) -> Reply<Status> {
        Err(status(
            StatusCode::OpUnsupported,
            "symbolic links are not supported on object storage",
        ))
    }

    async fn extended(&mut self, id: u32, request: String, data: Vec<u8>) -> Reply<Packet> {
        let bad = || {
            status(
                StatusCode::BadMessage,
                format!("malformed {request} request"),
            )
        };
        let mut rest = data.as_slice();
        match request.as_str() {
            POSIX_RENAME => {
                let from = take_string(&mut rest).ok_or_else(bad)?;
                let to = take_string(&mut rest).ok_or_else(bad)?;
                let (from, to) = (self.path(&from)?, self.path(&to)?);
                answered(self.vfs.rename(&from, &to, true)).await?;
                Ok(Packet::Status(ok(id)))
            }
            CHECK_FILE_HANDLE | CHECK_FILE_NAME | CHECK_FILE => {
                let target = take_string(&mut rest).ok_or_else(bad)?;
                let path = match request.as_str() {
                    CHECK_FILE_NAME => self.path(&target)?,
                    _ => match self.handles.get(&target) {
                        Some(OpenHandle::Read(r)) => r.path.clone(),
                        Some(OpenHandle::Write(_)) => {
                            return Err(status(
                                StatusCode::Failure,
                                "the file is still being written: ask once it is closed",
                            ));
                        }
                        _ => return Err(unknown_handle()),
                    },
                };
                let algorithms = take_string(&mut rest).ok_or_else(bad)?;
                let (start, length) = (take_uint::<8>(&mut rest), take_uint::<8>(&mut rest));
                let block = take_uint::<4>(&mut rest).ok_or_else(bad)?;
                let (start, length) = (start.ok_or_else(bad)?, length.ok_or_else(bad)?);
                check_file(&self.vfs, id, &path, &algorithms, (start, length, block)).await
            }
            extensions::STATVFS => statvfs(&self.vfs, id, &data).await,
            extensions::FSYNC => {
                let handle = take_string(&mut rest).ok_or_else(bad)?;
                match self.handles.get_mut(&handle) {
                    Some(OpenHandle::Write(w)) => {
                        w.upload.check().await.map_err(|e| error_reply(&e))?;
                        Ok(Packet::Status(ok(id)))
                    }
                    Some(_) => Ok(Packet::Status(ok(id))),
                    None => Err(unknown_handle()),
                }
            }
            extensions::LIMITS => extended_reply(
                id,
                &LimitsExtension {
                    max_packet_len: u64::from(MAX_REQUEST),
                    max_read_len: u64::from(MAX_DATA),
                    max_write_len: u64::from(MAX_WRITE),
                    max_open_handles: self.handles.max as u64,
                },
            ),
            _ => Err(self.unimplemented()),
        }
    }
}
