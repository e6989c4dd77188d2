//! A user as the gateway uses it, whichever source defined it: the config
//! file, a template with an LDAP entry, or the HTTP hook's answer.

use super::{AuthMethods, FilterConfig, Limits, Permissions, Quota, TotpSecret};
use ipnet::IpNet;
use std::fmt;

/// `remote:/path` — a folder on a named remote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub remote: String,
    /// Key prefix without leading or trailing `/`; empty for the remote's root.
    pub prefix: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:/{}", self.remote, self.prefix)
    }
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// A PHC hash (argon2id or bcrypt); `None`: key login only.
    pub password_hash: Option<String>,
    pub authorized_keys: Vec<russh::keys::PublicKey>,
    /// Names a certificate may carry to log in as this user, beside the
    /// user's own name.
    pub cert_principals: Vec<String>,
    /// The second factor's secret; with it, logins ask for its code.
    pub totp: Option<TotpSecret>,
    /// The sequences of methods that log the user in.
    pub auth_methods: AuthMethods,
    pub home: Location,
    pub permissions: Permissions,
    pub max_sessions: usize,
    pub allowed_ips: Vec<IpNet>,
    pub mounts: Vec<MountConfig>,
    /// Which names may be written where, deepest folder first.
    pub filters: Vec<FilterConfig>,
    /// What the user may store, write and move.
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct MountConfig {
    /// Absolute path in the user's tree, normalised, never `/`.
    pub path: String,
    pub target: Location,
    pub read_only: bool,
    /// The target's own quota, shared by every user who mounts it.
    pub quota: Quota,
}
