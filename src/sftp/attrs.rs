//! How VFS results look on the SFTP wire: attributes, `ls -l` long names,
//! and status codes with messages a person understands.

use crate::vfs::{FileStat, FsError};
use chrono::{DateTime, Utc};
use russh_sftp::protocol::{File, FileAttributes, StatusCode};
use russh_sftp::server::StatusReply;

pub fn attributes(stat: &FileStat) -> FileAttributes {
    let mtime = stat.modified.timestamp().clamp(0, u32::MAX as i64) as u32;
    FileAttributes {
        size: Some(stat.size),
        uid: Some(0),
        gid: Some(0),
        user: None,
        group: None,
        permissions: Some(stat.mode()),
        atime: Some(mtime),
        mtime: Some(mtime),
    }
}

/// A directory entry with its `ls -l` line, which FileZilla parses.
pub fn entry(stat: &FileStat, now: DateTime<Utc>) -> File {
    File {
        filename: stat.name.clone(),
        longname: stat.ls_line(now),
        attrs: attributes(stat),
    }
}

pub type Reply<T> = Result<T, StatusReply>;

/// Runs a VFS call, answering as SFTP does.
pub async fn answered<T>(call: impl Future<Output = Result<T, FsError>>) -> Reply<T> {
    call.await.map_err(|e| error_reply(&e))
}

pub fn status(code: StatusCode, message: impl Into<String>) -> StatusReply {
    StatusReply::new(code).with_message(message)
}

/// The one mapping from VFS errors to SFTP status codes.
pub fn error_reply(e: &FsError) -> StatusReply {
    let code = match e {
        FsError::NotFound => StatusCode::NoSuchFile,
        FsError::PermissionDenied(_) => StatusCode::PermissionDenied,
        FsError::AlreadyExists
        | FsError::NotEmpty
        | FsError::Unsupported(_)
        | FsError::InvalidName(_)
        | FsError::Storage { .. }
        | FsError::Aborted(_)
        | FsError::Busy(_)
        | FsError::Changed(_)
        | FsError::QuotaExceeded(_) => StatusCode::Failure,
    };
    status(code, e.client_message())
}
