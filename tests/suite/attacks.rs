//! The attacks of issue 30 on the surfaces added last (the admin listener,
//! webhooks, checksums, LDAP, prefetch), each in the shape it was found,
//! against `bucketgate serve` as a process or the gateway in-process.

use crate::common;

use common::gateway::{self, PASSWORD};
use common::served::{Process, Served, user};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raises this process's own open-file limit: the attack needs more
/// sockets than a default soft limit of 1024.
fn raise_own_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(65_536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// 1500 connections to the admin listener, each dripping a header byte
/// (slowloris), under `ulimit -n 512`: the listener keeps at most its cap
/// of them and cuts those at the header timeout, SFTP and FTP go on
/// accepting and logging in throughout, and the admin endpoint answers
/// again once they are gone. Before, all 1500 stayed open and, with 1024
/// descriptors, the other listeners failed with EMFILE.
#[tokio::test(flavor = "multi_thread")]
async fn slow_admin_connections_are_capped_and_cut() {
    raise_own_open_files();
    let served = Served::start_limited(
        "",
        "",
        "",
        &format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", user("alice")),
        Process {
            open_files: Some(512),
            ..Default::default()
        },
    );
    let admin = served.admin();
    // Opened all at once; a connect the kernel leaves unanswered (a full
    // backlog behind a listener that cannot accept) counts as not opened.
    let opened = futures::future::join_all((0..1500).map(|_| async move {
        let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(admin))
            .await
            .ok()?
            .ok()?;
        let _ = stream.write_all(b"G").await;
        Some(stream)
    }))
    .await;
    let mut slow: Vec<TcpStream> = opened.into_iter().flatten().collect();
    // A drip on every connection the gateway kept.
    for stream in &mut slow {
        let _ = stream.write_all(b"E").await;
    }
    // Meanwhile the session listeners accept and log in.
    // (Bounded: a listener out of file descriptors never answers.)
    let login = async {
        let stream = TcpStream::connect(served.sftp).await.unwrap();
        gateway::ssh_password(stream, "alice", PASSWORD)
            .await
            .is_ok()
    };
    let logged_in = tokio::time::timeout(Duration::from_secs(30), login).await;
    assert_eq!(logged_in, Ok(true), "an SFTP login during the flood");
    let greeting = async {
        let mut ftp = TcpStream::connect(served.ftp).await.unwrap();
        let mut greeting = [0u8; 3];
        ftp.read_exact(&mut greeting).await.map(|_| greeting)
    };
    let greeting = tokio::time::timeout(Duration::from_secs(30), greeting).await;
    assert!(
        matches!(greeting, Ok(Ok(g)) if &g == b"220"),
        "an FTP greeting during the flood"
    );
    // Every slow connection ends: refused at once past the cap, or cut at
    // the header timeout.
    let slow_count = slow.len();
    assert!(slow_count > 1000, "{slow_count} connections opened");
    let mut ended = 0;
    for mut stream in slow {
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    ended += 1;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => panic!("a slow admin connection was still open after 60 s"),
            }
        }
    }
    assert_eq!(ended, slow_count);
    let health = reqwest::get(format!("http://{admin}/healthz"))
        .await
        .unwrap();
    assert!(health.status().is_success());
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("bucketgate_admin_connections_refused_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap();
    assert!(refused >= 1000.0, "{refused} refused at accept");
    let log = std::fs::read_to_string(served.dir.path().join("log")).unwrap();
    let warnings = log
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\""))
        .count();
    assert!(warnings <= 3, "{warnings} WARN lines:\n{log}");
}

