//! Logins an LDAP directory or the HTTP hook accepted, remembered for
//! `[auth] cache_time` so a client that opens many sessions (rclone,
//! `lftp -P`) asks the source once. What is kept of a credential is an
//! HMAC under a key made at start, never the password; only a credential
//! the source accepted is kept, so a wrong or changed password always
//! goes to the source.

use crate::base::lock;
use crate::config::{SourceKind, UserConfig};
use hmac::{KeyInit, Mac};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Names remembered at most; past it the entry that ends soonest goes.
pub const MAX_NAMES: usize = 10_000;
/// Credentials remembered per name (a password and a few keys).
const MAX_PROOFS: usize = 4;

type Proof = [u8; 32];

/// What a login presented.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    Password(&'a str),
    Key(&'a russh::keys::PublicKey),
    /// A certificate a trusted CA signed, already checked.
    Certificate(&'a super::Certified),
}

impl Credential<'_> {
    pub fn method(&self) -> &'static str {
        match self {
            Credential::Password(_) => "password",
            Credential::Key(_) | Credential::Certificate(_) => "publickey",
        }
    }
}

struct Entry {
    user: Arc<UserConfig>,
    /// Each accepted credential, until when.
    proofs: Vec<(Proof, Instant)>,
}

impl Entry {
    fn ends(&self) -> Instant {
        self.proofs
            .iter()
            .map(|(_, until)| *until)
            .max()
            .unwrap_or_else(Instant::now)
    }
}

pub struct LoginCache {
    ttl: Duration,
    key: [u8; 32],
    entries: Mutex<HashMap<(SourceKind, String), Entry>>,
}

impl LoginCache {
    pub fn new(ttl: Duration) -> Self {
        LoginCache {
            ttl,
            key: rand::random(),
            entries: Mutex::default(),
        }
    }

    fn proof(&self, credential: &Credential<'_>) -> Proof {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        match credential {
            Credential::Password(p) => {
                mac.update(b"password\0");
                mac.update(p.as_bytes());
            }
            Credential::Key(k) => {
                mac.update(b"publickey\0");
                mac.update(k.to_openssh().unwrap_or_default().as_bytes());
            }
            Credential::Certificate(c) => {
                mac.update(b"certificate\0");
                mac.update(c.key.to_openssh().unwrap_or_default().as_bytes());
                mac.update(c.key_id.as_bytes());
                mac.update(&c.serial.to_be_bytes());
            }
        }
        mac.finalize().into_bytes().into()
    }

    /// The user `source` accepted with this credential, while remembered.
    pub fn get(
        &self,
        source: SourceKind,
        name: &str,
        credential: &Credential<'_>,
    ) -> Option<Arc<UserConfig>> {
        if self.ttl.is_zero() {
            return None;
        }
        let proof = self.proof(credential);
        let now = Instant::now();
        let entries = lock(&self.entries);
        let entry = entries.get(&(source, name.to_string()))?;
        entry
            .proofs
            .iter()
            .any(|(p, until)| *p == proof && *until > now)
            .then(|| entry.user.clone())
    }

    /// Remembers that `source` accepted this credential for `user`: the
    /// user's definition is the latest answer's.
    pub fn put(&self, source: SourceKind, credential: &Credential<'_>, user: &Arc<UserConfig>) {
        if self.ttl.is_zero() {
            return;
        }
        let proof = self.proof(credential);
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        let key = (source, user.name.clone());
        if !entries.contains_key(&key) && entries.len() >= MAX_NAMES {
            entries.retain(|_, e| e.ends() > now);
            if entries.len() >= MAX_NAMES
                && let Some(soonest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.ends())
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&soonest);
            }
        }
        let entry = entries.entry(key).or_insert_with(|| Entry {
            user: user.clone(),
            proofs: Vec::new(),
        });
        entry.user = user.clone();
        entry
            .proofs
            .retain(|(p, until)| *p != proof && *until > now);
        if entry.proofs.len() >= MAX_PROOFS {
            entry.proofs.remove(0);
        }
        entry.proofs.push((proof, now + self.ttl));
    }

    /// The source no longer knows the name.
    pub fn forget(&self, source: SourceKind, name: &str) {
        lock(&self.entries).remove(&(source, name.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Location, Permissions};

    fn user(name: &str) -> Arc<UserConfig> {
        Arc::new(UserConfig {
            name: name.into(),
            password_hash: None,
            authorized_keys: Vec::new(),
            cert_principals: Vec::new(),
            totp: None,
            auth_methods: crate::config::AuthMethods::default_for(false),
            home: Location {
                remote: "store".into(),
                prefix: name.into(),
            },
            permissions: Permissions::all(),
            max_sessions: 1,
            allowed_ips: Vec::new(),
            mounts: Vec::new(),
            filters: Vec::new(),
            limits: Default::default(),
        })
    }

    #[tokio::test]
    async fn the_cache_keeps_at_most_its_names_and_only_accepted_credentials() {
        let cache = LoginCache::new(Duration::from_secs(60));
        let pw = Credential::Password("right");
        for i in 0..MAX_NAMES + 50 {
            cache.put(SourceKind::Http, &pw, &user(&format!("u{i}")));
        }
        assert_eq!(lock(&cache.entries).len(), MAX_NAMES);
        let last = format!("u{}", MAX_NAMES + 49);
        assert!(cache.get(SourceKind::Http, &last, &pw).is_some());
        assert!(
            cache
                .get(SourceKind::Http, &last, &Credential::Password("wrong"))
                .is_none()
        );
        assert!(cache.get(SourceKind::Ldap, &last, &pw).is_none());
        for i in 0..10 {
            cache.put(
                SourceKind::Http,
                &Credential::Password(&format!("p{i}")),
                &user("many"),
            );
        }
        let proofs = lock(&cache.entries)[&(SourceKind::Http, "many".to_string())]
            .proofs
            .len();
        assert_eq!(proofs, MAX_PROOFS);
    }
}
