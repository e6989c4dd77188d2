//! USER/PASS for one FTP connection: the same users, address rules and
//! session slots as SFTP, through libunftp's authenticator hooks.
//!
//! libunftp asks an [`Authenticator`] for a yes or no, then a
//! [`UserDetailProvider`] for the user. One [`Login`] per connection plays
//! both parts, so the user it checked, with the connection's slot and span,
//! is the user the session gets.

use crate::auth::{Admitted, Attempt, PreLogin};
use crate::live::SessionEntry;
use crate::policy::SessionVfs;
use crate::session::{Connection, SessionContext};
use async_trait::async_trait;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};

/// How long a failed login waits before its answer: a password guesser on
/// one connection gets one try a second, as over SSH.
const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// A logged-in FTP user: their tree and the session's span.
pub struct FtpUser {
    pub vfs: SessionVfs,
    pub span: tracing::Span,
    /// Cancelled at shutdown past the grace period, or when an operator
    /// ends the session: a transfer still running ends (libunftp runs
    /// transfers in tasks of its own).
    pub ending: tokio_util::sync::CancellationToken,
    /// The session's place among the live ones, for as long as it lasts.
    pub _live: SessionEntry,
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.vfs.user())
    }
}

impl fmt::Debug for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpUser")
            .field("name", &self.vfs.user())
            .finish_non_exhaustive()
    }
}

impl UserDetail for FtpUser {}

/// The login state of one connection.
pub struct Login {
    shared: Arc<SessionContext>,
    connection: Connection,
    peer: SocketAddr,
    /// `ftp` or `ftps-implicit`, as the session's span says.
    protocol: &'static str,
    span: tracing::Span,
    /// The connection's place among those not logged in, then its session slot.
    admitted: Mutex<Admitted>,
    /// The user checked by `authenticate`, waiting for `provide_user_detail`.
    checked: Mutex<Option<FtpUser>>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Login {
    pub fn new(
        shared: Arc<SessionContext>,
        connection: Connection,
        protocol: &'static str,
        span: tracing::Span,
        pending: PreLogin,
    ) -> Self {
        Login {
            shared,
            peer: connection.peer,
            connection,
            protocol,
            span,
            admitted: Mutex::new(Admitted::Pending(pending)),
            checked: Mutex::new(None),
        }
    }

    /// FTP has one field: a user with a second factor sends the password
    /// and the 6-digit TOTP code after it. A text that ends in 6 digits is
    /// tried as both first, then as a password alone.
    async fn password(&self, name: &str, attempt: Attempt, text: &str) -> crate::session::Checked {
        let split = text.len().checked_sub(6).filter(|&at| {
            at > 0 && text.is_char_boundary(at) && text[at..].bytes().all(|b| b.is_ascii_digit())
        });
        if let Some(at) = split {
            let (password, code) = text.split_at(at);
            let checked = self
                .shared
                .password_and_code(name, attempt, password, Some(code))
                .await;
            // Else tried again whole, whatever failed: an unknown name takes
            // as long as a wrong password.
            if checked.identified().is_some() || checked.second_factor_failed() {
                return checked;
            }
        }
        self.shared
            .password_and_code(name, attempt, text, None)
            .await
    }

    async fn check(&self, username: &str, creds: &Credentials) -> Option<FtpUser> {
        let attempt = Attempt {
            peer: self.peer.ip(),
            protocol: self.protocol,
        };
        let text = creds.password.as_deref().unwrap_or("");
        let checked = self.password(username, attempt, text).await;
        let logged_in = {
            let mut admitted = crate::base::lock(&self.admitted);
            self.shared.conclude_login(
                &mut admitted,
                &self.connection,
                &self.span,
                username,
                "password",
                checked,
            )?
        };
        let vfs = self
            .shared
            .user_vfs(&logged_in.user, &logged_in.live.0, &self.span)
            .await?;
        Some(FtpUser {
            vfs,
            span: self.span.clone(),
            ending: self.connection.end.clone(),
            _live: logged_in.live,
        })
    }
}

#[async_trait]
impl Authenticator for Login {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let started = tokio::time::Instant::now();
        match self.check(username, creds).await {
            Some(user) => {
                *crate::base::lock(&self.checked) = Some(user);
                Ok(Principal {
                    username: username.to_string(),
                })
            }
            None => {
                // At a fixed time after the attempt began, whatever failed.
                tokio::time::sleep_until(started + FAILURE_DELAY).await;
                Err(AuthenticationError::BadPassword)
            }
        }
    }
}

#[async_trait]
impl UserDetailProvider for Login {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        crate::base::lock(&self.checked)
            .take()
            .ok_or_else(|| UserDetailError::UserNotFound {
                username: principal.username.clone(),
            })
    }
}
