//! Webhooks as a receiver sees them: a real HTTP server on loopback that
//! records each request (and fails when told), checking the payload, the
//! signature (with its own HMAC code), retries and what survives a kill.

use crate::common;

use common::gateway::{PASSWORD, TestGateway, alice, put, ssh_password, start_with_tables};
use common::receiver::{Receiver, Request};
use common::served::{Served, user};
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use sha2::Digest;
use std::collections::BTreeSet;
use std::time::Duration;

const SECRET: &str = "hook-secret";

fn webhook(url: &str, extra: &str) -> String {
    format!("[[webhooks]]\nname = \"erp\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n{extra}\n")
}

fn keys(event: &serde_json::Value) -> BTreeSet<String> {
    event.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The fields every file event has, and the signature and id headers.
fn check_common(r: &Request, g: &TestGateway, kind: &str, protocol: &str, user: &str) {
    assert!(r.signed_with(SECRET), "bad signature: {:?}", r.headers);
    assert!(!r.signed_with("another secret"));
    let e = r.json();
    assert_eq!(r.header("bucketgate-event-id"), e["id"]);
    assert_eq!(r.header("content-type"), "application/json");
    assert!(e["id"].as_str().unwrap().starts_with("evt_"));
    assert!(chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).is_ok());
    assert_eq!(e["event"], kind);
    assert_eq!(e["protocol"], protocol);
    assert_eq!(e["user"], user);
    assert_eq!(e["ip"], "127.0.0.1");
    assert_eq!(e["remote"], "store");
    assert_eq!(e["bucket"], g.bucket.as_str());
    assert_eq!(e["result"], "ok");
    assert!(e["duration_ms"].is_u64());
}

/// An SFTP upload, an FTP upload, a rename and a delete each post their
/// event, exactly as docs/webhooks.md documents it, signed.
#[tokio::test(flavor = "multi_thread")]
async fn file_operations_post_the_documented_events() {
    let receiver = Receiver::start().await;
    let hook = webhook(
        &receiver.url(),
        "events = [\"upload\", \"rename\", \"delete\", \"mkdir\"]",
    );
    let g = start_with_tables(&hook).await;
    let (_ssh, s) = alice(&g).await;
    s.mkdir("/in", FileAttributes::empty()).await.unwrap();
    let data = b"id,qty\n1,2\n";
    put(&s, "/in/orders.csv", data).await;
    s.rename("/in/orders.csv", "/in/done.csv").await.unwrap();
    s.remove("/in/done.csv").await.unwrap();
    let mut ftp = common::ftp::ftp_plain(&g, "bob").await;
    ftp.put_file("report.txt", &mut &b"ftp bytes"[..])
        .await
        .unwrap();
    ftp.quit().await.unwrap();

    let mkdir = receiver.event(|e| e["event"] == "mkdir").await;
    check_common(&mkdir, &g, "mkdir", "sftp", "alice");
    assert_eq!(mkdir.json()["key"], "alice/in");

    let upload = receiver
        .event(|e| e["event"] == "upload" && e["user"] == "alice")
        .await;
    check_common(&upload, &g, "upload", "sftp", "alice");
    let e = upload.json();
    assert_eq!(
        keys(&e),
        set(&[
            "id",
            "time",
            "event",
            "protocol",
            "user",
            "ip",
            "path",
            "size",
            "sha256",
            "remote",
            "bucket",
            "key",
            "result",
            "duration_ms"
        ])
    );
    assert_eq!(e["path"], "/in/orders.csv");
    assert_eq!(e["key"], "alice/in/orders.csv");
    assert_eq!(e["size"], data.len());
    assert_eq!(
        e["sha256"],
        bucketgate::base::hex(&sha2::Sha256::digest(data))
    );

    let rename = receiver.event(|e| e["event"] == "rename").await;
    check_common(&rename, &g, "rename", "sftp", "alice");
    let e = rename.json();
    assert_eq!(
        keys(&e),
        set(&[
            "id",
            "time",
            "event",
            "protocol",
            "user",
            "ip",
            "path",
            "to",
            "remote",
            "bucket",
            "key",
            "to_key",
            "result",
            "duration_ms"
        ])
    );
    assert_eq!(
        (&e["path"], &e["to"]),
        (&"/in/orders.csv".into(), &"/in/done.csv".into())
    );
    assert_eq!(e["to_key"], "alice/in/done.csv");

    let delete = receiver.event(|e| e["event"] == "delete").await;
    check_common(&delete, &g, "delete", "sftp", "alice");
    assert_eq!(delete.json()["path"], "/in/done.csv");

    let ftp_upload = receiver
        .event(|e| e["event"] == "upload" && e["user"] == "bob")
        .await;
    check_common(&ftp_upload, &g, "upload", "ftp", "bob");
    let e = ftp_upload.json();
    assert_eq!(
        (&e["path"], &e["key"]),
        (&"/report.txt".into(), &"bob/report.txt".into())
    );
    assert_eq!(e["size"], 9);
    // Each event once: no retry was needed.
    assert_eq!(receiver.requests().len(), 5);
    g.stop().await;
}

