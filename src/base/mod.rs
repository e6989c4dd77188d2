//! What every layer shares and none owns: the file-operation error kind,
//! the rules for names object storage can hold, file digests, and a
//! poison-tolerant lock.
//! It depends on nothing else in the crate, so the config, the remotes, the
//! VFS and the frontends can all use it without pointing back up.

mod digests;
mod error;
mod files;
mod names;
mod outbound;
mod tls_server;
mod tokens;

pub use digests::{Algorithm, Checksums, Digests, Hashers, hex, unhex};
pub use error::{FsError, FsResult};
pub use files::replace_file;
pub use names::{MAX_KEY_BYTES, MAX_USER_NAME, check_segment, check_user_name};
pub use outbound::{http_client, tls_client_config};
pub use tls_server::{Certificates, Renewal, TlsError, read_pair};
pub use tokens::{digest, random_token};

/// Locks state that stays consistent even if a holder panicked (maps,
/// counters): a poisoned lock is taken over, not propagated.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
