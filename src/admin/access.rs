//! Who may use the console and `/api/v1`: `[[admin.users]]` log in with a
//! password and get a cookie session; `[[admin.tokens]]` send
//! `Authorization: Bearer`. A cookie session's state-changing requests
//! carry its CSRF token in `X-CSRF-Token`; a token needs none (a browser
//! never sends it by itself). Failed console logins count toward the
//! source's ban, as SFTP and FTP logins do, and are answered a fixed time
//! after they began.
//!
//! With `[cluster]`, cookie sessions live in the fleet's database
//! (`cluster::console`), so that a balancer may send each request to any
//! node; while it cannot be reached, a node knows the sessions it made.

use crate::auth::{Bans, NoTurn, check_password};
use crate::base::lock;
use crate::config::{AdminConfig, AdminRole, AdminUser};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie of a console session.
pub const COOKIE: &str = "bucketgate_console";
/// A console session ends after this long without a request…
const IDLE: Duration = Duration::from_secs(30 * 60);
/// …and after this long in any case.
const LONGEST: Duration = Duration::from_secs(12 * 3600);
/// Console sessions kept at most; past it the oldest ends.
const MAX_SESSIONS: usize = 1000;
/// Console sessions of one console user; a new login past it ends that
/// user's oldest.
pub const MAX_SESSIONS_PER_USER: usize = 16;
/// A failed login is answered this long after it began.
const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Who is asking, and how they proved it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: AdminRole,
    /// The CSRF token of a cookie session; `None` for a bearer token.
    pub csrf: Option<String>,
}

struct ConsoleSession {
    name: String,
    role: AdminRole,
    csrf: String,
    created: Instant,
    seen: Instant,
}

pub struct Access {
    users: Vec<AdminUser>,
    tokens: Vec<AdminUser>,
    /// By the SHA-256 of the cookie's value: a memory dump holds no
    /// usable cookie.
    sessions: Mutex<HashMap<String, ConsoleSession>>,
    pub secure: bool,
    bans: Bans,
    fleet: Option<crate::cluster::Cluster>,
}

/// Why a console login failed.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginFailure {
    Wrong,
    Banned(Duration),
    /// The source has logins enough in progress: nothing was checked.
    Busy,
}

use crate::base::{digest, random_token};
use crate::listen::http::cookie;

/// A new API token and the line that goes into `[[admin.tokens]] hash`.
pub fn new_token() -> (String, String) {
    let token = format!("bgt_{}", random_token());
    let hash = format!("sha256:{}", digest(&token));
    (token, hash)
}

impl Access {
    /// `None` when no admin user or token is configured: the console and
    /// API are off.
    pub fn new(
        config: &AdminConfig,
        bans: Bans,
        fleet: Option<crate::cluster::Cluster>,
    ) -> Option<Access> {
        if config.users.is_empty() && config.tokens.is_empty() {
            return None;
        }
        Some(Access {
            users: config.users.clone(),
            tokens: config.tokens.clone(),
            sessions: Mutex::default(),
            secure: config.tls.is_some(),
            bans,
            fleet,
        })
    }

