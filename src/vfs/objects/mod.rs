//! The object layer: files and folders over one remote, by object key.
//! Knows nothing of users, mounts or permissions (that is `mount.rs`).

use super::budget::{Budget, Held};
use super::digest_reads::DigestReads;
use super::download::{Download, Whole};
use super::known_dirs::KnownDirs;
use super::renames::Renames;
use super::resume;
use super::upload::{OpenUploads, Upload, WriteMode};
use super::watches::{Watch, Watches};
use super::{FileStat, FsError, FsResult};
use crate::base::{Algorithm, Checksums, Hashers};
use crate::remote::{Kept, Remote, Space, TreeEntry, object_path};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::{GetOptions, GetResult, ObjectStore};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// A folder known only as a common prefix has no time of its own; it shows
/// the gateway's start time, steady across listings and never 1970.
mod digests;

fn folder_time() -> DateTime<Utc> {
    static STARTED: OnceLock<DateTime<Utc>> = OnceLock::new();
    *STARTED.get_or_init(Utc::now)
}

/// Files and folders of one remote.
#[derive(Debug)]
pub struct ObjectLayer {
    remote: Arc<Remote>,
    uploads: Arc<OpenUploads>,
    known_dirs: KnownDirs,
    /// The gateway's memory budget, which every transfer draws from.
    budget: Budget,
    renames: Renames,
    /// Keys a prefetched body depends on, told of every change here.
    watches: Arc<Watches>,
    digest_reads: DigestReads,
}

fn name_of(key: &str) -> String {
    key.rsplit('/').next().unwrap_or("").to_string()
}

impl ObjectLayer {
    pub fn new(remote: Arc<Remote>, budget: Budget) -> Self {
        let watches = Arc::new(Watches::default());
        ObjectLayer {
            uploads: Arc::new(OpenUploads::new(
                watches.clone(),
                remote.metrics().uploads_in_flight.clone(),
            )),
            remote,
            known_dirs: KnownDirs::default(),
            budget,
            renames: Renames::default(),
            watches,
            digest_reads: DigestReads::default(),
        }
    }

