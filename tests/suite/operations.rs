//! What protects a gateway facing the internet: login bans shared by SFTP
//! and FTP, checked with real clients over TCP.

use crate::common;

use common::gateway::{PASSWORD, ssh_password, start_with_tables};
use common::served::{Served, served_config, user};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Three failed logins (SFTP and FTP together) ban the address: its next
/// connections, on either protocol and even with the right password, are
/// closed at once, before any greeting.
#[tokio::test]
async fn repeated_failures_ban_the_address_on_both_protocols() {
    let g = start_with_tables(
        "[security]\nban_threshold = 3\nban_window = \"5m\"\nban_time = \"15m\"\n",
    )
    .await;
    for _ in 0..2 {
        let stream = TcpStream::connect(g.addr).await.unwrap();
        let refused = ssh_password(stream, "alice", "wrong").await.err().unwrap();
        assert_eq!(refused, "authentication failed");
    }
    // The third failure is over FTP.
    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect(g.ftp)
        .await
        .unwrap();
    assert!(ftp.login("alice", "wrong").await.is_err());
    drop(ftp);

    let stream = TcpStream::connect(g.addr).await.unwrap();
    let err = ssh_password(stream, "alice", PASSWORD).await.err().unwrap();
    assert_ne!(
        err, "authentication failed",
        "banned before any SSH exchange"
    );
    let mut raw = TcpStream::connect(g.ftp).await.unwrap();
    let mut greeting = Vec::new();
    raw.read_to_end(&mut greeting).await.unwrap();
    assert!(
        greeting.is_empty(),
        "{}",
        String::from_utf8_lossy(&greeting)
    );
    g.stop().await;
}

/// `name{labels} value` lines of a Prometheus scrape.
async fn scrape(g: &common::gateway::TestGateway) -> std::collections::HashMap<String, f64> {
    let (ok, body, err) =
        common::run("curl", &["-sf", &format!("http://{}/metrics", g.admin)]).await;
    assert!(ok, "{err}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// A transfer moves the counters a dashboard watches: bytes each way,
/// logins, sessions, S3 requests by operation and status, their latency.
#[tokio::test]
async fn a_scrape_after_a_transfer_shows_the_counters_moved() {
    use russh_sftp::protocol::{FileAttributes, OpenFlags};
    let g = common::gateway::start("").await;
    let before = scrape(&g).await;
    let (_h, s) = common::gateway::alice(&g).await;
    let data = common::pattern(1 << 20, 5);
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let handle = s
        .open("/m.bin", flags, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    for (i, chunk) in data.chunks(32 << 10).enumerate() {
        s.write(&handle, (i * (32 << 10)) as u64, chunk.to_vec())
            .await
            .unwrap();
    }
    s.close(handle).await.unwrap();
    let handle = s
        .open("/m.bin", OpenFlags::READ, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    let mut got = 0;
    while got < data.len() {
        got += s
            .read(&handle, got as u64, 32 << 10)
            .await
            .unwrap()
            .data
            .len();
    }
    s.close(handle).await.unwrap();
    let during = scrape(&g).await;
    let moved = |name: &str| {
        during.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    assert!(moved("bucketgate_bytes_received_total{protocol=\"sftp\"}") >= (1 << 20) as f64);
    assert!(moved("bucketgate_bytes_sent_total{protocol=\"sftp\"}") >= (1 << 20) as f64);
    assert!(moved("bucketgate_logins_total{result=\"ok\"}") >= 1.0);
    assert!(during["bucketgate_sessions{protocol=\"sftp\"}"] >= 1.0);
    assert!(moved("bucketgate_s3_requests_total{operation=\"PutObject\",status=\"200\"}") >= 1.0);
    assert!(moved("bucketgate_s3_requests_total{operation=\"GetObject\",status=\"200\"}") >= 1.0);
    assert!(moved("bucketgate_s3_request_seconds_count{operation=\"PutObject\"}") >= 1.0);
    assert!(during.contains_key("bucketgate_uploads_in_flight"));
    g.stop().await;
}

/// A TCP relay in front of S3 that can be taken down (its connections cut,
/// new ones closed at once) and brought back.
struct Relay {
    addr: std::net::SocketAddr,
    down: tokio::sync::watch::Sender<bool>,
}

async fn relay(upstream: std::net::SocketAddr) -> Relay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (down, watch) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if *watch.borrow() {
                continue;
            }
            let mut watch = watch.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = watch.wait_for(|d| *d) => {}
                }
            });
        }
    });
    Relay { addr, down }
}

