//! The outbound HTTP seam: every request to an S3 endpoint, object_store's
//! and our own signed ones, goes through the one [`GatewayConnector`] of its
//! remote: one connection pool, and a connector that decides where each new
//! connection leaves from and whether it may open at all.
//!
//! * **Dedicated addresses.** With `outbound_ips`, each new connection is
//!   bound to the next address in turn. An address that cannot connect
//!   (removed from the host) is skipped with a warning and the connection
//!   leaves from the next one.
//! * **Connection cap.** `max_connections` is a fair (FIFO) semaphore of
//!   connections: a connection holds its permit until it closes, idle ones
//!   in the pool included, so the count of open connections never passes
//!   the cap. Requests wait their turn (in order, before their timeout
//!   starts) for a pooled connection or a permit; none fails because of
//!   the cap.
//! * **Timeouts.** A connect timeout, and a read timeout that fires only
//!   when a response stalls; no whole-request timeout (it would cut a large
//!   GET).

use crate::config::S3Config;
use crate::metrics::{Metrics, OpCalls};
use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
    HttpRequestBody, HttpResponse, HttpResponseBody, HttpService,
};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a remote's outbound side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error(
        "outbound_ips: {ip} is not an address of this host ({source}); add it to an interface or remove it"
    )]
    NotLocal { ip: IpAddr, source: std::io::Error },
    #[error("loading the system's CA certificates for HTTPS: {0}")]
    Roots(String),
}

/// Hands the remote's connection pool to object_store and to our own requests.
#[derive(Debug, Clone)]
pub struct GatewayConnector(Arc<Outbound>);

struct Outbound {
    metrics: Arc<Metrics>,
    /// This remote's requests by operation, for the console.
    calls: Arc<OpCalls>,
    pool: Client<Connect, WatchedBody>,
    read_timeout: Duration,
    /// With `max_connections`: a request's turn, taken before its timeout
    /// starts and held until its response body is done. A request in its
    /// turn finds a pooled connection or a free permit at once, so the
    /// time spent queueing for the cap never counts as a stalled request.
    turns: Option<Arc<Semaphore>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

impl GatewayConnector {
    /// Checks that every dedicated address is one of this host's (a bind
    /// test), then sets up the pool.
    pub fn new(
        remote: &str,
        config: &S3Config,
        metrics: Arc<Metrics>,
        calls: Arc<OpCalls>,
    ) -> Result<Self, OutboundError> {
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
        let tls = if config.endpoint.starts_with("https://") {
            Some(tls_connector()?)
        } else {
            None
        };
        let connect = Connect(Arc::new(ConnectInner {
            remote: remote.to_string(),
            down: locals.iter().map(|_| AtomicBool::new(false)).collect(),
            locals,
            next: AtomicUsize::new(0),
            limit: (config.max_connections > 0)
                .then(|| Arc::new(Semaphore::new(config.max_connections))),
            connect_timeout: config.connect_timeout,
            tls,
        }));
        // A response body nobody reads yet (an open file the client is not
        // reading) holds at most this much in hyper's buffer; the gateway's
        // own read-ahead is what runs ahead, within its budget.
        let pool = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(IDLE_CONNECTIONS)
            .http1_max_buf_size(RESPONSE_BUFFER)
            .build(connect);
        Ok(GatewayConnector(Arc::new(Outbound {
            metrics,
            calls,
            pool,
            read_timeout: config.request_timeout,
            turns: (config.max_connections > 0)
                .then(|| Arc::new(Semaphore::new(config.max_connections))),
        })))
    }

    /// The client for our own signed requests (directory markers, listings).
    pub fn client(&self) -> HttpClient {
        HttpClient::new(self.clone())
    }
}

/// hyper's read buffer per connection to a remote.
const RESPONSE_BUFFER: usize = 64 << 10;

/// Idle connections kept per remote. A burst (ten thousand logins listing
/// their homes at once) opens as many as it has requests in flight; past
/// this many, a connection coming back idle is closed instead of kept for
/// `pool_idle_timeout`, so the burst's buffers do not stay behind.
const IDLE_CONNECTIONS: usize = 256;

fn tls_connector() -> Result<tokio_rustls::TlsConnector, OutboundError> {
    let mut config = crate::base::tls_client_config(None).map_err(OutboundError::Roots)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl HttpConnector for GatewayConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(self.client())
    }
}

/// A PUT's `Content-MD5`, which object_store has no option for: the PUT's
/// extensions carry it to the connector, which sets the header. It is
/// left out of the signature (SigV4 signs the headers it lists, and S3
/// checks Content-MD5 against the body all the same).
#[derive(Debug, Clone)]
pub struct ContentMd5(http::HeaderValue);

impl ContentMd5 {
    pub fn of(md5: &[u8; 16]) -> ContentMd5 {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(md5);
        ContentMd5(http::HeaderValue::from_str(&b64).expect("base64 is a valid header value"))
    }
}

#[async_trait::async_trait]
impl HttpService for GatewayConnector {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        if let Some(ContentMd5(md5)) = req.extensions_mut().remove::<ContentMd5>() {
            req.headers_mut().insert("content-md5", md5);
        }
        let out = &self.0;
        let copy = req.headers().contains_key("x-amz-copy-source");
        let operation = crate::metrics::s3_operation(req.method(), req.uri(), copy);
        let turn = match &out.turns {
            Some(turns) => Some(
                turns
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the turns semaphore is never closed"),
            ),
            None => None,
        };
        let started = tokio::time::Instant::now();
        let response = self.send(req, started).await;
        let metrics = &out.metrics;
        let status = match &response {
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) if matches!(e.kind(), HttpErrorKind::Timeout) => "timeout".into(),
            Err(_) => "error".into(),
        };
        metrics
            .s3_requests
            .get_or_create(&crate::metrics::S3Label { operation, status })
            .inc();
        metrics
            .s3_latency
            .get_or_create(&crate::metrics::OperationLabel { operation })
            .observe(started.elapsed().as_secs_f64());
        let failed = !matches!(&response, Ok(r) if !r.status().is_server_error());
        out.calls.count(operation, failed, started.elapsed());
        let read_timeout = out.read_timeout;
        Ok(response?.map(|body| HttpResponseBody::new(Stalling::new(body, read_timeout, turn))))
    }
}