    /// The caller a request's bearer token or cookie proves, if any.
    pub async fn caller(&self, headers: &http::HeaderMap) -> Option<Caller> {
        if let Some(auth) = headers.get(http::header::AUTHORIZATION) {
            let token = auth.to_str().ok()?.strip_prefix("Bearer ")?.trim();
            let hash = format!("sha256:{}", digest(token));
            let found = self.tokens.iter().find(|t| t.hash == hash)?;
            return Some(Caller {
                name: found.name.clone(),
                role: found.role,
                csrf: None,
            });
        }
        let cookie = cookie(headers, COOKIE)?;
        let key = digest(&cookie);
        if let Some(fleet) = &self.fleet {
            match crate::cluster::console::touch(fleet, &key, IDLE, LONGEST).await {
                Ok(row) => {
                    return row.and_then(|r| {
                        Some(Caller {
                            role: role_named(&r.role)?,
                            name: r.name,
                            csrf: Some(r.csrf),
                        })
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "console sessions: the cluster's database cannot be read; this node's own");
                }
            }
        }
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(&key)?;
        if now.duration_since(s.seen) > IDLE || now.duration_since(s.created) > LONGEST {
            sessions.remove(&key);
            return None;
        }
        s.seen = now;
        Some(Caller {
            name: s.name.clone(),
            role: s.role,
            csrf: Some(s.csrf.clone()),
        })
    }

    /// Checks a console login; on success the new cookie's value and the
    /// caller (with its CSRF token).
    pub async fn login(
        &self,
        peer: IpAddr,
        name: &str,
        password: &str,
    ) -> Result<(String, Caller), LoginFailure> {
        let started = tokio::time::Instant::now();
        // The source's turn, as for SFTP and FTP logins: held until a
        // failure is counted, so a burst is checked at most the threshold.
        let turn = self.bans.turn(peer).await.map_err(|e| match e {
            NoTurn::Banned(left) => LoginFailure::Banned(left),
            NoTurn::Busy => LoginFailure::Busy,
        })?;
        let user = self.users.iter().find(|u| u.name == name);
        // An unknown name costs a real check too: the time does not tell.
        let hash = user.map_or_else(|| crate::auth::dummy_hash().to_string(), |u| u.hash.clone());
        let right = check_password(hash, password.to_string()).await && user.is_some();
        let Some(user) = user.filter(|_| right) else {
            tracing::warn!(user = name, %peer, "console login failed");
            if self.bans.failed(peer) {
                tracing::warn!(source = %peer, "source banned after repeated failed logins");
            }
            drop(turn);
            tokio::time::sleep_until(started + FAILURE_DELAY).await;
            return Err(LoginFailure::Wrong);
        };
        drop(turn);
        self.bans.succeeded(peer);
        let (cookie, csrf) = (random_token(), random_token());
        {
            let now = Instant::now();
            let mut sessions = lock(&self.sessions);
            sessions.retain(|_, s| {
                now.duration_since(s.seen) <= IDLE && now.duration_since(s.created) <= LONGEST
            });
            // A user past their share makes room from their own sessions: a
            // read-only login repeated cannot push out an admin's.
            let theirs = sessions.values().filter(|s| s.name == user.name).count();
            let crowded = theirs >= MAX_SESSIONS_PER_USER;
            if (crowded || sessions.len() >= MAX_SESSIONS)
                && let Some(oldest) = sessions
                    .iter()
                    .filter(|(_, s)| !crowded || s.name == user.name)
                    .min_by_key(|(_, s)| s.created)
                    .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
            sessions.insert(
                digest(&cookie),
                ConsoleSession {
                    name: user.name.clone(),
                    role: user.role,
                    csrf: csrf.clone(),
                    created: now,
                    seen: now,
                },
            );
        }
        if let Some(fleet) = &self.fleet {
            let row = crate::cluster::console::Row {
                name: user.name.clone(),
                role: role_name(user.role).to_string(),
                csrf: csrf.clone(),
            };
            let shared = crate::cluster::console::insert(
                fleet,
                &digest(&cookie),
                &row,
                MAX_SESSIONS_PER_USER,
                MAX_SESSIONS,
                IDLE,
                LONGEST,
            )
            .await;
            if let Err(e) = shared {
                tracing::warn!(user = name, error = %e, "console session not shared with the cluster: it works at this node only");
            }
        }
        tracing::info!(user = name, %peer, "console login");
        let caller = Caller {
            name: user.name.clone(),
            role: user.role,
            csrf: Some(csrf),
        };
        Ok((cookie, caller))
    }

    pub async fn logout(&self, headers: &http::HeaderMap) {
        if let Some(cookie) = cookie(headers, COOKIE) {
            let key = digest(&cookie);
            lock(&self.sessions).remove(&key);
            if let Some(fleet) = &self.fleet
                && let Err(e) = crate::cluster::console::remove(fleet, &key).await
            {
                tracing::warn!(error = %e, "console logout: the cluster's database cannot be reached; the session ends there when it idles out");
            }
        }
    }

    /// The `Set-Cookie` of a session (or, with `None`, of its end).
    pub fn set_cookie(&self, value: Option<&str>) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        match value {
            Some(v) => format!(
                "{COOKIE}={v}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                LONGEST.as_secs()
            ),
            None => format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
        }
    }
}

/// A role as the fleet's table holds it.
fn role_name(role: AdminRole) -> &'static str {
    match role {
        AdminRole::Admin => "admin",
        AdminRole::ReadOnly => "read-only",
    }
}

fn role_named(name: &str) -> Option<AdminRole> {
    [AdminRole::Admin, AdminRole::ReadOnly]
        .into_iter()
        .find(|r| role_name(*r) == name)
}

/// A cookie's value from the request's `Cookie` headers.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_known_by_its_hash_only() {
        let (token, hash) = new_token();
        assert!(token.starts_with("bgt_") && token.len() > 40);
        assert_eq!(hash, format!("sha256:{}", digest(&token)));
        let config = AdminConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            protect_metrics: false,
            users: Vec::new(),
            tokens: vec![AdminUser {
                name: "bot".into(),
                hash,
                role: AdminRole::ReadOnly,
            }],
        };
        let bans = Bans::new(&crate::config::SecurityConfig {
            ban_threshold: 5,
            ban_window: Duration::from_secs(60),
            ban_time: Duration::from_secs(60),
        });
        let access = Access::new(&config, bans, None).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        let caller = futures::executor::block_on(access.caller(&headers)).unwrap();
        assert_eq!(
            (caller.name.as_str(), caller.role),
            ("bot", AdminRole::ReadOnly)
        );
        headers.insert("authorization", "Bearer bgt_wrong".parse().unwrap());
        assert!(futures::executor::block_on(access.caller(&headers)).is_none());
    }
}