/// Polls /healthz until it answers `want`; its last body.
async fn health_becomes(g: &common::gateway::TestGateway, want: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let url = format!("http://{}/healthz", g.admin);
        let (_, out, _) = common::run("curl", &["-s", "-w", "\n%{http_code}", &url]).await;
        let (body, code) = out.rsplit_once('\n').unwrap();
        if code == want {
            return body.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "healthz stayed {code}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// /healthz turns 503 naming the remote when its S3 endpoint goes away,
/// and 200 again when it is back.
#[tokio::test]
async fn healthz_follows_the_s3_endpoint() {
    let moto: std::net::SocketAddr = common::moto_endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let relay = relay(moto).await;
    let g = common::gateway::start_via(&format!("http://{}", relay.addr), "retries = 0").await;
    let ok = health_becomes(&g, "200").await;
    assert!(ok.contains("\"status\":\"ok\""), "{ok}");
    relay.down.send(true).unwrap();
    let bad = health_becomes(&g, "503").await;
    assert!(bad.contains("\"status\":\"unhealthy\""), "{bad}");
    assert!(
        bad.contains("\"store\":{") && bad.contains("\"error\""),
        "{bad}"
    );
    relay.down.send(false).unwrap();
    health_becomes(&g, "200").await;
    g.stop().await;
}

/// SIGTERM during uploads: no new connection is taken, an upload that
/// finishes within the grace period is stored, one still open after it is
/// aborted — no object, no multipart upload — and the process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_transfers_finish_then_aborts_the_rest() {
    use russh_sftp::protocol::{FileAttributes, OpenFlags};
    let mut served = Served::start();
    let login = || async {
        let stream = TcpStream::connect(served.sftp).await.unwrap();
        let h = ssh_password(stream, "alice", PASSWORD).await.ok().unwrap();
        let s = common::gateway::sftp(&h).await;
        (h, s)
    };
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let data = common::pattern(7 << 20, 9);
    let mut open = Vec::new();
    for name in ["/finishes.bin", "/stalls.bin"] {
        let (h, s) = login().await;
        let handle = s
            .open(name, flags, FileAttributes::empty())
            .await
            .unwrap()
            .handle;
        // 6 MiB: past the first part, so a multipart upload is under way.
        for (i, chunk) in data[..6 << 20].chunks(64 << 10).enumerate() {
            s.write(&handle, (i * (64 << 10)) as u64, chunk.to_vec())
                .await
                .unwrap();
        }
        open.push((h, s, handle));
    }
    // And an FTP upload that stalls too.
    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect(served.ftp)
        .await
        .unwrap();
    ftp.login("alice", PASSWORD).await.unwrap();
    let mut ftp_data = ftp.put_with_stream("stalls-ftp.bin").await.unwrap();
    ftp_data.write_all(&data[..6 << 20]).await.unwrap();
    ftp_data.flush().await.unwrap();
    served.signal(libc::SIGTERM);
    served.log_line("listeners closed: no new connections");
    assert!(
        TcpStream::connect(served.sftp).await.is_err(),
        "still accepting"
    );
    // One client finishes within the grace period.
    let (_h, s, handle) = &open[0];
    for (i, chunk) in data[6 << 20..].chunks(64 << 10).enumerate() {
        s.write(handle, ((6 << 20) + i * (64 << 10)) as u64, chunk.to_vec())
            .await
            .unwrap();
    }
    s.close(handle.clone()).await.unwrap();
    // The other never does.
    let status = tokio::task::spawn_blocking(move || served.child.wait().map(|s| (s, served)))
        .await
        .unwrap()
        .unwrap();
    let (exit, served) = status;
    assert_eq!(exit.code(), Some(0));
    let listed = served.s3(
        "print(sorted((o['Key'], o['Size']) for o in s3.list_objects_v2(Bucket=bucket).get('Contents', [])))\n\
         print(len(s3.list_multipart_uploads(Bucket=bucket).get('Uploads', [])))",
    );
    assert_eq!(
        listed,
        format!("[('alice/', 0), ('alice/finishes.bin', {})]\n0\n", 7 << 20)
    );
    let log = std::fs::read_to_string(served.dir.path().join("log")).unwrap();
    assert!(log.contains("shutdown grace period over"), "{log}");
}

/// SIGHUP reads the listeners' certificates again, as certbot or
/// cert-manager renew them in place: a connection made after the reload
/// is served the new certificate, an FTPS session opened before goes on
/// (its data connections included), and a pair that does not match
/// refuses the reload, the served certificate unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_serves_a_renewed_certificate_to_new_connections() {
    use common::ftp::{Connector, ftps_at};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = || {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        (params.signed_by(&key, &issuer).unwrap(), key)
    };
    let (first, first_key) = leaf();
    let (second, second_key) = leaf();
    let served = tokio::task::spawn_blocking(Served::start).await.unwrap();
    let (cert_file, key_file) = (
        served.dir.path().join("ftps.pem"),
        served.dir.path().join("ftps.key"),
    );
    let renew = |cert: &rcgen::Certificate, key: &rcgen::KeyPair| {
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        served.signal(libc::SIGHUP);
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let trusting_the_ca = || {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Connector::new(std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
        ))
    };
    let leaf_served = || async {
        let connector = trusting_the_ca();
        let mut ftp = ftps_at(served.ftp, "alice", connector.clone()).await;
        ftp.quit().await.unwrap();
        let leaves = connector.leaves.lock().unwrap().clone();
        leaves[0].clone()
    };

    // The `n`th renewal that took: its reload line names the listener.
    let renewed = |cert: &rcgen::Certificate, key: &rcgen::KeyPair, n: usize| {
        renew(cert, key);
        let reloaded = served.log_lines("new_certificates", n);
        assert!(
            reloaded[n - 1].contains("\"new_certificates\":\"ftp\""),
            "{reloaded:?}"
        );
    };

    // The certificate the gateway started with gives way to the first.
    renewed(&first, &first_key, 1);
    assert_eq!(leaf_served().await, first.der().to_vec());
    let mut before = ftps_at(served.ftp, "alice", trusting_the_ca()).await;

    renewed(&second, &second_key, 2);
    assert_eq!(leaf_served().await, second.der().to_vec());
    // The session from before the renewal: a data connection each way.
    before
        .put_file("renewed.txt", &mut &b"after the renewal"[..])
        .await
        .unwrap();
    let listed = before.nlst(None).await.unwrap();
    assert!(listed.iter().any(|n| n == "renewed.txt"), "{listed:?}");
    before.quit().await.unwrap();

    // A certificate with another's key: refused, the second still served.
    renew(&first, &second_key);
    let refused = served.log_line("reload refused");
    assert!(refused.contains("do not make a usable pair"), "{refused}");
    assert_eq!(leaf_served().await, second.der().to_vec());
}

