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
}

impl Sides {
    /// The object key of `path` on `side`.
    pub(super) fn key(&self, side: Side, path: &str) -> String {
        match self.locations[side].prefix.as_str() {
            "" => path.to_string(),
            prefix => format!("{prefix}/{path}"),
        }
    }

    /// `remote:/key`, as logs and the dry run name a file.
    pub fn shown(&self, side: Side, path: &str) -> String {
        format!("{}:/{}", self.locations[side].remote, self.key(side, path))
    }
}