/// 100 failed FTP logins with 4000-byte user names from 20 addresses,
/// the receiver down, a 256 KiB spool: the events of unauthenticated
/// sources stay within their share of the spool (and their names within
/// 256 bytes), so every one of alice's next uploads is told. Before, the
/// failures filled the spool and upload events were dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_failed_logins_never_crowds_out_upload_events() {
    use common::receiver::Receiver;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let hook = format!(
        "[[webhooks]]\nname = \"flood\"\nurl = \"http://{port}/hooks\"\nsecret = \"s\"\nevents = [\"upload\", \"login_failed\"]\nspool_limit = \"256KiB\"\n"
    );
    let g = gateway::start_with_tables(&hook).await;
    let name = "x".repeat(4000);
    let failures = futures::future::join_all((0..100u8).map(|i| {
        let (name, ftp) = (&name, g.ftp);
        async move {
            let from = std::net::IpAddr::from([127, 0, 1, i % 20 + 1]);
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(from, 0)).unwrap();
            let Ok(stream) = socket.connect(ftp).await else {
                return false;
            };
            let mut control = tokio::io::BufReader::new(stream);
            let mut line = String::new();
            use tokio::io::AsyncBufReadExt;
            if control.read_line(&mut line).await.is_err() || !line.starts_with("220") {
                return false;
            }
            let login = format!("USER {name}\r\nPASS wrong\r\n");
            let _ = control.get_mut().write_all(login.as_bytes()).await;
            let mut replies = String::new();
            while control.read_line(&mut replies).await.is_ok_and(|n| n > 0) {
                if replies.contains("530") {
                    return true;
                }
            }
            false
        }
    }))
    .await;
    let failed = failures.iter().filter(|f| **f).count();
    assert!(failed >= 80, "{failed} logins failed as asked");
    let (_ssh, s) = gateway::alice(&g).await;
    for i in 0..10 {
        gateway::put(&s, &format!("/up{i}.txt"), b"after the flood").await;
    }
    let receiver = Receiver::start_on(port).await;
    // Both kinds are retried on their own backoffs: the uploads' may come
    // first, the failed logins' later.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (uploads, failed_events) = loop {
        let accepted: Vec<serde_json::Value> =
            receiver.accepted().iter().map(|r| r.json()).collect();
        let uploads: std::collections::BTreeSet<String> = accepted
            .iter()
            .filter(|e| e["event"] == "upload")
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect();
        let failed: Vec<serde_json::Value> = accepted
            .into_iter()
            .filter(|e| e["event"] == "login_failed")
            .collect();
        let all_there = uploads.len() == 10 && !failed.is_empty();
        if all_there || std::time::Instant::now() > deadline {
            break (uploads, failed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(uploads.len(), 10, "upload events delivered: {uploads:?}");
    assert!(!failed_events.is_empty(), "no login_failed event delivered");
    assert!(
        failed_events
            .iter()
            .all(|e| e["user"].as_str().unwrap().len() <= 256),
        "user names are cut to 256 bytes"
    );
    g.stop().await;
}

/// alice, logged in over SSH with her password.
async fn alice_over_ssh(addr: SocketAddr) -> gateway::SshHandle {
    let stream = TcpStream::connect(addr).await.unwrap();
    gateway::ssh_password(stream, "alice", PASSWORD)
        .await
        .unwrap()
}

/// Runs `sha256sum PATH` on a new channel of `h`; what it printed (stdout
/// and stderr) and its exit status.
async fn sha256sum(h: &gateway::SshHandle, path: &str) -> (String, u32) {
    let mut channel = h.channel_open_session().await.unwrap();
    channel
        .exec(true, format!("sha256sum {path}"))
        .await
        .unwrap();
    let mut printed = Vec::new();
    let mut status = u32::MAX;
    while let Some(msg) = channel.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } | russh::ChannelMsg::ExtendedData { data, .. } => {
                printed.extend_from_slice(&data)
            }
            russh::ChannelMsg::ExitStatus { exit_status } => status = exit_status,
            _ => {}
        }
    }
    (String::from_utf8_lossy(&printed).to_string(), status)
}

/// Digests read through (no digest kept with the object): ten requests for
/// one object at once cost one read, as many GETs as that object alone;
/// a user's third read at once is refused as busy; and reads whose
/// clients have left stop, freeing their places long before the S3
/// answers they waited for. Before, each request read the whole object,
/// detached, to its end.
#[tokio::test(flavor = "multi_thread")]
async fn digest_reads_are_shared_bounded_and_cancelled() {
    let seen = common::Seen::default();
    let record = seen.clone();
    // GETs of shared/ref are held 1 s (the ten requests meet on one read);
    // those of slow* are held 30 s (clients leave while they wait).
    let proxy = common::fault_proxy_seeing(common::moto_endpoint(), move |req, _| {
        let path = req
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let get = req.method == hyper::Method::GET && !path.contains('?');
        record.push(req.method.clone(), path.clone());
        match get {
            true if path.contains("/alice/slow") => common::Fault::Stall(Duration::from_secs(30)),
            true if path.contains("/alice/shared") || path.contains("/alice/ref") => {
                common::Fault::Stall(Duration::from_secs(1))
            }
            _ => common::Fault::Pass,
        }
    })
    .await;
    let g = gateway::start_via(&format!("http://{proxy}"), "").await;
    g.s3("import os\nbody = os.urandom(40 << 20)\n\
         for k in ['shared.bin', 'ref.bin', 'slow1.bin', 'slow2.bin', 'slow3.bin']:\n\
         \x20   s3.put_object(Bucket=bucket, Key='alice/' + k, Body=body)");
    let expected = g.s3(
        "import hashlib\nprint(hashlib.sha256(s3.get_object(Bucket=bucket, Key='alice/ref.bin')['Body'].read()).hexdigest())",
    );
    let connect = || alice_over_ssh(g.addr);
    // One read alone: the GETs it costs.
    let h = connect().await;
    let (out, status) = sha256sum(&h, "/ref.bin").await;
    assert_eq!(
        (out.split_whitespace().next(), status),
        (Some(expected.trim()), 0),
        "{out}"
    );
    let one_read = seen.gets_of(&g.bucket, "alice/ref.bin");
    // Ten at once, over two connections, for one object.
    let h2 = connect().await;
    let asks = (0..10).map(|i| sha256sum(if i % 2 == 0 { &h } else { &h2 }, "/shared.bin"));
    for (out, status) in futures::future::join_all(asks).await {
        assert_eq!(
            (out.split_whitespace().next(), status),
            (Some(expected.trim()), 0),
            "{out}"
        );
    }
    assert_eq!(
        seen.gets_of(&g.bucket, "alice/shared.bin"),
        one_read,
        "ten asks, one read"
    );

    // Two slow reads: alice's places are taken; a third is refused at once.
    let leaving = connect().await;
    let slow = [
        sha256sum(&leaving, "/slow1.bin"),
        sha256sum(&leaving, "/slow2.bin"),
    ];
    let slow = futures::future::join_all(slow);
    let held = async {
        while seen.gets_of(&g.bucket, "alice/slow1.bin")
            + seen.gets_of(&g.bucket, "alice/slow2.bin")
            < 2
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let asked_at = std::time::Instant::now();
        let (out, status) = sha256sum(&h2, "/slow3.bin").await;
        assert_ne!(status, 0);
        assert!(out.contains("busy"), "{out}");
        asked_at
    };
    let asked_at = tokio::select! {
        at = held => at,
        _ = slow => panic!("the slow reads ended while S3 held their answers"),
    };
    // The client leaves: its reads stop and give their places back, while
    // S3 still holds the answers they were waiting for.
    leaving
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await
        .unwrap();
    drop(leaving);
    loop {
        let mut channel = h2.channel_open_session().await.unwrap();
        channel.exec(true, "sha256sum /slow3.bin").await.unwrap();
        let mut printed = Vec::new();
        let mut waited = false;
        // Busy is answered at once; an accepted read waits on S3's 30 s.
        let first = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(msg) = channel.wait().await {
                if let russh::ChannelMsg::ExtendedData { data, .. } = msg {
                    printed.extend_from_slice(&data);
                }
            }
        })
        .await;
        if first.is_err() {
            waited = true;
        }
        if waited {
            break;
        }
        assert!(
            String::from_utf8_lossy(&printed).contains("busy"),
            "{}",
            String::from_utf8_lossy(&printed)
        );
        assert!(
            asked_at.elapsed() < Duration::from_secs(25),
            "the left reads kept their places until S3 answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    g.stop().await;
}

