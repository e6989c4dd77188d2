//! A webhook receiver on loopback: a real HTTP server that records every
//! request and can be told to fail, and a signature check written here
//! (HMAC-SHA256 by its definition, not the gateway's code).

use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as it arrived, with what was answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub method: http::Method,
    /// The path and query.
    pub target: String,
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// Whether `Bucketgate-Signature` is `v1=` + HMAC-SHA256(secret,
    /// timestamp + "." + body).
    pub fn signed_with(&self, secret: &str) -> bool {
        let mut message = self.header("bucketgate-timestamp").as_bytes().to_vec();
        message.push(b'.');
        message.extend_from_slice(&self.body);
        let mac = hmac_sha256(secret.as_bytes(), &message);
        self.header("bucketgate-signature") == format!("v1={}", bucketgate::base::hex(&mac))
    }
}

/// HMAC (RFC 2104) over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Request>>>,
    failing: Arc<AtomicUsize>,
    /// While set, requests are answered 302 to this URL.
    redirect: Arc<Mutex<Option<String>>>,
    /// While true, requests wait before they are answered.
    held: tokio::sync::watch::Sender<bool>,
    /// While set, what a request is answered (status and JSON body).
    answer: Arc<Mutex<Option<Answerer>>>,
}

/// Chooses the answer to a request (its `status` not set yet).
pub type Answerer = Arc<dyn Fn(&Request) -> (u16, String) + Send + Sync>;

/// A listener on `addr`. A port chosen earlier and freed (a receiver that
/// starts late, or again) may meanwhile be the local end of some other
/// test's short connection, or wait in TIME_WAIT: the bind is tried again
/// for a while rather than failing the test on another's socket.
async fn listen(addr: SocketAddr) -> tokio::net::TcpListener {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{addr} stayed in use: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot listen on {addr}: {e}"),
        }
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// On `addr`, which must be free.
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        Receiver::start_full(addr, None).await
    }

    /// HTTPS with this certificate chain and key (PEM), on a free port.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> Receiver {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Receiver::start_full("127.0.0.1:0".parse().unwrap(), Some(acceptor)).await
    }

    async fn start_full(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let listener = listen(addr).await;
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicUsize::new(0));
        let redirect = Arc::new(Mutex::new(None::<String>));
        let (held, hold) = tokio::sync::watch::channel(false);
        let answer = Arc::new(Mutex::new(None::<Answerer>));
        let (seen_by, failing_by, redirect_by, answer_by) = (
            seen.clone(),
            failing.clone(),
            redirect.clone(),
            answer.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, failing, redirect, hold, tls, answer) = (
                    seen_by.clone(),
                    failing_by.clone(),
                    redirect_by.clone(),
                    hold.clone(),
                    tls.clone(),
                    answer_by.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, failing, redirect, mut hold, answer) = (
                            seen.clone(),
                            failing.clone(),
                            redirect.clone(),
                            hold.clone(),
                            answer.clone(),
                        );
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let mut request = Request {
                                at: Instant::now(),
                                method: parts.method,
                                target: parts
                                    .uri
                                    .path_and_query()
                                    .map_or("/", |p| p.as_str())
                                    .to_string(),
                                status: 0,
                                headers: parts.headers,
                                body,
                            };
                            let fail = failing
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok();
                            let to = redirect.lock().unwrap().clone();
                            let answerer = answer.lock().unwrap().clone();
                            let (status, text) = match (&to, fail, answerer) {
                                (Some(_), _, _) => (302, String::new()),
                                (None, true, _) => (500, String::new()),
                                (None, false, Some(f)) => f(&request),
                                (None, false, None) => (200, String::new()),
                            };
                            request.status = status;
                            seen.lock().unwrap().push(request);
                            // Recorded on arrival, answered once released.
                            let _ = hold.wait_for(|held| !held).await;
                            let mut answer = hyper::Response::builder().status(status);
                            if let Some(to) = to {
                                answer = answer.header("location", to);
                            }
                            Ok::<_, std::convert::Infallible>(
                                answer.body(Full::new(bytes::Bytes::from(text))).unwrap(),
                            )
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Receiver {
            addr,
            seen,
            failing,
            redirect,
            held,
            answer,
        }
    }

    /// From now on each request is answered what `f` says of its JSON body.
    pub fn answer_with(
        &self,
        f: impl Fn(&serde_json::Value) -> (u16, String) + Send + Sync + 'static,
    ) {
        self.answer_requests_with(move |r| f(&serde_json::from_slice(&r.body).unwrap_or_default()));
    }

    /// From now on each request is answered what `f` says of it.
    pub fn answer_requests_with(
        &self,
        f: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static,
    ) {
        *self.answer.lock().unwrap() = Some(Arc::new(f));
    }

    /// Requests from now on wait, unanswered, until [`Receiver::release`]:
    /// a receiver that is slow.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// How many requests arrived, answered or not.
    pub fn arrived(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// The URL of a receiver started with [`Receiver::start_tls`] for "localhost".
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}/hooks", self.addr.port())
    }

    /// The next `n` requests are answered 500.
    pub fn fail_next(&self, n: usize) {
        self.failing.store(n, Ordering::SeqCst);
    }

    /// Answers 302 to `to` until told `None`.
    pub fn redirect_to(&self, to: Option<String>) {
        *self.redirect.lock().unwrap() = to;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests answered 2xx.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect()
    }

    /// Waits (at most 30 s) until an accepted event satisfies `which`.
    pub async fn event(&self, which: impl Fn(&serde_json::Value) -> bool) -> Request {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(r) = self.accepted().into_iter().find(|r| which(&r.json())) {
                return r;
            }
            let seen: Vec<String> = self
                .requests()
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).to_string())
                .collect();
            assert!(
                Instant::now() < deadline,
                "the event never came; seen: {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most `within`) until `n` events were accepted.
    pub async fn wait_for_count(&self, n: usize, within: Duration) -> Vec<Request> {
        let deadline = Instant::now() + within;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= n {
                return accepted;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} events arrived: {:#?}",
                accepted.len(),
                accepted.iter().map(|r| r.json()).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
