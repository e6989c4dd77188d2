//! A job's two sides: each one's location and the object layer it is
//! reached through, and a path's key and name on each.

use super::{BySide, Side};
use crate::config::Location;
use crate::vfs::objects::ObjectLayer;
use std::sync::Arc;

#[derive(Debug)]
pub struct Sides {
    /// The config's two locations, by side.
    pub(super) locations: BySide<Location>,
    pub(super) layers: BySide<Arc<ObjectLayer>>,
    /// Where what the job writes and deletes counts (inside `serve`).
    pub(super) quotas: Option<Arc<crate::quota::Quotas>>,
}

impl Sides {
    /// The object key of `path` on `side`.
    pub(super) fn key(&self, side: Side, path: &str) -> String {
        match self.locations[side].prefix.as_str() {
            "" => path.to_string(),
            prefix => format!("{prefix}/{path}"),
        }
    }

    /// Counts a change the job made at `key` of `layer`'s remote toward
    /// the quota targets there.
    pub(super) async fn counted(&self, layer: &ObjectLayer, key: &str, bytes: i64, files: i64) {
        if let Some(q) = &self.quotas {
            let delta = crate::cluster::quotas::Usage { bytes, files };
            q.changed(layer.remote().name(), key, delta).await;
        }
    }

    /// `remote:/key`, as logs and the dry run name a file.
    pub fn shown(&self, side: Side, path: &str) -> String {
        format!("{}:/{}", self.locations[side].remote, self.key(side, path))
    }
}
