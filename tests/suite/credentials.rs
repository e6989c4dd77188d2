//! A remote's keys rotated without a restart: `file:` values are read
//! again at SIGHUP and the remote signs its next requests with the new key,
//! the parts of an upload in flight included. moto takes any key, so the
//! remote is reached through a relay that notes which key signed each
//! request; where the old key must be refused, the store is Garage (see
//! garage.rs). (moto's own key checking, INITIAL_NO_AUTH_ACTION_COUNT,
//! refuses any listing whose query holds a `/`, boto3's too: no use here.)

use crate::common;
use common::gateway::PASSWORD;
use common::served::{Process, Served, user};
use std::sync::{Arc, Mutex};

/// Each request the relay passed: `METHOD /path?query` and the access key
/// id of its signature.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// S3's answer to a key id it does not know.
const REFUSAL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidAccessKeyId</Code>\
<Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>";

/// A relay to `upstream` on loopback (the tests' fault proxy) noting the
/// access key id that signed each request, and answering one signed with
/// `refused` as S3 answers a key it does not know: its URL, and what it saw.
async fn key_watch(upstream: String, refused: &'static str) -> (String, Seen) {
    let seen = Seen::default();
    let noted = seen.clone();
    let addr = common::fault_proxy_seeing(upstream, move |request, _| {
        let key = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').next())
            .unwrap_or("")
            .to_string();
        let target = request.uri.path_and_query().map_or("/", |p| p.as_str());
        let refuse = key == refused;
        noted
            .lock()
            .unwrap()
            .push((format!("{} {target}", request.method), key));
        match refuse {
            true => common::Fault::Fail(403, REFUSAL),
            false => common::Fault::Pass,
        }
    })
    .await;
    (format!("http://{addr}"), seen)
}

/// paramiko uploads the file at argv[2] as big.bin, slowed by the user's
/// bandwidth_up; prints "ok" once the close is answered.
const UPLOAD: &str = r#"
import paramiko, sys
port, path, password = sys.argv[1:]
t = paramiko.Transport(("127.0.0.1", int(port)))
t.connect(username="alice", password=password)
paramiko.SFTPClient.from_transport(t).put(path, "big.bin")
t.close()
print("ok")
"#;

