//! Who may log in and how many at once: the identity sources (the users
//! file, LDAP, an HTTP hook) and their cache, password hashes, address
//! rules, bans and session slots, shared by the SFTP and FTP frontends.

mod bans;
mod cache;
mod certificates;
mod file;
mod hook;
mod ldap;
mod login;
mod password;
mod sessions;
mod totp;

pub use bans::{BanChange, Banned, Bans, NoTurn, Source, Turn};
pub use cache::MAX_NAMES as MAX_CACHED_LOGINS;
pub use certificates::{Authorities, Certified};
use login::canonical;
pub use login::{Attempt, Identified, LoginError, SourceError, Users, dummy_hash};
pub use password::{check_password, hash_password, verify_password};
pub use sessions::{
    Admitted, LimitError, LoginWatch, NotLoggedIn, PreLogin, SessionLimits, SessionSlot,
};
pub use totp::{code_at as totp_code_at, enrolment as totp_enrolment};
