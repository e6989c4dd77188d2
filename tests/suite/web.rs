//! The web frontend (`[web]`) over moto, driven over HTTP as a script or
//! the page does: logins (bans, forwarded addresses), the file API as the
//! permissions say, downloads (ranges, names, zips), and tus uploads cut
//! and resumed. The page itself in Chromium: `tests/browser/web.py`.

use crate::common;
use common::gateway::{HASH, PASSWORD, TestGateway, start_with_tables};
use common::until;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{Read, Write};

/// alice, bob… as ever; `ro` may only list and download; `small` has a
/// quota of 1 MiB. The web listener trusts 127.0.0.1 as its proxy, so a
/// test can speak for another address with `X-Forwarded-For`.
pub fn web_tables(extra: &str) -> String {
    format!(
        r#"
[[users]]
name = "ro"
password = "{HASH}"
home = "store:/alice"
permissions = ["list", "download"]

[[users]]
name = "small"
password = "{HASH}"
home = "store:/small"
quota = "1MiB"
max_file_size = "3MiB"

[security]
ban_threshold = 3

[web]
listen = "127.0.0.1:0"
proxy_allowed = ["127.0.0.1/32"]

{extra}
"#
    )
}

/// A logged-in web client: its cookie and CSRF token.
pub struct Web {
    pub base: String,
    http: reqwest::Client,
    cookie: String,
    pub csrf: String,
}

/// `POST /api/login` as `user` from `forwarded` (if any): the status, and
/// the body.
async fn try_login(
    g: &TestGateway,
    user: &str,
    password: &str,
    forwarded: Option<&str>,
) -> reqwest::Response {
    try_login_at(
        &format!("http://{}", g.web.unwrap()),
        user,
        password,
        forwarded,
    )
    .await
}

