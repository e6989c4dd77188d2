//! A real gateway on a loopback port in front of moto_server, and clients
//! for it: the russh + russh-sftp client, and files for OpenSSH's `sftp`.

use super::*;
use bucketgate::serve::{Gateway, Running};
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg};
use russh_sftp::client::RawSftpSession;
use std::path::PathBuf;

/// "demo", hashed.
pub const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$zbURedr/3LNZOR44c0aY6A$+xFJJgF1BW2u2HQD7E1eR9O5gcRrh9Fhtk/e5e317mI";
pub const PASSWORD: &str = "demo";

pub struct TestGateway {
    /// The admin endpoint (/healthz, /metrics).
    pub admin: SocketAddr,
    /// SFTP.
    pub addr: SocketAddr,
    /// FTP, with FTPS offered (AUTH TLS) under [`TestGateway::cert`].
    pub ftp: SocketAddr,
    /// Implicit FTPS, when the test asked for it (`implicit_listen`).
    pub ftps_implicit: Option<SocketAddr>,
    /// The web client, when the test configured `[web]`.
    pub web: Option<SocketAddr>,
    /// The self-signed certificate (DER) of the FTPS listener, for "localhost".
    pub cert: Vec<u8>,
    pub endpoint: String,
    pub bucket: String,
    /// alice's private key, in OpenSSH format at `key_file`.
    pub key: Arc<PrivateKey>,
    pub key_file: PathBuf,
    pub dir: tempfile::TempDir,
    running: Option<Running>,
}

/// Starts a gateway whose users live in a fresh bucket: alice (password
/// and key; home `store:/alice`, a read-only mount `/shared`) and bob.
pub async fn start(extra_remote: &str) -> TestGateway {
    start_with("", extra_remote).await
}

/// As [`start`], with extra `[server]` keys.
pub async fn start_with(extra_server: &str, extra_remote: &str) -> TestGateway {
    start_full(extra_server, None, extra_remote, "", "", "").await
}

/// As [`start`], with more tables after the users (remotes, `[[syncs]]`).
pub async fn start_with_tables(tables: &str) -> TestGateway {
    start_full("", None, "", "", tables, "").await
}

/// As [`start_with_tables`], with extra `[admin]` keys (its certificate).
pub async fn start_admin_tls(extra_admin: &str, tables: &str) -> TestGateway {
    start_full("", None, "", "", tables, extra_admin).await
}

/// As [`start_with_tables`], with extra `[server]` and `[admin]` keys.
pub async fn start_full_tables(extra_server: &str, extra_admin: &str, tables: &str) -> TestGateway {
    start_full(extra_server, None, "", "", tables, extra_admin).await
}

/// As [`start`], with extra `[ftp]` keys.
pub async fn start_ftp(extra_ftp: &str) -> TestGateway {
    start_full("", None, "", extra_ftp, "", "").await
}

/// As [`start`], with the gateway reaching S3 through `via` (a fault
/// proxy); checks with [`TestGateway::s3`] still go to S3 directly.
pub async fn start_via(via: &str, extra_remote: &str) -> TestGateway {
    start_full("", Some(via), extra_remote, "", "", "").await
}

async fn start_full(
    extra_server: &str,
    via: Option<&str>,
    extra_remote: &str,
    extra_ftp: &str,
    tables: &str,
    extra_admin: &str,
) -> TestGateway {
    // TEST_LOG=debug shows the gateway's log (with libunftp's) on stderr.
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let endpoint = moto_endpoint();
    let bucket = unique("sftp");
    create_bucket(&endpoint, &bucket);
    let dir = tempfile::tempdir().unwrap();
    super::host_keys_into(dir.path());
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let key_file = dir.path().join("alice_key");
    key.write_openssh_file(&key_file, russh::keys::ssh_key::LineEnding::LF)
        .unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let public = key.public_key().to_openssh().unwrap();
    let tls =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join("ftps.pem"), tls.cert.pem()).unwrap();
    std::fs::write(dir.path().join("ftps.key"), tls.signing_key.serialize_pem()).unwrap();
    let text = format!(
        r#"
[server]
keys_dir = "{dir}/keys"
state_dir = "{dir}/state"
{extra_server}

[sftp]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
{extra_admin}

[ftp]
listen = "127.0.0.1:0"
{passive}
tls_cert = "{dir}/ftps.pem"
tls_key = "{dir}/ftps.key"
{extra_ftp}

{remote}

[[users]]
name = "alice"
password = "{HASH}"
authorized_keys = ["no-pty,from=\"127.0.0.1\" {public} alice@test"]
home = "store:/alice"

[[users.mounts]]
path = "/shared"
target = "store:/shared"
read_only = true

[[users]]
name = "bob"
password = "{HASH}"
home = "store:/bob"

[[users]]
name = "carol"
password = "{HASH}"
home = "store:/carol"
max_sessions = 1

[[users]]
name = "dave"
password = "{HASH}"
home = "store:/dave"
allowed_ips = ["192.0.2.0/24"]

{tables}
"#,
        dir = dir.path().display(),
        passive = if extra_ftp.contains("passive_ports") {
            ""
        } else {
            "passive_ports = \"20000-29999\""
        },
        remote = s3_remote_toml(via.unwrap_or(&endpoint), &bucket, extra_remote),
    );
    let running = Gateway::build(parse_config(&text))
        .unwrap()
        .start()
        .await
        .unwrap();
    TestGateway {
        addr: running.sftp.unwrap(),
        ftp: running.ftp.unwrap(),
        ftps_implicit: running.ftps_implicit,
        admin: running.admin.unwrap(),
        web: running.web,
        cert: tls.cert.der().to_vec(),
        endpoint,
        bucket,
        key: Arc::new(key),
        key_file,
        dir,
        running: Some(running),
    }
}

