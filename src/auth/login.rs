//! Who a login is: the identity sources asked in `[auth] order` (the
//! users file, an LDAP directory, an HTTP hook), the first that knows the
//! name deciding; then the peer's address against the user's allowed_ips.

use super::cache::{Credential, LoginCache};
use super::file::FileUsers;
use super::hook::HookSource;
use super::ldap::LdapSource;
use crate::config::{Config, SourceKind, UserConfig};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// Why a login was refused. The client is told only that it failed; the
/// operator's log gets this.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    #[error("no such user")]
    UnknownUser,
    /// The name breaks the rule of user names ([`crate::base::check_user_name`]):
    /// no source is asked.
    #[error("not a user name: {0}")]
    BadName(String),
    #[error("address {0} is not in the user's allowed_ips")]
    AddressNotAllowed(IpAddr),
    #[error("wrong password")]
    WrongPassword,
    #[error("the user has no password; only key login is possible")]
    NoPassword,
    #[error("key not in the user's authorized_keys")]
    UnknownKey,
    /// A certificate refused: why, with its key id and serial.
    #[error("{0}")]
    Certificate(String),
    /// The second factor was missing or wrong.
    #[error("{0}")]
    SecondFactor(String),
    #[error("{0}")]
    Refused(String),
    /// The source that owns the name could not be asked: nobody else is.
    #[error("identity source {which} is unavailable: {reason}")]
    Unavailable { which: &'static str, reason: String },
    /// What the source answered does not make a user (an operator's
    /// mistake in a template or the hook).
    #[error("{which} defines no valid user: {reason}")]
    BadDefinition { which: &'static str, reason: String },
    /// The password was not checked: the source is banned, or has logins
    /// enough in progress.
    #[error("{0}")]
    NoTurn(super::NoTurn),
}

impl LoginError {
    /// Whether the client is to blame, so the failure counts toward the
    /// ban of its address: not when a source is down or misconfigured.
    pub fn counts_toward_ban(&self) -> bool {
        !matches!(
            self,
            LoginError::Unavailable { .. }
                | LoginError::BadDefinition { .. }
                | LoginError::NoTurn(_)
        )
    }
}

/// Questions one source (the directory, the hook) is asked at once. A
/// flood of logins waits for a turn within the source's timeout rather
/// than opening a connection each to the directory.
pub const MAX_QUESTIONS: usize = 32;

/// What one source says about a login.
pub enum Answer {
    /// It does not know the name: the next source is asked.
    Unknown,
    /// It owns the name and has decided.
    Decided(Result<Arc<UserConfig>, LoginError>),
}

/// An accepted login: the user, and who vouched for them.
#[derive(Debug, Clone)]
pub struct Identified {
    pub user: Arc<UserConfig>,
    pub source: SourceKind,
    /// Accepted from the cache of an earlier answer of the source.
    pub cached: bool,
    /// The certificate that logged in: its key id and serial.
    pub certificate: Option<(String, u64)>,
}

/// How a login reached the gateway, as the HTTP hook is told.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub peer: IpAddr,
    pub protocol: &'static str,
}

struct Sources {
    order: Vec<SourceKind>,
    file: FileUsers,
    ldap: Option<LdapSource>,
    hook: Option<HookSource>,
    cache: LoginCache,
    /// Which certificates log in, and which keys are revoked.
    authorities: super::Authorities,
}

/// The identity sources; every clone sees a reload (SIGHUP). A session
/// keeps the user it logged in as until it ends.
#[derive(Clone)]
pub struct Users(Arc<RwLock<Arc<Sources>>>, Arc<super::totp::Codes>);

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

/// A source that cannot be set up (its CA file, its TLS settings).
#[derive(Debug, thiserror::Error)]
#[error("[auth.{which}]: {reason}")]
pub struct SourceError {
    pub which: &'static str,
    pub reason: String,
}

fn sources(config: &Config) -> Result<Arc<Sources>, SourceError> {
    let remotes = config.remotes.keys().cloned().collect();
    let auth = &config.auth;
    let ldap = auth
        .ldap
        .as_ref()
        .map(|l| LdapSource::new(l, &auth.templates, &remotes))
        .transpose()
        .map_err(|reason| SourceError {
            which: "ldap",
            reason,
        })?;
    let hook = auth
        .http
        .as_ref()
        .map(|h| HookSource::new(h, &remotes))
        .transpose()
        .map_err(|reason| SourceError {
            which: "http",
            reason,
        })?;
    Ok(Arc::new(Sources {
        order: auth.order.clone(),
        file: FileUsers::new(&config.users),
        ldap,
        hook,
        cache: LoginCache::new(auth.cache_time),
        authorities: config
            .sftp
            .as_ref()
            .map(super::Authorities::new)
            .unwrap_or_default(),
    }))
}

impl Users {
    pub fn new(config: &Config) -> Result<Self, SourceError> {
        // Made now, not at the first failed login, which would take twice as long.
        dummy_hash();
        Ok(Users(
            Arc::new(RwLock::new(sources(config)?)),
            Arc::default(),
        ))
    }