async fn try_login_at(
    base: &str,
    user: &str,
    password: &str,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .header("content-type", "application/json")
        .body(json!({ "user": user, "password": password }).to_string());
    if let Some(ip) = forwarded {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.unwrap()
}

impl Web {
    pub async fn login(g: &TestGateway, user: &str) -> Web {
        Web::login_at(&format!("http://{}", g.web.unwrap()), user).await
    }

    pub async fn login_at(base: &str, user: &str) -> Web {
        let r = try_login_at(base, user, PASSWORD, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        let me: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        Web {
            base: base.to_string(),
            // A connection per request, as many separate clients make.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            cookie,
            csrf: me["csrf"].as_str().unwrap().to_string(),
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
    }

    async fn get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        (r.status(), r.bytes().await.unwrap().to_vec())
    }

    async fn json(&self, path: &str) -> (StatusCode, Value) {
        let (status, body) = self.get(path).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        (
            status,
            serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
        )
    }

    async fn names(&self, dir: &str) -> Vec<String> {
        let (status, list) = self.json(&format!("/api/list?path={}", enc(dir))).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let mut names: Vec<String> = list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// `POST /tus/`: the status and the upload's path.
    pub async fn create(&self, folder: &str, name: &str, length: u64) -> (StatusCode, String) {
        let r = self
            .req(reqwest::Method::POST, "/tus/")
            .header("tus-resumable", "1.0.0")
            .header("upload-length", length)
            .header(
                "upload-metadata",
                format!("filename {},folder {}", b64(name), b64(folder)),
            )
            .send()
            .await
            .unwrap();
        let at = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status(), at)
    }

    pub async fn patch(&self, at: &str, offset: u64, data: Vec<u8>) -> (StatusCode, Option<u64>) {
        let r = self
            .req(reqwest::Method::PATCH, at)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset)
            .header("content-type", "application/offset+octet-stream")
            .body(data)
            .send()
            .await
            .unwrap();
        (r.status(), offset_of(&r))
    }

    pub async fn head(&self, at: &str) -> (StatusCode, Option<u64>) {
        let r = self
            .req(reqwest::Method::HEAD, at)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        (r.status(), offset_of(&r))
    }
}

fn offset_of(r: &reqwest::Response) -> Option<u64> {
    r.headers()
        .get("upload-offset")
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn enc(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// Keys and multipart uploads under `prefix`, as S3 has them.
fn bucket_state(g: &TestGateway, prefix: &str) -> (Vec<String>, usize) {
    common::s3_state(&g.endpoint, &g.bucket, prefix)
}

fn object(g: &TestGateway, key: &str) -> Vec<u8> {
    common::s3_object(&g.endpoint, &g.bucket, key)
}

fn requests(metrics: &str, operation: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "bucketgate_s3_requests_total{{operation=\"{operation}\""
            ))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_count_toward_bans_and_the_files_answer_as_the_permissions_say() {
    let hooks = common::receiver::Receiver::start().await;
    let hook = format!(
        "[[webhooks]]\nname = \"h\"\nurl = \"{}\"\nsecret = \"s\"\nevents = [\"rename\", \"login\", \"login_failed\"]\n",
        hooks.url()
    );
    let g = start_with_tables(&web_tables(&hook)).await;

    // Wrong passwords from one address (through the trusted proxy) ban it,
    // and then even the right one is refused there; elsewhere it works.
    for _ in 0..3 {
        let r = try_login(&g, "alice", "wrong", Some("192.0.2.9")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["error"], "wrong user name or password");
    }
    let banned = try_login(&g, "alice", PASSWORD, Some("192.0.2.9")).await;
    assert_eq!(banned.status(), StatusCode::TOO_MANY_REQUESTS);
    let nobody = try_login(&g, "nobody", "x", None).await;
    assert_eq!(nobody.status(), StatusCode::UNAUTHORIZED);
    let web = Web::login(&g, "alice").await;

    // Files put by S3 directly, with names a page must show as text.
    let evil = "<img src=x onerror=alert(1)>.txt";
    let odd = "emoji 😀 \"quoted\".txt";
    g.s3(&format!(
        "s3.put_object(Bucket=bucket, Key='alice/docs/a.txt', Body=b'0123456789')\n\
         s3.put_object(Bucket=bucket, Key={:?}, Body=b'evil')\n\
         s3.put_object(Bucket=bucket, Key={:?}, Body=b'odd')\n\
         s3.put_object(Bucket=bucket, Key='alice/docs/sub/deep.txt', Body=b'deep')",
        format!("alice/docs/{evil}"),
        format!("alice/docs/{odd}")
    ));
    assert_eq!(web.names("/docs").await, [evil, "a.txt", odd, "sub"]);

    // Downloads: whole, a range, a name any browser saves right.
    let (status, body) = web.get("/api/download?path=/docs/a.txt").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"0123456789"[..])
    );
    let r = web
        .req(reqwest::Method::GET, "/api/download?path=/docs/a.txt")
        .header("range", "bytes=2-4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"234");
    let r = web
        .req(
            reqwest::Method::GET,
            &format!("/api/download?path={}", enc(&format!("/docs/{odd}"))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"emoji _ _quoted_.txt\"; filename*=UTF-8''emoji%20%F0%9F%98%80%20%22quoted%22.txt"
    );

    // The folder as a zip: every file with its bytes, the subfolder too.
    let (status, zip) = web.get("/api/zip?path=/docs").await;
    assert_eq!(status, StatusCode::OK);
    let listing = unzip(&zip);
    assert_eq!(
        listing,
        format!("sub/ 0 \n{evil} 4 evil\na.txt 10 0123456789\n{odd} 3 odd\nsub/deep.txt 4 deep\n")
    );

    // A path that climbs out stays in the tree.
    let (status, _) = web.get("/api/download?path=/../../bob/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Changes, each as the bucket then shows it; a forged one (no CSRF
    // token) changes nothing.
    let forged = reqwest::Client::new()
        .post(format!("{}/api/delete", web.base))
        .header("cookie", &web.cookie)
        .header("content-type", "application/json")
        .body(json!({"path": "/docs/a.txt"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        web.post("/api/mkdir", json!({"path": "/new"})).await.0,
        StatusCode::OK
    );
    let (status, _) = web
        .post(
            "/api/rename",
            json!({"from": "/docs/a.txt", "to": "/new/b.txt"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(object(&g, "alice/new/b.txt"), b"0123456789");
    let (status, body) = web.post("/api/delete", json!({"path": "/new"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("directory not empty"))
    );
    assert_eq!(
        web.post("/api/delete", json!({"path": "/new/b.txt"}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        web.post("/api/delete", json!({"path": "/new"})).await.0,
        StatusCode::OK
    );
    let (keys, _) = bucket_state(&g, "alice/new");
    assert!(keys.is_empty(), "{keys:?}");

    // The read-only user: lists and downloads, and is refused the rest.
    let ro = Web::login(&g, "ro").await;
    let (_, me) = ro.json("/api/me").await;
    assert_eq!(me["permissions"], json!(["list", "download"]));
    assert_eq!(ro.names("/docs").await, [evil, odd, "sub"]);
    assert_eq!(
        ro.post("/api/mkdir", json!({"path": "/x"})).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(ro.create("/", "x.bin", 10).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        ro.post("/api/delete", json!({"path": format!("/docs/{evil}")}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // Events say https, as the audit does.
    let event = hooks.event(|e| e["event"] == "rename").await.json();
    assert_eq!(event["protocol"], "https");
    assert_eq!(event["user"], "alice");
    assert_eq!(event["path"], "/docs/a.txt");
    let failed = hooks.event(|e| e["event"] == "login_failed").await.json();
    assert_eq!(
        (failed["protocol"].as_str(), failed["ip"].as_str()),
        (Some("https"), Some("192.0.2.9"))
    );
    let login = hooks
        .event(|e| e["event"] == "login" && e["user"] == "ro")
        .await
        .json();
    assert_eq!(login["protocol"], "https");
    g.stop().await;
}

/// `name size bytes` of each entry of a zip, read by Python's zipfile.
fn unzip(zip: &[u8]) -> String {
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import io, sys, zipfile\n\
             z = zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read()))\n\
             assert z.testzip() is None\n\
             for i in z.infolist(): print(i.filename, i.file_size, z.read(i).decode())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(zip).unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tus_upload_cut_short_resumes_where_the_gateway_holds_it() {
    let g = start_with_tables(&web_tables("")).await;
    let web = Web::login(&g, "alice").await;
    const MIB: usize = 1 << 20;
    let data = random_bytes(20 * MIB);

    // Refused before any byte: no Tus-Resumable, a name with a slash.
    let r = web
        .req(reqwest::Method::POST, "/tus/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(web.create("/", "a/b", 1).await.0, StatusCode::BAD_REQUEST);

    assert_eq!(
        web.post("/api/mkdir", json!({"path": "/in"})).await.0,
        StatusCode::OK
    );
    let before = requests(&g.metrics().await, "UploadPart");
    let (status, at) = web.create("/in", "big.bin", data.len() as u64).await;
    assert_eq!(status, StatusCode::CREATED);
    // 10 MiB: one 8 MiB part sent (the default part size), 2 MiB held.
    assert_eq!(
        web.patch(&at, 0, data[..10 * MIB].to_vec()).await,
        (StatusCode::NO_CONTENT, Some(10 * MIB as u64))
    );
    // Another offset than the gateway's is refused, and tells where it is.
    assert_eq!(
        web.patch(&at, 0, vec![0; 10]).await,
        (StatusCode::CONFLICT, Some(10 * MIB as u64))
    );

    // A PATCH cut after 1 MiB of the 6 it announced.
    let mut raw = std::net::TcpStream::connect(g.web.unwrap()).unwrap();
    write!(
        raw,
        "PATCH {at} HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nX-CSRF-Token: {}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: {}\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        web.cookie,
        web.csrf,
        10 * MIB,
        6 * MIB
    )
    .unwrap();
    raw.write_all(&data[10 * MIB..11 * MIB]).unwrap();
    raw.flush().unwrap();
    drop(raw);
    // HEAD says what the store holds: the first part, whatever the
    // gateway had of the next (so a client resumes right at any node).
    assert_eq!(web.head(&at).await, (StatusCode::OK, Some(8 * MIB as u64)));
    let (status, offset) = web
        .patch(&at, 8 * MIB as u64, data[8 * MIB..].to_vec())
        .await;
    assert_eq!(
        (status, offset),
        (StatusCode::NO_CONTENT, Some(data.len() as u64))
    );
    assert_eq!(object(&g, "alice/in/big.bin"), data);
    let (keys, multipart) = bucket_state(&g, "alice/in");
    assert_eq!(
        (keys, multipart),
        (
            vec!["alice/in/".to_string(), "alice/in/big.bin".to_string()],
            0
        )
    );
    // 20 MiB in 8 MiB parts: three, none sent twice.
    assert_eq!(requests(&g.metrics().await, "UploadPart") - before, 3);
    // Done: the upload is gone.
    assert_eq!(web.head(&at).await.0, StatusCode::NOT_FOUND);

    // Terminated: nothing stored, no multipart upload left.
    let (_, at) = web.create("/in", "gone.bin", 8 * MIB as u64).await;
    assert_eq!(
        web.patch(&at, 0, data[..6 * MIB].to_vec()).await.0,
        StatusCode::NO_CONTENT
    );
    let bob = Web::login(&g, "bob").await;
    assert_eq!(
        bob.head(&at).await.0,
        StatusCode::NOT_FOUND,
        "another user's upload"
    );
    assert_eq!(
        bob.patch(&at, 6 * MIB as u64, vec![1]).await.0,
        StatusCode::NOT_FOUND
    );
    let r = web
        .req(reqwest::Method::DELETE, &at)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(web.head(&at).await.0, StatusCode::NOT_FOUND);
    until("the terminated upload aborted", async || {
        bucket_state(&g, "alice/in")
            == (
                vec!["alice/in/".to_string(), "alice/in/big.bin".to_string()],
                0,
            )
    })
    .await;

    // More bytes than announced fail the upload whole.
    let (_, at) = web.create("/in", "short.bin", 10).await;
    assert_eq!(
        web.patch(&at, 0, vec![7; 11]).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(web.head(&at).await.0, StatusCode::NOT_FOUND);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_upload_past_the_quota_is_refused_before_any_byte() {
    let g = start_with_tables(&web_tables("")).await;
    let small = Web::login(&g, "small").await;
    let before = g.metrics().await;
    let (status, _) = small.create("/", "big.bin", 2 << 20).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Past max_file_size: the rule is named, as an upload growing past it is told.
    let r = small
        .req(reqwest::Method::POST, "/tus/")
        .header("tus-resumable", "1.0.0")
        .header("upload-length", 4 << 20)
        .header("upload-metadata", format!("filename {}", b64("huge.bin")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        body["error"],
        "permission denied: max_file_size: files of at most 3 MiB"
    );
    let after = g.metrics().await;
    for op in ["PutObject", "CreateMultipartUpload", "UploadPart"] {
        assert_eq!(requests(&after, op), requests(&before, op), "{op}");
    }
    // Within the quota, it goes.
    let (status, at) = small.create("/", "ok.bin", 1000).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        small.patch(&at, 0, vec![1; 1000]).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(object(&g, "small/ok.bin"), vec![1; 1000]);
    // At most 64 unfinished uploads at once (each may hold a part of
    // memory between requests); finishing one makes room.
    let mut open = Vec::new();
    for i in 0..64 {
        let (status, at) = small.create("/", &format!("u{i}"), 10).await;
        assert_eq!(status, StatusCode::CREATED, "upload {i}");
        open.push(at);
    }
    assert_eq!(
        small.create("/", "u64", 10).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        small.patch(&open[0], 0, vec![2; 10]).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(small.create("/", "u64", 10).await.0, StatusCode::CREATED);
    // An empty file needs no PATCH.
    let (status, _) = small.create("/", "empty", 0).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(object(&g, "small/empty"), b"");
    g.stop().await;
}

/// `node tests/clients/tus.mjs ARGS`, its stdout lines read as they come.
fn tus_js(args: &[&str]) -> tokio::process::Child {
    let clients = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    assert!(
        std::path::Path::new(clients)
            .join("node_modules/tus-js-client")
            .exists(),
        "tus-js-client is not installed: scripts/test runs npm ci in tests/clients"
    );
    tokio::process::Command::new("node")
        .arg(format!("{clients}/tus.mjs"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_uploads_resumes_after_being_killed_and_terminates() {
    use tokio::io::AsyncBufReadExt;
    let g = start_with_tables(&web_tables("")).await;
    let web = Web::login(&g, "alice").await;
    const MIB: usize = 1 << 20;
    let data = random_bytes(24 * MIB);
    let file = g.dir.path().join("report.bin");
    std::fs::write(&file, &data).unwrap();
    let store = g.dir.path().join("tus-urls.json");
    let endpoint = format!("{}/tus/", web.base);
    let upload_args = [
        "upload",
        file.to_str().unwrap(),
        &endpoint,
        &web.cookie,
        &web.csrf,
        store.to_str().unwrap(),
        "4194304",
    ];
    let before = requests(&g.metrics().await, "UploadPart");

    // Killed once it has sent 10 MiB.
    let mut first = tus_js(&upload_args);
    let mut lines = tokio::io::BufReader::new(first.stdout.take().unwrap()).lines();
    let mut url = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(u) = line.strip_prefix("url ") {
            url = u.to_string();
        }
        let sent = line
            .strip_prefix("progress ")
            .map(|n| n.parse::<usize>().unwrap());
        if sent.is_some_and(|n| n >= 10 * MIB) {
            break;
        }
        assert_ne!(line, "done", "finished before it could be killed");
    }
    first.kill().await.unwrap();
    let at = url.trim_start_matches(&web.base).to_string();
    let (status, held) = web.head(&at).await;
    assert_eq!(status, StatusCode::OK);
    let held = held.unwrap();
    assert!(held >= 8 * MIB as u64, "held {held}");

    // Run again: it finds the upload it began and goes on from there.
    let second = tus_js(&upload_args).wait_with_output().await.unwrap();
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{out}");
    assert!(
        out.contains("resuming") && out.trim_end().ends_with("done"),
        "{out}"
    );
    let first_progress: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("progress "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        first_progress as u64 >= held,
        "the second run started from the held bytes: {out}"
    );
    assert_eq!(object(&g, "alice/report.bin"), data);
    // 24 MiB in 8 MiB parts: three, none sent twice.
    assert_eq!(requests(&g.metrics().await, "UploadPart") - before, 3);

    // Terminated by the client: nothing stored, nothing left in S3.
    let other = g.dir.path().join("other.bin");
    std::fs::write(&other, &data[..12 * MIB]).unwrap();
    let store2 = g.dir.path().join("tus-urls-2.json");
    let mut args = upload_args;
    args[1] = other.to_str().unwrap();
    args[5] = store2.to_str().unwrap();
    let mut run = tus_js(&args);
    let mut lines = tokio::io::BufReader::new(run.stdout.take().unwrap()).lines();
    let mut url = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(u) = line.strip_prefix("url ") {
            url = u.to_string();
        }
        if line.starts_with("progress ") && !url.is_empty() {
            break;
        }
    }
    run.kill().await.unwrap();
    let out = tus_js(&["terminate", &url, &web.cookie, &web.csrf])
        .wait_with_output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let at = url.trim_start_matches(&web.base).to_string();
    assert_eq!(web.head(&at).await.0, StatusCode::NOT_FOUND);
    until("the terminated upload aborted", async || {
        let home = ["alice/", "alice/report.bin"].map(String::from).to_vec();
        bucket_state(&g, "alice/") == (home, 0)
    })
    .await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_in_chromium_uploads_resumes_downloads_and_shows_names_as_text() {
    let g = start_with_tables(&web_tables("")).await;
    let evil = "<img src=x onerror=alert(1)>.txt";
    g.s3(&format!(
        "s3.put_object(Bucket=bucket, Key={:?}, Body=b'<script>alert(2)</script>')",
        format!("alice/{evil}")
    ));
    const MIB: usize = 1 << 20;
    let files = g.dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let made = [
        ("notes.txt", b"meeting notes\n".to_vec()),
        ("table.csv", b"a,b\n1,2\n".to_vec()),
        ("big.bin", random_bytes(50 * MIB)),
        ("resume.bin", random_bytes(20 * MIB)),
        ("again.bin", random_bytes(12 * MIB)),
    ];
    for (name, data) in &made {
        std::fs::write(files.join(name), data).unwrap();
    }
    let before = requests(&g.metrics().await, "UploadPart");
    let (url, files) = (
        format!("http://{}/", g.web.unwrap()),
        files.display().to_string(),
    );
    let shots = common::browser(
        "web.py",
        "web-screenshots",
        &[("WEB_URL", &url), ("FILES", &files)],
    )
    .await;
    // What the page did, as the bucket shows it.
    for (name, data) in &made[..] {
        if *name != "table.csv" {
            assert_eq!(&object(&g, &format!("alice/{name}")), data, "{name}");
        }
    }
    let (keys, multipart) = bucket_state(&g, "alice/");
    assert_eq!(multipart, 0);
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("table") || k.contains("renamed")),
        "{keys:?}"
    );
    // 50, 20 and 12 MiB in 8 MiB parts: 7, 3 and 2, none sent twice
    // though resume.bin's connection was cut and again.bin was picked
    // again in a reloaded page.
    assert_eq!(requests(&g.metrics().await, "UploadPart") - before, 12);
    for shot in ["files", "phone"] {
        let png = std::fs::read(format!("{shots}/{shot}.png")).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{shot}");
    }
    g.stop().await;
}

/// A visitor without an account: no cookie jar but the one it is given.
async fn visit(url: &str, cookie: Option<&str>) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_open_for_their_uses_time_password_and_networks_only() {
    let hooks = common::receiver::Receiver::start().await;
    let hook = format!(
        "[[webhooks]]\nname = \"h\"\nurl = \"{}\"\nsecret = \"s\"\nevents = [\"share_download\", \"share_upload\"]\n",
        hooks.url()
    );
    let g = start_with_tables(&web_tables(&format!(
        "[[users]]\nname = \"sharer\"\npassword = \"{HASH}\"\nhome = \"store:/alice\"\n\
         permissions = [\"*\", \"share\"]\n\n{hook}"
    )))
    .await;
    g.s3(
        "s3.put_object(Bucket=bucket, Key='alice/docs/a.txt', Body=b'file a')\n\
         s3.put_object(Bucket=bucket, Key='alice/docs/sub/b.txt', Body=b'file b')\n\
         s3.put_object(Bucket=bucket, Key='alice/inbox/', Body=b'')\n\
         s3.put_object(Bucket=bucket, Key='alice/secret.txt', Body=b'not shared')",
    );
    // "*" does not grant share.
    let alice = Web::login(&g, "alice").await;
    let link = json!({"path": "/docs", "kind": "download", "expires": "1d"});
    assert_eq!(
        alice.post("/api/shares", link.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let web = Web::login(&g, "sharer").await;

    // A folder for download, used at most twice.
    let (status, made) = web
        .post(
            "/api/shares",
            json!({"path": "/docs", "kind": "download", "expires": "1d", "max_uses": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let url = made["url"].as_str().unwrap().to_string();
    let (status, page) = visit(&url, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("a.txt") && page.contains("sub/") && !page.contains("secret"),
        "{page}"
    );
    let (status, body) = visit(&format!("{url}/get?path=/a.txt"), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "file a"));
    // Nothing outside the folder, whatever the path says.
    let (status, _) = visit(&format!("{url}/get?path=/../secret.txt"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // That was the second use: the link is spent.
    let (status, page) = visit(&format!("{url}/get?path=/a.txt"), None).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("used as many times"), "{page}");
    assert_eq!(visit(&url, None).await.0, StatusCode::GONE);
    let event = hooks.event(|e| e["event"] == "share_download").await.json();
    assert_eq!(event["share"]["id"], made["id"]);
    assert_eq!(event["share"]["creator"], "sharer");
    assert_eq!(
        (event["user"].as_str(), event["path"].as_str()),
        (Some("sharer"), Some("/a.txt"))
    );

    // A file behind a password: the page asks; a wrong one is refused.
    let (_, made) = web
        .post("/api/shares", json!({"path": "/docs/a.txt", "kind": "download", "expires": "1h", "password": "open sesame"}))
        .await;
    let url = made["url"].as_str().unwrap().to_string();
    let (status, page) = visit(&url, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("This link has a password"), "{page}");
    assert_eq!(
        visit(&format!("{url}/get"), None).await.0,
        StatusCode::FORBIDDEN
    );
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = |p: &str| {
        no_redirect
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("password={}", enc(p)))
            .send()
    };
    let wrong = form("guess").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.unwrap().contains("Wrong password"));
    let right = form("open sesame").await.unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let cookie = right.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, body) = visit(&format!("{url}/get"), Some(&cookie)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "file a"));

    // Allowed networks: this one is not among them.
    let (_, made) = web
        .post("/api/shares", json!({"path": "/docs", "kind": "download", "expires": "1h", "allowed_ips": ["192.0.2.0/24"]}))
        .await;
    assert_eq!(
        visit(made["url"].as_str().unwrap(), None).await.0,
        StatusCode::FORBIDDEN
    );

    // Revoked: 410, and gone from nothing else.
    let (_, made) = web
        .post(
            "/api/shares",
            json!({"path": "/docs", "kind": "download", "expires": "1h"}),
        )
        .await;
    let url = made["url"].as_str().unwrap().to_string();
    assert_eq!(visit(&url, None).await.0, StatusCode::OK);
    let id = made["id"].as_str().unwrap();
    let r = web
        .req(reqwest::Method::DELETE, &format!("/api/shares/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, page) = visit(&url, None).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("revoked"), "{page}");
    // Expired: 410 once its time is past.
    let (_, made) = web
        .post(
            "/api/shares",
            json!({"path": "/docs", "kind": "download", "expires": "2s"}),
        )
        .await;
    let url = made["url"].as_str().unwrap().to_string();
    assert_eq!(visit(&url, None).await.0, StatusCode::OK);
    until("the link expired", async || {
        visit(&url, None).await.0 == StatusCode::GONE
    })
    .await;
    assert!(visit(&url, None).await.1.contains("expired"));
    // An unknown token, and an expiry past share_max_time (30 days).
    assert_eq!(
        visit(&format!("{}/s/AAAAAAAAAAAAAAAAAAAAAA", web.base), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = web
        .post(
            "/api/shares",
            json!({"path": "/docs", "kind": "download", "expires": "31d"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("share_max_time"),
        "{body}"
    );

    // An upload link: a file goes in, nothing is listed, no way out.
    let (_, made) = web
        .post(
            "/api/shares",
            json!({"path": "/inbox", "kind": "upload", "expires": "1h"}),
        )
        .await;
    let url = made["url"].as_str().unwrap().to_string();
    let (status, page) = visit(&url, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Upload files to inbox"), "{page}");
    let put = |name: &str, body: &'static [u8]| {
        reqwest::Client::new()
            .post(format!("{url}/put?name={}", enc(name)))
            .header("x-share-upload", "1")
            .body(body)
            .send()
    };
    assert_eq!(
        put("report.csv", b"1,2,3").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(object(&g, "alice/inbox/report.csv"), b"1,2,3");
    // Not twice under one name, not outside, not a listing, not a download.
    assert_eq!(
        put("report.csv", b"other").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(object(&g, "alice/inbox/report.csv"), b"1,2,3");
    assert_eq!(
        put("../secret.txt", b"x").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        visit(&format!("{url}/get?path=/report.csv"), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert!(!visit(&url, None).await.1.contains("report.csv"));
    assert_eq!(object(&g, "alice/secret.txt"), b"not shared");
    let event = hooks.event(|e| e["event"] == "share_upload").await.json();
    assert_eq!(event["path"], "/report.csv");

    // The user's own list shows the links with their uses.
    let (_, mine) = web.json("/api/shares").await;
    let first = &mine["shares"].as_array().unwrap()[0];
    assert_eq!(
        (first["uses"].as_u64(), first["max_uses"].as_u64()),
        (Some(2), Some(2))
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_makes_lists_and_revokes_links_through_the_api() {
    use sha2::Digest;
    let token = "bgt_web-test-token";
    let hash = bucketgate::base::hex(&sha2::Sha256::digest(token.as_bytes()));
    let g = start_with_tables(&web_tables(&format!(
        "[[admin.tokens]]\nname = \"bot\"\nhash = \"sha256:{hash}\"\n"
    )))
    .await;
    g.s3("s3.put_object(Bucket=bucket, Key='bob/report.pdf', Body=b'%PDF')");
    let api = |method: reqwest::Method, path: &str| {
        reqwest::Client::new()
            .request(method, format!("http://{}/api/v1/{path}", g.admin))
            .header("authorization", format!("Bearer {token}"))
    };
    let r = api(reqwest::Method::POST, "shares")
        .header("content-type", "application/json")
        .body(
            json!({"user": "bob", "path": "/report.pdf", "kind": "download", "expires": "7d"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let made: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (made["user"].as_str(), made["creator"].as_str()),
        (Some("bob"), Some("admin:bot"))
    );
    let url = made["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("http://{}/s/", g.web.unwrap())),
        "{url}"
    );
    assert_eq!(
        visit(&format!("{url}/get"), None).await,
        (StatusCode::OK, "%PDF".to_string())
    );
    // Listed with its use; then revoked, and 410.
    let r = api(reqwest::Method::GET, "shares?user=bob")
        .send()
        .await
        .unwrap();
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(list["shares"][0]["uses"], 1);
    assert!(list["shares"][0].get("token_hash").is_none(), "{list}");
    let id = made["id"].as_str().unwrap();
    let r = api(reqwest::Method::DELETE, &format!("shares/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(visit(&url, None).await.0, StatusCode::GONE);
    // A user the config does not have, a path that is not there.
    for (user, path, status) in [
        ("nobody", "/x", StatusCode::BAD_REQUEST),
        ("bob", "/nope", StatusCode::NOT_FOUND),
    ] {
        let r = api(reqwest::Method::POST, "shares")
            .header("content-type", "application/json")
            .body(
                json!({"user": user, "path": path, "kind": "download", "expires": "1d"})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{user} {path}");
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_in_chromium_each_opened_in_a_fresh_context() {
    let g = start_with_tables(&web_tables(&format!(
        "[[users]]\nname = \"sharer\"\npassword = \"{HASH}\"\nhome = \"store:/alice\"\n\
         permissions = [\"*\", \"share\"]\n\n[[admin.users]]\nname = \"ops\"\npassword = \"{HASH}\"\n"
    )))
    .await;
    g.s3(
        "s3.put_object(Bucket=bucket, Key='alice/docs/a.txt', Body=b'file a')\n\
         s3.put_object(Bucket=bucket, Key='alice/inbox/', Body=b'')",
    );
    let files = g.dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("dropped.csv"), b"x,y\n").unwrap();
    let (url, files) = (
        format!("http://{}/", g.web.unwrap()),
        files.display().to_string(),
    );
    let console = format!("http://{}/", g.admin);
    let env = [
        ("WEB_URL", url.as_str()),
        ("FILES", &files),
        ("CONSOLE_URL", &console),
    ];
    let shots = common::browser("share.py", "web-screenshots", &env).await;
    assert_eq!(object(&g, "alice/inbox/dropped.csv"), b"x,y\n");
    for shot in ["share", "links", "dropbox", "console-shares"] {
        let png = std::fs::read(format!("{shots}/{shot}.png")).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{shot}");
    }
    g.stop().await;
}

fn gauge(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tus_upload_gives_its_memory_back_and_says_where_it_stands() {
    let g = start_with_tables(&web_tables("")).await;
    let web = Web::login(&g, "alice").await;
    const MIB: usize = 1 << 20;
    let data = random_bytes(12 * MIB);
    let (_, at) = web.create("/", "slow.bin", data.len() as u64).await;
    // 3 MiB of an 8 MiB part: held in memory, and counted where it is.
    assert_eq!(
        web.patch(&at, 0, data[..3 * MIB].to_vec()).await.1,
        Some(3 * MIB as u64)
    );
    assert!(gauge(&g.metrics().await, "bucketgate_buffered_bytes") >= 3 * MIB as u64);
    // Left alone, it lets the part go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while gauge(&g.metrics().await, "bucketgate_buffered_bytes") != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle upload kept its part"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // It stands at 0 now, where its parts end, and says so.
    assert_eq!(
        web.patch(&at, 3 * MIB as u64, vec![1]).await,
        (StatusCode::CONFLICT, Some(0))
    );
    assert_eq!(web.head(&at).await, (StatusCode::OK, Some(0)));
    let (status, offset) = web.patch(&at, 0, data.clone()).await;
    assert_eq!(
        (status, offset),
        (StatusCode::NO_CONTENT, Some(data.len() as u64))
    );
    assert_eq!(object(&g, "alice/slow.bin"), data);
    g.stop().await;
}

/// Upload `i`'s bytes, made as they are sent: 4 MiB from a seed.
fn pattern(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_tus_uploads_at_once_are_whole_and_memory_stays_in_budget() {
    use common::served::{PeakRss, Served, user};
    use md5::Digest;
    const MIB: u64 = 1 << 20;
    // Four users, 50 uploads each (a user has at most 64 unfinished).
    let names = ["u0", "u1", "u2", "u3"];
    let users: String = names.iter().map(|n| user(n)).collect();
    let users = format!("{users}\n[web]\nlisten = \"127.0.0.1:0\"\n");
    let served = Served::start_full("memory_budget = \"64MiB\"", "", &users);
    let base = format!("http://{}", served.listening("web client listening"));
    let mut webs = Vec::new();
    for n in names {
        webs.push(std::sync::Arc::new(Web::login_at(&base, n).await));
    }
    let baseline = served.rss();
    let watch = PeakRss::watch(served.child.id());
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let web = webs[i as usize % 4].clone();
        tasks.push(tokio::spawn(async move {
            // Made off the async threads: a client busy computing would
            // be late with its requests' headers (the gateway waits 10 s
            // for them), and that is not what this test measures.
            let (data, md5) = tokio::task::spawn_blocking(move || {
                let data = pattern(i, 4 << 20);
                let md5 = bucketgate::base::hex(&md5::Md5::digest(&data));
                (data, md5)
            })
            .await
            .unwrap();
            // As a tus client does: a request that fails on the way
            // (on this loaded machine, a connection the gateway closed
            // for headers late past its 10 s) is sent again, a PATCH from
            // where HEAD says the upload stands.
            let mut tries = 0;
            let mut retry = |e: reqwest::Error| {
                tries += 1;
                assert!(tries < 5, "upload {i}: {e}");
            };
            let at = loop {
                let sent = web
                    .req(reqwest::Method::POST, "/tus/")
                    .header("tus-resumable", "1.0.0")
                    .header("upload-length", data.len())
                    .header(
                        "upload-metadata",
                        format!("filename {}", b64(&format!("f{i:03}.bin"))),
                    )
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        assert_eq!(r.status(), StatusCode::CREATED, "upload {i}");
                        break r.headers()["location"].to_str().unwrap().to_string();
                    }
                    Err(e) => retry(e),
                }
            };
            let mut offset = 0;
            loop {
                let sent = web
                    .req(reqwest::Method::PATCH, &at)
                    .header("tus-resumable", "1.0.0")
                    .header("upload-offset", offset)
                    .header("content-type", "application/offset+octet-stream")
                    .body(data[offset as usize..].to_vec())
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        assert_eq!(
                            (r.status(), offset_of(&r)),
                            (StatusCode::NO_CONTENT, Some(4 << 20)),
                            "upload {i}"
                        );
                        break;
                    }
                    Err(e) => {
                        retry(e);
                        // The cut request may still hold the upload a while.
                        let mut waits = 0;
                        offset = loop {
                            match web.head(&at).await {
                                (StatusCode::OK, Some(held)) => break held,
                                other => assert!(waits < 600, "upload {i}: {other:?}"),
                            }
                            waits += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        };
                    }
                }
            }
            md5
        }));
    }
    let mut sums = Vec::new();
    for t in tasks {
        match t.await {
            Ok(sum) => sums.push(sum),
            Err(e) => panic!("{e}"),
        }
    }
    let peak = watch.peak();
    // Every object whole: its size, and its ETag (one PUT: the MD5).
    let listed = served.s3("for o in s3.list_objects_v2(Bucket=bucket)['Contents']:\n\
         \x20   print(o['Key'], o['Size'], o['ETag'].strip('\"'))");
    let mut lines: Vec<&str> = listed.lines().filter(|l| l.contains("/f")).collect();
    lines.sort_by_key(|l| &l[3..]);
    assert_eq!(lines.len(), 200);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            *line,
            format!("u{}/f{i:03}.bin {} {}", i % 4, 4 << 20, sums[i])
        );
    }
    let overhead = 64 * MIB;
    println!(
        "idle {} MiB, peak {} MiB with 200 uploads",
        baseline / MIB,
        peak / MIB
    );
    assert!(
        peak < baseline + 64 * MIB + overhead,
        "peak RSS {} MiB: idle {} MiB + budget 64 MiB + {} MiB allowed",
        peak / MIB,
        baseline / MIB,
        overhead / MIB
    );
}
