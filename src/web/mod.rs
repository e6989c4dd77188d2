//! The web frontend (`[web]`): people without an SFTP client log in with
//! their password, browse, download, upload (tus, resumable) and manage
//! their files in a page the gateway serves itself. It is a third
//! frontend over the same [`SessionVfs`](crate::policy::SessionVfs) and
//! policy layers as SFTP and FTP: same identities, permissions, audit,
//! events, quotas and atomic uploads.
//!
//! * [`sessions`]: logins, cookies, CSRF;
//! * [`files`]: the JSON file API and downloads;
//! * [`tus`]: resumable uploads (tus 1.0);
//! * [`pages`]: the page and its assets, compiled in.

pub mod files;
pub mod pages;
pub mod sessions;
pub mod shares;
pub mod tus;
pub mod zip;

use crate::config::WebConfig;
use crate::listen::http::{HttpListener, cookie, secured};
use crate::listen::{ConnectionCap, Tasks};
use crate::session::SessionContext;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use ipnet::IpNet;
use serde_json::json;
use sessions::{Refused, Sessions, WebSession};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The web listener's connections at once, in all and from one source (a
/// browser opens six; an office behind one address, many browsers).
pub const MAX_CONNECTIONS: usize = 4096;
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 256;

/// The largest JSON request body (a login, a rename).
const MAX_JSON: usize = 16 << 10;

/// What every handler reads.
pub struct Web {
    pub shared: Arc<SessionContext>,
    pub config: WebConfig,
    pub sessions: Sessions,
    pub uploads: tus::Uploads,
    pub shares: shares::Shares,
    /// Where people reach the gateway: `public_url`, or the listener's.
    pub base_url: String,
}

type Shared = State<Arc<Web>>;

/// An error as the page and scripts get it: a status and `{"error"}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, axum::Json(json!({ "error": self.1 }))).into_response();
        response
            .headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        response
    }
}

impl From<crate::base::FsError> for ApiError {
    fn from(e: crate::base::FsError) -> Self {
        use crate::base::FsError::*;
        let status = match &e {
            NotFound => StatusCode::NOT_FOUND,
            PermissionDenied(_) => StatusCode::FORBIDDEN,
            AlreadyExists | NotEmpty | Changed(_) => StatusCode::CONFLICT,
            Unsupported(_) | InvalidName(_) | Aborted(_) => StatusCode::BAD_REQUEST,
            QuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Storage { .. } => StatusCode::BAD_GATEWAY,
        };
        ApiError(status, e.client_message())
    }
}

/// A time as HTTP headers write it (`Last-Modified`, `Upload-Expires`).
pub fn http_date(t: chrono::DateTime<chrono::Utc>) -> HeaderValue {
    HeaderValue::from_str(&t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .expect("a date is a valid header")
}

/// The web listener, bound.
pub struct WebListener {
    listener: HttpListener,
    web: Arc<Web>,
}

impl WebListener {
    pub async fn bind(
        config: &WebConfig,
        certificates: &crate::base::Certificates,
        shared: Arc<SessionContext>,
        tasks: Tasks,
        shared_state_dir: std::path::PathBuf,
        fleet: Option<crate::cluster::Cluster>,
    ) -> anyhow::Result<Self> {
        let tls = config
            .tls
            .as_ref()
            .map(|(cert, key)| certificates.server_config("web", cert, key))
            .transpose()?;
        let cap = ConnectionCap::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE);
        let refused = shared.metrics.admin_refused.clone();
        let listener = HttpListener::bind(config.listen, "web", tls, cap, refused, tasks).await?;
        let local = listener.local_addr()?;
        tracing::info!(listen = %local, "web client listening at {}://{local}/", listener.scheme());
        let base_url = match &config.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => format!("{}://{local}", listener.scheme()),
        };
        let web = Arc::new(Web {
            uploads: tus::Uploads::new(
                config.upload_expiry,
                tus::records::Records::open(&shared_state_dir, fleet.clone())?,
                shared.storage.clone(),
            ),
            shares: shares::Shares::open(&shared_state_dir, fleet)?,
            base_url,
            sessions: Sessions::new(config.session_time),
            config: config.clone(),
            shared,
        });
        Ok(WebListener { listener, web })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What the admin API's share links use.
    pub fn web(&self) -> Arc<Web> {
        self.web.clone()
    }

    /// Answers until `stop` completes; sessions and unfinished uploads past
    /// their time are dropped meanwhile, and idle uploads' memory given back.
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        let web = self.web.clone();
        let sweeper = tokio::spawn(async move {
            let mut every = tokio::time::interval(tus::HOLD_IDLE / 3);
            loop {
                every.tick().await;
                web.sessions.sweep();
                web.uploads.sweep().await;
            }
        });
        let tls = self.web.config.tls.is_some();
        self.listener
            .serve(secured(router(self.web), tls), stop)
            .await;
        sweeper.abort();
    }
}

