//! Moving a folder on S3, which has no folders to move: every object under
//! it is copied inside S3, then deleted. The listing is read a page at a
//! time and copies run a few at once, so a folder of any size moves in
//! bounded memory and not one request at a time.
//!
//! The order keeps a move that is cut (the gateway killed, S3 failing)
//! finishable by renaming again: a page's sources are deleted only once
//! the next page is copied, so what is left under the old name always has
//! an identical copy under the new one to be recognised by.

use super::{ListedObject, S3Api, dir_prefix};
use crate::base::{FsError, FsResult, check_segment};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use std::collections::VecDeque;

/// Copies or deletes of one folder move in flight at once.
const AT_ONCE: usize = 8;

impl S3Api {
    /// The keys under `prefix`, a page (up to 1000) at a time, in S3's
    /// order.
    pub fn pages<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, FsResult<Vec<ListedObject>>> {
        let first = Some(None::<String>);
        stream::try_unfold(first, move |token| async move {
            let Some(token) = token else {
                return Ok(None);
            };
            let page = self.list(prefix, false, token.as_deref(), 1000).await?;
            Ok(Some((page.objects, page.next.map(Some))))
        })
        .boxed()
    }

    /// Moves every object under folder `from` to folder `to`.
    pub async fn rename_dir(&self, from: &str, to: &str) -> FsResult<()> {
        let (from_prefix, to_prefix) = (dir_prefix(from), dir_prefix(to));
        self.check_names(&from_prefix).await?;
        let mut there = Cursor {
            pages: self.pages(&to_prefix),
            page: VecDeque::new(),
            prefix: to_prefix.len(),
            done: false,
        };
        let mut sources = self.pages(&from_prefix);
        let mut copied_before: Vec<String> = Vec::new();
        while let Some(page) = sources.try_next().await? {
            let mut copies = Vec::new();
            for o in &page {
                let rest = &o.key[from_prefix.len()..];
                let same = there
                    .find(rest)
                    .await?
                    .is_some_and(|(size, etag)| size == o.size && etag.is_some() && etag == o.etag);
                if !same {
                    copies.push((o.key.clone(), format!("{to_prefix}{rest}")));
                }
            }
            stream::iter(copies)
                .map(|(from, to)| async move { self.copy(&from, &to, None, None).await })
                .buffer_unordered(AT_ONCE)
                .try_collect::<()>()
                .await?;
            let keys = page.into_iter().map(|o| o.key).collect();
            self.delete_each(std::mem::replace(&mut copied_before, keys))
                .await?;
        }
        self.delete_each(copied_before).await
    }

    /// Refuses, before anything moves, a folder holding an object whose
    /// name the gateway cannot give (written by another S3 tool).
    async fn check_names(&self, prefix: &str) -> FsResult<()> {
        let mut pages = self.pages(prefix);
        while let Some(page) = pages.try_next().await? {
            for o in page {
                let rest = &o.key[prefix.len()..];
                let segments = rest.strip_suffix('/').unwrap_or(rest);
                if segments.is_empty() {
                    continue;
                }
                if let Err(reason) = segments.split('/').try_for_each(check_segment) {
                    return Err(FsError::Unsupported(format!(
                        "the folder holds an object named {rest:?} ({reason}), which cannot be moved through this gateway; move or remove it with an S3 tool first (nothing was renamed)"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn delete_each(&self, keys: Vec<String>) -> FsResult<()> {
        stream::iter(keys)
            .map(|key| async move { self.delete(&key).await })
            .buffer_unordered(AT_ONCE)
            .try_collect()
            .await
    }
}

/// The target folder's objects, read a page at a time alongside the
/// source's: both listings come in the same order, so each source key is
/// looked up by moving forward only.
struct Cursor<'a> {
    pages: BoxStream<'a, FsResult<Vec<ListedObject>>>,
    page: VecDeque<ListedObject>,
    /// The target folder's prefix length: what is cut off a key.
    prefix: usize,
    done: bool,
}

impl Cursor<'_> {
    /// The size and ETag of the target's object at `rest`, if it has one;
    /// `rest` must not come before the last one asked for.
    async fn find(&mut self, rest: &str) -> FsResult<Option<(u64, Option<String>)>> {
        loop {
            while let Some(o) = self.page.front() {
                match o.key[self.prefix..].cmp(rest) {
                    std::cmp::Ordering::Less => {
                        self.page.pop_front();
                    }
                    std::cmp::Ordering::Equal => return Ok(Some((o.size, o.etag.clone()))),
                    std::cmp::Ordering::Greater => return Ok(None),
                }
            }
            if self.done {
                return Ok(None);
            }
            match self.pages.try_next().await? {
                Some(page) => self.page = page.into(),
                None => self.done = true,
            }
        }
    }
}
