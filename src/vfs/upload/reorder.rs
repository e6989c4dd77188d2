//! Writes that arrive ahead of the bytes before them. SFTP clients send
//! several WRITEs at once and a server may take them out of order; an
//! object can only be written from its start, so a write past the bytes
//! received waits here for the gap before it to fill, within a window.

use crate::base::{FsError, FsResult};
use crate::config::units::format_size;
use bytes::Bytes;
use std::collections::BTreeMap;

/// Where a write goes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// It continues the bytes received: append it now.
    Now,
    /// It is ahead of them: it waits ([`Reorder::insert`]).
    Later,
}

/// The writes waiting for the bytes before them, by offset.
#[derive(Debug, Default)]
pub(super) struct Reorder {
    waiting: BTreeMap<u64, Bytes>,
    len: usize,
}

impl Reorder {
    /// Where a write of `len` bytes at `offset` goes, `next` bytes having
    /// been received: refused if it rewrites bytes received, overlaps a
    /// write waiting, or ends further than `window` past `next`.
    pub fn place(&self, next: u64, offset: u64, len: usize, window: u64) -> FsResult<Place> {
        let end = offset.checked_add(len as u64).ok_or_else(|| {
            FsError::Unsupported(format!(
                "a write at offset {offset} would end past the largest possible file"
            ))
        })?;
        if offset < next {
            return Err(FsError::Unsupported(format!(
                "rewriting bytes at offset {offset} that were already uploaded is not supported on object storage"
            )));
        }
        if offset == next {
            return Ok(Place::Now);
        }
        if end - next > window {
            return Err(FsError::Unsupported(format!(
                "non-sequential write outside the {} window is not supported on object storage (write at {offset}, {next} bytes received so far)",
                format_size(window),
            )));
        }
        let overlaps = self
            .waiting
            .range(..end)
            .next_back()
            .is_some_and(|(o, d)| o + d.len() as u64 > offset);
        if overlaps {
            return Err(FsError::Unsupported(format!(
                "overlapping writes at offset {offset} are not supported"
            )));
        }
        Ok(Place::Later)
    }

    /// Keeps a write [`Place::Later`] placed.
    pub fn insert(&mut self, offset: u64, data: Bytes) {
        self.len += data.len();
        self.waiting.insert(offset, data);
    }

    /// The waiting write that continues at `next`, if there is one.
    pub fn take_at(&mut self, next: u64) -> Option<Bytes> {
        let entry = self.waiting.first_entry()?;
        if *entry.key() != next {
            return None;
        }
        let data = entry.remove();
        self.len -= data.len();
        Some(data)
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Where the first waiting write starts: at close, the end of a hole.
    pub fn first(&self) -> Option<u64> {
        self.waiting.keys().next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn writes_ahead_wait_and_come_back_in_order() {
        let mut r = Reorder::default();
        assert_eq!(r.place(0, 0, 10, 100).unwrap(), Place::Now);
        assert_eq!(r.place(10, 30, 10, 100).unwrap(), Place::Later);
        r.insert(30, bytes(10));
        assert_eq!(r.place(10, 20, 10, 100).unwrap(), Place::Later);
        r.insert(20, bytes(10));
        assert_eq!((r.len(), r.first()), (20, Some(20)));
        assert!(r.take_at(10).is_none(), "the gap 10..20 is still open");
        assert_eq!(r.take_at(20).map(|b| b.len()), Some(10));
        assert_eq!(r.take_at(30).map(|b| b.len()), Some(10));
        assert_eq!((r.len(), r.first()), (0, None));
    }

    #[test]
    fn rewrites_overlaps_and_writes_past_the_window_are_refused() {
        let mut r = Reorder::default();
        r.insert(50, bytes(10));
        let refused = |e: FsResult<Place>| e.unwrap_err().to_string();
        assert!(refused(r.place(40, 30, 5, 100)).contains("rewriting"));
        assert!(refused(r.place(40, 55, 10, 100)).contains("overlapping"));
        assert!(refused(r.place(40, 45, 10, 100)).contains("overlapping"));
        assert!(refused(r.place(40, 200, 10, 100)).contains("window"));
        assert!(refused(r.place(0, u64::MAX, 10, 100)).contains("largest"));
        assert_eq!(r.place(40, 60, 10, 100).unwrap(), Place::Later);
        assert_eq!(r.place(40, 40, 10, 100).unwrap(), Place::Now);
    }
}
