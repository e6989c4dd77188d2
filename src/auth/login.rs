//! Login checks in the order a frontend needs them: the user exists, the
//! peer's address is allowed, then the password or key matches.

use super::check_password;
use crate::config::UserConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// Why a login was refused. The client is told only that it failed; the
/// operator's log gets this.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    #[error("no such user")]
    UnknownUser,
    #[error("address {0} is not in the user's allowed_ips")]
    AddressNotAllowed(IpAddr),
    #[error("wrong password")]
    WrongPassword,
    #[error("the user has no password; only key login is possible")]
    NoPassword,
    #[error("key not in the user's authorized_keys")]
    UnknownKey,
}

type ByName = HashMap<String, Arc<UserConfig>>;

/// The configured users, by name; every clone sees a reload (SIGHUP).
/// A session keeps the user it logged in as until it ends.
#[derive(Debug, Clone, Default)]
pub struct Users(Arc<RwLock<Arc<ByName>>>);

fn by_name(users: &[UserConfig]) -> Arc<ByName> {
    Arc::new(
        users
            .iter()
            .map(|u| (u.name.clone(), Arc::new(u.clone())))
            .collect(),
    )
}

impl Users {
    pub fn new(users: &[UserConfig]) -> Self {
        // Made now, not at the first failed login, which would take twice as long.
        dummy_hash();
        Users(Arc::new(RwLock::new(by_name(users))))
    }

    /// Replaces the users for logins from now on.
    pub fn replace(&self, users: &[UserConfig]) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = by_name(users);
    }

    fn current(&self) -> Arc<ByName> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The user, if `peer` may log in as them at all.
    fn may_log_in(&self, name: &str, peer: IpAddr) -> Result<Arc<UserConfig>, LoginError> {
        let user = self
            .current()
            .get(name)
            .cloned()
            .ok_or(LoginError::UnknownUser)?;
        let peer = canonical(peer);
        if !user.allowed_ips.is_empty() && !user.allowed_ips.iter().any(|n| n.contains(&peer)) {
            return Err(LoginError::AddressNotAllowed(peer));
        }
        Ok(user.clone())
    }

    /// Checks a password off the async threads: hashes are slow on purpose.
    /// A name that cannot log in by password (unknown, not from this
    /// address, no password) is checked against a dummy hash of the same
    /// cost, so the time of the answer does not tell which names exist.
    pub async fn password(
        &self,
        name: &str,
        peer: IpAddr,
        password: &str,
    ) -> Result<Arc<UserConfig>, LoginError> {
        let password = password.to_string();
        let user = self.may_log_in(name, peer).and_then(|user| {
            let hash = user.password_hash.clone().ok_or(LoginError::NoPassword)?;
            Ok((user, hash))
        });
        match user {
            Ok((user, hash)) => match check_password(hash, password).await {
                true => Ok(user),
                false => Err(LoginError::WrongPassword),
            },
            Err(e) => {
                check_password(dummy_hash().to_string(), password).await;
                Err(e)
            }
        }
    }

    /// Whether `key` is one of the user's authorized keys (comments and
    /// options do not take part).
    pub fn public_key(
        &self,
        name: &str,
        peer: IpAddr,
        key: &russh::keys::PublicKey,
    ) -> Result<Arc<UserConfig>, LoginError> {
        let user = self.may_log_in(name, peer)?;
        if user
            .authorized_keys
            .iter()
            .any(|k| k.key_data() == key.key_data())
        {
            Ok(user)
        } else {
            Err(LoginError::UnknownKey)
        }
    }
}

/// A hash no password matches, made with the parameters of
/// `hash-password`: what a login for a name without a password hash costs.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| super::hash_password(&format!("{:x}", rand::random::<u128>())))
}

/// An IPv4 peer seen on a dual-stack socket as `::ffff:a.b.c.d` is matched
/// as the IPv4 address the operator wrote in allowed_ips.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