/// Filters by user and path glob; an upload the client never closed posts
/// no success: its event says it failed.
#[tokio::test(flavor = "multi_thread")]
async fn filters_apply_and_an_abandoned_upload_is_no_success() {
    let receiver = Receiver::start().await;
    let hook = webhook(
        &receiver.url(),
        "users = [\"alice\"]\npaths = [\"/in/**\"]\nconcurrency = 1",
    );
    let g = start_with_tables(&hook).await;
    let (ssh, s) = alice(&g).await;
    s.mkdir("/in", FileAttributes::empty()).await.unwrap();
    s.mkdir("/out", FileAttributes::empty()).await.unwrap();
    put(&s, "/out/skipped.txt", b"not under /in").await;
    let h = s
        .open(
            "/in/cut.bin",
            common::gateway::write_flags(),
            FileAttributes::empty(),
        )
        .await
        .unwrap()
        .handle;
    s.write(&h, 0, vec![7; 1000]).await.unwrap();
    drop(s);
    drop(ssh);
    let cut = receiver.event(|e| e["path"] == "/in/cut.bin").await.json();
    assert_eq!(cut["result"], "error");
    assert!(
        cut["error"].as_str().unwrap().contains("not closed"),
        "{cut}"
    );
    assert!(
        cut.get("size").is_none() && cut.get("sha256").is_none(),
        "{cut}"
    );

    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let bob = ssh_password(stream, "bob", PASSWORD).await.ok().unwrap();
    let bob = common::gateway::sftp(&bob).await;
    bob.mkdir("/in", FileAttributes::empty()).await.unwrap();
    put(&bob, "/in/bobs.txt", b"bob is not alice").await;
    let (_ssh, s) = alice(&g).await;
    put(&s, "/in/last.txt", b"the last one").await;
    receiver.event(|e| e["path"] == "/in/last.txt").await;
    // Delivered one at a time, in order: nothing else came, or will.
    let paths: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["/in/cut.bin", "/in/last.txt"]);
    g.stop().await;
}