/// A 16 MiB file in `dir`: its path and bytes.
fn big_file(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("big.bin");
    let bytes: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// alice, whose uploads go at 3 MiB/s: 16 MiB take about 5 s.
fn slow_alice() -> String {
    format!("{}bandwidth_up = \"3MiB/s\"\n", user("alice"))
}

/// paramiko's upload of `path` as alice's big.bin, running.
fn upload(
    g: &Served,
    path: &std::path::Path,
) -> tokio::task::JoinHandle<std::io::Result<std::process::Output>> {
    let run = tokio::process::Command::new("python3")
        .args(["-c", UPLOAD, &g.sftp.port().to_string()])
        .arg(path)
        .arg(PASSWORD)
        .output();
    tokio::spawn(run)
}

/// The gateway as a process, started off the async threads.
async fn serve(users: String, process: Process) -> Served {
    tokio::task::spawn_blocking(move || Served::start_limited("", "", "", &users, process))
        .await
        .unwrap()
}

/// The first line of the gateway's log holding `text`, waited for off the
/// async threads.
async fn log_line(g: Served, text: &'static str) -> (Served, String) {
    tokio::task::spawn_blocking(move || {
        let line = g.log_line(text);
        (g, line)
    })
    .await
    .unwrap()
}

/// What `check-config` prints of the gateway's config, with `env`.
fn checked(g: &Served, env: &[(String, String)]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bucketgate"))
        .args(["check-config", "--config"])
        .arg(g.dir.path().join("gateway.toml"))
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_uploaded(out: std::process::Output) {
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `request` is a part of big.bin signed by `signer`.
fn part((request, key): &(String, String), signer: &str) -> bool {
    request.starts_with("PUT ") && request.contains("big.bin?partNumber=") && key == signer
}

/// A new bucket of the shared moto, reached through a [`key_watch`] relay
/// refusing `refused`: moto's endpoint, the bucket, the relay's URL, and
/// what it saw.
async fn watched_bucket(name: &str, refused: &'static str) -> (String, String, String, Seen) {
    let moto = common::moto_endpoint();
    let bucket = common::unique(name);
    common::create_bucket(&moto, &bucket);
    let (relay, seen) = key_watch(moto.clone(), refused).await;
    (moto, bucket, relay, seen)
}

/// The remote's keys as `file:` values of the files [`write_keys`] writes.
fn file_keys(dir: &std::path::Path) -> Option<(String, String)> {
    Some((
        format!("file:{}", dir.join("access_key_id").display()),
        format!("file:{}", dir.join("secret_access_key").display()),
    ))
}

fn write_keys(dir: &std::path::Path, key_id: &str) {
    std::fs::write(dir.join("access_key_id"), format!("{key_id}\n")).unwrap();
    std::fs::write(dir.join("secret_access_key"), format!("{key_id}-secret\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_key_files_sign_the_next_requests_after_sighup_an_upload_in_flight_included() {
    let (moto, bucket, relay, seen) = watched_bucket("rotation", "-").await;
    let secrets = tempfile::tempdir().unwrap();
    write_keys(secrets.path(), "KEYOLD");
    let (big, bytes) = big_file(secrets.path());
    let process = Process {
        endpoint: Some(relay),
        bucket: Some(bucket.clone()),
        credentials: file_keys(secrets.path()),
        ..Process::default()
    };
    let g = serve(slow_alice(), process).await;

    let upload = upload(&g, &big);
    // Once the first part went out under the old key, the key files change
    // and the gateway is told.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !seen.lock().unwrap().iter().any(|r| part(r, "KEYOLD")) {
        assert!(tokio::time::Instant::now() < deadline, "no part was sent");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    write_keys(secrets.path(), "KEYNEW");
    g.signal(libc::SIGHUP);
    let (g, line) = log_line(g, "new_credentials").await;
    assert!(line.contains("\"new_credentials\":\"store\""), "{line}");

    assert_uploaded(upload.await.unwrap().unwrap());
    assert!(
        common::s3_object(&moto, &bucket, "alice/big.bin") == bytes,
        "the object differs from the upload"
    );
    let seen = seen.lock().unwrap().clone();
    let last_old = seen.iter().rposition(|(_, key)| key == "KEYOLD").unwrap();
    let first_new = seen.iter().position(|(_, key)| key == "KEYNEW");
    let first_new =
        first_new.unwrap_or_else(|| panic!("no request signed with the new key: {seen:#?}"));
    assert!(last_old < first_new, "the old key after the new: {seen:#?}");
    assert!(
        seen[first_new..].iter().any(|r| part(r, "KEYNEW")),
        "no part of the upload in flight signed with the new key: {seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|(request, key)| request.starts_with("POST ")
                && request.contains("big.bin?uploadId=")
                && key == "KEYNEW"),
        "the upload was not completed with the new key: {seen:#?}"
    );

    // Another endpoint is another store: refused, nothing changed.
    let config = g.dir.path().join("gateway.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let moved = text.replace(
        "endpoint = \"http://127.0.0.1:",
        "endpoint = \"http://127.0.0.2:",
    );
    assert_ne!(moved, text);
    std::fs::write(&config, moved).unwrap();
    g.signal(libc::SIGHUP);
    let (_, line) = log_line(g, "reload refused").await;
    assert!(
        line.contains("remote store: its endpoint changed, which needs a restart"),
        "{line}"
    );
}

/// Without keys, the credential chain: here the container endpoint (EKS
/// Pod Identity's form of it), which hands out credentials that expire
/// within seconds. The remote asks again before they expire, an upload
/// running across an expiry finishes, and check-config names the source.
#[tokio::test(flavor = "multi_thread")]
async fn without_keys_the_container_endpoint_s_credentials_are_renewed_before_they_expire() {
    let (moto, bucket, relay, seen) = watched_bucket("chain", "-").await;
    let endpoint = common::receiver::Receiver::start().await;
    let expiries = Arc::new(Mutex::new(Vec::<(String, std::time::Instant)>::new()));
    let handed = expiries.clone();
    endpoint.answer_with(move |_| {
        let mut handed = handed.lock().unwrap();
        let key = format!("TEMP{}", handed.len() + 1);
        handed.push((
            key.clone(),
            std::time::Instant::now() + std::time::Duration::from_secs(3),
        ));
        let expiration = chrono::Utc::now() + chrono::Duration::seconds(3);
        let body = serde_json::json!({"AccessKeyId": key, "SecretAccessKey": "s", "Token": "t",
                                      "Expiration": expiration.to_rfc3339()});
        (200, body.to_string())
    });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "pod-token").unwrap();
    let (big, bytes) = big_file(dir.path());
    let env = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_string(),
            format!("http://{}/creds", endpoint.addr),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".to_string(),
            token.display().to_string(),
        ),
    ];
    let g = keyless(slow_alice(), relay, &bucket, env, "the container endpoint").await;

    assert_uploaded(upload(&g, &big).await.unwrap().unwrap());
    assert!(
        common::s3_object(&moto, &bucket, "alice/big.bin") == bytes,
        "the object differs from the upload"
    );
    let asked = endpoint.requests();
    assert!(
        asked
            .iter()
            .all(|r| r.header("authorization") == "pod-token")
    );
    let handed = expiries.lock().unwrap().clone();
    assert!(handed.len() >= 2, "asked once only: {handed:?}");
    // The second credentials were fetched before the first expired.
    assert!(
        asked[1].at < handed[0].1,
        "asked again only after the expiry"
    );
    let seen = seen.lock().unwrap().clone();
    let parts: Vec<&str> = seen
        .iter()
        .filter(|(request, _)| request.contains("big.bin?partNumber="))
        .map(|(_, key)| key.as_str())
        .collect();
    assert!(
        parts.iter().all(|key| key.starts_with("TEMP")),
        "a part not signed with the endpoint's credentials: {seen:#?}"
    );
    // The upload ran across an expiry: its parts were signed by more than
    // one of the credentials handed out.
    let first = parts.first().copied();
    assert!(
        parts.iter().any(|key| Some(*key) != first),
        "every part signed with one credential: {parts:?}"
    );
    drop(g);
}

/// A key the store does not take, after a reload: /healthz, the console's
/// Remotes view (its API) and the metrics say the remote's credentials are
/// refused, and one ERROR line says so
/// however many probes are refused.
#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_show_in_healthz_and_metrics_with_one_error_line() {
    let (_, bucket, relay, seen) = watched_bucket("refused", "KEYREVOKED").await;
    let secrets = tempfile::tempdir().unwrap();
    write_keys(secrets.path(), "KEYGOOD");
    let process = Process {
        endpoint: Some(relay),
        bucket: Some(bucket.clone()),
        credentials: file_keys(secrets.path()),
        ..Process::default()
    };
    // The console's API, as its Remotes view reads it, with a token.
    let token_hash = {
        use sha2::Digest;
        bucketgate::base::hex(&sha2::Sha256::digest(b"console-token"))
    };
    let users = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n[[admin.tokens]]\nname = \"ops\"\nhash = \"sha256:{token_hash}\"\n",
        user("alice")
    );
    let g = serve(users, process).await;
    let (g, line) = log_line(g, "admin endpoint listening").await;
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    let admin = line["fields"]["listen"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("http://{admin}{path}"));
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };

    write_keys(secrets.path(), "KEYREVOKED");
    g.signal(libc::SIGHUP);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let health = loop {
        let body: serde_json::Value = serde_json::from_str(&get("/healthz").await).unwrap();
        if body["remotes"]["store"]["credentials"] == "credentials refused (InvalidAccessKeyId)" {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(health["status"], "unhealthy", "{health}");
    let console = http
        .get(format!("http://{admin}/api/v1/remotes"))
        .bearer_auth("console-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let console: serde_json::Value = serde_json::from_str(&console).unwrap();
    assert_eq!(
        console["remotes"][0]["health"]["credentials"], "credentials refused (InvalidAccessKeyId)",
        "{console}"
    );
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("bucketgate_remote_credentials_refused{remote=\"store\"} 1"),
        "{metrics}"
    );
    // Three more probes refused (one every 5 s), still one ERROR line.
    let refused_probes = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(request, key)| request.contains("max-keys=1&") && key == "KEYREVOKED")
            .count()
    };
    let first = refused_probes();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(40);
    while refused_probes() < first + 3 {
        assert!(tokio::time::Instant::now() < deadline, "no more probes");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(g.dir.path().join("log")).unwrap();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") && l.contains("credentials refused"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("\"remote\":\"store\""), "{}", errors[0]);
}

