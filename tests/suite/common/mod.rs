//! Test harness: a real S3 endpoint on loopback (moto_server), remotes of
//! every kind, a plain S3 client (boto3) and a fault-injecting proxy.
#![allow(dead_code)]

use bucketgate::config::Config;
use bucketgate::remote::Remote;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing-secret";

/// One moto_server per test binary, on a free loopback port. It dies with us
/// (PR_SET_PDEATHSIG), so no server outlives a test run. The port is
/// picked by binding and letting go, so another process may take it
/// first: then moto exits, or another server answers, and the start is
/// tried again on another port.
pub fn moto_endpoint() -> String {
    static MOTO: OnceLock<String> = OnceLock::new();
    MOTO.get_or_init(|| {
        for _ in 0..5 {
            if let Some(endpoint) = start_moto() {
                return endpoint;
            }
        }
        panic!("moto_server did not start on any of 5 ports");
    })
    .clone()
}

/// One try: moto on a free port, once it answers as moto; `None` if it
/// exited (its port was taken) or another server answers there.
fn start_moto() -> Option<String> {
    let port = free_port();
    let exited = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // PR_SET_PDEATHSIG follows the spawning *thread*: spawn from one that lives as long as the process.
    let (tx, rx) = std::sync::mpsc::channel();
    let watch = exited.clone();
    std::thread::spawn(move || {
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let spawned: Result<Child, String> = cmd.spawn().map_err(|e| {
            format!("moto_server must be installed for the S3 tests: scripts/test installs it: {e}")
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return tx.send(Err(e)).unwrap(),
        };
        tx.send(Ok(())).unwrap();
        // Lives as long as the process, noting if moto ends.
        loop {
            if !matches!(child.try_wait(), Ok(None)) {
                watch.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    rx.recv().unwrap().unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if exited.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            // moto's own API answers: not another server on the port.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let asked = stream.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut answer = String::new();
            let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
            return (asked.is_ok()
                && answer.starts_with("HTTP/1.1 200")
                && answer.contains("moto"))
            .then(|| format!("http://127.0.0.1:{port}"));
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a client program; its success, stdout and stderr.
pub async fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} must be installed (.ci/run does it): {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A TCP connection to `to` from the local address `from` (another
/// loopback address, to be another source).
pub async fn connect_from(
    from: std::net::IpAddr,
    to: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// A loopback port free now, for a server that must be told its port:
/// another process may take it first, so its start is tried again.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `tests/browser/SCRIPT` (Playwright in Debian's Chromium) with
/// `env` and `SHOTS`, where its screenshots go (under `target/`); fails
/// with what the script printed. Returns the screenshots' folder.
pub async fn browser(script: &str, shots: &str, env: &[(&str, &str)]) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let shots = format!("{root}/target/{shots}");
    let out = tokio::process::Command::new("python3")
        .arg(format!("{root}/tests/browser/{script}"))
        .envs(env.iter().copied())
        .env("SHOTS", &shots)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed (screenshots in {shots}):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    shots
}

/// Waits (at most 30 s) until `f` holds.
pub async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs boto3, the reference S3 client, against `endpoint`.
pub fn boto3(endpoint: &str, script: &str) -> String {
    let keys = (ACCESS_KEY.to_string(), SECRET_KEY.to_string());
    boto3_as(endpoint, &keys, script)
}

/// As [`boto3`], signing with `keys` (an access key id and its secret).
pub fn boto3_as(endpoint: &str, (id, secret): &(String, String), script: &str) -> String {
    let full = format!(
        "import boto3, sys\ns3 = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='{id}', aws_secret_access_key='{secret}', region_name='us-east-1')\n{script}\n"
    );
    let mut child = Command::new("python3")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(full.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The bytes of object `key`, as boto3 reads them.
pub fn s3_object(endpoint: &str, bucket: &str, key: &str) -> Vec<u8> {
    let keys = (ACCESS_KEY.to_string(), SECRET_KEY.to_string());
    s3_object_as(endpoint, &keys, bucket, key)
}

/// As [`s3_object`], read with `keys` (an access key id and its secret).
pub fn s3_object_as(endpoint: &str, keys: &(String, String), bucket: &str, key: &str) -> Vec<u8> {
    let hex = boto3_as(
        endpoint,
        keys,
        &format!("print(s3.get_object(Bucket={bucket:?}, Key={key:?})['Body'].read().hex())"),
    );
    let hex = hex.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The keys under `prefix`, sorted, and how many multipart uploads the
/// bucket has open: what a user checks after an upload.
pub fn s3_state(endpoint: &str, bucket: &str, prefix: &str) -> (Vec<String>, usize) {
    let out = boto3(
        endpoint,
        &format!(
            "r = s3.list_objects_v2(Bucket={bucket:?}, Prefix={prefix:?})\n\
             print(sorted(o['Key'] for o in r.get('Contents', [])))\n\
             print(len(s3.list_multipart_uploads(Bucket={bucket:?}).get('Uploads', [])))"
        ),
    );
    let mut lines = out.lines();
    let keys: Vec<String> =
        serde_json::from_str(&lines.next().unwrap().replace('\'', "\"")).unwrap();
    (keys, lines.next().unwrap().trim().parse().unwrap())
}

pub fn create_bucket(endpoint: &str, bucket: &str) {
    boto3(endpoint, &format!("s3.create_bucket(Bucket='{bucket}')"));
}

/// A config with one remote named `store` of the given kind.
pub fn remote_config(kind: &str, extra: &str) -> (String, Option<tempfile::TempDir>) {
    match kind {
        "memory" => (
            format!("[remotes.store]\nkind = \"memory\"\n{extra}\n"),
            None,
        ),
        "filesystem" => {
            let dir = tempfile::tempdir().unwrap();
            (
                format!(
                    "[remotes.store]\nkind = \"filesystem\"\nroot = \"{}\"\n{extra}\n",
                    dir.path().display()
                ),
                Some(dir),
            )
        }
        "s3" => {
            let endpoint = moto_endpoint();
            let bucket = unique("bucket");
            create_bucket(&endpoint, &bucket);
            (s3_remote_toml(&endpoint, &bucket, extra), None)
        }
        other => panic!("unknown kind {other}"),
    }
}

pub fn s3_remote_toml(endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        "[remotes.store]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\nbucket = \"{bucket}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n{extra}\n"
    )
}

pub fn parse_config(text: &str) -> Config {
    Config::parse(text, &|_| None).unwrap_or_else(|p| panic!("test config invalid: {p:#?}\n{text}"))
}

/// A built remote and what keeps it alive.
pub struct Fixture {
    pub config: Config,
    pub remote: Arc<Remote>,
    pub _dir: Option<tempfile::TempDir>,
}

pub fn fixture(kind: &str, extra: &str) -> Fixture {
    let (text, dir) = remote_config(kind, extra);
    let config = parse_config(&text);
    let remote = Arc::new(Remote::build(&config.remotes["store"], &Default::default()).unwrap());
    Fixture {
        config,
        remote,
        _dir: dir,
    }
}

/// Puts SSH host keys in `dir/keys`, made once for all test runs under
/// cargo's target folder: a 3072-bit RSA key takes seconds to make, and
/// every gateway a test starts would otherwise make its own.
pub fn host_keys_into(dir: &std::path::Path) {
    static MADE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let made = MADE.get_or_init(|| {
        let made = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("host_keys");
        bucketgate::sftp::host_keys::load_or_create(&made).unwrap();
        made
    });
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for entry in std::fs::read_dir(made).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), keys.join(entry.file_name())).unwrap();
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    // Eight bytes per step: tests are built without optimisation, and
    // byte-at-a-time generation of the large payloads showed in the suite's time.
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What a [`fault_proxy_with`] does with one request.
pub enum Fault {
    /// Forward it and its answer.
    Pass,
    /// Answer with this status and body, without forwarding it.
    Fail(u16, &'static str),
    /// Forward it, then hold S3's answer this long before passing it on.
    Stall(Duration),
    /// Forward it with one byte of its body changed, headers as they were:
    /// a part damaged on the way.
    Corrupt,
}

/// An HTTP proxy in front of `upstream` that answers 500 to every UploadPart
/// of part number `fail_part`, and forwards everything else.
pub async fn fault_proxy(upstream: String, fail_part: u32) -> SocketAddr {
    let needle = format!("partNumber={fail_part}&");
    fault_proxy_with(upstream, move |method, query| {
        let query = format!("{query}&");
        if method == hyper::Method::PUT && query.contains(&needle) && query.contains("uploadId=") {
            Fault::Fail(
                500,
                "<Error><Code>InternalError</Code><Message>injected</Message></Error>",
            )
        } else {
            Fault::Pass
        }
    })
    .await
}

/// An HTTP proxy in front of `upstream` that asks `rule` (method, query)
/// what to do with each request.
pub async fn fault_proxy_with(
    upstream: String,
    rule: impl Fn(&hyper::Method, &str) -> Fault + Send + Sync + 'static,
) -> SocketAddr {
    fault_proxy_seeing(upstream, move |req, _| {
        rule(&req.method, req.uri.query().unwrap_or(""))
    })
    .await
}

/// The S3 requests a [`counting_proxy`] forwarded, in order: method and
/// path with its query (`/bucket/key?…`).
#[derive(Clone, Default)]
pub struct Seen(Arc<std::sync::Mutex<Vec<(hyper::Method, String)>>>);

impl Seen {
    /// Records a request, for a proxy rule of a test's own.
    pub fn push(&self, method: hyper::Method, path: String) {
        self.0.lock().unwrap().push((method, path));
    }

    /// Every request so far: method, path and query.
    pub fn requests(&self) -> Vec<(hyper::Method, String)> {
        self.0.lock().unwrap().clone()
    }

    /// GETs of object `key` (no listings, no HEADs).
    pub fn gets_of(&self, bucket: &str, key: &str) -> usize {
        let path = format!("/{bucket}/{key}");
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| *m == hyper::Method::GET && *p == path)
            .count()
    }

    /// Object GETs of any key under `prefix`.
    pub fn gets_under(&self, bucket: &str, prefix: &str) -> usize {
        let start = format!("/{bucket}/{prefix}");
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| *m == hyper::Method::GET && p.starts_with(&start) && !p.contains('?'))
            .count()
    }
}

/// A proxy in front of `upstream` that forwards everything and records
/// each request.
pub async fn counting_proxy(upstream: String) -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let addr = fault_proxy_seeing(upstream, move |req, _| {
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        record.push(req.method.clone(), path.to_string());
        Fault::Pass
    })
    .await;
    (addr, seen)
}

/// As [`fault_proxy_with`], the rule also seeing each request's headers
/// and body as the gateway sent them.
pub async fn fault_proxy_seeing(
    upstream: String,
    rule: impl Fn(&http::request::Parts, &[u8]) -> Fault + Send + Sync + 'static,
) -> SocketAddr {
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A new connection per request: a pooled one the server has closed
    // meanwhile fails the request it is reused for, and the gateway sees a
    // 502 no real S3 would have sent.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let rule = Arc::new(rule);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let client = client.clone();
            let upstream = upstream.clone();
            let rule = rule.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let client = client.clone();
                    let upstream = upstream.clone();
                    let rule = rule.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let mut body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let fault = rule(&parts, &body);
                        if let (Fault::Corrupt, false) = (&fault, body.is_empty()) {
                            let mut changed = body.to_vec();
                            changed[body.len() / 2] ^= 0x20;
                            body = changed.into();
                        }
                        if let Fault::Fail(status, body) = fault {
                            let resp = hyper::Response::builder()
                                .status(status)
                                .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
                                .unwrap();
                            return Ok::<_, std::convert::Infallible>(resp);
                        }
                        let mut url = format!(
                            "{upstream}{}",
                            parts
                                .uri
                                .path_and_query()
                                .map(|p| p.as_str())
                                .unwrap_or("/")
                        );
                        let mut headers = parts.headers.clone();
                        // moto serves every service on one port and tells
                        // them apart by the signature's scope or, for STS's
                        // unsigned AssumeRoleWithWebIdentity, by the Action
                        // of a form body only: the parameters AWS also takes
                        // in the query are moved there.
                        if let Some(query) = parts
                            .uri
                            .query()
                            .filter(|q| q.contains("Action=AssumeRoleWithWebIdentity"))
                        {
                            url = format!("{upstream}/");
                            body = bytes::Bytes::from(query.to_string());
                            headers.insert(
                                "content-type",
                                http::HeaderValue::from_static("application/x-www-form-urlencoded"),
                            );
                        }
                        // The Host stays the proxy's: a server that checks
                        // signatures (Garage) finds the one that was signed.
                        for h in ["content-length", "transfer-encoding", "connection"] {
                            headers.remove(h);
                        }
                        let sent = client
                            .request(parts.method.clone(), url)
                            .headers(headers)
                            .body(body)
                            .send()
                            .await;
                        let resp = match sent {
                            Ok(r) => {
                                let mut b = hyper::Response::builder().status(r.status());
                                for (k, v) in r.headers() {
                                    let framing = k == "transfer-encoding"
                                        || k == "connection"
                                        || (k == "content-length"
                                            && parts.method != hyper::Method::HEAD);
                                    if !framing {
                                        b = b.header(k, v);
                                    }
                                }
                                b.body(Full::new(r.bytes().await.unwrap_or_default()))
                                    .unwrap()
                            }
                            Err(e) => {
                                eprintln!("fault proxy: {e}");
                                hyper::Response::builder()
                                    .status(502)
                                    .body(Full::new(bytes::Bytes::new()))
                                    .unwrap()
                            }
                        };
                        if let Fault::Stall(hold) = fault {
                            tokio::time::sleep(hold).await;
                        }
                        Ok(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub mod ftp;
pub mod garage;
pub mod gateway;
pub mod ldap;
pub mod postgres;
pub mod receiver;
pub mod served;

/// `bucketgate_hashed_bytes_total{pass}` in a `GET /metrics` answer (0
/// when the pass never ran).
pub fn hashed_bytes(metrics: &str, pass: &str) -> u64 {
    let line = format!("bucketgate_hashed_bytes_total{{pass=\"{pass}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// A TLS front on loopback for a plain-HTTP server at `upstream`: what
/// makes an S3 endpoint `https://` here. Its certificate (for 127.0.0.1)
/// is written to `cert_file`, for the gateway's `SSL_CERT_FILE`.
pub async fn tls_front(upstream: SocketAddr, cert_file: &std::path::Path) -> SocketAddr {
    let tls = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    std::fs::write(cert_file, tls.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(tls.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![tls.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (Ok(mut outside), Ok(mut inside)) = (
                    acceptor.accept(stream).await,
                    tokio::net::TcpStream::connect(upstream).await,
                ) else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
            });
        }
    });
    addr
}
