//! What a session of either frontend needs from the gateway, and the steps
//! every session goes through whatever its protocol: screening a new
//! connection (PROXY header, bans, the pre-login caps), its span, its end
//! from outside (login deadline, shutdown), and the outcome of its login.

use crate::auth::{
    Admitted, Attempt, Identified, LimitError, LoginError, NotLoggedIn, PreLogin, SessionLimits,
    Turn, Users,
};
use crate::config::EventKind;
use crate::config::UserConfig;
use crate::events::{Event, Events, Origin};
use crate::live::{Live, LiveSession, SessionEntry};
use crate::metrics::Metrics;
use crate::policy::SessionVfs;
use crate::proxy::ProxyRules;
use crate::vfs::{Storage, UserVfs};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The span every line of one session is logged in: the user is filled in
/// at login.
pub fn span(protocol: &'static str, peer: SocketAddr) -> tracing::Span {
    tracing::info_span!("session", protocol, %peer, user = tracing::field::Empty)
}

/// What every session of every frontend shares: the users, the storage,
/// the session slots, and the signal that ends sessions at shutdown.
pub struct SessionContext {
    pub users: Users,
    pub storage: Storage,
    pub limits: SessionLimits,
    /// Where events go (`[[webhooks]]`).
    pub events: Arc<Events>,
    /// Cancelled when the shutdown grace period is over: sessions still
    /// open end, and drop (abort) their unfinished uploads.
    pub ending: CancellationToken,
    /// The sessions of now and the latest file operations (the console).
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// Quota usage, shared with the sync jobs.
    pub quotas: Arc<crate::quota::Quotas>,
    /// The gateway's rates, and each user's on this node.
    pub bandwidth: crate::policy::bandwidth::Bandwidths,
    /// Where the connections run: shutdown waits for them to end.
    pub tasks: crate::listen::Tasks,
}

/// A connection past its screening: the client's address, and what ends
/// it from outside (shutdown, or an operator), a child of `ending`.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    pub end: CancellationToken,
}

/// What a login's check found, holding its source's turn (a password
/// check's) until [`SessionContext::conclude_login`] has counted it.
pub struct Checked {
    result: Result<Identified, LoginError>,
    _turn: Option<Turn>,
}

impl Checked {
    /// Who the check found, if it found someone.
    pub fn identified(&self) -> Option<&Identified> {
        self.result.as_ref().ok()
    }

    /// Whether the password was right and the second factor wrong.
    pub fn second_factor_failed(&self) -> bool {
        matches!(self.result, Err(LoginError::SecondFactor(_)))
    }
}

impl From<Result<Identified, LoginError>> for Checked {
    fn from(result: Result<Identified, LoginError>) -> Self {
        Checked {
            result,
            _turn: None,
        }
    }
}

/// A session that logged in: its user, and its place among the live
/// sessions, held until it ends.
pub struct LoggedIn {
    pub user: Arc<UserConfig>,
    pub live: SessionEntry,
}

impl SessionContext {
    /// A logged-in user's files as every frontend serves them: the home
    /// prepared, and every layer of policy around it (see
    /// [`crate::policy`]). `None` (logged in `span`) if the home cannot be
    /// prepared.
    pub async fn user_vfs(
        &self,
        user: &UserConfig,
        live: &Arc<LiveSession>,
        span: &tracing::Span,
    ) -> Option<SessionVfs> {
        self.quotas.track_user(user, false);
        let vfs = match UserVfs::for_user(user, &self.storage).await {
            Ok(vfs) => vfs,
            Err(e) => {
                let _enter = span.enter();
                tracing::error!(error = %e, "the user's home could not be prepared");
                return None;
            }
        };
        let origin = Origin {
            share: None,
            protocol: live.protocol,
            user: vfs.user().to_string(),
            ip: live.peer.ip(),
        };
        Some(SessionVfs::new(
            vfs,
            crate::policy::Governance {
                filters: &user.filters,
                max_file_size: user.limits.max_file_size,
                quotas: self.quotas.clone(),
                rates: self.bandwidth.for_user(&user.name, user.limits.bandwidth),
            },
            self.events.clone(),
            origin,
            live.clone(),
            &self.metrics,
        ))
    }

