//! The one error kind of file operations, from the remotes up through the
//! VFS. Each frontend maps it to its wire codes in one function; the messages
//! are written for the person at the client, and the storage's own words
//! (hosts, buckets, request ids, S3 error bodies) stay in the gateway's log.

/// What went wrong with a file operation, as a frontend must report it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("already exists")]
    AlreadyExists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// The storage failed. Displayed (in logs) with the storage's `detail`;
    /// [`FsError::client_message`] shows only the gateway's `message`.
    #[error("storage error: {}", detail.as_deref().unwrap_or(message))]
    Storage {
        message: String,
        detail: Option<String>,
    },
    /// The client's side of a transfer ended early: not the storage's doing.
    #[error("transfer aborted: {0}")]
    Aborted(String),
    /// A bound of the gateway is reached for now (the webhook spool, the
    /// checksum reads in progress): the same request may work later.
    #[error("busy: {0}")]
    Busy(String),
    /// What the operation relied on changed under it (an S3 precondition
    /// failed: the object is not the version it started from). Trying
    /// again works on the new version.
    #[error("{0}")]
    Changed(String),
    /// A quota would be passed: "quota exceeded: 9.9 GiB of 10.0 GiB used".
    #[error("{0}")]
    QuotaExceeded(String),
}

/// What a client is told when the storage's own error is for the log only.
const SEE_THE_LOG: &str = "the storage failed; the gateway's log has the details";

impl FsError {
    /// A failure of the storage, its text kept for the log.
    pub fn storage(e: impl std::fmt::Display) -> Self {
        Self::storage_detail(e.to_string())
    }

    /// A failure of the storage described by the storage (an S3 error body).
    pub fn storage_detail(detail: impl Into<String>) -> Self {
        FsError::Storage {
            message: SEE_THE_LOG.into(),
            detail: Some(detail.into()),
        }
    }

    /// A failure the gateway describes itself, the same to client and log.
    pub fn failed(message: impl Into<String>) -> Self {
        FsError::Storage {
            message: message.into(),
            detail: None,
        }
    }

    /// The gateway's own words for a failure, with `detail` for the log.
    pub fn failed_with(message: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        let message = message.into();
        FsError::Storage {
            detail: Some(format!("{message}: {detail}")),
            message,
        }
    }

    /// An object changed under an operation that relied on its version.
    pub fn changed() -> Self {
        FsError::Changed("the file was changed by someone else; try again".into())
    }

    /// The text a client sees: the storage's own words left out.
    pub fn client_message(&self) -> String {
        match self {
            FsError::Storage { message, .. } => format!("storage error: {message}"),
            other => other.to_string(),
        }
    }
}

impl From<object_store::Error> for FsError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => FsError::NotFound,
            object_store::Error::AlreadyExists { .. } => FsError::AlreadyExists,
            object_store::Error::Precondition { .. } => FsError::changed(),
            object_store::Error::InvalidPath { source } => FsError::InvalidName(source.to_string()),
            other => FsError::storage(other),
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::NotFound => FsError::NotFound,
            K::AlreadyExists => FsError::AlreadyExists,
            K::DirectoryNotEmpty => FsError::NotEmpty,
            K::PermissionDenied => FsError::PermissionDenied(e.to_string()),
            _ => FsError::storage(e),
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed precondition (If-Match on an ETag) is a change under the
    /// operation, which a client may retry, not a name that exists.
    #[test]
    fn a_failed_precondition_is_a_change_not_an_existing_name() {
        let precondition = object_store::Error::Precondition {
            path: "k".into(),
            source: "412".into(),
        };
        assert!(matches!(FsError::from(precondition), FsError::Changed(_)));
        let exists = object_store::Error::AlreadyExists {
            path: "k".into(),
            source: "exists".into(),
        };
        assert!(matches!(FsError::from(exists), FsError::AlreadyExists));
    }
}
