//! Web logins: a password checked as SFTP and FTP check it (same sources,
//! same ban counting, same timing), then a session held in a cookie.
//!
//! A web session is a gateway session like any other: it takes a session
//! slot, shows on the console, and its files are the user's
//! [`SessionVfs`] with every policy layer, built once at login. Only the
//! cookie's digest is kept, and every change must carry the session's
//! CSRF token.

use crate::auth::{Admitted, Attempt};
use crate::base::{digest, lock, random_token};
use crate::config::{Permissions, UserConfig};
use crate::live::SessionEntry;
use crate::policy::SessionVfs;
use crate::session::{Connection, SessionContext};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const COOKIE: &str = "bg_web";

/// How long a failed login waits before its answer, from its start: the
/// same whatever failed, as over FTP.
const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// One logged-in browser (or script).
pub struct WebSession {
    pub user: Arc<UserConfig>,
    pub vfs: Arc<SessionVfs>,
    /// What every request that changes something must send back.
    pub csrf: String,
    /// The span its operations are logged in.
    pub span: tracing::Span,
    expires: Instant,
    /// Cancelled when an operator ends the session, or at shutdown.
    end: CancellationToken,
    _live: SessionEntry,
    /// Its session slot, held until the session ends.
    _slot: Admitted,
}

impl WebSession {
    pub fn permissions(&self) -> Permissions {
        self.user.permissions
    }

    fn alive(&self, now: Instant) -> bool {
        now < self.expires && !self.end.is_cancelled()
    }

    /// Ends when the session does: what a transfer of it selects on.
    pub fn ended(&self) -> &CancellationToken {
        &self.end
    }
}

/// Why a login was refused.
#[derive(Debug)]
pub enum Refused {
    /// Wrong name or password, or a user who may not log in from here.
    Wrong,
    /// The password was right, the TOTP code missing or wrong.
    Code,
    /// The source is banned, or has too many logins in progress.
    Limited(String),
    /// The user's home could not be prepared (logged).
    Unavailable,
}

/// The sessions of this node, by cookie digest.
pub struct Sessions {
    by_digest: Mutex<HashMap<String, Arc<WebSession>>>,
    lifetime: Duration,
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Self {
        Sessions {
            by_digest: Mutex::default(),
            lifetime,
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Checks `name` and `password` from `peer` and, if they are right,
    /// opens a session: its cookie value and the session.
    pub async fn log_in(
        &self,
        shared: &SessionContext,
        peer: SocketAddr,
        name: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<(String, Arc<WebSession>), Refused> {
        let started = tokio::time::Instant::now();
        let pending = shared
            .limits
            .connection(peer.ip(), "https")
            .map_err(|e| Refused::Limited(e.to_string()))?;
        let connection = Connection {
            peer,
            end: shared.ending.child_token(),
        };
        let span = crate::session::span("https", peer);
        let mut admitted = Admitted::Pending(pending);
        let attempt = Attempt {
            peer: peer.ip(),
            protocol: "https",
        };
        let checked = shared
            .password_and_code(name, attempt, password, code)
            .await;
        let code_failed = checked.second_factor_failed();
        let concluded =
            shared.conclude_login(&mut admitted, &connection, &span, name, "password", checked);
        let Some(logged_in) = concluded else {
            tokio::time::sleep_until(started + FAILURE_DELAY).await;
            return Err(match code_failed {
                true => Refused::Code,
                false => Refused::Wrong,
            });
        };
        let vfs = shared
            .user_vfs(&logged_in.user, &logged_in.live.0, &span)
            .await
            .ok_or(Refused::Unavailable)?;
        let session = Arc::new(WebSession {
            user: logged_in.user,
            vfs: Arc::new(vfs),
            csrf: random_token(),
            span,
            expires: Instant::now() + self.lifetime,
            end: connection.end,
            _live: logged_in.live,
            _slot: admitted,
        });
        let token = random_token();
        let mut sessions = lock(&self.by_digest);
        let now = Instant::now();
        sessions.retain(|_, s| s.alive(now));
        sessions.insert(digest(&token), session.clone());
        Ok((token, session))
    }

    /// The live session a cookie value names.
    pub fn find(&self, token: &str) -> Option<Arc<WebSession>> {
        let key = digest(token);
        let mut sessions = lock(&self.by_digest);
        let session = sessions.get(&key)?;
        if session.alive(Instant::now()) {
            return Some(session.clone());
        }
        // Ended: its slot and console entry go now, not at the next sweep.
        let ended = sessions.remove(&key);
        drop(sessions);
        if let Some(s) = ended {
            let _enter = s.span.enter();
            tracing::info!("web session ended");
        }
        None
    }

    pub fn log_out(&self, token: &str) {
        let ended = lock(&self.by_digest).remove(&digest(token));
        if let Some(s) = ended {
            let _enter = s.span.enter();
            tracing::info!("logged out");
        }
    }

    /// Drops the sessions past their time or ended from outside: their
    /// slots free and the console stops showing them.
    pub fn sweep(&self) {
        let now = Instant::now();
        lock(&self.by_digest).retain(|_, s| s.alive(now));
    }
}