impl TestGateway {
    /// What `GET /metrics` answers now.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Runs a boto3 snippet with `s3` and `bucket` defined.
    pub fn s3(&self, script: &str) -> String {
        boto3(
            &self.endpoint,
            &format!("bucket = '{}'\n{script}", self.bucket),
        )
    }

    /// Waits, bounded, until S3 holds an unfinished multipart upload of
    /// `key`: a test that then cuts the upload checks its abort, not an
    /// upload that never reached S3.
    pub async fn wait_for_multipart(&self, key: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let open = self.s3(&format!(
                "print(len(s3.list_multipart_uploads(Bucket=bucket, Prefix='{key}').get('Uploads', [])))"
            ));
            if open.trim() != "0" {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no multipart upload of {key} ever began"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// What the bucket holds under `prefix`: each key's size, and how
    /// many multipart uploads are open.
    pub fn stored(&self, prefix: &str) -> String {
        self.s3(&format!(
            "print(sorted((o['Key'], o['Size']) for o in s3.list_objects_v2(Bucket=bucket, Prefix='{prefix}').get('Contents', [])),
               len(s3.list_multipart_uploads(Bucket=bucket).get('Uploads', [])))"
        ))
        .trim()
        .to_string()
    }

    pub async fn stop(mut self) {
        if let Some(mut r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }

    /// Graceful shutdown, with no drain and `grace` for open transfers.
    pub async fn shutdown(mut self, grace: std::time::Duration) {
        if let Some(r) = self.running.take() {
            r.shutdown(std::time::Duration::ZERO, grace).await.unwrap();
        }
    }
}

pub struct Client;

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

pub type SshHandle = russh::client::Handle<Client>;

/// An SSH connection over `stream`, logged in with a password.
pub async fn ssh_password(
    stream: tokio::net::TcpStream,
    user: &str,
    password: &str,
) -> Result<SshHandle, String> {
    let config = Arc::new(russh::client::Config::default());
    let mut h = russh::client::connect_stream(config, stream, Client)
        .await
        .map_err(|e| e.to_string())?;
    let auth = h.authenticate_password(user, password).await;
    logged_in(h, auth)
}

fn logged_in(
    h: SshHandle,
    auth: Result<russh::client::AuthResult, russh::Error>,
) -> Result<SshHandle, String> {
    match auth {
        Ok(a) if a.success() => Ok(h),
        Ok(_) => Err("authentication failed".into()),
        Err(e) => Err(e.to_string()),
    }
}

pub async fn ssh_key(
    addr: SocketAddr,
    user: &str,
    key: Arc<PrivateKey>,
) -> Result<SshHandle, String> {
    let config = Arc::new(russh::client::Config::default());
    let mut h = russh::client::connect(config, addr, Client)
        .await
        .map_err(|e| e.to_string())?;
    let auth = h
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, None))
        .await;
    logged_in(h, auth)
}

/// Opens the sftp subsystem on a logged-in connection.
pub async fn sftp(h: &SshHandle) -> RawSftpSession {
    let channel = h.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    let raw = RawSftpSession::new(channel.into_stream());
    // russh-sftp gives up on a request after 10 s; a folder rename of a
    // few hundred objects on a loaded machine (one moto for every test)
    // takes longer, and a second rename waits for the first. A test that
    // wants a bound sets its own.
    raw.set_timeout(120);
    raw.init().await.unwrap();
    raw
}

/// What OpenSSH's `sftp` and `scp` are given here: the key alone, no
/// prompt, any host key.
pub const OPENSSH_OPTIONS: [&str; 8] = [
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "IdentitiesOnly=yes",
];

/// alice's SFTP session, by password.
pub async fn alice(g: &TestGateway) -> (SshHandle, RawSftpSession) {
    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let h = ssh_password(stream, "alice", PASSWORD).await.unwrap();
    let s = sftp(&h).await;
    (h, s)
}

/// OPEN flags of a plain upload: create or replace.
pub fn write_flags() -> russh_sftp::protocol::OpenFlags {
    use russh_sftp::protocol::OpenFlags;
    OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE
}

/// Writes `data` from `from` on with `inflight` pipelined WRITEs of `chunk` bytes.
pub async fn write_all(
    s: &RawSftpSession,
    handle: &str,
    from: usize,
    data: &[u8],
    chunk: usize,
    inflight: usize,
) {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(data.chunks(chunk).enumerate())
        .map(|(i, c)| s.write(handle, (from + i * chunk) as u64, c.to_vec()))
        .buffered(inflight)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

/// Uploads `data` to `path`, 32 KiB per WRITE, 64 in flight.
pub async fn put(s: &RawSftpSession, path: &str, data: &[u8]) {
    let h = s
        .open(
            path,
            write_flags(),
            russh_sftp::protocol::FileAttributes::empty(),
        )
        .await
        .unwrap()
        .handle;
    write_all(s, &h, 0, data, 32 << 10, 64).await;
    s.close(h).await.unwrap();
}