/// SIGHUP reloads the users: one added to the file can log in at once,
/// sessions go on, and a broken file changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_users() {
    let mut served = Served::start();
    let connect = |user: &'static str| {
        let addr = served.sftp;
        async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            ssh_password(stream, user, PASSWORD).await.map(|_| ())
        }
    };
    assert_eq!(
        connect("erin").await.err().unwrap(),
        "authentication failed"
    );
    let alice = {
        let stream = TcpStream::connect(served.sftp).await.unwrap();
        ssh_password(stream, "alice", PASSWORD).await.ok().unwrap()
    };
    let config = served.dir.path().join("gateway.toml");
    let users = format!("{}\n{}", user("alice"), user("erin"));
    std::fs::write(
        &config,
        served_config(
            served.dir.path(),
            &served.endpoint,
            &served.bucket,
            "",
            "",
            &users,
        ),
    )
    .unwrap();
    served.signal(libc::SIGHUP);
    served.log_line("users reloaded");
    connect("erin").await.unwrap();
    // alice's session, opened before, still works.
    common::gateway::sftp(&alice).await;
    // A broken file: reported, not applied (erin stays).
    std::fs::write(&config, "[server\nnot toml").unwrap();
    served.signal(libc::SIGHUP);
    served.log_line("reload refused, nothing changed");
    connect("erin").await.unwrap();
    served.signal(libc::SIGTERM);
    assert_eq!(served.child.wait().unwrap().code(), Some(0));
}

