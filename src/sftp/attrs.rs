//! How VFS results look on the SFTP wire: attributes, `ls -l` long names,
//! and status codes with messages a person understands.

use crate::vfs::{FileStat, VfsError};
use chrono::{DateTime, Datelike, Utc};
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
        longname: long_name(stat, now),
        attrs: attributes(stat),
    }
}

fn long_name(stat: &FileStat, now: DateTime<Utc>) -> String {
    let mode = stat.mode();
    let mut perms = String::with_capacity(10);
    perms.push(if stat.is_dir { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        perms.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    // As ls does: the year instead of the time for dates over six months away.
    let recent = (now - stat.modified).num_days().abs() < 183;
    let when = if recent {
        stat.modified.format("%b %e %H:%M").to_string()
    } else {
        format!(
            "{} {:>5}",
            stat.modified.format("%b %e"),
            stat.modified.year()
        )
    };
    format!(
        "{perms} {links:>3} {owner:<8} {group:<8} {size:>12} {when} {name}",
        links = if stat.is_dir { 2 } else { 1 },
        owner = "owner",
        group = "group",
        size = stat.size,
        name = stat.name,
    )
}

pub fn status(code: StatusCode, message: impl Into<String>) -> StatusReply {
    StatusReply::new(code).with_message(message)
}

/// The one mapping from VFS errors to SFTP status codes.
pub fn error_reply(e: &VfsError) -> StatusReply {
    let code = match e {
        VfsError::NotFound => StatusCode::NoSuchFile,
        VfsError::PermissionDenied(_) => StatusCode::PermissionDenied,
        VfsError::AlreadyExists
        | VfsError::NotEmpty
        | VfsError::Unsupported(_)
        | VfsError::InvalidName(_)
        | VfsError::Storage(_) => StatusCode::Failure,
    };
    status(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn long_names_look_like_ls() {
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        let recent = Utc.with_ymd_and_hms(2026, 11, 2, 9, 5, 0).unwrap();
        let old = Utc.with_ymd_and_hms(2019, 3, 14, 9, 5, 0).unwrap();
        let f = FileStat::file("a b.txt".into(), 1234, recent);
        assert_eq!(
            long_name(&f, now),
            "-rw-r--r--   1 owner    group            1234 Nov  2 09:05 a b.txt"
        );
        let d = FileStat::dir("docs".into(), old);
        assert_eq!(
            long_name(&d, now),
            "drwxr-xr-x   2 owner    group               0 Mar 14  2019 docs"
        );
    }
}
