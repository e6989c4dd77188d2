//! The admin listener (`[admin].listen`): `GET /healthz` for load
//! balancers, `GET /metrics` for Prometheus (both open unless
//! `protect_metrics`), and, once `[[admin.users]]` or `[[admin.tokens]]`
//! exist, the operator's console (`/`) and its REST API (`/api/v1`).
//! With `tls_cert`/`tls_key`, all of it over HTTPS.
//!
//! * [`health`]: the background prober behind `/healthz`;
//! * [`access`]: console logins, cookie sessions, CSRF, tokens, roles;
//! * [`api`]: the `/api/v1` endpoints, documented by `openapi.json`;
//! * `console/`: the page, its script and style, compiled in.

pub mod access;
pub mod api;
mod health;
mod shares;

pub use api::{Console, Reload};
pub use health::{Health, PROBE_EVERY};

use crate::listen::http::{HttpListener, READ_TIMEOUT, secured};
use crate::listen::{ConnectionCap, Tasks};
use axum::extract::ConnectInfo;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// The largest request body read (a login, a run's options).
const MAX_BODY: usize = 16 << 10;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// What the listener answers with.
pub struct Admin {
    pub health: Health,
    /// `None`: no admin user or token is configured.
    pub console: Option<Console>,
    pub protect_metrics: bool,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The admin listener, bound.
pub struct AdminListener {
    listener: HttpListener,
    admin: Arc<Admin>,
}

impl AdminListener {
    pub async fn bind(addr: SocketAddr, admin: Admin, tasks: Tasks) -> anyhow::Result<Self> {
        let cap = ConnectionCap::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE);
        let refused = admin.metrics.admin_refused.clone();
        let listener =
            HttpListener::bind(addr, "admin", admin.tls.clone(), cap, refused, tasks).await?;
        let scheme = listener.scheme();
        let local = listener.local_addr()?;
        match admin.console {
            Some(_) => {
                tracing::info!(listen = %local, "admin endpoint listening: console at {scheme}://{local}/, API at /api/v1, /healthz, /metrics")
            }
            None => {
                tracing::info!(listen = %local, "admin endpoint listening (/healthz, /metrics); the console and /api/v1 are off until [[admin.users]] (a password from `bucketgate hash-password`) or [[admin.tokens]] (from `bucketgate admin-token`) are configured")
            }
        }
        Ok(AdminListener {
            listener,
            admin: Arc::new(admin),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers until `stop` completes; then the connections still open
    /// finish the request in progress and close.
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        let admin = self.admin;
        let tls = admin.tls.is_some();
        let router = axum::Router::new().fallback(
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: axum::extract::Request| {
                let admin = admin.clone();
                async move { admin.answer(peer, req).await.map(axum::body::Body::new) }
            },
        );
        self.listener.serve(secured(router, tls), stop).await;
    }
}

/// The admin listener's connections at once, in all and from one source:
/// 1500 slow clients would otherwise hold 27 KiB each outside the memory
/// budget, and a file descriptor each.
pub const MAX_CONNECTIONS: usize = 256;
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 64;

impl Admin {
    async fn answer(
        &self,
        peer: SocketAddr,
        req: Request<axum::body::Body>,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let mut response = match (&parts.method, path.as_str()) {
            (&Method::GET, "/healthz") => {
                let (status, body) = self.health.report();
                plain(status, "application/json", body)
            }
            (&Method::GET, "/metrics") => self.metrics(&parts.headers).await,
            (_, p) if p.starts_with("/api/v1/") => {
                let read = tokio::time::timeout(READ_TIMEOUT, Limited::new(body, MAX_BODY).collect());
                let body = match read.await {
                    Ok(Ok(b)) => b.to_bytes(),
                    Err(_) => {
                        return json(api::error(
                            StatusCode::REQUEST_TIMEOUT,
                            format!("the request body did not arrive within {}s", READ_TIMEOUT.as_secs()),
                        ));
                    }
                    Ok(Err(_)) => {
                        return json(api::error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("a request body is at most {MAX_BODY} bytes"),
                        ));
                    }
                };
                match &self.console {
                    None => json(api::error(StatusCode::NOT_FOUND, "the console and API are off: configure [[admin.users]] or [[admin.tokens]]")),
                    Some(console) => {
                        let call = api::Call {
                            method: &parts.method,
                            segments: p["/api/v1/".len()..].split('/').map(decode).collect(),
                            query: parts.uri.query().map(query).unwrap_or_default(),
                            headers: &parts.headers,
                            body: &body,
                            peer: peer.ip(),
                        };
                        json(console.answer(call).await)
                    }
                }
            }
            (&Method::GET, "/" | "/console.js" | "/console.css") if self.console.is_some() => {
                let (kind, text) = match path.as_str() {
                    "/console.js" => ("text/javascript; charset=utf-8", SCRIPT),
                    "/console.css" => ("text/css; charset=utf-8", STYLE),
                    _ => ("text/html; charset=utf-8", INDEX),
                };
                plain(StatusCode::OK, kind, text.to_string())
            }
            _ => plain(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                match self.console {
                    Some(_) => "GET / (the console), /api/v1/…, /healthz or /metrics\n".into(),
                    None => "GET /healthz or /metrics; the console is off until [[admin.users]] or [[admin.tokens]] are configured\n".into(),
                },
            ),
        };
        if path.starts_with("/api/") {
            response
                .headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-store"));
        }
        response
    }

    async fn metrics(&self, headers: &http::HeaderMap) -> Response<Full<Bytes>> {
        let allowed = !self.protect_metrics
            || match &self.console {
                Some(c) => c.access.caller(headers).await.is_some(),
                None => false,
            };
        match allowed {
            true => plain(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.render(),
            ),
            false => plain(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                "protect_metrics is on: send Authorization: Bearer <token>\n".into(),
            ),
        }
    }
}

fn plain(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn json(answer: api::Answer) -> Response<Full<Bytes>> {
    let mut response = plain(answer.status, "application/json", answer.body.to_string());
    if answer.status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    if let Some(cookie) = answer.cookie
        && let Ok(v) = HeaderValue::from_str(&cookie)
    {
        response.headers_mut().insert("set-cookie", v);
    }
    response
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn query(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