    pub fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Shares the gateway's bounds on digest reads (otherwise the layer's own).
    pub fn with_digest_reads(mut self, reads: DigestReads) -> Self {
        self.digest_reads = reads;
        self
    }

    /// Watches `key` for a change made through this gateway.
    pub fn watch(&self, key: &str) -> Watch {
        self.watches.watch(key)
    }

    /// A file (an object, or an upload still open) or a folder at `key`.
    pub async fn stat(&self, key: &str) -> FsResult<FileStat> {
        if key.is_empty() {
            return Ok(FileStat::dir(String::new(), folder_time()));
        }
        if let Some(p) = self.uploads.get(key) {
            return Ok(FileStat::file(
                name_of(key),
                p.bytes.load(Ordering::Relaxed),
                p.started,
            ));
        }
        if let Some(t) = self.known_dirs.get(key) {
            return Ok(FileStat::dir(name_of(key), t.unwrap_or_else(folder_time)));
        }
        // Both questions at once: one round trip, not two, for a new name.
        let (file, dir) = tokio::join!(self.head_file(key), self.dir_info(key));
        match file {
            Err(FsError::NotFound) => {}
            other => return other,
        }
        match dir? {
            Some(t) => Ok(FileStat::dir(name_of(key), t.unwrap_or_else(folder_time))),
            None => Err(FsError::NotFound),
        }
    }

    /// The namespace's answer, remembered when it is a folder.
    async fn dir_info(&self, key: &str) -> FsResult<Option<Option<DateTime<Utc>>>> {
        if let Some(t) = self.known_dirs.get(key) {
            return Ok(Some(t));
        }
        let epoch = self.known_dirs.epoch();
        let info = self.remote.namespace().dir_info(key).await?;
        if let Some(t) = info {
            self.known_dirs.insert_seen(key, t, epoch);
        }
        Ok(info)
    }

    async fn head_file(&self, key: &str) -> FsResult<FileStat> {
        self.head_object(key).await.map(|(stat, _)| stat)
    }

    /// A file's stat and ETag, from one HEAD.
    pub async fn head_object(&self, key: &str) -> FsResult<(FileStat, Option<String>)> {
        let got = self.head(key).await?;
        Ok((self.file_stat(key, &got), got.meta.e_tag))
    }

    async fn head(&self, key: &str) -> FsResult<GetResult> {
        self.remote.head(key).await
    }

    /// What a HEAD or GET says of a file; the stored mtime wins with `preserve_mtime`.
    fn file_stat(&self, key: &str, got: &GetResult) -> FileStat {
        let stored = self
            .remote
            .keeps_client_mtimes()
            .then(|| Kept::from_attributes(&got.attributes).mtime)
            .flatten();
        FileStat::file(
            name_of(key),
            got.meta.size,
            stored.unwrap_or(got.meta.last_modified),
        )
    }

    /// The entries directly inside folder `key`, a page at a time, each
    /// with the ETag the listing gave, where it gave one.
    pub fn list(
        self: &Arc<Self>,
        key: &str,
    ) -> BoxStream<'static, FsResult<(FileStat, Option<String>)>> {
        let this = self.clone();
        let dir = key.to_string();
        let pages = stream::try_unfold(Some(None), move |token: Option<Option<String>>| {
            let this = this.clone();
            let dir = dir.clone();
            async move {
                let Some(token) = token else { return Ok(None) };
                let epoch = this.known_dirs.epoch();
                let page = this.remote.namespace().list_page(&dir, token).await?;
                let entries: Vec<FsResult<(FileStat, Option<String>)>> = page
                    .entries
                    .into_iter()
                    .map(|e| {
                        let t = e.modified.unwrap_or_else(folder_time);
                        if e.is_dir {
                            let child = if dir.is_empty() {
                                e.name.clone()
                            } else {
                                format!("{dir}/{}", e.name)
                            };
                            this.known_dirs.insert_seen(&child, e.modified, epoch);
                        }
                        Ok(if e.is_dir {
                            (FileStat::dir(e.name, t), None)
                        } else {
                            (FileStat::file(e.name, e.size, t), e.etag)
                        })
                    })
                    .collect();
                Ok::<_, FsError>(Some((stream::iter(entries), page.next.map(Some))))
            }
        });
        pages
            .map(|page| page.map_or_else(|e| stream::iter(vec![Err(e)]).boxed(), |s| s.boxed()))
            .flatten()
            .boxed()
    }

    /// Creates folder `key` inside an existing parent folder, as mkdir(2):
    /// an existing one is an error (SFTP MKDIR, FTP MKD).
    pub async fn create_dir(&self, key: &str) -> FsResult<()> {
        match self.stat(key).await {
            Ok(_) => return Err(FsError::AlreadyExists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        self.require_dir(parent_key(key)).await?;
        self.remote.namespace().create_dir(key).await?;
        self.known_dirs.insert(key, Some(Utc::now()));
        Ok(())
    }

    /// Creates folder `key` and any missing parents, checking each level (a
    /// file in the way is an error): a mount's root on first login.
    pub async fn create_dir_all(&self, key: &str) -> FsResult<()> {
        let mut at = String::new();
        for seg in key.split('/').filter(|s| !s.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(seg);
            match self.stat(&at).await {
                Ok(s) if s.is_dir => {}
                Ok(_) => return Err(FsError::AlreadyExists),
                Err(FsError::NotFound) => {
                    self.remote.namespace().create_dir(&at).await?;
                    self.known_dirs.insert(&at, Some(Utc::now()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Makes sure folder `key` exists, with as few requests as the store
    /// needs: one marker on S3 (the folders above it exist through it), the
    /// missing directories on a filesystem (sync runs).
    pub async fn ensure_dir(&self, key: &str) -> FsResult<()> {
        match self.remote.namespace().create_dir(key).await {
            Ok(()) | Err(FsError::AlreadyExists) => {}
            Err(FsError::NotFound) => self.create_dir_all(key).await?,
            Err(e) => return Err(e),
        }
        self.known_dirs.insert(key, Some(Utc::now()));
        Ok(())
    }

    async fn require_dir(&self, key: &str) -> FsResult<()> {
        match self.dir_info(key).await? {
            Some(_) => Ok(()),
            None => Err(FsError::NotFound),
        }
    }

    pub async fn rmdir(&self, key: &str) -> FsResult<()> {
        if key.is_empty() {
            return Err(FsError::PermissionDenied(
                "the root folder cannot be removed".into(),
            ));
        }
        match self.stat(key).await? {
            s if s.is_dir => {
                self.known_dirs.forget(key);
                let removed = self.remote.namespace().remove_dir(key).await;
                // A stat answered while it ran may have seen the folder.
                self.known_dirs.forget(key);
                removed
            }
            _ => Err(FsError::Unsupported(
                "not a folder: use remove for files".into(),
            )),
        }
    }

    pub async fn remove(&self, key: &str) -> FsResult<()> {
        match self.stat(key).await? {
            s if s.is_dir => Err(FsError::Unsupported("is a folder: use rmdir".into())),
            _ => {
                let deleted = self.remote.delete(key).await;
                self.watches.changed(key);
                deleted
            }
        }
    }

    /// Moves a file or a whole folder. With `overwrite`, a file at `to` is replaced.
    pub async fn rename(&self, from: &str, to: &str, overwrite: bool) -> FsResult<()> {
        if from.is_empty() || to.is_empty() {
            return Err(FsError::PermissionDenied(
                "the root folder cannot be renamed".into(),
            ));
        }
        if from == to {
            return Ok(());
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(FsError::Unsupported(
                "cannot move a folder inside itself".into(),
            ));
        }
        let _busy = self.renames.hold(from, to).await;
        let source = self.stat(from).await?;
        match self.stat(to).await {
            Ok(target) if source.is_dir && target.is_dir => {
                if !self.continues_a_rename(from, to).await? {
                    return Err(FsError::AlreadyExists);
                }
            }
            Ok(target) if target.is_dir || !overwrite || source.is_dir => {
                return Err(FsError::AlreadyExists);
            }
            Ok(_) | Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        self.require_dir(parent_key(to)).await?;
        let renamed = if source.is_dir {
            self.known_dirs.forget(from);
            self.remote.namespace().rename_dir(from, to).await
        } else {
            self.remote.rename_file(from, to, source.size).await
        };
        // Failed or not, some of it may have moved; and a stat answered
        // while it ran may have seen the source folder still there.
        if source.is_dir {
            self.known_dirs.forget(from);
            self.watches.changed_under(from);
            self.watches.changed_under(to);
        } else {
            self.watches.changed(from);
            self.watches.changed(to);
        }
        renamed
    }

    /// Whether folder `to`, which exists, is what an interrupted rename of
    /// `from` left: some of `from`'s files are already there, identical
    /// (same size and ETag), and none of them is there with other content.
    /// Renaming again then finishes the move instead of failing.
    async fn continues_a_rename(&self, from: &str, to: &str) -> FsResult<bool> {
        let (source, target) = tokio::join!(
            self.remote.namespace().walk(from),
            self.remote.namespace().walk(to)
        );
        let target: std::collections::HashMap<_, _> = target?
            .into_iter()
            .filter(|e| !e.is_dir)
            .map(|e| (e.path, (e.size, e.etag)))
            .collect();
        let mut identical = false;
        for file in source?.into_iter().filter(|e| !e.is_dir) {
            let Some((size, etag)) = target.get(&file.path) else {
                continue;
            };
            let plain = |t: &Option<String>| t.as_deref().is_some_and(|t| !t.contains('-'));
            if *size != file.size || (plain(etag) && plain(&file.etag) && *etag != file.etag) {
                return Ok(false);
            }
            identical |= etag.is_some() && *etag == file.etag;
        }
        Ok(identical)
    }

    /// Stores a client-set mtime when the remote keeps them; otherwise accepted and ignored.
    pub async fn set_mtime(&self, key: &str, mtime: DateTime<Utc>) -> FsResult<()> {
        if let Some(p) = self.uploads.get(key) {
            *crate::base::lock(&p.mtime) = Some(mtime);
            return Ok(());
        }
        let stat = self.stat(key).await?;
        if !self.remote.keeps_client_mtimes() || stat.is_dir {
            return Ok(());
        }
        let kept = self.remote.keep_mtime(key, mtime).await;
        self.watches.changed(key);
        kept
    }

    pub async fn space(&self) -> FsResult<Space> {
        self.remote.namespace().space().await
    }

    /// Reads the stored object: an upload still open to the same key is not
    /// visible until it closes. From the start, the GET itself says what
    /// the file is, so opening costs one request, not a HEAD and a GET.
    pub async fn open_read(&self, key: &str, offset: u64) -> FsResult<Download> {
        if key.is_empty() {
            return Err(FsError::Unsupported("is a folder".into()));
        }
        let path = object_path(key)?;
        let store = self.remote.store().clone();
        let opened = if offset == 0 {
            store
                .get_opts(&path, GetOptions::default())
                .await
                .map_err(FsError::from)
                .map(|got| {
                    let stat = self.file_stat(key, &got);
                    let sha256 = self.kept_sha256(&got);
                    let mut d =
                        Download::from_response(store, path, stat, got, self.budget.clone());
                    if let Some(sha256) = sha256 {
                        d.verify_against(sha256);
                    }
                    d
                })
        } else {
            self.head_object(key).await.map(|(stat, etag)| {
                Download::new(store, path, stat, etag, offset, self.budget.clone())
            })
        };
        match opened {
            Err(FsError::NotFound) if self.dir_info(key).await?.is_some() => {
                Err(FsError::Unsupported("is a folder".into()))
            }
            other => other,
        }
    }

    /// The SHA-256 kept with the object a GET answered, which the bytes
    /// served are checked against.
    fn kept_sha256(&self, got: &GetResult) -> Option<[u8; 32]> {
        Kept::from_attributes(&got.attributes)
            .digests
            .sha256
            .filter(|_| self.remote.keeps_metadata())
    }

    /// Reads file `key` whole while it is the version `etag`, into
    /// `held` bytes of the budget; `None` when it has changed or no longer
    /// fits them. One conditional GET: a file replaced by a large one is
    /// not fetched.
    pub async fn read_whole(&self, key: &str, etag: &str, held: Held) -> FsResult<Option<Whole>> {
        let options = GetOptions {
            if_match: Some(etag.to_string()),
            ..Default::default()
        };
        let got = match self
            .remote
            .store()
            .get_opts(&object_path(key)?, options)
            .await
        {
            Ok(got) => got,
            Err(object_store::Error::Precondition { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Also where the server ignores If-Match.
        let unquoted = |e: &str| e.trim_matches('"').to_string();
        if got.meta.size > held.bytes() as u64
            || got.meta.e_tag.as_deref().map(unquoted) != Some(unquoted(etag))
        {
            return Ok(None);
        }
        let (stat, sha256) = (self.file_stat(key, &got), self.kept_sha256(&got));
        let etag = got.meta.e_tag.clone();
        let mut body = Vec::with_capacity(stat.size as usize);
        let mut stream = crate::remote::body(got);
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk?);
            if body.len() as u64 > stat.size {
                return Ok(None);
            }
        }
        if body.len() as u64 != stat.size {
            return Err(FsError::failed(format!("the object {key} ended early")));
        }
        Ok(Some(Whole {
            stat,
            etag,
            sha256,
            body: body.into(),
            held,
        }))
    }

    /// A download served from a body read whole.
    pub fn open_whole(&self, key: &str, whole: Whole) -> FsResult<Download> {
        Ok(Download::from_whole(
            self.remote.store().clone(),
            object_path(key)?,
            whole,
            self.budget.clone(),
        ))
    }

    /// The bytes and files under `key`, at any depth, each file's key
    /// given to `each`.
    pub async fn usage(
        &self,
        key: &str,
        each: &mut (dyn for<'k> FnMut(&'k str) + Send),
    ) -> FsResult<(u64, u64)> {
        self.remote.namespace().usage(key, each).await
    }

    /// Every file and folder under folder `key`, at any depth: what a sync
    /// job compares.
    pub async fn walk(&self, key: &str) -> FsResult<Vec<TreeEntry>> {
        self.remote.namespace().walk(key).await
    }

    /// Creates or replaces the object at `key` without the checks of
    /// [`ObjectLayer::open_write`]: a sync job has listed both sides and
    /// creates the folders it needs itself, so each check would only be one
    /// more request per file.
    pub fn overwrite(&self, key: &str) -> FsResult<Upload> {
        Upload::new(
            self.remote.clone(),
            self.uploads.clone(),
            self.budget.clone(),
            key.to_string(),
            WriteMode::Truncate,
        )
    }

    /// Gives a copied file its source's mtime where the store keeps real
    /// file times (the filesystem), so the next sync run sees it unchanged.
    /// Object stores set their own time on write; nothing is done there.
    pub async fn keep_mtime(&self, key: &str, mtime: DateTime<Utc>) -> FsResult<()> {
        match self.remote.has_file_times() {
            true => self.remote.keep_mtime(key, mtime).await,
            false => Ok(()),
        }
    }

    pub async fn open_write(&self, key: &str, mode: WriteMode) -> FsResult<Upload> {
        // EXCL and resume need to know the file. A plain upload only needs
        // the name not to be a folder, and asks only what is known: a check
        // in S3 would be a request on the path of every upload, the cost
        // that makes many small uploads slow. A folder listed or used in the
        // last seconds (the client just browsed it) is refused; otherwise S3
        // holds `x` beside `x/…`, and both are listed.
        let existing = async {
            if mode != WriteMode::Truncate {
                return self.stat(key).await;
            }
            match self.known_dirs.get(key) {
                Some(t) => Ok(FileStat::dir(name_of(key), t.unwrap_or_else(folder_time))),
                None => Err(FsError::NotFound),
            }
        };
        let (existing, parent) = tokio::join!(existing, self.require_dir(parent_key(key)));
        match existing {
            Ok(s) if s.is_dir => return Err(FsError::Unsupported("is a folder".into())),
            Ok(_) if mode == WriteMode::CreateNew => return Err(FsError::AlreadyExists),
            Ok(s) if mode == WriteMode::Append && s.size > 0 => {
                return resume::continue_object(
                    self.remote.clone(),
                    self.uploads.clone(),
                    self.budget.clone(),
                    key,
                    s.size,
                );
            }
            Ok(_) | Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        parent?;
        Upload::new(
            self.remote.clone(),
            self.uploads.clone(),
            self.budget.clone(),
            key.to_string(),
            mode,
        )
    }
}

pub(crate) fn parent_key(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(p, _)| p)
}