    /// What both frontends do first with a new connection, in its own
    /// task: the client's real address (PROXY protocol), then the ban check
    /// and its place among the connections not logged in yet. `None`: the
    /// connection is refused (logged).
    pub async fn screen(
        &self,
        proxy: &ProxyRules,
        socket: &mut TcpStream,
        peer: SocketAddr,
        protocol: &'static str,
    ) -> Option<(Connection, PreLogin)> {
        let client = match proxy.client_address(socket, peer).await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(%peer, protocol, reason = %e, "connection refused");
                return None;
            }
        };
        match self.limits.connection(client.ip(), protocol) {
            Ok(slot) => Some((
                Connection {
                    peer: client,
                    end: self.ending.child_token(),
                },
                slot,
            )),
            // The ban was logged when it began; of its refusals, the first
            // (the rest are counted in `banned_connections`). A source past
            // its connections not logged in is the client's doing.
            Err(e @ LimitError::Banned(_)) => {
                if self.limits.bans().first_refusal(client.ip()) {
                    tracing::info!(peer = %client, protocol, reason = %e, "connection refused; further refusals of this ban are counted, not logged");
                }
                None
            }
            Err(e) => {
                tracing::info!(peer = %client, protocol, reason = %e, "connection refused");
                None
            }
        }
    }
}

/// Why a connection's task must end it from outside the protocol.
#[derive(Debug, Clone, Copy)]
pub enum Close {
    /// Not logged in by the deadline, or closed to make room (counted
    /// toward its source's ban where that is the source's doing).
    NotLoggedIn(NotLoggedIn),
    /// The shutdown grace period is over.
    Shutdown,
    /// An operator ended the session (the console or `/api/v1`).
    Ended,
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::NotLoggedIn(reason) => reason.fmt(f),
            Close::Shutdown => f.write_str("the server is shutting down"),
            Close::Ended => f.write_str("the session was ended by an operator"),
        }
    }
}

impl SessionContext {
    /// Resolves when a connection admitted as `pending` must be closed by
    /// its task: login deadline, eviction, or shutdown. Logs why, and
    /// counts a missed deadline toward the source's ban.
    pub fn close_signal(
        &self,
        connection: &Connection,
        pending: &PreLogin,
    ) -> impl Future<Output = Close> + Send + 'static {
        let (login, ending, limits) = (pending.watch(), self.ending.clone(), self.limits.clone());
        let (peer, end) = (connection.peer, connection.end.clone());
        let events = self.events.clone();
        async move {
            let close = tokio::select! {
                reason = login.closed() => Close::NotLoggedIn(reason),
                _ = end.cancelled() => match ending.is_cancelled() {
                    true => Close::Shutdown,
                    false => Close::Ended,
                },
            };
            match close {
                Close::NotLoggedIn(reason) => {
                    tracing::info!(%peer, %reason, "connection closed before login");
                    if limits.closed_before_login(peer.ip(), reason) {
                        let _ = events.emit(ban(peer.ip(), None));
                    }
                }
                Close::Shutdown => tracing::info!(%peer, "session ended by shutdown"),
                Close::Ended => tracing::info!(%peer, "session ended by an operator"),
            }
            close
        }
    }
}

impl SessionContext {
    /// A password login of any frontend, in its source's turn: a burst of
    /// guesses from one source is checked at most `ban_threshold` times and
    /// two at once (see [`crate::auth::Bans::turn`]).
    pub async fn password(&self, name: &str, attempt: Attempt, password: &str) -> Checked {
        let turn = match self.limits.bans().turn(attempt.peer).await {
            Ok(turn) => turn,
            Err(e) => return Err(LoginError::NoTurn(e)).into(),
        };
        Checked {
            result: self.users.password(name, attempt, password).await,
            _turn: Some(turn),
        }
    }

