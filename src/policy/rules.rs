//! File rules (`[[users.filters]]`, `max_file_size`): an upload, a rename
//! or a mkdir whose name a filter refuses does not happen, an upload that
//! grows past `max_file_size` fails (nothing of it is stored), and the
//! client is told which rule refused it. Listings are not filtered: what
//! is there is shown.
//!
//! A VFS around the user's, rather than a [`super::Layer`]: a rename's
//! rule depends on whether it moves a file or a folder, which takes a
//! `stat` before it is decided.

use crate::base::{Algorithm, FsError, FsResult};
use crate::config::FilterConfig;
use crate::vfs::{Download, FileStat, Located, Upload, UserPath, Vfs, WriteMode};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::stream::BoxStream;
use std::sync::Arc;

#[derive(Debug)]
pub struct Ruled<V> {
    /// Deepest folder first.
    filters: Arc<[FilterConfig]>,
    max_file_size: Option<u64>,
    inner: V,
}

impl<V> Ruled<V> {
    pub fn new(filters: &[FilterConfig], max_file_size: Option<u64>, inner: V) -> Self {
        Ruled {
            filters: filters.into(),
            max_file_size,
            inner,
        }
    }

    pub fn inner(&self) -> &V {
        &self.inner
    }

    /// Refuses a file of `size` bytes past `max_file_size`, naming the
    /// rule: what an upload that grows past it is told, and what a client
    /// that says its size first (FTP `ALLO`, a tus creation) is told before
    /// any byte moves.
    pub fn fits(&self, size: u64) -> FsResult<()> {
        fits(self.max_file_size, size)
    }

    /// Refuses writing `path` (a file, or a folder) when the filter of its
    /// folder does.
    fn check(&self, path: &UserPath, file: bool) -> FsResult<()> {
        let folder = path.parent();
        let Some(filter) = self.filters.iter().find(|f| f.covers(folder.as_str())) else {
            return Ok(());
        };
        match filter.refuses(path.file_name(), file) {
            Some(why) => Err(FsError::PermissionDenied(why)),
            None => Ok(()),
        }
    }
}

/// A file of `size` bytes against `max_file_size`, the rule named.
fn fits(max_file_size: Option<u64>, size: u64) -> FsResult<()> {
    match max_file_size {
        Some(most) if size > most => Err(FsError::PermissionDenied(format!(
            "max_file_size: files of at most {}",
            crate::config::units::format_size(most)
        ))),
        _ => Ok(()),
    }
}

#[async_trait]
impl<V: Vfs> Vfs for Ruled<V> {
    async fn stat(&self, path: &UserPath) -> FsResult<FileStat> {
        self.inner.stat(path).await
    }

    async fn list(&self, path: &UserPath) -> FsResult<BoxStream<'static, FsResult<FileStat>>> {
        self.inner.list(path).await
    }

    async fn open_read(&self, path: &UserPath, offset: u64) -> FsResult<Download> {
        self.inner.open_read(path, offset).await
    }

    async fn open_write(&self, path: &UserPath, mode: WriteMode) -> FsResult<Upload> {
        self.check(path, true)?;
        let mut upload = self.inner.open_write(path, mode).await?;
        if let Some(most) = self.max_file_size {
            upload.observers().guard(Box::new(move |end| {
                std::future::ready(fits(Some(most), end)).boxed()
            }));
        }
        Ok(upload)
    }

    async fn mkdir(&self, path: &UserPath) -> FsResult<()> {
        self.check(path, false)?;
        self.inner.mkdir(path).await
    }

    async fn rmdir(&self, path: &UserPath) -> FsResult<()> {
        self.inner.rmdir(path).await
    }

    async fn remove(&self, path: &UserPath) -> FsResult<()> {
        self.inner.remove(path).await
    }

    async fn rename(&self, from: &UserPath, to: &UserPath, overwrite: bool) -> FsResult<()> {
        if !self.filters.is_empty() {
            let file = !self.inner.stat(from).await?.is_dir;
            self.check(to, file)?;
        }
        self.inner.rename(from, to, overwrite).await
    }

    async fn set_times(&self, path: &UserPath, mtime: DateTime<Utc>) -> FsResult<()> {
        self.inner.set_times(path, mtime).await
    }

    async fn statvfs(&self, path: &UserPath) -> FsResult<crate::remote::Space> {
        self.inner.statvfs(path).await
    }

    async fn digest(&self, path: &UserPath, algorithm: Algorithm) -> FsResult<Vec<u8>> {
        self.inner.digest(path, algorithm).await
    }

    fn locate(&self, path: &UserPath) -> Option<Located> {
        self.inner.locate(path)
    }
}
