//! Sync jobs (`[[syncs]]`, DESIGN §4): push, pull or two-way sync between
//! a folder on one remote (the gateway's side, "local") and a folder on
//! another ("remote"), run on an interval by `serve` or once by
//! `bucketgate sync run`.
//!
//! A run lists both sides ([`tree`]), plans ([`plan`], a pure function),
//! then acts ([`run`]) under a lease in the remote bucket ([`lease`]), or
//! in the fleet's database with `[cluster]` ([`fleet`]), so two gateways
//! never run one job at once. What it settled is kept for the next run
//! ([`state`]), with a report of what it did ([`report`]), which a fleet
//! shares.
//! [`schedule`] runs jobs on their interval inside `serve`.

mod act;
pub mod error;
pub mod fleet;
pub mod lease;
mod md5;
pub mod plan;
pub mod report;
pub mod run;
pub mod schedule;
mod sides;
pub mod state;
pub mod tree;

pub use report::{Outcome, Report};
pub use run::{DryRun, Job, RunProgress, SyncError};

use serde::{Deserialize, Serialize};
use std::ops::{Index, IndexMut};

/// The two ends of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The job's `local` folder: the gateway's side.
    Local = 0,
    /// The job's `remote` folder, where the lease lives.
    Remote = 1,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }
}

/// One value for each side of a job, indexed by [`Side`]: what would
/// otherwise be a `match side` in every accessor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BySide<T> {
    pub local: T,
    pub remote: T,
}

impl<T> BySide<T> {
    /// Built side by side by `f`, local first.
    pub fn new(mut f: impl FnMut(Side) -> T) -> Self {
        BySide {
            local: f(Side::Local),
            remote: f(Side::Remote),
        }
    }
}

impl<T> Index<Side> for BySide<T> {
    type Output = T;
    fn index(&self, side: Side) -> &T {
        match side {
            Side::Local => &self.local,
            Side::Remote => &self.remote,
        }
    }
}

impl<T> IndexMut<Side> for BySide<T> {
    fn index_mut(&mut self, side: Side) -> &mut T {
        match side {
            Side::Local => &mut self.local,
            Side::Remote => &mut self.remote,
        }
    }
}
