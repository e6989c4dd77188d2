//! Storage remotes: one shared object store per `[remotes.X]`, plus the
//! directory handling object_store leaves out (its `Path` cannot name a
//! `dir/` marker, and one bad key fails a whole listing).
//!
//! Data (PUT, multipart, ranged GET, copy, delete) goes through object_store;
//! directories go through a [`Namespace`]: signed S3 requests (`s3.rs`),
//! real directories (`fs.rs`) or an in-process set (`memory.rs`).

mod body;
mod commit;
pub(crate) use commit::md5_of;
mod digest_cache;
mod fs;
pub mod http;
mod memory;
mod reload;
mod s3;

use crate::base::{Algorithm, Digests, FsResult, hex};
use crate::config::{Config, RemoteConfig, RemoteKind};
use crate::metrics::{Metrics, OpCalls};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use object_store::{Attribute, AttributeValue, Attributes, ObjectStore, ObjectStoreExt};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use body::{Body, body};
pub use digest_cache::DigestCache;
pub use s3::{Continued, PartEtags, chain_source, refused_code};

/// A multipart upload begun: what sends its parts, their ETags (S3), and
/// its id where the store can take it up again (S3).
pub struct Started {
    pub upload: Box<dyn object_store::MultipartUpload>,
    pub etags: Option<PartEtags>,
    pub id: Option<String>,
}

/// A file or folder directly inside a listed folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// `None` for a folder known only as a common prefix.
    pub modified: Option<DateTime<Utc>>,
    /// The file's version as the listing saw it, where the store has ETags
    /// that a GET answers alike (S3, memory); what a prefetch is checked by.
    pub etag: Option<String>,
}

/// A file or folder anywhere under a walked folder: what a sync job compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative to the walked folder, `/`-separated, no leading or trailing `/`.
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
    /// The store's ETag, where it has one worth comparing (S3).
    pub etag: Option<String>,
}

/// One page of a folder listing; `next` continues it.
#[derive(Debug, Default)]
pub struct ListPage {
    pub entries: Vec<RawEntry>,
    pub next: Option<String>,
}

/// Capacity figures for statvfs and `df`.
#[derive(Debug, Clone, Copy)]
pub struct Space {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// Object stores have no real capacity: report a large, steady figure so
/// clients that check free space before an upload go ahead.
pub const UNBOUNDED_SPACE: Space = Space {
    total_bytes: 1 << 50,
    free_bytes: 1 << 49,
};

/// How folders exist on a remote. Keys here are full object keys without a
/// trailing `/`; `""` is the remote's root.
#[async_trait]
pub trait Namespace: Send + Sync + std::fmt::Debug {
    /// One page of the files and folders directly inside `dir`.
    async fn list_page(&self, dir: &str, token: Option<String>) -> FsResult<ListPage>;
    /// Every file and folder under `dir`, at any depth, in as few requests
    /// as the store allows (S3: one listing per 1000 keys, not one per
    /// folder). Folders implied only by a key below them may be left out.
    async fn walk(&self, dir: &str) -> FsResult<Vec<TreeEntry>>;
    /// The bytes and files under `dir`, at any depth (a quota's usage),
    /// each file's key given to `each` as it is met. S3 sums page by page,
    /// holding one page, however large the tree.
    async fn usage(
        &self,
        dir: &str,
        each: &mut (dyn for<'k> FnMut(&'k str) + Send),
    ) -> FsResult<(u64, u64)> {
        let (mut bytes, mut files) = (0, 0);
        for e in self.walk(dir).await?.into_iter().filter(|e| !e.is_dir) {
            match dir {
                "" => each(&e.path),
                dir => each(&format!("{dir}/{}", e.path)),
            }
            bytes += e.size;
            files += 1;
        }
        Ok((bytes, files))
    }
    /// `Some(mtime)` when `dir` is a folder: a marker, a prefix or a real directory.
    async fn dir_info(&self, dir: &str) -> FsResult<Option<Option<DateTime<Utc>>>>;
    async fn create_dir(&self, dir: &str) -> FsResult<()>;
    /// Removes a folder that holds nothing; [`FsError::NotEmpty`] otherwise.
    async fn remove_dir(&self, dir: &str) -> FsResult<()>;
    /// Moves a folder and everything under it; copies each object before deleting it.
    async fn rename_dir(&self, from: &str, to: &str) -> FsResult<()>;
    /// Replaces what is kept with an existing file (a client-set mtime,
    /// digests) by `kept`. Where the store has real file times (a
    /// filesystem) the mtime becomes the file's own.
    /// With `if_etag`, only while the object is still that version (a
    /// newer one must not get an older upload's digests).
    async fn keep(&self, key: &str, kept: &Kept, if_etag: Option<&str>) -> FsResult<()>;
    /// Digests kept beside an object's metadata (a filesystem's extended
    /// attributes); object stores keep them in [`Kept`].
    async fn kept_digests(&self, _key: &str) -> FsResult<Option<Digests>> {
        Ok(None)
    }
    async fn space(&self) -> FsResult<Space>;
    /// One cheap request that shows the store answers (the health check).
    async fn probe(&self) -> FsResult<()>;
}

