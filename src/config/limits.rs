//! What a user may store, write and move beside its permissions: quotas,
//! bandwidth, the largest file (README "Quotas and limits").

/// A user's limits beside its permissions (README "Quotas and limits").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The largest file the user may write; `None`: no limit.
    pub max_file_size: Option<u64>,
    /// What the home may hold.
    pub quota: Quota,
    pub bandwidth: Bandwidth,
}

/// What a quota target (a user's home, a mount's target) may hold; `None`:
/// no bound on that count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub bytes: Option<u64>,
    pub files: Option<u64>,
}

impl Quota {
    pub fn is_set(&self) -> bool {
        self.bytes.is_some() || self.files.is_some()
    }
}

/// Bytes per second each way; `None`: as fast as it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bandwidth {
    /// From the client (uploads).
    pub up: Option<u64>,
    /// To the client (downloads).
    pub down: Option<u64>,
}
