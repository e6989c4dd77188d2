//! The HTTP listeners (the admin endpoint, the web client): an axum
//! router served over TCP or TLS with one set of caps and timeouts, so a
//! slow or greedy client meets the same bounds on both.

use super::{ConnectionCap, Tasks};
use axum::Router;
use axum::extract::ConnectInfo;
use http::HeaderValue;
use prometheus_client::metrics::counter::Counter;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;

/// How long a client has to send a request's headers (an idle keep-alive
/// connection is waiting for them too), and a TLS handshake.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP listener, bound.
pub struct HttpListener {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cap: ConnectionCap,
    /// Connections refused for the cap.
    refused: Counter,
    tasks: Tasks,
    what: &'static str,
}

impl HttpListener {
    /// Binds `addr` for the `[table]` listener.
    pub async fn bind(
        addr: SocketAddr,
        table: &'static str,
        tls: Option<Arc<rustls::ServerConfig>>,
        cap: ConnectionCap,
        refused: Counter,
        tasks: Tasks,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("[{table}] listen = {addr}: {e}"))?;
        Ok(HttpListener {
            listener,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            cap,
            refused,
            tasks,
            what: table,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn scheme(&self) -> &'static str {
        match self.tls {
            Some(_) => "https",
            None => "http",
        }
    }

    /// Answers with `router` until `stop` completes; then the connections
    /// still open finish the request in progress and close. Each request
    /// carries its client's address as [`ConnectInfo`].
    pub async fn serve(self, router: Router, stop: impl Future<Output = ()>) {
        let closing = tokio_util::sync::CancellationToken::new();
        let (cap, tls, refused) = (self.cap, self.tls, self.refused);
        let serve = super::accept_until(
            &self.listener,
            self.what,
            &self.tasks,
            stop,
            |socket, peer| {
                let (router, tls, closing) = (router.clone(), tls.clone(), closing.clone());
                let admitted = cap.admit(peer);
                let refused = refused.clone();
                async move {
                    let Some(_admitted) = admitted else {
                        refused.inc();
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |mut req: http::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(ConnectInfo(peer));
                            router.clone().oneshot(req.map(axum::body::Body::new))
                        },
                    );
                    match tls {
                        None => serve_http(socket, service, closing).await,
                        Some(acceptor) => {
                            let handshake =
                                tokio::time::timeout(READ_TIMEOUT, acceptor.accept(socket));
                            if let Ok(Ok(stream)) = handshake.await {
                                serve_http(stream, service, closing).await;
                            }
                        }
                    }
                }
            },
        );
        serve.await;
        closing.cancel();
    }
}

/// Serves HTTP/1 on one connection until it closes, a header read
/// outlasts [`READ_TIMEOUT`], or `closing` (the listener stops).
async fn serve_http<IO, S>(io: IO, service: S, closing: tokio_util::sync::CancellationToken)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_buf_size(64 << 10);
    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(READ_TIMEOUT, conn).await;
        }
    }
}

/// The headers every answer of a page-serving listener carries: its
/// pages load their own script and style, nothing inline, nothing from
/// elsewhere, and are never framed; with TLS, browsers keep to HTTPS.
pub fn secured(router: Router, tls: bool) -> Router {
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            http::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    let router = router
        .layer(header("content-security-policy", CSP))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("referrer-policy", "no-referrer"));
    match tls {
        true => router.layer(header("strict-transport-security", "max-age=31536000")),
        false => router,
    }
}

/// What a page may load.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The value of the cookie `name` a request carries.
pub fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}
