//! A user's tree: the home, extra mounts, permissions and read-only folders.
//! Every path a client sends ends up in [`UserVfs::resolve`], which maps it
//! to one remote and key; nothing outside the mounts is reachable.

use super::download::Whole;
use super::objects::ObjectLayer;
use super::path::{UserPath, join_key};
use super::prefetch::{Found, Prefetch};
use super::{
    Algorithm, Download, FileStat, FsError, FsResult, Permission, Permissions, Storage, Upload,
    Vfs, WriteMode,
};
use crate::config::{Location, UserConfig};
use crate::remote::Space;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use std::sync::Arc;

#[derive(Debug, Clone)]
struct Mount {
    /// Where it appears in the user's tree: `/` for the home.
    at: String,
    layer: Arc<ObjectLayer>,
    prefix: String,
    read_only: bool,
}

/// One user's view, built at login and owned by the session.
#[derive(Debug, Clone)]
pub struct UserVfs {
    user: String,
    permissions: Permissions,
    /// Longest mount path first, so the deepest mount wins.
    mounts: Vec<Mount>,
    prefetch: Arc<Prefetch>,
}

/// Where a user path lands.
struct Resolved<'a> {
    mount: &'a Mount,
    key: String,
    /// The path is the mount's own root.
    is_mount_root: bool,
}

impl UserVfs {
    /// Builds the user's tree; a writable mount whose folder is missing is created.
    pub async fn for_user(user: &UserConfig, storage: &Storage) -> FsResult<UserVfs> {
        let layer = |loc: &Location| {
            storage.layer(&loc.remote).cloned().ok_or_else(|| {
                FsError::failed(format!("remote {:?} is not configured", loc.remote))
            })
        };
        let mut mounts = vec![Mount {
            at: "/".into(),
            layer: layer(&user.home)?,
            prefix: user.home.prefix.clone(),
            read_only: false,
        }];
        for m in &user.mounts {
            mounts.push(Mount {
                at: m.path.clone(),
                layer: layer(&m.target)?,
                prefix: m.target.prefix.clone(),
                read_only: m.read_only,
            });
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.at.len()));
        for m in mounts.iter().filter(|m| !m.read_only) {
            m.layer.create_dir_all(&m.prefix).await?;
        }
        Ok(UserVfs {
            user: user.name.clone(),
            permissions: user.permissions,
            mounts,
            prefetch: storage.prefetch_of(&user.name),
        })
    }

    /// The tree a share link opens: one folder of `user`'s, as its root,
    /// with only `permissions` (a download link: read-only, so nothing is
    /// created there, even the folder).
    pub fn for_share(
        user: &str,
        folder: &Location,
        permissions: Permissions,
        storage: &Storage,
    ) -> FsResult<UserVfs> {
        let layer = storage.layer(&folder.remote).cloned().ok_or_else(|| {
            FsError::failed(format!("remote {:?} is not configured", folder.remote))
        })?;
        Ok(UserVfs {
            user: user.to_string(),
            permissions,
            mounts: vec![Mount {
                at: "/".into(),
                layer,
                prefix: folder.prefix.clone(),
                read_only: !permissions.allows(Permission::Upload),
            }],
            prefetch: Arc::default(),
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    fn resolve(&self, path: &UserPath) -> FsResult<Resolved<'_>> {
        for mount in &self.mounts {
            if let Some(rest) = path.strip_prefix(&mount.at) {
                return Ok(Resolved {
                    mount,
                    key: join_key(&mount.prefix, rest)?,
                    is_mount_root: rest.is_empty(),
                });
            }
        }
        unreachable!("the home is mounted at /")
    }

    /// Resolves `path` and checks that `perm` is granted there. A change
    /// the session tries drops what it fetched ahead, which may be what
    /// it changes.
    fn allowed(&self, path: &UserPath, perm: Permission) -> FsResult<Resolved<'_>> {
        if perm.writes() {
            self.prefetch.forget();
        }
        if !self.permissions.allows(perm) {
            return Err(FsError::PermissionDenied(format!(
                "{} is not allowed for user {}",
                perm, self.user
            )));
        }
        let r = self.resolve(path)?;
        if r.mount.read_only && perm.writes() {
            return Err(FsError::PermissionDenied(format!(
                "{} is read-only",
                r.mount.at
            )));
        }
        Ok(r)
    }

    fn changes_structure(&self, r: &Resolved<'_>, path: &UserPath) -> FsResult<()> {
        if r.is_mount_root
            || self.mounts.iter().any(|m| {
                m.at != "/"
                    && UserPath::parse(&m.at).is_ok_and(|p| p.strip_prefix(path.as_str()).is_some())
            })
        {
            return Err(FsError::PermissionDenied(format!(
                "{path} is a mount point"
            )));
        }
        Ok(())
    }

    /// What was fetched ahead for an open from the start (`prefetch.rs`).
    async fn prefetched(&self, r: &Resolved<'_>, offset: u64) -> Option<Whole> {
        if offset != 0 {
            return None;
        }
        let m = r.mount.layer.remote().metrics();
        let body = match self.prefetch.open(&r.mount.layer, &r.key) {
            Found::Unlisted => return None,
            Found::Listed(None) => None,
            Found::Listed(Some(pending)) => pending.body().await,
        };
        match body.is_some() {
            true => m.prefetch_hits.inc(),
            false => m.prefetch_misses.inc(),
        };
        body
    }

    /// Mount points directly inside `dir`, shown as folders in its listing.
    fn mount_points_in(&self, dir: &UserPath) -> Vec<FileStat> {
        self.mounts
            .iter()
            .filter_map(|m| {
                let p = UserPath::parse(&m.at).ok()?;
                (!p.is_root() && p.parent() == *dir).then(|| FileStat {
                    read_only: m.read_only,
                    ..FileStat::dir(p.file_name().to_string(), Utc::now())
                })
            })
            .collect()
    }
}