/// One configured remote, shared by every session and sync job. Its parts
/// are its own: the layers above ask what it can do.
pub struct Remote {
    config: RemoteConfig,
    store: Arc<dyn ObjectStore>,
    namespace: Box<dyn Namespace>,
    /// S3 only: what continues an upload inside the store.
    parts: Option<s3::PartCopier>,
    /// Whether `Report.pdf` and `report.pdf` are one file here: set in the
    /// config or probed on a filesystem, false on object stores.
    case_insensitive: bool,
    known_digests: DigestCache,
    /// The gateway's metrics, which the remote's requests and the object
    /// layer above it count into.
    metrics: Arc<Metrics>,
    /// This remote's requests by operation, for the console (S3 only).
    calls: Arc<OpCalls>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("config", &self.config)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// What the gateway keeps with an object besides its bytes, as object
/// metadata (`x-amz-meta-…` on S3): a client-set mtime (`preserve_mtime`)
/// and the digests of the upload that wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    pub mtime: Option<DateTime<Utc>>,
    pub digests: Digests,
}

/// The metadata keys: rclone's S3 backend reads the same `mtime` (seconds
/// since the epoch) and `md5chksum` (base64 MD5, what `rclone check` uses
/// for multipart objects); SHA-1 and SHA-256 are lowercase hex.
const MTIME_KEY: &str = "mtime";
const MD5_KEY: &str = "md5chksum";
const SHA1_KEY: &str = "sha1";
const SHA256_KEY: &str = "sha256";

impl Kept {
    /// Metadata names (without `x-amz-meta-`) and values.
    fn metadata(&self) -> Vec<(&'static str, String)> {
        use base64::Engine;
        let mut out = Vec::new();
        if let Some(t) = self.mtime {
            out.push((MTIME_KEY, t.timestamp().to_string()));
        }
        let d = &self.digests;
        if let Some(md5) = d.md5 {
            out.push((
                MD5_KEY,
                base64::engine::general_purpose::STANDARD.encode(md5),
            ));
        }
        if let Some(sha1) = d.sha1 {
            out.push((SHA1_KEY, hex(&sha1)));
        }
        if let Some(sha256) = d.sha256 {
            out.push((SHA256_KEY, hex(&sha256)));
        }
        out
    }

    /// As object attributes, for a PUT or the start of a multipart upload.
    pub fn attributes(&self) -> Attributes {
        let mut attributes = Attributes::new();
        for (key, value) in self.metadata() {
            attributes.insert(Attribute::Metadata(key.into()), AttributeValue::from(value));
        }
        attributes
    }