    /// Replaces the sources for logins from now on, and forgets what the
    /// old ones accepted.
    pub fn replace(&self, config: &Config) -> Result<(), SourceError> {
        let new = sources(config)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// The users of the file, and the sources in the order they are asked.
    pub fn listed(&self) -> (Vec<Arc<UserConfig>>, Vec<SourceKind>) {
        let sources = self.current();
        (sources.file.all(), sources.order.clone())
    }

    fn current(&self) -> Arc<Sources> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A password login. A name no source knows, or a file user without a
    /// password, is checked against a dummy hash of the cost of a real
    /// one, so the time of the answer does not tell which names exist.
    pub async fn password(
        &self,
        name: &str,
        attempt: Attempt,
        password: &str,
    ) -> Result<Identified, LoginError> {
        let checked = self
            .current()
            .check(name, attempt, &Credential::Password(password))
            .await;
        if matches!(
            checked,
            Err(LoginError::UnknownUser | LoginError::NoPassword | LoginError::BadName(_))
        ) {
            super::check_password(dummy_hash().to_string(), password.to_string()).await;
        }
        checked
    }

    /// A certificate login (its key's signature is the frontend's to
    /// check): whether a trusted CA signed it for this client now
    /// ([`super::Authorities::check`]), and it names a user a source knows.
    pub async fn certificate(
        &self,
        name: &str,
        attempt: Attempt,
        cert: &russh::keys::Certificate,
    ) -> Result<Identified, LoginError> {
        let sources = self.current();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let certified = sources
            .authorities
            .check(cert, attempt.peer, now)
            .map_err(|why| {
                LoginError::Certificate(format!(
                    "certificate {:?} (serial {}) refused: {why}",
                    cert.key_id(),
                    cert.serial()
                ))
            })?;
        sources
            .check(name, attempt, &Credential::Certificate(&certified))
            .await
    }

    /// Checks the TOTP `code` of `user`, who has a secret; a code is taken
    /// once.
    pub fn second_factor(&self, user: &UserConfig, code: &str) -> Result<(), LoginError> {
        let Some(secret) = &user.totp else {
            return Err(LoginError::SecondFactor("the user has no totp".into()));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.1.check(&user.name, secret, code, now)
    }

    /// Whether certificates may log in (a CA is trusted): then any key a
    /// client offers may be a certificate's, which SSH does not tell.
    pub fn trusts_certificates(&self) -> bool {
        self.current().authorities.any()
    }

    /// A public-key login: whether `key` is one the user may log in with
    /// (its signature is the frontend's to check).
    pub async fn public_key(
        &self,
        name: &str,
        attempt: Attempt,
        key: &russh::keys::PublicKey,
    ) -> Result<Identified, LoginError> {
        let sources = self.current();
        if sources.authorities.revoked(key.key_data()) {
            return Err(LoginError::Refused(
                "the key is revoked (revoked_keys)".into(),
            ));
        }
        sources.check(name, attempt, &Credential::Key(key)).await
    }
}

impl Sources {
    async fn check(
        &self,
        name: &str,
        attempt: Attempt,
        credential: &Credential<'_>,
    ) -> Result<Identified, LoginError> {
        crate::base::check_user_name(name).map_err(LoginError::BadName)?;
        for &source in &self.order {
            let answer = match source {
                SourceKind::File => self.file.check(name, credential).await,
                SourceKind::Ldap | SourceKind::Http => {
                    if let Some(user) = self.cache.get(source, name, credential) {
                        return admit(user, source, true, attempt.peer, credential);
                    }
                    let answer = match (source, &self.ldap, &self.hook) {
                        (SourceKind::Ldap, Some(ldap), _) => ldap.check(name, credential).await,
                        (SourceKind::Http, _, Some(hook)) => {
                            hook.check(name, credential, attempt).await
                        }
                        _ => Answer::Unknown,
                    };
                    match &answer {
                        Answer::Decided(Ok(user)) => self.cache.put(source, credential, user),
                        Answer::Unknown => self.cache.forget(source, name),
                        Answer::Decided(Err(_)) => {}
                    }
                    answer
                }
            };
            match answer {
                Answer::Unknown => continue,
                Answer::Decided(checked) => {
                    return admit(checked?, source, false, attempt.peer, credential);
                }
            }
        }
        Err(LoginError::UnknownUser)
    }
}

/// An accepted user, if `peer` may log in as them at all, and a
/// certificate names them.
fn admit(
    user: Arc<UserConfig>,
    source: SourceKind,
    cached: bool,
    peer: IpAddr,
    credential: &Credential<'_>,
) -> Result<Identified, LoginError> {
    if let Credential::Certificate(c) = credential
        && !c.names(&user)
    {
        return Err(LoginError::Certificate(format!(
            "certificate {:?} (serial {}) names {:?}, neither the user nor its cert_principals",
            c.key_id, c.serial, c.principals
        )));
    }
    let peer = canonical(peer);
    if !user.allowed_ips.is_empty() && !user.allowed_ips.iter().any(|n| n.contains(&peer)) {
        return Err(LoginError::AddressNotAllowed(peer));
    }
    Ok(Identified {
        user,
        source,
        cached,
        certificate: match credential {
            Credential::Certificate(c) => Some((c.key_id.clone(), c.serial)),
            _ => None,
        },
    })
}

/// A hash no password matches, made with the parameters of
/// `hash-password`: what a login for a name without a password hash costs.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| super::hash_password(&format!("{:x}", rand::random::<u128>())))
}

/// An IPv4 peer seen on a dual-stack socket as `::ffff:a.b.c.d` is matched
/// as the IPv4 address the operator wrote in allowed_ips.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