/// paramiko puts a file and gets it back: prints "ok" when the bytes match.
const ROUND_TRIP: &str = r#"
import io, os, paramiko, sys
port, password = sys.argv[1:]
t = paramiko.Transport(("127.0.0.1", int(port)))
t.connect(username="alice", password=password)
s = paramiko.SFTPClient.from_transport(t)
data = os.urandom(1 << 20)
s.putfo(io.BytesIO(data), "web-identity.bin")
back = io.BytesIO()
s.getfo("web-identity.bin", back)
t.close()
print("ok" if back.getvalue() == data else "differ")
"#;

/// The gateway serving `users` from `bucket` at `endpoint` without keys,
/// with `env`: check-config says the credentials come from `source`.
async fn keyless(
    users: String,
    endpoint: String,
    bucket: &str,
    env: Vec<(String, String)>,
    source: &str,
) -> Served {
    let process = Process {
        endpoint: Some(endpoint),
        bucket: Some(bucket.to_string()),
        credentials: Some((String::new(), String::new())),
        env: env.clone(),
        ..Process::default()
    };
    let g = serve(users, process).await;
    let said = checked(&g, &env);
    assert!(
        said.contains(&format!("remote store: credentials from {source}")),
        "{said}"
    );
    g
}

/// Runs [`ROUND_TRIP`] as alice; fails with the gateway's log unless the
/// bytes came back.
async fn round_trip(g: &Served) {
    let out = tokio::process::Command::new("python3")
        .args(["-c", ROUND_TRIP, &g.sftp.port().to_string(), PASSWORD])
        .output()
        .await
        .unwrap();
    if String::from_utf8_lossy(&out.stdout).trim() != "ok" {
        panic!(
            "{}\nthe gateway's log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(g.dir.path().join("log")).unwrap()
        );
    }
}