    /// What a HEAD or GET found kept with an object; what does not parse
    /// is left out.
    pub fn from_attributes(attributes: &Attributes) -> Kept {
        use base64::Engine;
        let get = |key: &'static str| {
            attributes
                .get(&Attribute::Metadata(key.into()))
                .map(|v| v.as_ref().to_string())
        };
        let mtime = get(MTIME_KEY)
            .and_then(|v| v.parse::<f64>().ok())
            .and_then(|secs| Utc.timestamp_opt(secs as i64, 0).single());
        let mut digests = Digests {
            md5: get(MD5_KEY)
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                .and_then(|b| b.try_into().ok()),
            ..Default::default()
        };
        if let Some(v) = get(SHA1_KEY) {
            digests.set_hex(Algorithm::Sha1, &v);
        }
        if let Some(v) = get(SHA256_KEY) {
            digests.set_hex(Algorithm::Sha256, &v);
        }
        Kept { mtime, digests }
    }
}

impl Remote {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Where the data goes: PUT, multipart, ranged GET, copy, delete.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// How folders exist here.
    pub fn namespace(&self) -> &dyn Namespace {
        &*self.namespace
    }

    /// The S3 bucket, for events; `None` for other kinds.
    pub fn bucket(&self) -> Option<&str> {
        match &self.config.kind {
            RemoteKind::S3(s3) => Some(&s3.bucket),
            _ => None,
        }
    }

    /// The size of each part of a multipart upload.
    pub fn part_size(&self) -> u64 {
        self.config.part_size
    }

    /// Parts of one upload sent at once.
    pub fn upload_concurrency(&self) -> usize {
        self.config.upload_concurrency
    }

    /// Whether a client-set mtime is kept with the file (`preserve_mtime`).
    pub fn keeps_client_mtimes(&self) -> bool {
        self.config.preserve_mtime
    }

    /// Whether objects here carry metadata ([`Kept`]): S3 and memory, not
    /// a filesystem.
    pub fn keeps_metadata(&self) -> bool {
        !matches!(self.config.kind, RemoteKind::Filesystem { .. })
    }

    /// One HEAD of object `key`: its size, time, ETag and what is kept with it.
    pub async fn head(&self, key: &str) -> FsResult<object_store::GetResult> {
        let head = object_store::GetOptions {
            head: true,
            ..Default::default()
        };
        Ok(self.store.get_opts(&object_path(key)?, head).await?)
    }

    /// What is kept with object `key` (mtime, digests), from one HEAD.
    pub async fn kept(&self, key: &str) -> FsResult<Kept> {
        Ok(Kept::from_attributes(&self.head(key).await?.attributes))
    }

    /// Stores a client-set mtime with an existing object, keeping its digests.
    pub async fn keep_mtime(&self, key: &str, mtime: DateTime<Utc>) -> FsResult<()> {
        let mut kept = match self.keeps_metadata() {
            true => self.kept(key).await?,
            false => Kept::default(),
        };
        kept.mtime = Some(mtime);
        self.namespace().keep(key, &kept, None).await
    }

    /// Digests known for object versions that do not carry them.
    pub fn known_digests(&self) -> &DigestCache {
        &self.known_digests
    }

    pub fn checksum_read_limit(&self) -> u64 {
        self.config.checksum_read_limit
    }

    /// How long a file fetched ahead of a client may be served to it;
    /// zero: never fetched ahead.
    pub fn prefetch_window(&self) -> std::time::Duration {
        self.config.prefetch_window
    }

    /// The digests uploads here compute (`checksums`).
    pub fn checksums(&self) -> crate::base::Checksums {
        self.config.checksums
    }

    /// Whether files here carry real times that can be set (a filesystem),
    /// so a copy can take its source's. Object stores set their own.
    pub fn has_file_times(&self) -> bool {
        matches!(self.config.kind, RemoteKind::Filesystem { .. })
    }

    /// Whether an object's ETag changes exactly when its content does, so
    /// comparing ETags needs no HEAD of the time (S3).
    pub fn etags_identify_content(&self) -> bool {
        self.parts.is_some()
    }