    /// A password login where the user's `auth_methods` may ask for the
    /// TOTP code after the password (FTP appends it to the password, the
    /// web client asks for it): `code` must be there then, and only then.
    pub async fn password_and_code(
        &self,
        name: &str,
        attempt: Attempt,
        password: &str,
        code: Option<&str>,
    ) -> Checked {
        use crate::config::{Method, Progress};
        let mut checked = self.password(name, attempt, password).await;
        let Some(user) = checked.identified().map(|i| i.user.clone()) else {
            return checked;
        };
        let refused = match (user.auth_methods.progress(&[Method::Password]), code) {
            (Progress::Done, None) => return checked,
            (Progress::Next(next), Some(code)) if next.contains(&Method::KeyboardInteractive) => {
                match self.users.second_factor(&user, code) {
                    Ok(()) => return checked,
                    Err(e) => e,
                }
            }
            (Progress::Next(next), None) if next.contains(&Method::KeyboardInteractive) => {
                LoginError::SecondFactor("the TOTP code is needed after the password".into())
            }
            // A code the user has no use for: not this password after all.
            (Progress::Done, Some(_)) => LoginError::WrongPassword,
            _ => LoginError::Refused("auth_methods allows no password login here".into()),
        };
        checked.result = Err(refused);
        checked
    }

    fn login_result(&self, result: &'static str) {
        self.metrics
            .logins
            .get_or_create(&crate::metrics::ResultLabel { result })
            .inc();
    }

    /// Ends a login check the same way for every frontend: the outcome goes
    /// to the log inside the session `span`, to the login metrics and to
    /// the source's failure count; an accepted user takes a session slot
    /// and names the span. `None` means refuse.
    pub fn conclude_login(
        &self,
        admitted: &mut Admitted,
        connection: &Connection,
        span: &tracing::Span,
        name: &str,
        method: &str,
        checked: Checked,
    ) -> Option<LoggedIn> {
        let _enter = span.enter();
        let Some((peer, protocol)) = admitted.peer_and_protocol() else {
            tracing::warn!(
                user = name,
                "a second login on a logged-in connection refused"
            );
            return None;
        };
        // Where this login's events come from, as the name was given.
        let origin = |user: &str| Origin {
            share: None,
            protocol,
            user: user.to_string(),
            ip: peer,
        };
        let identified = match checked.result {
            Ok(identified) => identified,
            Err(e) => {
                self.login_result("failed");
                match e {
                    LoginError::Unavailable { .. } | LoginError::BadDefinition { .. } => {
                        tracing::error!(user = name, method, reason = %e, "login failed")
                    }
                    LoginError::NoTurn(_) => {
                        tracing::info!(user = name, method, reason = %e, "login refused unchecked")
                    }
                    _ => tracing::warn!(user = name, method, reason = %e, "login failed"),
                }
                let failed = origin(name).event(EventKind::LoginFailed);
                let _ = self.events.emit(failed.failed(Some(e.to_string())));
                if e.counts_toward_ban() && self.limits.login_failed(peer) {
                    let _ = self.events.emit(ban(peer, Some(protocol)));
                }
                return None;
            }
        };
        let user = identified.user;
        // The login is told for sure: room for its event first, or no login.
        let told = match self
            .events
            .reserve(&origin(&user.name).event(EventKind::Login))
        {
            Ok(room) => room,
            Err(e) => {
                self.login_result("refused");
                tracing::warn!(user = name, reason = %e, "login refused");
                return None;
            }
        };
        if let Err(e) = self.limits.log_in(admitted, &user) {
            self.login_result("refused");
            tracing::warn!(user = name, reason = %e, "login refused");
            return None;
        }
        self.login_result("ok");
        span.record("user", user.name.as_str());
        let source = identified.source.name();
        let (key_id, serial) = match &identified.certificate {
            Some((id, serial)) => (Some(id.as_str()), Some(*serial)),
            None => (None, None),
        };
        tracing::info!(
            method,
            source,
            cached = identified.cached,
            key_id,
            serial,
            "logged in"
        );
        let _ = told.emit(origin(&user.name).event(EventKind::Login));
        let live = self.live.register(
            &user.name,
            protocol,
            connection.peer,
            connection.end.clone(),
        );
        Some(LoggedIn { user, live })
    }
}

/// The event of a source banned now.
fn ban(ip: std::net::IpAddr, protocol: Option<&'static str>) -> Event {
    Event {
        protocol,
        ip: Some(ip.to_string()),
        ..Event::new(EventKind::Ban)
    }
}
