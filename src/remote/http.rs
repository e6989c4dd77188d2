//! The outbound HTTP seam: every request to an S3 endpoint, object_store's
//! and our own signed ones, goes through the one [`Outbound`] of its remote.
//!
//! * **Dedicated addresses.** With `outbound_ips`, each address has its own
//!   reqwest client bound to it (`local_address`); requests take them in
//!   turn. An address that cannot connect (removed from the host) is
//!   skipped with a warning, and the request goes out from the next one.
//! * **Connection cap.** `max_connections` is a fair (FIFO) semaphore over
//!   requests in flight, bodies included: a streaming GET holds its permit
//!   until its body is read or dropped. Waiting requests queue; none fails
//!   because of the cap.
//! * **Timeouts.** No whole-request timeout (it would cut a large GET), but
//!   a connect timeout and a read timeout that fires only when a stream
//!   stalls.

use crate::config::S3Config;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a remote's outbound side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error(
        "outbound_ips: {ip} is not an address of this host ({source}); add it to an interface or remove it"
    )]
    NotLocal { ip: IpAddr, source: std::io::Error },
    #[error("building the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// One way out: a local address (or the OS's choice) and its client.
#[derive(Debug)]
struct Route {
    local: Option<IpAddr>,
    client: reqwest::Client,
    /// Connecting from here failed last time (so the warning is not repeated).
    down: AtomicBool,
}

/// Everything that leaves the gateway for one S3 remote.
#[derive(Debug)]
pub struct Outbound {
    remote: String,
    routes: Vec<Route>,
    next: AtomicUsize,
    limit: Option<Arc<Semaphore>>,
}

/// Hands the remote's [`Outbound`] to object_store and to our own requests.
#[derive(Debug, Clone)]
pub struct GatewayConnector(Arc<Outbound>);

impl GatewayConnector {
    /// Checks that every dedicated address is one of this host's (a bind
    /// test), then builds a client per address.
    pub fn new(remote: &str, config: &S3Config) -> Result<Self, OutboundError> {
        let locals: Vec<Option<IpAddr>> =
            if config.use_dedicated_ips && !config.outbound_ips.is_empty() {
                config.outbound_ips.iter().copied().map(Some).collect()
            } else {
                vec![None]
            };
        for ip in locals.iter().flatten() {
            std::net::TcpListener::bind((*ip, 0))
                .map_err(|source| OutboundError::NotLocal { ip: *ip, source })?;
        }
        let routes = locals
            .into_iter()
            .map(|local| {
                let client = reqwest::Client::builder()
                    .local_address(local)
                    .connect_timeout(config.connect_timeout)
                    .read_timeout(config.request_timeout)
                    .tcp_nodelay(true)
                    .pool_idle_timeout(std::time::Duration::from_secs(60))
                    .build()?;
                Ok(Route {
                    local,
                    client,
                    down: AtomicBool::new(false),
                })
            })
            .collect::<Result<_, reqwest::Error>>()
            .map_err(OutboundError::Client)?;
        let limit =
            (config.max_connections > 0).then(|| Arc::new(Semaphore::new(config.max_connections)));
        Ok(GatewayConnector(Arc::new(Outbound {
            remote: remote.to_string(),
            routes,
            next: AtomicUsize::new(0),
            limit,
        })))
    }

    /// The client for our own signed requests (directory markers, listings).
    pub fn client(&self) -> HttpClient {
        HttpClient::new(self.clone())
    }
}

impl HttpConnector for GatewayConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(self.client())
    }
}

#[async_trait::async_trait]
impl HttpService for GatewayConnector {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let out = &self.0;
        let permit = match &out.limit {
            Some(limit) => Some(
                limit
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))?,
            ),
            None => None,
        };
        let (parts, body) = req.into_parts();
        let n = out.routes.len();
        let first = out.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut result = None;
        for i in 0..n {
            let route = &out.routes[(first + i) % n];
            let attempt = http::Request::from_parts(parts.clone(), body.clone());
            match route.client.call(attempt).await {
                Err(e) if e.kind() == HttpErrorKind::Connect && i + 1 < n => {
                    if !route.down.swap(true, Ordering::Relaxed) {
                        tracing::warn!(remote = %out.remote, local = ?route.local, error = %e,
                            "cannot connect from this address; using the others");
                    }
                }
                other => {
                    if other.is_ok() && route.down.swap(false, Ordering::Relaxed) {
                        tracing::info!(remote = %out.remote, local = ?route.local, "connecting from this address works again");
                    }
                    result = Some(other);
                    break;
                }
            }
        }
        let response = result.expect("the last route always answers")?;
        Ok(response.map(|body| {
            HttpResponseBody::new(Held {
                body,
                _permit: permit,
            })
        }))
    }
}

/// A response body that keeps its request's connection permit until it is
/// read to the end or dropped.
struct Held {
    body: HttpResponseBody,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Body for Held {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