/// Runs a request of a logged-in browser inside its session's span, so
/// that what it does is logged (and audited) as that session's.
async fn in_session(
    State(web): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use tracing::Instrument;
    let found = cookie(req.headers(), sessions::COOKIE).and_then(|t| web.sessions.find(&t));
    match found {
        Some(session) => next.run(req).instrument(session.span.clone()).await,
        None => next.run(req).await,
    }
}

fn router(web: Arc<Web>) -> Router {
    let api = Router::new()
        .route("/login", post(log_in))
        .route("/logout", post(log_out))
        .route("/me", get(me))
        .merge(files::routes())
        .merge(zip::routes())
        .merge(shares::mine::routes())
        .layer(DefaultBodyLimit::max(MAX_JSON));
    let in_session = axum::middleware::from_fn_with_state(web.clone(), in_session);
    Router::new()
        .nest("/api", api)
        .merge(tus::routes())
        .layer(in_session)
        .merge(shares::visit::routes())
        .merge(pages::routes())
        .with_state(web)
}

impl Web {
    /// The client's address: the peer's, or with a trusted proxy in front
    /// (`proxy_allowed`), the last address of `X-Forwarded-For` that is not
    /// one of the proxies.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        let trusted = |ip: &IpAddr| {
            self.config
                .proxy_allowed
                .iter()
                .any(|n: &IpNet| n.contains(ip))
        };
        if !trusted(&peer.ip()) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        match forwarded.into_iter().rev().find(|ip| !trusted(ip)) {
            Some(ip) => SocketAddr::new(ip, 0),
            None => peer,
        }
    }

    /// The session a request's cookie names; a request that changes
    /// anything must also carry its CSRF token (`X-CSRF-Token`).
    pub fn session(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Arc<WebSession>, ApiError> {
        let session = cookie(headers, sessions::COOKIE)
            .and_then(|token| self.sessions.find(&token))
            .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "log in first".into()))?;
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
            if sent != Some(session.csrf.as_str()) {
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    "the X-CSRF-Token header does not match this session's".into(),
                ));
            }
        }
        Ok(session)
    }

    /// Whether cookies may only travel over HTTPS: with TLS here or at
    /// the proxy.
    pub fn secure_cookies(&self) -> bool {
        self.config.tls.is_some() || self.behind_https()
    }

    fn set_cookie(&self, value: Option<&str>) -> String {
        let secure = if self.secure_cookies() {
            "; Secure"
        } else {
            ""
        };
        let name = sessions::COOKIE;
        match value {
            Some(v) => format!(
                "{name}={v}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                self.sessions.lifetime().as_secs()
            ),
            None => format!("{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
        }
    }

    /// Whether people reach the gateway over HTTPS through a proxy.
    fn behind_https(&self) -> bool {
        self.config
            .public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
    }
}

#[derive(serde::Deserialize)]
struct Credentials {
    user: String,
    password: String,
    /// The TOTP code, for a user with a second factor.
    #[serde(default)]
    code: Option<String>,
}

/// What the page needs to know of its user.
fn whoami(session: &WebSession) -> serde_json::Value {
    json!({
        "user": session.user.name,
        "csrf": session.csrf,
        "permissions": session.permissions().names(),
    })
}

async fn log_in(
    State(web): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Json(c): axum::Json<Credentials>,
) -> Result<Response, ApiError> {
    let client = web.client(peer, &headers);
    match web
        .sessions
        .log_in(
            &web.shared,
            client,
            &c.user,
            &c.password,
            c.code.as_deref().filter(|c| !c.is_empty()),
        )
        .await
    {
        Ok((token, session)) => {
            let mut response = axum::Json(whoami(&session)).into_response();
            if let Ok(v) = HeaderValue::from_str(&web.set_cookie(Some(&token))) {
                response.headers_mut().insert("set-cookie", v);
            }
            Ok(response)
        }
        Err(Refused::Wrong) => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password".into(),
        )),
        Err(Refused::Code) => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "enter the current code of your authenticator app".into(),
        )),
        Err(Refused::Limited(why)) => Err(ApiError(StatusCode::TOO_MANY_REQUESTS, why)),
        Err(Refused::Unavailable) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "your files cannot be reached now; the gateway's log has the details".into(),
        )),
    }
}

async fn log_out(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    web.session(&method, &headers)?;
    if let Some(token) = cookie(&headers, sessions::COOKIE) {
        web.sessions.log_out(&token);
    }
    let mut response = axum::Json(json!({ "logged_out": true })).into_response();
    if let Ok(v) = HeaderValue::from_str(&web.set_cookie(None)) {
        response.headers_mut().insert("set-cookie", v);
    }
    Ok(response)
}

async fn me(State(web): Shared, method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    let session = web.session(&method, &headers)?;
    let mut response = axum::Json(whoami(&session)).into_response();
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(response)
}
