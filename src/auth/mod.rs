//! Who may log in and how many at once: password hashes, authorized keys,
//! address rules and session slots, shared by the SFTP and FTP frontends.

mod bans;
mod login;
mod password;
mod sessions;

pub use bans::Bans;
pub use login::{LoginError, Users};
pub use password::{check_password, hash_password, verify_password};
pub use sessions::{
    Admitted, LimitError, LoginWatch, NotLoggedIn, PreLogin, SessionLimits, SessionSlot,
};