    /// Whether names that differ only in case are one file here.
    pub fn case_insensitive(&self) -> bool {
        self.case_insensitive
    }

    /// Starts an upload of `key` whose first `size` bytes are the object
    /// there now, copied inside the store without passing through the
    /// gateway; `None` where the store cannot (not S3, or under S3's 5 MiB
    /// part minimum): the caller streams the old bytes instead.
    pub async fn continue_in_store(&self, key: &str, size: u64) -> FsResult<Option<Continued>> {
        match &self.parts {
            Some(parts) if size >= s3::MIN_COPY => {
                let mut continued = parts.continue_object(key, size).await?;
                continued.etags = continued.etags.map(|e| e.checking(self.checks_parts()));
                Ok(Some(continued))
            }
            _ => Ok(None),
        }
    }

    /// Starts a multipart upload of `path`. On S3 the parts' ETags come
    /// with it, checked against what was sent where `wire_checksums` is
    /// on, and its id, to take it up again after a restart; S3 takes the
    /// metadata later (see `Upload::commit`).
    pub async fn start_upload(
        &self,
        path: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Started> {
        match &self.parts {
            Some(parts) => {
                let (upload, etags) = parts.start(path).await?;
                Ok(Started {
                    id: Some(upload.id().to_string()),
                    upload: Box::new(upload),
                    etags: Some(etags.checking(self.checks_parts())),
                })
            }
            None => Ok(Started {
                upload: self.store.put_multipart_opts(path, opts).await?,
                etags: None,
                id: None,
            }),
        }
    }

    /// Takes up multipart upload `id` of `key` where the store holds it
    /// (S3: its parts and their bytes); `None` where the store keeps no
    /// unfinished upload past its process (the others).
    pub async fn resume_upload(&self, key: &str, id: &str) -> FsResult<Option<(Continued, u64)>> {
        match &self.parts {
            Some(parts) => {
                let (mut continued, bytes) = parts.resume(key, id).await?;
                continued.etags = continued.etags.map(|e| e.checking(self.checks_parts()));
                Ok(Some((continued, bytes)))
            }
            None => Ok(None),
        }
    }

    /// Aborts multipart upload `id` of `key`, left by a gateway that
    /// stopped while holding it.
    pub async fn abort_upload(&self, key: &str, id: &str) -> FsResult<()> {
        match &self.parts {
            Some(parts) => parts.abort(key, id).await,
            None => Ok(()),
        }
    }

    /// Whether each uploaded part is checked against what S3 stored
    /// (`wire_checksums`, S3 only).
    pub fn checks_parts(&self) -> bool {
        matches!(&self.config.kind, RemoteKind::S3(s3) if s3.wire_checksums)
    }

    /// Whether a single PUT carries `Content-MD5`, which every S3 server
    /// checks against the body (S3 only: the others are not reached over
    /// HTTP).
    pub fn sends_content_md5(&self) -> bool {
        self.parts.is_some()
    }

    /// Whether a multipart upload's digests are written into its metadata
    /// by a copy of the object onto itself (`keep_digests_by_copy`).
    pub fn keeps_digests_by_copy(&self) -> bool {
        matches!(&self.config.kind, RemoteKind::S3(s3) if s3.keep_digests_by_copy)
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// This remote's requests by operation.
    pub fn calls(&self) -> &OpCalls {
        &self.calls
    }

    /// Renames file `from` (of `size` bytes) to `to`, replacing it. On S3
    /// one CopyObject then a delete, or a multipart copy at and above
    /// `multipart_copy_threshold` (AWS copies at most 5 GiB in one).
    pub async fn rename_file(&self, from: &str, to: &str, size: u64) -> FsResult<()> {
        match (&self.parts, &self.config.kind) {
            (Some(copier), RemoteKind::S3(s3)) if size >= s3.multipart_copy_threshold => {
                copier.copy_object(from, to).await?;
                self.delete(from).await
            }
            _ => Ok(self
                .store
                .rename(&object_path(from)?, &object_path(to)?)
                .await?),
        }
    }

    /// Builds the store for one remote. Creates a filesystem root if missing.
    pub fn build(config: &RemoteConfig, metrics: &Arc<Metrics>) -> Result<Remote, RemoteError> {
        let err = |e: &dyn std::fmt::Display| RemoteError {
            remote: config.name.clone(),
            message: e.to_string(),
        };
        match &config.kind {
            RemoteKind::Memory => {
                let store = Arc::new(object_store::memory::InMemory::new());
                Ok(Remote {
                    config: config.clone(),
                    namespace: Box::new(memory::MemoryNamespace::new(store.clone())),
                    store,
                    parts: None,
                    case_insensitive: false,
                    known_digests: DigestCache::default(),
                    metrics: metrics.clone(),
                    calls: Arc::default(),
                })
            }
            RemoteKind::Filesystem {
                root,
                case_insensitive,
            } => {
                std::fs::create_dir_all(root).map_err(|e| err(&e))?;
                let root = std::fs::canonicalize(root).map_err(|e| err(&e))?;
                let case_insensitive = match case_insensitive {
                    Some(set) => *set,
                    // A root we cannot write is never a sync target either.
                    None => fs::probe_case_insensitive(&root).unwrap_or_else(|e| {
                        tracing::warn!(remote = config.name, error = %e, "cannot probe whether names are case-insensitive here; assuming they are not");
                        false
                    }),
                };
                let store = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| err(&e))?;
                Ok(Remote {
                    config: config.clone(),
                    store: Arc::new(store),
                    namespace: Box::new(fs::FsNamespace::new(root)),
                    parts: None,
                    case_insensitive,
                    known_digests: DigestCache::default(),
                    metrics: metrics.clone(),
                    calls: Arc::default(),
                })
            }
            RemoteKind::S3(s3) => s3::build(config, s3, metrics).map_err(|e| err(&e)),
        }
    }
}

/// A remote that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("remote {remote:?}: {message}")]
pub struct RemoteError {
    pub remote: String,
    pub message: String,
}

/// The object store's path of `key`; a key it cannot hold is an invalid name.
pub fn object_path(key: &str) -> FsResult<object_store::path::Path> {
    object_store::path::Path::parse(key)
        .map_err(|e| crate::base::FsError::InvalidName(e.to_string()))
}

/// Every configured remote, by name.
#[derive(Debug, Clone, Default)]
pub struct Remotes(BTreeMap<String, Arc<Remote>>);

impl Remotes {
    pub fn build(config: &Config, metrics: &Arc<Metrics>) -> Result<Remotes, RemoteError> {
        config
            .remotes
            .values()
            .map(|r| Ok((r.name.clone(), Arc::new(Remote::build(r, metrics)?))))
            .collect::<Result<_, _>>()
            .map(Remotes)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Remote>> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Remote>> {
        self.0.values()
    }
}

/// The name of `key` relative to the listed folder `dir`.
pub(crate) fn child_name<'a>(dir: &str, key: &'a str) -> &'a str {
    let rest = if dir.is_empty() {
        key
    } else {
        key.strip_prefix(dir)
            .and_then(|k| k.strip_prefix('/'))
            .unwrap_or(key)
    };
    rest.trim_end_matches('/')
}

/// A walked path with a segment a frontend could not address is skipped, loudly.
pub(crate) fn usable_path(dir: &str, path: &str) -> bool {
    match path.split('/').try_for_each(crate::base::check_segment) {
        Ok(()) => true,
        Err(reason) => {
            tracing::warn!(folder = dir, path = ?path, %reason, "skipping an object whose name cannot be served");
            false
        }
    }
}

/// A listed name that a frontend could not address is skipped, loudly.
pub(crate) fn usable_name(dir: &str, name: &str) -> bool {
    match crate::base::check_segment(name) {
        Ok(()) => true,
        Err(reason) => {
            tracing::warn!(folder = dir, name = ?name, %reason, "skipping an object whose name cannot be served");
            false
        }
    }
}