/// Without keys, web identity (what IRSA gives a pod on EKS): a token file
/// and a role ARN, exchanged at STS (moto's) for the credentials that
/// sign every request.
#[tokio::test(flavor = "multi_thread")]
async fn without_keys_web_identity_is_exchanged_at_sts() {
    let (_, bucket, relay, seen) = watched_bucket("irsa", "-").await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl").unwrap();
    let env = vec![
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".to_string(),
            token.display().to_string(),
        ),
        (
            "AWS_ROLE_ARN".to_string(),
            "arn:aws:iam::123456789012:role/gateway".to_string(),
        ),
        ("AWS_ENDPOINT_URL_STS".to_string(), relay.clone()),
    ];
    let g = keyless(user("alice"), relay, &bucket, env, "web identity").await;
    round_trip(&g).await;
    let seen = seen.lock().unwrap().clone();
    let (exchanges, signed): (Vec<_>, Vec<_>) = seen
        .iter()
        .partition(|(request, _)| request.contains("Action=AssumeRoleWithWebIdentity"));
    assert!(
        exchanges.iter().any(|(request, _)| request
            .contains("WebIdentityToken=eyJhbGciOiJSUzI1NiJ9")
            && request.contains("role%2Fgateway")),
        "{seen:#?}"
    );
    assert!(!signed.is_empty());
    // moto's STS hands out temporary keys, whose ids begin with ASIA.
    assert!(
        signed.iter().all(|(_, key)| key.starts_with("ASIA")),
        "a request not signed with the role's credentials: {seen:#?}"
    );
    drop(g);
}