/// A wrong password, to look for in the log.
const TYPED: &str = "Pa55-never-logged";

/// Behind a load balancer: the PROXY header's address is the one that logs
/// in (allowed_ips), is logged, and is banned — not the balancer's.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_header_sets_the_logged_and_banned_address() {
    let users = format!(
        "{}allowed_ips = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n",
        user("alice")
    );
    let served = Served::start_with(
        "proxy_protocol = \"required\"\nproxy_allowed = [\"127.0.0.0/8\"]",
        &users,
    );
    // A v1 header in front of SSH.
    let via = |client: &'static str| {
        let addr = served.sftp;
        async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 2222\r\n");
            stream.write_all(header.as_bytes()).await.unwrap();
            stream
        }
    };
    // alice may log in only from 192.0.2.0/24: through the header, she can.
    let h = ssh_password(via("192.0.2.51").await, "alice", PASSWORD).await;
    assert!(h.is_ok(), "{:?}", h.err());
    let line = served.log_line("\"message\":\"logged in\"");
    assert!(line.contains("\"peer\":\"192.0.2.51:40000\""), "{line}");
    // Two failures from 192.0.2.66 ban that address, not the balancer's.
    for _ in 0..2 {
        let err = ssh_password(via("192.0.2.66").await, "alice", TYPED)
            .await
            .err()
            .unwrap();
        assert_eq!(err, "authentication failed");
    }
    served.log_line("\"source\":\"192.0.2.66\"");
    let err = ssh_password(via("192.0.2.66").await, "alice", PASSWORD)
        .await
        .err()
        .unwrap();
    assert_ne!(err, "authentication failed", "refused before SSH");
    assert!(
        ssh_password(via("192.0.2.51").await, "alice", PASSWORD)
            .await
            .is_ok()
    );
    // Required: a connection without a header is refused.
    let direct = TcpStream::connect(served.sftp).await.unwrap();
    assert!(ssh_password(direct, "alice", PASSWORD).await.is_err());
    // A v2 header in front of FTP, from an IPv6 client.
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            "[2001:db8::7]:41000"
                .parse::<std::net::SocketAddr>()
                .unwrap(),
            "[2001:db8::1]:21".parse::<std::net::SocketAddr>().unwrap(),
        ),
    )
    .build()
    .unwrap();
    let mut stream = TcpStream::connect(served.ftp).await.unwrap();
    stream.write_all(&header).await.unwrap();
    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect_with_stream(stream)
        .await
        .unwrap();
    ftp.login("alice", PASSWORD).await.unwrap();
    let logins = std::fs::read_to_string(served.dir.path().join("log")).unwrap();
    assert!(
        logins.contains("\"peer\":\"[2001:db8::7]:41000\""),
        "{logins}"
    );
    // What was typed and the S3 secret never reach the log.
    assert!(!logins.contains(TYPED) && !logins.contains(common::SECRET_KEY));
    let _ = ftp.quit().await;
}
