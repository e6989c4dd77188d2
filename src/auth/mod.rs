//! Who may log in: password hashes now; authorized keys, login throttling
//! and bans join here as the frontends need them.

mod password;

pub use password::{hash_password, verify_password};