/// `assume_role_arn`: the remote's keys assume the role at STS (moto's),
/// once, and the role's credentials sign the S3 requests.
#[tokio::test(flavor = "multi_thread")]
async fn assume_role_arn_signs_with_the_role_s_credentials() {
    let (_, bucket, relay, seen) = watched_bucket("role", "-").await;
    let process = Process {
        endpoint: Some(relay.clone()),
        bucket: Some(bucket.clone()),
        credentials: Some(("BASEKEY".into(), "base-secret".into())),
        env: vec![("AWS_ENDPOINT_URL_STS".to_string(), relay)],
        ..Process::default()
    };
    // The users follow the remote's table: a key before them is the remote's.
    let users = user("alice").replace(
        "[[users]]",
        "assume_role_arn = \"arn:aws:iam::123456789012:role/partner-gateway\"\n\n[[users]]",
    );
    let g = serve(users, process).await;
    round_trip(&g).await;
    let seen = seen.lock().unwrap().clone();
    let (assumed, signed): (Vec<_>, Vec<_>) =
        seen.iter().partition(|(request, _)| request == "POST /");
    assert_eq!(assumed.len(), 1, "AssumeRole once: {seen:#?}");
    assert_eq!(assumed[0].1, "BASEKEY", "{seen:#?}");
    assert!(
        !signed.is_empty() && signed.iter().all(|(_, key)| key.starts_with("ASIA")),
        "a request not signed with the role's credentials: {seen:#?}"
    );
    drop(g);
}

/// Without keys and with nothing else in the environment, the instance
/// metadata service (an EC2 instance profile) in its version 2: a session
/// token first, then the role's name and credentials, each asked with the
/// token. The service is a receiver on loopback (`AWS_METADATA_ENDPOINT`)
/// that answers nothing asked without the token, as IMDSv2-only instances do.
#[tokio::test(flavor = "multi_thread")]
async fn without_keys_on_ec2_the_instance_profile_signs_through_imdsv2() {
    let (_, bucket, relay, seen) = watched_bucket("imds", "-").await;
    let imds = common::receiver::Receiver::start().await;
    imds.answer_requests_with(|r| {
        let token = r.headers.get("x-aws-ec2-metadata-token");
        match (r.method.as_str(), r.target.trim_end_matches('/')) {
            ("PUT", "/latest/api/token")
                if r.headers
                    .contains_key("x-aws-ec2-metadata-token-ttl-seconds") =>
            {
                (200, "imds-session".into())
            }
            _ if token.is_none_or(|t| t != "imds-session") => (401, String::new()),
            ("GET", "/latest/meta-data/iam/security-credentials") => {
                (200, "gateway-profile".into())
            }
            ("GET", "/latest/meta-data/iam/security-credentials/gateway-profile") => {
                let expiration = chrono::Utc::now() + chrono::Duration::hours(1);
                let body = serde_json::json!({"Code": "Success", "AccessKeyId": "PROFILEKEY",
                    "SecretAccessKey": "s", "Token": "t", "Expiration": expiration.to_rfc3339()});
                (200, body.to_string())
            }
            _ => (404, String::new()),
        }
    });
    let env = vec![(
        "AWS_METADATA_ENDPOINT".to_string(),
        format!("http://{}", imds.addr),
    )];
    let source = "the instance metadata service (IMDSv2)";
    let g = keyless(user("alice"), relay, &bucket, env, source).await;
    round_trip(&g).await;

    let asked = imds.requests();
    assert!(
        asked.first().is_some_and(|r| r.method == "PUT"),
        "no session token first: {asked:#?}"
    );
    assert!(
        asked.iter().all(|r| r.status == 200),
        "a request without the token: {asked:#?}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|(_, key)| key == "PROFILEKEY"),
        "a request not signed with the instance profile's credentials: {seen:#?}"
    );
    drop(g);
}