/// A receiver answering 500 gets the event again after 1 s, 2 s, 4 s
/// (±25 %), then once accepted never again; events meanwhile arrive too,
/// each accepted exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receiver_gets_every_event_once_with_backoff() {
    let receiver = Receiver::start().await;
    receiver.fail_next(3);
    let g = start_with_tables(&webhook(&receiver.url(), "")).await;
    let (_ssh, s) = alice(&g).await;
    put(&s, "/first.txt", b"first").await;
    // While the receiver fails, the gateway is healthy and says what waits.
    let health = reqwest::get(format!("http://{}/healthz", g.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = serde_json::from_str(&health.text().await.unwrap()).unwrap();
    assert_eq!(health["webhooks"]["erp"]["pending"], 1, "{health}");
    let first = receiver.event(|e| e["path"] == "/first.txt").await;
    let id = first.json()["id"].clone();
    let attempts: Vec<Request> = receiver
        .requests()
        .into_iter()
        .filter(|r| r.json()["id"] == id)
        .collect();
    assert_eq!(
        attempts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    for (i, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let base = Duration::from_secs(1 << i);
        assert!(
            gap >= base.mul_f64(0.7) && gap <= base.mul_f64(1.25) + Duration::from_millis(500),
            "attempt {} came {gap:?} after the one before",
            i + 2
        );
    }
    for i in 0..10 {
        put(&s, &format!("/burst{i}.txt"), b"burst").await;
    }
    let accepted = receiver.wait_for_count(11, Duration::from_secs(30)).await;
    let ids: BTreeSet<String> = accepted
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 11, "each event accepted exactly once");
    g.stop().await;
}

/// The receiver is down while `serve` is SIGKILLed and started again:
/// every event from before the kill is delivered after the restart, the
/// upload answered just before the kill included.
#[tokio::test(flavor = "multi_thread")]
async fn events_survive_a_kill_while_the_receiver_is_down() {
    // A port nobody listens on yet: the receiver comes up there later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{port}/hooks");
    let mut served = Served::start_with("", &format!("{}\n{}", user("alice"), webhook(&url, "")));
    {
        let stream = tokio::net::TcpStream::connect(served.sftp).await.unwrap();
        let h = ssh_password(stream, "alice", PASSWORD).await.ok().unwrap();
        let s = common::gateway::sftp(&h).await;
        for i in 0..5 {
            let path = format!("/kept{i}.txt");
            let handle = s
                .open(
                    &path,
                    OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                    FileAttributes::empty(),
                )
                .await
                .unwrap()
                .handle;
            s.write(&handle, 0, path.clone().into_bytes())
                .await
                .unwrap();
            s.close(handle).await.unwrap();
        }
        // Killed right after the last close was answered.
        served.kill_and_restart();
    }
    let receiver = Receiver::start_on(port).await;
    let accepted = receiver.wait_for_count(5, Duration::from_secs(60)).await;
    let paths: BTreeSet<String> = accepted
        .iter()
        .map(|r| r.json()["path"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = (0..5).map(|i| format!("/kept{i}.txt")).collect();
    assert_eq!(paths, expected);
    assert!(accepted.iter().all(|r| r.signed_with(SECRET)));
}

/// A sync run inside `serve` posts `sync_run` with its report.
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_run_posts_its_report() {
    let receiver = Receiver::start().await;
    let tables = format!(
        "[[syncs]]\nname = \"mirror\"\nlocal = \"store:/outbox\"\nremote = \"store:/mirror\"\n\
         direction = \"push\"\ninterval = \"1s\"\n\n{}",
        webhook(&receiver.url(), "events = [\"sync_run\"]")
    );
    let g = start_with_tables(&tables).await;
    g.s3("s3.put_object(Bucket=bucket, Key='outbox/order.csv', Body=b'1,2,3')");
    let run = receiver.event(|e| e["report"]["copied"] == 1).await;
    assert!(run.signed_with(SECRET));
    let e = run.json();
    assert_eq!(
        keys(&e),
        set(&[
            "id",
            "time",
            "event",
            "job",
            "report",
            "result",
            "duration_ms"
        ])
    );
    assert_eq!(
        (&e["event"], &e["job"], &e["result"]),
        (&"sync_run".into(), &"mirror".into(), &"ok".into())
    );
    let report = &e["report"];
    assert_eq!(report["job"], "mirror");
    assert_eq!(report["copied_bytes"], 5);
    assert_eq!(report["outcome"]["kind"], "done");
    g.stop().await;
}

/// A receiver's redirect is not followed (it could send events, signed,
/// to another host): the attempt fails and is retried at the receiver.
#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_is_not_followed() {
    let (receiver, elsewhere) = (Receiver::start().await, Receiver::start().await);
    receiver.redirect_to(Some(elsewhere.url()));
    let g = start_with_tables(&webhook(&receiver.url(), "")).await;
    let (_ssh, s) = alice(&g).await;
    put(&s, "/moved.txt", b"x").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no attempt came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.redirect_to(None);
    receiver.event(|e| e["path"] == "/moved.txt").await;
    let statuses: Vec<u16> = receiver.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [302, 200]);
    assert!(elsewhere.requests().is_empty(), "the redirect was followed");
    g.stop().await;
}

/// A full spool refuses the uploads whose events it cannot take, before a
/// byte moves (the room of an upload's event is held from its open), and
/// every upload that succeeded has its event delivered once the receiver
/// comes up. Before, the uploads went on and their events were dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_refuses_uploads_never_their_events() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Its own name: the metrics are the test binary's, shared by the tests.
    let hook = webhook(&format!("http://{port}/hooks"), "spool_limit = \"4KiB\"")
        .replace("name = \"erp\"", "name = \"tiny\"");
    let g = start_with_tables(&hook).await;
    let (_ssh, s) = alice(&g).await;
    let mut stored = Vec::new();
    let mut refused = 0;
    for i in 0..12 {
        let path = format!("/f{i}.txt");
        let opened = s
            .open(
                &path,
                common::gateway::write_flags(),
                FileAttributes::empty(),
            )
            .await;
        match opened {
            Ok(h) => {
                s.write(&h.handle, 0, b"uploads go on".to_vec())
                    .await
                    .unwrap();
                s.close(h.handle).await.unwrap();
                stored.push(path);
            }
            Err(e) => {
                assert!(e.to_string().contains("spool is full"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(
        !stored.is_empty() && refused > 0,
        "{} stored, {refused} refused",
        stored.len()
    );
    let listing = g.s3("print(s3.list_objects_v2(Bucket=bucket, Prefix='alice/f')['KeyCount'])");
    assert_eq!(listing.trim(), stored.len().to_string());
    let receiver = Receiver::start_on(port).await;
    let stored: BTreeSet<String> = stored.into_iter().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let told: BTreeSet<String> = receiver
            .accepted()
            .iter()
            .map(|r| r.json())
            .filter(|e| e["result"] == "ok")
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect();
        if told == stored {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "told {told:?} of {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // With room again, uploads go on.
    put(&s, "/after.txt", b"room again").await;
    g.stop().await;
}

/// Every event a client's action makes is told for sure, not only an
/// upload's: with the spool full, a download and a new login are refused
/// (their events could not be taken), and both work once the receiver
/// has drained it.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_refuses_downloads_and_logins_too() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let hook = webhook(
        &format!("http://{port}/hooks"),
        "spool_limit = \"4KiB\"\nevents = [\"upload\", \"download\", \"login\"]",
    )
    .replace("name = \"erp\"", "name = \"tiny2\"");
    let g = start_with_tables(&hook).await;
    let (_ssh, s) = alice(&g).await;
    let mut stored = None;
    for i in 0..12 {
        let path = format!("/f{i}.txt");
        match s
            .open(
                &path,
                common::gateway::write_flags(),
                FileAttributes::empty(),
            )
            .await
        {
            Ok(h) => {
                s.write(&h.handle, 0, b"x".to_vec()).await.unwrap();
                s.close(h.handle).await.unwrap();
                stored = Some(path);
            }
            Err(e) => {
                assert!(e.to_string().contains("spool is full"), "{e}");
                break;
            }
        }
    }
    let stored = stored.expect("one upload fit");
    let read = s
        .open(&stored, OpenFlags::READ, FileAttributes::empty())
        .await;
    assert!(read.unwrap_err().to_string().contains("spool is full"));
    let login = ssh_password(
        tokio::net::TcpStream::connect(g.addr).await.unwrap(),
        "bob",
        PASSWORD,
    );
    assert!(login.await.is_err(), "a login whose event cannot be taken");
    let receiver = Receiver::start_on(port).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
        if ssh_password(stream, "bob", PASSWORD).await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bob never logged in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Bob's login was the last event spooled: once it arrived the spool
    // is empty but for the moment the gateway takes to hear the receiver's
    // answer, so the download may still be refused for that moment.
    receiver
        .event(|e| e["event"] == "login" && e["user"] == "bob")
        .await;
    loop {
        match s
            .open(&stored, OpenFlags::READ, FileAttributes::empty())
            .await
        {
            Ok(h) => {
                s.close(h.handle).await.unwrap();
                break;
            }
            Err(e) => assert!(e.to_string().contains("spool is full"), "{e}"),
        }
        assert!(std::time::Instant::now() < deadline, "never downloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    g.stop().await;
}

/// SIGHUP reloads the webhooks with the users: a changed URL takes the
/// next event.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_webhooks() {
    let (before, after) = (Receiver::start().await, Receiver::start().await);
    let users = user("alice");
    let served = Served::start_with("", &format!("{users}\n{}", webhook(&before.url(), "")));
    let upload = |path: &'static str| {
        let addr = served.sftp;
        async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let h = ssh_password(stream, "alice", PASSWORD).await.ok().unwrap();
            put(&common::gateway::sftp(&h).await, path, b"x").await;
        }
    };
    upload("/one.txt").await;
    before.event(|e| e["path"] == "/one.txt").await;
    let config = common::served::served_config(
        served.dir.path(),
        &served.endpoint,
        &served.bucket,
        "",
        "",
        &format!("{users}\n{}", webhook(&after.url(), "")),
    );
    std::fs::write(served.dir.path().join("gateway.toml"), config).unwrap();
    served.signal(libc::SIGHUP);
    served.log_line("users reloaded");
    upload("/two.txt").await;
    after.event(|e| e["path"] == "/two.txt").await;
    assert_eq!(before.requests().len(), 1);
}

/// A receiver that does not answer holds up no client: with the first
/// delivery unanswered (and one at a time), every upload still completes;
/// the events follow once the receiver answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_receiver_never_slows_an_upload() {
    let receiver = Receiver::start().await;
    receiver.hold();
    let g = start_with_tables(&webhook(&receiver.url(), "concurrency = 1")).await;
    let (_ssh, s) = alice(&g).await;
    put(&s, "/one.txt", b"1").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.arrived() == 0 {
        assert!(std::time::Instant::now() < deadline, "no delivery began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..5 {
        put(&s, &format!("/more{i}.txt"), b"not held up").await;
    }
    assert_eq!(
        receiver.arrived(),
        1,
        "the first delivery is still unanswered"
    );
    receiver.release();
    receiver.wait_for_count(6, Duration::from_secs(30)).await;
    g.stop().await;
}

/// An https receiver whose certificate only the webhook's `ca_file`
/// vouches for gets its events over TLS.
#[tokio::test(flavor = "multi_thread")]
async fn an_https_receiver_is_trusted_through_ca_file() {
    let tls = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (tls.cert.pem(), tls.signing_key.serialize_pem());
    let receiver = Receiver::start_tls(&cert, &key).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let hook = webhook(
        &receiver.https_url(),
        &format!("ca_file = \"{}\"", ca.display()),
    );
    let g = start_with_tables(&hook).await;
    let (_ssh, s) = alice(&g).await;
    put(&s, "/over-tls.txt", b"secret order").await;
    let r = receiver.event(|e| e["path"] == "/over-tls.txt").await;
    assert!(r.signed_with(SECRET));
    g.stop().await;
}