/// A directory that answers a bind with a message announcing 2 GiB and
/// streams it: the gateway takes at most 4 MiB of it (plus what sockets
/// hold) before it cuts the connection, and the login fails. Before,
/// ldap3 buffered the message (1 GiB within the 5 s timeout, 32 logins at
/// once). The fake counts what it managed to send.
#[tokio::test(flavor = "multi_thread")]
async fn a_directory_streaming_a_huge_answer_is_cut() {
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ldap://{}", fake.local_addr().unwrap());
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = fake.accept().await else {
                return;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                // The bind request, whatever it is, then the answer's header:
                // SEQUENCE of 0x7fffffff bytes, and zeros for ever.
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let header = [0x30u8, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01];
                if stream.write_all(&header).await.is_err() {
                    return;
                }
                let chunk = vec![0u8; 64 << 10];
                while stream.write_all(&chunk).await.is_ok() {
                    counted.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let tables = format!(
        "[auth.ldap]\nurl = \"{url}\"\nstarttls = false\nuser_dn = \"uid={{user}},ou=people,dc=example,dc=com\"\ngroup_base = \"ou=groups,dc=example,dc=com\"\ntimeout = \"5s\"\n\n[[auth.templates]]\nname = \"partners\"\nldap_groups = [\"partners\"]\nhome = \"store:/ldap/{{user}}\"\n"
    );
    let g = gateway::start_with_tables(&tables).await;
    let stream = TcpStream::connect(g.addr).await.unwrap();
    let login = gateway::ssh_password(stream, "lena", "any password").await;
    assert!(login.is_err(), "a login with no directory answer");
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent < 32 << 20,
        "the fake directory pushed {} MiB into one login",
        sent >> 20
    );
    // A user of the file still logs in.
    gateway::alice(&g).await;
    g.stop().await;
}

/// A banned source that keeps connecting: its refusals are counted, and
/// one of them logged per ban, not one line each (a flood filled the log
/// with a WARN per connection).
#[tokio::test(flavor = "multi_thread")]
async fn a_banned_flood_is_logged_once() {
    let served = Served::start_with("", &user("alice"));
    // The served config bans after 2 failures.
    for _ in 0..2 {
        let stream = TcpStream::connect(served.sftp).await.unwrap();
        assert!(
            gateway::ssh_password(stream, "alice", "wrong")
                .await
                .is_err()
        );
    }
    for _ in 0..50 {
        let mut stream = TcpStream::connect(served.sftp).await.unwrap();
        let mut buf = [0u8; 64];
        // Closed before any banner.
        assert_eq!(stream.read(&mut buf).await.unwrap_or(0), 0);
    }
    served.log_line("further refusals of this ban are counted");
    let log = std::fs::read_to_string(served.dir.path().join("log")).unwrap();
    let refused = log
        .lines()
        .filter(|l| l.contains("connection refused"))
        .count();
    assert_eq!(refused, 1, "{log}");
    assert!(!log.contains("\"level\":\"WARN\",\"fields\":{\"message\":\"connection refused"));
}