#[async_trait]
impl Vfs for UserVfs {
    async fn stat(&self, path: &UserPath) -> FsResult<FileStat> {
        let r = self.resolve(path)?;
        let mut stat = if r.is_mount_root {
            match r.mount.layer.stat(&r.key).await {
                Ok(s) if s.is_dir => s,
                _ => FileStat::dir(String::new(), Utc::now()),
            }
        } else {
            r.mount.layer.stat(&r.key).await?
        };
        stat.name = path.file_name().to_string();
        stat.read_only = r.mount.read_only;
        Ok(stat)
    }

    async fn list(&self, path: &UserPath) -> FsResult<BoxStream<'static, FsResult<FileStat>>> {
        let r = self.allowed(path, Permission::List)?;
        if !r.is_mount_root && !r.mount.layer.stat(&r.key).await?.is_dir {
            return Err(FsError::Unsupported("not a folder".into()));
        }
        let read_only = r.mount.read_only;
        let mounts = self.mount_points_in(path);
        let hidden: Vec<String> = mounts.iter().map(|m| m.name.clone()).collect();
        let recorder = self.prefetch.listing(&r.mount.layer, &r.key);
        let entries = r.mount.layer.list(&r.key).filter_map(move |e| {
            let keep = match e {
                Ok((mut s, etag)) if !hidden.contains(&s.name) => {
                    if let Some(r) = &recorder {
                        r.saw(&s.name, s.is_dir, s.size, etag.as_deref());
                    }
                    s.read_only = read_only;
                    Some(Ok(s))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            };
            async move { keep }
        });
        Ok(stream::iter(mounts.into_iter().map(Ok))
            .chain(entries)
            .boxed())
    }

    async fn open_read(&self, path: &UserPath, offset: u64) -> FsResult<Download> {
        let r = self.allowed(path, Permission::Download)?;
        let mut download = match self.prefetched(&r, offset).await {
            Some(whole) => r.mount.layer.open_whole(&r.key, whole)?,
            None => r.mount.layer.open_read(&r.key, offset).await?,
        };
        let stat = download.stat_mut();
        stat.name = path.file_name().to_string();
        stat.read_only = r.mount.read_only;
        Ok(download)
    }

    async fn open_write(&self, path: &UserPath, mode: WriteMode) -> FsResult<Upload> {
        let r = self.allowed(path, Permission::Upload)?;
        self.changes_structure(&r, path)?;
        if !self.permissions.allows(Permission::Overwrite) {
            match r.mount.layer.stat(&r.key).await {
                Ok(_) => {
                    return Err(FsError::PermissionDenied(format!(
                        "overwrite is not allowed for user {}",
                        self.user
                    )));
                }
                Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        r.mount.layer.open_write(&r.key, mode).await
    }

    async fn mkdir(&self, path: &UserPath) -> FsResult<()> {
        let r = self.allowed(path, Permission::Mkdir)?;
        if r.is_mount_root {
            return Err(FsError::AlreadyExists);
        }
        r.mount.layer.create_dir(&r.key).await
    }

    async fn rmdir(&self, path: &UserPath) -> FsResult<()> {
        let r = self.allowed(path, Permission::Rmdir)?;
        self.changes_structure(&r, path)?;
        r.mount.layer.rmdir(&r.key).await
    }

    async fn remove(&self, path: &UserPath) -> FsResult<()> {
        let r = self.allowed(path, Permission::Delete)?;
        self.changes_structure(&r, path)?;
        r.mount.layer.remove(&r.key).await
    }

    async fn rename(&self, from: &UserPath, to: &UserPath, overwrite: bool) -> FsResult<()> {
        let src = self.allowed(from, Permission::Rename)?;
        let dst = self.allowed(to, Permission::Rename)?;
        self.changes_structure(&src, from)?;
        self.changes_structure(&dst, to)?;
        if !Arc::ptr_eq(&src.mount.layer, &dst.mount.layer) {
            return Err(FsError::Unsupported(
                "moving between different storage remotes is not supported; copy the file instead"
                    .into(),
            ));
        }
        if overwrite && !self.permissions.allows(Permission::Overwrite) {
            return Err(FsError::PermissionDenied(format!(
                "overwrite is not allowed for user {}",
                self.user
            )));
        }
        src.mount.layer.rename(&src.key, &dst.key, overwrite).await
    }

    async fn set_times(&self, path: &UserPath, mtime: DateTime<Utc>) -> FsResult<()> {
        let r = self.allowed(path, Permission::Setstat)?;
        if r.is_mount_root {
            return Ok(());
        }
        r.mount.layer.set_mtime(&r.key, mtime).await
    }

    async fn statvfs(&self, path: &UserPath) -> FsResult<Space> {
        self.resolve(path)?.mount.layer.space().await
    }

    /// Needs the right to download: a digest tells about the content.
    async fn digest(&self, path: &UserPath, algorithm: Algorithm) -> FsResult<Vec<u8>> {
        let r = self.allowed(path, Permission::Download)?;
        r.mount.layer.digest(&r.key, algorithm, self.user()).await
    }

    fn locate(&self, path: &UserPath) -> Option<super::Located> {
        let r = self.resolve(path).ok()?;
        let remote = r.mount.layer.remote();
        Some(super::Located {
            remote: remote.name().to_string(),
            bucket: remote.bucket().map(str::to_string),
            key: r.key,
        })
    }
}
