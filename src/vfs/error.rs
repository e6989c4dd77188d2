//! The one error type of the VFS. Each frontend maps it to its wire codes in
//! one function; the messages are written for the person at the client.

/// What went wrong with a file operation, as a frontend must report it.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
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
    #[error("storage error: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The client's side of a transfer ended early: not the storage's doing.
    #[error("transfer aborted: {0}")]
    Aborted(String),
}

impl VfsError {
    pub fn storage(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        VfsError::Storage(Box::new(e))
    }

    pub fn storage_msg(msg: impl Into<String>) -> Self {
        VfsError::Storage(msg.into().into())
    }
}

impl From<object_store::Error> for VfsError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => VfsError::NotFound,
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => VfsError::AlreadyExists,
            object_store::Error::InvalidPath { source } => {
                VfsError::InvalidName(source.to_string())
            }
            other => VfsError::storage(other),
        }
    }
}

impl From<std::io::Error> for VfsError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::NotFound => VfsError::NotFound,
            K::AlreadyExists => VfsError::AlreadyExists,
            K::DirectoryNotEmpty => VfsError::NotEmpty,
            K::PermissionDenied => VfsError::PermissionDenied(e.to_string()),
            _ => VfsError::storage(e),
        }
    }
}

pub type VfsResult<T> = Result<T, VfsError>;
