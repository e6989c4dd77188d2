//! Folders on the memory remote: object_store's `InMemory` cannot hold a
//! `dir/` key, so markers live in a set beside it.

use super::{Kept, ListPage, Namespace, RawEntry, Space, TreeEntry, UNBOUNDED_SPACE, child_name};
use crate::base::{FsError, FsResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutOptions};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct MemoryNamespace {
    store: Arc<InMemory>,
    markers: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl MemoryNamespace {
    pub fn new(store: Arc<InMemory>) -> Self {
        MemoryNamespace {
            store,
            markers: Mutex::default(),
        }
    }

    fn markers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DateTime<Utc>>> {
        crate::base::lock(&self.markers)
    }

    fn under(dir: &str) -> Option<Path> {
        (!dir.is_empty()).then(|| Path::from_iter(dir.split('/')))
    }
}

fn inside(dir: &str, key: &str) -> bool {
    dir.is_empty() || key.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

#[async_trait]
impl Namespace for MemoryNamespace {
    async fn list_page(&self, dir: &str, _token: Option<String>) -> FsResult<ListPage> {
        let listed = self
            .store
            .list_with_delimiter(Self::under(dir).as_ref())
            .await?;
        let mut entries: BTreeMap<String, RawEntry> = BTreeMap::new();
        for p in listed.common_prefixes {
            let name = child_name(dir, p.as_ref()).to_string();
            entries.insert(
                name.clone(),
                RawEntry {
                    name,
                    is_dir: true,
                    size: 0,
                    modified: None,
                    etag: None,
                },
            );
        }
        for (key, t) in self.markers().iter() {
            let name = child_name(dir, key);
            if inside(dir, key) && !name.contains('/') {
                entries.insert(
                    name.to_string(),
                    RawEntry {
                        name: name.to_string(),
                        is_dir: true,
                        size: 0,
                        modified: Some(*t),
                        etag: None,
                    },
                );
            }
        }
        for o in listed.objects {
            let name = child_name(dir, o.location.as_ref()).to_string();
            entries.insert(
                name.clone(),
                RawEntry {
                    name,
                    is_dir: false,
                    size: o.size,
                    modified: Some(o.last_modified),
                    etag: o.e_tag,
                },
            );
        }
        Ok(ListPage {
            entries: entries.into_values().collect(),
            next: None,
        })
    }

    async fn walk(&self, dir: &str) -> FsResult<Vec<TreeEntry>> {
        let objects: Vec<_> = self
            .store
            .list(Self::under(dir).as_ref())
            .try_collect()
            .await?;
        let relative = |key: &str| child_name(dir, key).to_string();
        let mut entries: Vec<TreeEntry> = objects
            .into_iter()
            .map(|o| TreeEntry {
                path: relative(o.location.as_ref()),
                is_dir: false,
                size: o.size,
                modified: Some(o.last_modified),
                etag: None,
            })
            .collect();
        for (key, t) in self.markers().iter() {
            if inside(dir, key) && key != dir {
                entries.push(TreeEntry {
                    path: relative(key),
                    is_dir: true,
                    size: 0,
                    modified: Some(*t),
                    etag: None,
                });
            }
        }
        Ok(entries)
    }

    async fn dir_info(&self, dir: &str) -> FsResult<Option<Option<DateTime<Utc>>>> {
        if dir.is_empty() {
            return Ok(Some(None));
        }
        if let Some(t) = self.markers().get(dir) {
            return Ok(Some(Some(*t)));
        }
        if self.markers().keys().any(|k| inside(dir, k)) {
            return Ok(Some(None));
        }
        let first = self
            .store
            .list(Self::under(dir).as_ref())
            .try_next()
            .await?;
        Ok(first.map(|o| Some(o.last_modified)))
    }

    async fn create_dir(&self, dir: &str) -> FsResult<()> {
        self.markers().insert(dir.to_string(), Utc::now());
        Ok(())
    }

    async fn remove_dir(&self, dir: &str) -> FsResult<()> {
        let has_objects = self
            .store
            .list(Self::under(dir).as_ref())
            .try_next()
            .await?
            .is_some();
        let mut markers = self.markers();
        if has_objects || markers.keys().any(|k| inside(dir, k)) {
            return Err(FsError::NotEmpty);
        }
        markers.remove(dir).map(|_| ()).ok_or(FsError::NotFound)
    }

    async fn rename_dir(&self, from: &str, to: &str) -> FsResult<()> {
        let objects: Vec<_> = self
            .store
            .list(Self::under(from).as_ref())
            .try_collect()
            .await?;
        let moved = |key: &str| format!("{to}{}", &key[from.len()..]);
        for o in &objects {
            let target = Path::from_iter(moved(o.location.as_ref()).split('/'));
            self.store.copy(&o.location, &target).await?;
        }
        for o in &objects {
            self.store.delete(&o.location).await?;
        }
        let mut markers = self.markers();
        let old: Vec<(String, DateTime<Utc>)> = markers
            .iter()
            .filter(|(k, _)| k.as_str() == from || inside(from, k))
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        for (k, t) in old {
            markers.remove(&k);
            markers.insert(moved(&k), t);
        }
        Ok(())
    }

    async fn keep(&self, key: &str, kept: &Kept, if_etag: Option<&str>) -> FsResult<()> {
        let path = Path::from_iter(key.split('/'));
        let opts = object_store::GetOptions {
            if_match: if_etag.map(str::to_string),
            ..Default::default()
        };
        let data = self.store.get_opts(&path, opts).await?.bytes().await?;
        let opts = PutOptions {
            attributes: kept.attributes(),
            ..Default::default()
        };
        self.store.put_opts(&path, data.into(), opts).await?;
        Ok(())
    }

    async fn space(&self) -> FsResult<Space> {
        Ok(UNBOUNDED_SPACE)
    }

    async fn probe(&self) -> FsResult<()> {
        Ok(())
    }
}
