//! What goes wrong in a sync run, typed: a run that cannot start, a run
//! stopped before it acts (its report says why), and one action that
//! failed (its report lists it with the action; the run goes on).

use super::Side;
use super::lease::LeaseError;
use super::plan::Stop;
use super::state::StateError;
use crate::base::FsError;

/// Why a run could not be held at all.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no sync job named {name:?} in the config; its jobs: {known}")]
    UnknownJob { name: String, known: String },
    #[error("remote {0:?} is not configured")]
    UnknownRemote(String),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why a run stops before its first action.
#[derive(Debug, thiserror::Error)]
pub enum NotRun {
    #[error("cannot list the {side} side {location}: {source}")]
    List {
        side: Side,
        location: String,
        #[source]
        source: FsError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    /// The planner's own stop (`max_delete`, a side that lists empty).
    #[error(transparent)]
    Plan(#[from] Stop),
}

/// Why one action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    Storage(#[from] FsError),
    #[error("writing the sync journal: {0}")]
    Journal(#[source] std::io::Error),
    #[error("not started: the job's lease was lost")]
    NotStarted,
    #[error("stopped: the job's lease was lost")]
    LeaseLost,
    /// What the listings showed no longer holds (`not on both sides`, a
    /// file changed since it was listed).
    #[error("{0}")]
    NotAsListed(&'static str),
    #[error("the copy holds {held} bytes where {read} were read")]
    Short { held: u64, read: u64 },
    /// The copy's bytes are not the source's: the source is kept.
    #[error("the copy's {what} {copy} is not the source's {original}; the source is kept")]
    Differs {
        what: &'static str,
        copy: String,
        original: String,
    },
    #[error("hashing the copy: {0}")]
    Hashing(String),
}