impl GatewayConnector {
    /// Sends one request through the pool, up to its response head.
    async fn send(
        &self,
        req: HttpRequest,
        started: tokio::time::Instant,
    ) -> Result<http::Response<hyper::body::Incoming>, HttpError> {
        let out = &self.0;
        // The timeout is time without progress: an upload whose body is
        // still being sent is not cut, one that stalls is.
        let last = Arc::new(AtomicU64::new(0));
        let request = out.pool.request(req.map(|body| WatchedBody {
            body,
            started,
            last: last.clone(),
        }));
        tokio::pin!(request);
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            tokio::select! {
                r = &mut request => break r,
                _ = tokio::time::sleep_until(started + since + out.read_timeout) => {
                    if Duration::from_millis(last.load(Ordering::Relaxed)) == since {
                        return Err(HttpError::new(
                            HttpErrorKind::Timeout,
                            std::io::Error::new(std::io::ErrorKind::TimedOut, "no progress on the request"),
                        ));
                    }
                }
            }
        }
        .map_err(|e| {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                HttpError::new(kind, e)
            })
    }
}

/// A request body that notes when it last handed data to the connection.
struct WatchedBody {
    body: HttpRequestBody,
    started: tokio::time::Instant,
    /// Milliseconds after `started`.
    last: Arc<AtomicU64>,
}

impl hyper::body::Body for WatchedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, HttpError>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if frame.is_ready() {
            let ms = self.started.elapsed().as_millis() as u64;
            self.last.store(ms, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A response body that fails when no data comes for the read timeout.
struct Stalling {
    body: hyper::body::Incoming,
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The request's turn under `max_connections`, until the body is dropped.
    _turn: Option<OwnedSemaphorePermit>,
}

impl Stalling {
    fn new(
        body: hyper::body::Incoming,
        timeout: Duration,
        turn: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Stalling {
            body,
            timeout,
            _turn: turn,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl hyper::body::Body for Stalling {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + self.timeout;
                self.timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(|e| HttpError::new(HttpErrorKind::Request, e))))
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "the response stalled"),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Opens the pool's connections: from the next local address, within the cap.
#[derive(Clone)]
struct Connect(Arc<ConnectInner>);

struct ConnectInner {
    remote: String,
    locals: Vec<Option<IpAddr>>,
    /// Connecting from this address failed last time (the warning is not repeated).
    down: Vec<AtomicBool>,
    next: AtomicUsize,
    limit: Option<Arc<Semaphore>>,
    connect_timeout: Duration,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl ConnectInner {
    async fn open(self: Arc<Self>, uri: http::Uri) -> std::io::Result<Conn> {
        let permit = match &self.limit {
            Some(limit) => Some(
                limit
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(std::io::Error::other)?,
            ),
            None => None,
        };
        let host = uri
            .host()
            .ok_or_else(|| std::io::Error::other("no host in the URL"))?;
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let targets: Vec<SocketAddr> =
            tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
                .await?
                .collect();
        let n = self.locals.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut last_error = None;
        for i in 0..n {
            let slot = (first + i) % n;
            match self.connect_from(self.locals[slot], &targets).await {
                Ok(stream) => {
                    if self.down[slot].swap(false, Ordering::Relaxed) {
                        tracing::info!(remote = %self.remote, local = ?self.locals[slot], "connecting from this address works again");
                    }
                    let _ = stream.set_nodelay(true);
                    let io = match &self.tls {
                        Some(tls) if https => {
                            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                                .map_err(std::io::Error::other)?;
                            Io::Tls(Box::new(tls.connect(name, stream).await?))
                        }
                        _ => Io::Plain(stream),
                    };
                    return Ok(Conn {
                        io: TokioIo::new(io),
                        _permit: permit,
                    });
                }
                Err(e) => {
                    if n > 1 && !self.down[slot].swap(true, Ordering::Relaxed) {
                        tracing::warn!(remote = %self.remote, local = ?self.locals[slot], error = %e,
                            "cannot connect from this address; using the others");
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("no address to connect from")))
    }

    /// A TCP connection from `local` to the first of `targets` of its family that answers.
    async fn connect_from(
        &self,
        local: Option<IpAddr>,
        targets: &[SocketAddr],
    ) -> std::io::Result<tokio::net::TcpStream> {
        let mut last_error = std::io::Error::other(format!(
            "no endpoint address of the same family as {local:?}"
        ));
        for target in targets
            .iter()
            .filter(|t| local.is_none_or(|l| l.is_ipv4() == t.is_ipv4()))
        {
            let socket = if target.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(local) = local {
                socket.bind(SocketAddr::new(local, 0))?;
            }
            match tokio::time::timeout(self.connect_timeout, socket.connect(*target)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last_error = e,
                Err(_) => {
                    last_error = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connecting to {target} timed out"),
                    )
                }
            }
        }
        Err(last_error)
    }
}

impl tower_service::Service<http::Uri> for Connect {
    type Response = Conn;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(self.0.clone().open(uri))
    }
}

enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A pooled connection, holding its permit of the cap until it closes.
struct Conn {
    io: TokioIo<Io>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
