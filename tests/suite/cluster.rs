//! `[cluster]`: gateways of one fleet on a real PostgreSQL
//! (`common::postgres`), each a process of its own.

use crate::common;
use common::served::{Served, user};
use std::time::{Duration, Instant};

/// A node's `[cluster]` on `database`, heartbeats every second.
fn node(database: &str, name: &str) -> String {
    format!(
        "{}\n[cluster]\ndatabase = \"{database}\"\nnode = \"{name}\"\nheartbeat = \"1s\"\n",
        user("alice")
    )
}

/// `bucketgate cluster status` on `served`'s config.
fn status(served: &Served) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bucketgate"))
        .args(["cluster", "status", "--config"])
        .arg(served.dir.path().join("gateway.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The state column of `node`'s row in a `cluster status`.
fn state_of<'a>(status: &'a str, node: &str) -> Option<&'a str> {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .and_then(|l| l.split_whitespace().last())
}

/// Asks `cluster status` until `holds` (at most 30 s).
fn status_until(served: &Served, what: &str, holds: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = status(served);
        if holds(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{now}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn log(served: &Served) -> String {
    std::fs::read_to_string(served.dir.path().join("log")).unwrap()
}

/// Two nodes started at the same moment on an empty database: one
/// migrates, the other waits for it and finds the schema up to date; both
/// are listed up. A node killed is shown gone after three missed
/// heartbeats; a restart migrates nothing; a stopped node leaves the list.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_starting_at_once_migrate_once_and_see_each_other() {
    let database = common::postgres::database().await;
    let (mut a, mut b) = std::thread::scope(|s| {
        let a = s.spawn(|| Served::start_full("", "", &node(&database, "node-a")));
        let b = s.spawn(|| Served::start_full("", "", &node(&database, "node-b")));
        (a.join().unwrap(), b.join().unwrap())
    });
    let joined = [&a, &b].map(|g| g.log_line("joined the cluster"));
    let migrated = joined
        .iter()
        .filter(|l| l.contains("schema migrated"))
        .count();
    assert_eq!(migrated, 1, "one node migrates: {joined:#?}");
    for g in [&a, &b] {
        let log = log(g);
        assert!(!log.contains("cannot join"), "{log}");
    }
    let both = status_until(&a, "both nodes up", |s| {
        state_of(s, "node-a") == Some("up") && state_of(s, "node-b") == Some("up")
    });
    let schema = format!("schema {} ", bucketgate::cluster::schema::latest());
    assert!(both.starts_with(&schema), "{both}");

    b.child.kill().unwrap();
    b.child.wait().unwrap();
    status_until(&a, "node-b gone", |s| state_of(s, "node-b") == Some("gone"));

    a.kill_and_restart();
    let again = a.log_line("joined the cluster");
    assert!(again.contains("schema up to date"), "{again}");

    a.signal(libc::SIGTERM);
    a.child.wait().unwrap();
    let after = status(&a);
    assert_eq!(state_of(&after, "node-a"), None, "{after}");
}

/// Eight gateways' migrations at the same instant on an empty database:
/// all succeed, one of them migrates, the others wait for it and find the
/// schema up to date (without the advisory lock, they trip over each
/// other's tables).
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_migrations_wait_for_each_other() {
    use bucketgate::cluster::{Cluster, schema};
    let database = common::postgres::database().await;
    let config = bucketgate::config::ClusterConfig {
        database,
        node: "test".into(),
        heartbeat: Duration::from_secs(1),
        max_connections: 2,
        ca_file: None,
    };
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let runs = (0..8).map(|_| {
        let (config, start) = (config.clone(), start.clone());
        tokio::spawn(async move {
            let cluster = Cluster::new(&config, &bucketgate::metrics::Metrics::new()).unwrap();
            // Connected first, so that the migrations start together.
            drop(cluster.client().await.unwrap());
            start.wait().await;
            schema::migrate(&cluster).await
        })
    });
    let results: Vec<_> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.unwrap().map_err(|e| e.to_string()))
        .collect();
    let latest = schema::latest();
    let migrated = results
        .iter()
        .filter(|r| {
            **r == Ok(schema::Migrated {
                from: 0,
                to: latest,
            })
        })
        .count();
    let up_to_date = results
        .iter()
        .filter(|r| {
            **r == Ok(schema::Migrated {
                from: latest,
                to: latest,
            })
        })
        .count();
    assert_eq!((migrated, up_to_date), (1, 7), "{results:#?}");
}

/// What an SSH login from `from` to `served` meets: `Ok` logged in,
/// `Err("authentication failed")` a wrong password, any other `Err` a
/// connection closed before the exchange (banned).
async fn login_from(from: &str, served: &Served, password: &str) -> Result<(), String> {
    let stream = common::connect_from(from.parse().unwrap(), served.sftp)
        .await
        .unwrap();
    common::gateway::ssh_password(stream, "alice", password)
        .await
        .map(drop)
}

fn banned(outcome: &Result<(), String>) -> bool {
    matches!(outcome, Err(e) if e != "authentication failed")
}

const TOKEN: &str = "bgt_cluster-test-token";

/// A node with the console's API on, for [`TOKEN`].
fn node_with_api(database: &str, name: &str) -> String {
    use sha2::Digest;
    let hash = bucketgate::base::hex(&sha2::Sha256::digest(TOKEN.as_bytes()));
    format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n[[admin.tokens]]\nname = \"ops\"\nhash = \"sha256:{hash}\"\n",
        node(database, name)
    )
}

/// `(ok, body)` of an API call to `api` with [`TOKEN`].
async fn api_call(api: std::net::SocketAddr, method: &str, path: &str) -> (bool, String) {
    let (ok, out, err) = common::run(
        "curl",
        &[
            "-sf",
            "-X",
            method,
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            &format!("http://{api}/api/v1/{path}"),
        ],
    )
    .await;
    (ok, if ok { out } else { err })
}

/// One failed login at each of two nodes makes the fleet's threshold (2,
/// where neither node alone reached it): the source is refused at both,
/// another source is not. Lifting the ban through one node's API lifts it
/// at the other.
#[tokio::test(flavor = "multi_thread")]
async fn a_ban_counted_across_nodes_holds_at_every_node() {
    let database = common::postgres::database().await;
    let a = Served::start_full("", "", &node_with_api(&database, "ban-a"));
    let b = Served::start_full("", "", &node(&database, "ban-b"));
    for g in [&a, &b] {
        g.log_line("joined the cluster");
    }
    let attacker = "127.0.0.2";
    let failed = login_from(attacker, &a, "wrong").await;
    assert_eq!(failed, Err("authentication failed".into()));
    let failed = login_from(attacker, &b, "wrong").await;
    assert_eq!(failed, Err("authentication failed".into()));

    let counted = Instant::now();
    let deadline = counted + Duration::from_secs(10);
    for g in [&b, &a] {
        loop {
            let outcome = login_from(attacker, g, common::gateway::PASSWORD).await;
            if banned(&outcome) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not banned: {outcome:?}\n{}",
                log(g)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!(
        "banned at both nodes {:?} after the second failure",
        counted.elapsed()
    );
    assert_eq!(
        login_from("127.0.0.3", &b, common::gateway::PASSWORD).await,
        Ok(())
    );

    let api = a.admin();
    let (ok, health, _) = common::run("curl", &["-sf", &format!("http://{api}/healthz")]).await;
    assert!(
        ok && health.contains(r#""cluster":{"node":"ban-a","state":"up"}"#),
        "{health}"
    );
    let (ok, err) = api_call(api, "DELETE", &format!("bans/{attacker}")).await;
    assert!(ok, "lift: {err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = login_from(attacker, &b, common::gateway::PASSWORD).await;
        if outcome.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still banned at node b: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With its database unreachable, a node starts and serves all the same:
/// it says once that it cannot join yet, and logins and transfers work.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_serves_while_its_database_is_down() {
    let nowhere = format!(
        "postgres://postgres@127.0.0.1:{}/none?sslmode=disable",
        common::free_port()
    );
    let g = Served::start_full(
        "",
        "",
        &format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            node(&nowhere, "alone")
        ),
    );
    g.log_line("cannot join the cluster yet");
    // Degraded, said by /healthz and a metric, and still 200: a balancer
    // must not take every node out because the database is down.
    let admin = g.admin();
    let (ok, health, err) = common::run("curl", &["-sf", &format!("http://{admin}/healthz")]).await;
    assert!(ok, "/healthz: {err} {health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["cluster"]["state"], "degraded", "{health}");
    let (_, metrics, _) = common::run("curl", &["-sf", &format!("http://{admin}/metrics")]).await;
    assert!(
        metrics.contains("bucketgate_cluster_degraded 1"),
        "{metrics}"
    );
    let stream = tokio::net::TcpStream::connect(g.sftp).await.unwrap();
    let h = common::gateway::ssh_password(stream, "alice", common::gateway::PASSWORD)
        .await
        .unwrap();
    let s = common::gateway::sftp(&h).await;
    let handle = s
        .open(
            "/up.txt",
            russh_sftp::protocol::OpenFlags::WRITE | russh_sftp::protocol::OpenFlags::CREATE,
            Default::default(),
        )
        .await
        .unwrap()
        .handle;
    s.write(&handle, 0, b"served".to_vec()).await.unwrap();
    s.close(handle).await.unwrap();
    assert_eq!(
        g.s3("print(s3.get_object(Bucket=bucket, Key='alice/up.txt')['Body'].read())")
            .trim(),
        "b'served'"
    );
    // Two more heartbeats: still one line about it.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        log(&g).matches("cannot join the cluster").count(),
        1,
        "{}",
        log(&g)
    );
}

/// carol may hold one session: logged in at node a, she is refused at
/// node b with the usual message in b's log; once her session at a ends,
/// b lets her in.
#[tokio::test(flavor = "multi_thread")]
async fn max_sessions_holds_across_the_fleet() {
    let database = common::postgres::database().await;
    let carol = format!(
        "[[users]]\nname = \"carol\"\npassword = \"{}\"\nhome = \"store:/carol\"\nmax_sessions = 1\n",
        common::gateway::HASH
    );
    let a = Served::start_full("", "", &format!("{}{carol}", node(&database, "ses-a")));
    let b = Served::start_full("", "", &format!("{}{carol}", node(&database, "ses-b")));
    for g in [&a, &b] {
        g.log_line("joined the cluster");
    }
    let login = async |g: &Served| {
        let stream = tokio::net::TcpStream::connect(g.sftp).await.unwrap();
        common::gateway::ssh_password(stream, "carol", common::gateway::PASSWORD).await
    };
    let first = login(&a).await.unwrap();
    let _s = common::gateway::sftp(&first).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match login(&b).await {
            Err(_) => break,
            Ok(h) => {
                drop(h);
                assert!(
                    Instant::now() < deadline,
                    "node b never counted carol's session at node a"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(
        log(&b).contains("has reached their max_sessions (1)"),
        "{}",
        log(&b)
    );
    first
        .disconnect(russh::Disconnect::ByApplication, "bye", "en")
        .await
        .unwrap();
    drop((_s, first));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match login(&b).await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "carol's slot at node a never freed: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node's `[cluster]` with the webhook `erp` posting uploads to `url`.
fn hooked(database: &str, name: &str, url: &str) -> String {
    format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n[[webhooks]]\nname = \"erp\"\nurl = \"{url}\"\nsecret = \"s\"\nevents = [\"upload\"]\ntimeout = \"2s\"\n",
        node(database, name)
    )
}

/// A URL on a port nobody listens on yet, where a receiver comes up later.
fn later_url() -> (std::net::SocketAddr, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    (port, format!("http://{port}/hooks"))
}

/// alice uploads `n` small files named `{prefix}{i}` at `g`, one session.
async fn upload_many(g: &Served, prefix: &str, n: usize) {
    let stream = tokio::net::TcpStream::connect(g.sftp).await.unwrap();
    let h = common::gateway::ssh_password(stream, "alice", common::gateway::PASSWORD)
        .await
        .unwrap();
    let s = common::gateway::sftp(&h).await;
    for i in 0..n {
        common::gateway::put(&s, &format!("/{prefix}{i}"), b"x").await;
    }
}

/// Waits until the receiver has accepted an upload event for each of
/// `paths` (duplicates allowed, none missing).
async fn every_path_arrives(
    receiver: &common::receiver::Receiver,
    paths: &std::collections::BTreeSet<String>,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let arrived: std::collections::BTreeSet<String> = receiver
            .accepted()
            .iter()
            .filter_map(|r| r.json()["path"].as_str().map(str::to_string))
            .collect();
        let missing: Vec<_> = paths.difference(&arrived).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events never arrived, e.g. {:?}",
            missing.len(),
            paths.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Node a answers 200 uploads while the receiver is down, and is killed
/// with SIGKILL holding all their events: once the receiver is up, node b
/// delivers every one (the events were in the fleet's outbox, not on a's
/// disk).
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_nodes_events_are_delivered_by_another() {
    let database = common::postgres::database().await;
    let (port, url) = later_url();
    let mut a = Served::start_full("", "", &hooked(&database, "evt-a", &url));
    let b = Served::start_full("", "", &hooked(&database, "evt-b", &url));
    for g in [&a, &b] {
        g.log_line("joined the cluster");
    }
    upload_many(&a, "f", 200).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let receiver = common::receiver::Receiver::start_on(port).await;
    let paths = (0..200).map(|i| format!("/f{i}")).collect();
    every_path_arrives(&receiver, &paths, Duration::from_secs(120)).await;
    drop(b);
}

/// PostgreSQL stops in the middle of a run: uploads and downloads go on,
/// `/healthz` answers 200 and says degraded, the events of the uploads
/// meanwhile are spooled on the node, and all reach the receiver once
/// PostgreSQL is back.
#[tokio::test(flavor = "multi_thread")]
async fn transfers_go_on_while_the_database_is_stopped() {
    let pg = common::postgres::Own::start();
    let receiver = common::receiver::Receiver::start().await;
    let g = Served::start_full("", "", &hooked(&pg.url(), "stops", &receiver.url()));
    g.log_line("joined the cluster");
    upload_many(&g, "before", 5).await;
    pg.stop();
    let admin = g.admin();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, health, err) =
            common::run("curl", &["-sf", &format!("http://{admin}/healthz")]).await;
        assert!(ok, "/healthz must stay 200: {err} {health}");
        if health.contains(r#""state":"degraded""#) {
            break;
        }
        assert!(Instant::now() < deadline, "never degraded: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    upload_many(&g, "during", 20).await;
    let stream = tokio::net::TcpStream::connect(g.sftp).await.unwrap();
    let h = common::gateway::ssh_password(stream, "alice", common::gateway::PASSWORD)
        .await
        .unwrap();
    let s = common::gateway::sftp(&h).await;
    let handle = s
        .open(
            "/during7",
            russh_sftp::protocol::OpenFlags::READ,
            Default::default(),
        )
        .await
        .unwrap()
        .handle;
    assert_eq!(s.read(&handle, 0, 10).await.unwrap().data, b"x");
    assert!(
        log(&g).contains("they are spooled on this node"),
        "{}",
        log(&g)
    );
    pg.restart();
    let paths = (0..5)
        .map(|i| format!("/before{i}"))
        .chain((0..20).map(|i| format!("/during{i}")))
        .collect();
    every_path_arrives(&receiver, &paths, Duration::from_secs(60)).await;
}

/// `GET /api/v1/sessions` of `api`, with [`TOKEN`].
async fn sessions_at(api: std::net::SocketAddr) -> serde_json::Value {
    let (ok, out) = api_call(api, "GET", "sessions").await;
    assert!(ok, "sessions: {out}");
    serde_json::from_str(&out).unwrap()
}

/// alice's session at node b, with an upload open, shows in node a's
/// `/api/v1/sessions` with b's node; ended through a, b closes it, and the
/// upload leaves no object and no multipart upload in b's bucket.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_at_another_node_is_listed_and_ended() {
    let database = common::postgres::database().await;
    let a = Served::start_full("", "", &node_with_api(&database, "live-a"));
    let b = Served::start_full("", "", &node_with_api(&database, "live-b"));
    for g in [&a, &b] {
        g.log_line("joined the cluster");
    }
    let at_a = {
        let stream = tokio::net::TcpStream::connect(a.sftp).await.unwrap();
        common::gateway::ssh_password(stream, "alice", common::gateway::PASSWORD)
            .await
            .unwrap()
    };
    let stream = tokio::net::TcpStream::connect(b.sftp).await.unwrap();
    let h = common::gateway::ssh_password(stream, "alice", common::gateway::PASSWORD)
        .await
        .unwrap();
    let s = common::gateway::sftp(&h).await;
    let handle = s
        .open(
            "/open.bin",
            common::gateway::write_flags(),
            Default::default(),
        )
        .await
        .unwrap()
        .handle;
    let data = vec![7u8; 12 << 20];
    common::gateway::write_all(&s, &handle, 0, &data, 32 << 10, 64).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let (id, listed) = loop {
        let listed = sessions_at(a.admin()).await;
        let theirs = listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == "live-b" && x["transfers"][0]["path"] == "/open.bin");
        if let Some(x) = theirs {
            break (x["id"].as_u64().unwrap(), listed.clone());
        }
        assert!(
            Instant::now() < deadline,
            "b's session never listed at a: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let own = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["node"] == "live-a" && x["user"] == "alice")
        .count();
    assert_eq!(own, 1, "a's own session, with its node: {listed}");
    assert!(listed.get("incomplete").is_none(), "{listed}");

    let asked = Instant::now();
    let end = format!("sessions/{id}?node=live-b");
    let (ok, out) = api_call(a.admin(), "DELETE", &end).await;
    assert!(ok, "end: {out}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!({ "ended": id, "node": "live-b" })
    );
    // b closes the connection: the client's next write (each at the
    // end, as an upload goes on) fails.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut at = 12 << 20;
    while s.write(&handle, at, vec![1]).await.is_ok() {
        at += 1;
        assert!(Instant::now() < deadline, "b never ended the session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "b ended the session {:?} after a was asked",
        asked.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = b.s3(
            "print(len(s3.list_multipart_uploads(Bucket=bucket).get('Uploads', [])),
                   [o['Key'] for o in s3.list_objects_v2(Bucket=bucket).get('Contents', [])])",
        );
        // The home's folder marker stays; the upload left nothing.
        if left.trim() == "0 ['alice/']" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left in b's bucket (multipart uploads, objects): {left}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Gone from a's listing within a second or so; then unknown: 404.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = sessions_at(a.admin()).await;
        if !listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["node"] == "live-b")
        {
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, _) = api_call(a.admin(), "DELETE", &end).await;
    assert!(!ok, "ended twice");
    drop(at_a);
}

/// A console logged in at node a works at node b with the same cookie
/// and CSRF token (a balancer without stickiness); logging out at b ends
/// it at a too.
#[tokio::test(flavor = "multi_thread")]
async fn a_console_session_works_at_every_node() {
    let database = common::postgres::database().await;
    let console = |name: &str| {
        format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n[[admin.users]]\nname = \"ops\"\npassword = \"{}\"\n",
            node(&database, name),
            common::gateway::HASH
        )
    };
    let a = Served::start_full("", "", &console("con-a"));
    let b = Served::start_full("", "", &console("con-b"));
    for g in [&a, &b] {
        g.log_line("joined the cluster");
    }
    let http = reqwest::Client::new();
    let login = http
        .post(format!("http://{}/api/v1/login", a.admin()))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({ "name": "ops", "password": common::gateway::PASSWORD }).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me: serde_json::Value = serde_json::from_str(&login.text().await.unwrap()).unwrap();
    let csrf = me["csrf"].as_str().unwrap().to_string();
    let me_at = async |g: &Served| {
        http.get(format!("http://{}/api/v1/me", g.admin()))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(me_at(&b).await, 200, "a's console session at b");
    let out = http
        .post(format!("http://{}/api/v1/logout", b.admin()))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(me_at(&a).await, 401, "logged out at b, still in at a");
}

/// Two nodes' pools add to one quota target at once, 200 times each: the
/// total is every change, none lost to a race (a read-then-write counter
/// loses some).
#[tokio::test(flavor = "multi_thread")]
async fn quota_usage_counts_every_nodes_changes() {
    use bucketgate::cluster::{Cluster, quotas, schema};
    let database = common::postgres::database().await;
    let cluster = |node: &str| {
        let config = bucketgate::config::ClusterConfig {
            database: database.clone(),
            node: node.into(),
            heartbeat: Duration::from_secs(1),
            max_connections: 4,
            ca_file: None,
        };
        Cluster::new(&config, &bucketgate::metrics::Metrics::new()).unwrap()
    };
    let (a, b) = (cluster("q-a"), cluster("q-b"));
    schema::migrate(&a).await.unwrap();
    // Listed once (empty), as a node does before it counts.
    quotas::set(&a, "user:alice", quotas::Usage::default())
        .await
        .unwrap();
    let adds = [a, b].into_iter().flat_map(|c| {
        (0..8).map(move |_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    let one = quotas::Usage {
                        bytes: 1000,
                        files: 1,
                    };
                    quotas::add(&c, "user:alice", one).await.unwrap();
                }
            })
        })
    });
    for add in futures::future::join_all(adds).await {
        add.unwrap();
    }
    let c = cluster("q-c");
    let total = quotas::usage(&c, "user:alice").await.unwrap();
    assert_eq!(
        total,
        Some(quotas::Usage {
            bytes: 400_000,
            files: 400
        })
    );
    let back = quotas::Usage {
        bytes: -1000,
        files: -1,
    };
    assert_eq!(
        quotas::add(&c, "user:alice", back).await.unwrap(),
        quotas::Usage {
            bytes: 399_000,
            files: 399
        }
    );
    assert_eq!(
        quotas::usage(&c, "nobody").await.unwrap(),
        None,
        "a target nobody listed has no usage yet"
    );
}

/// Two nodes on one bucket enforce one quota: what dave stored through
/// node a counts at node b, which refuses the upload that would pass it;
/// a delete at b gives the room back at a.
#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_enforce_one_quota() {
    use common::served::Process;
    let database = common::postgres::database().await;
    let dave = format!(
        "[[users]]\nname = \"dave\"\npassword = \"{}\"\nhome = \"store:/dave\"\nquota = \"1MiB\"\n",
        common::gateway::HASH
    );
    let a = Served::start_full("", "", &format!("{}{dave}", node(&database, "quo-a")));
    let on_a = Process {
        bucket: Some(a.bucket.clone()),
        ..Process::default()
    };
    let b = Served::start_limited(
        "",
        "",
        "",
        &format!("{}{dave}", node(&database, "quo-b")),
        on_a,
    );
    for g in [&a, &b] {
        g.log_line("joined the cluster");
        g.log_line("quota usage"); // listed, or read from the database
    }
    let login = async |g: &Served| {
        let stream = tokio::net::TcpStream::connect(g.sftp).await.unwrap();
        let h = common::gateway::ssh_password(stream, "dave", common::gateway::PASSWORD)
            .await
            .unwrap();
        let s = common::gateway::sftp(&h).await;
        (h, s)
    };
    let ((_ha, at_a), (_hb, at_b)) = (login(&a).await, login(&b).await);
    common::gateway::put(&at_a, "/one.bin", &vec![1u8; 600 << 10]).await;
    let flags = common::gateway::write_flags();
    let attrs = russh_sftp::protocol::FileAttributes::empty();
    let handle = at_b.open("/two.bin", flags, attrs).await.unwrap().handle;
    let mut refused = None;
    for i in 0..20u64 {
        if let Err(e) = at_b
            .write(&handle, i * (32 << 10), vec![2u8; 32 << 10])
            .await
        {
            refused = Some(e.to_string());
            break;
        }
    }
    let why = refused.expect("node b refuses what node a's upload leaves no room for");
    assert!(
        why.contains("quota exceeded: 600.0 KiB of 1.0 MiB used"),
        "{why}"
    );
    assert!(at_b.close(handle).await.is_err());
    at_b.remove("/one.bin").await.unwrap();
    common::gateway::put(&at_a, "/three.bin", &vec![3u8; 900 << 10]).await;
}

/// An event node a gave up on (its receiver down past `retry_for`) is
/// counted by node b's `/api/v1/webhooks`, and retried through b's API it
/// reaches the receiver: given-up events are the fleet's.
#[tokio::test(flavor = "multi_thread")]
async fn given_up_events_are_retried_from_any_node() {
    let database = common::postgres::database().await;
    let (port, url) = later_url();
    let hooked = |name: &str| {
        let with_api = node_with_api(&database, name);
        format!(
            "{with_api}[[webhooks]]\nname = \"erp\"\nurl = \"{url}\"\nsecret = \"s\"\nevents = [\"upload\"]\ntimeout = \"1s\"\nretry_for = \"1s\"\n"
        )
    };
    let a = Served::start_full("", "", &hooked("gu-a"));
    let b = Served::start_full("", "", &hooked("gu-b"));
    for g in [&a, &b] {
        g.log_line("joined the cluster");
    }
    // Given up by whichever node tried last.
    upload_many(&a, "lost", 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, body) = api_call(b.admin(), "GET", "webhooks").await;
        assert!(ok, "{body}");
        let hooks: serde_json::Value = serde_json::from_str(&body).unwrap();
        if hooks["webhooks"][0]["given_up"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b never counted a's given-up event: {hooks}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let receiver = common::receiver::Receiver::start_on(port).await;
    let (ok, body) = api_call(b.admin(), "POST", "webhooks/erp/retry").await;
    assert!(ok, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({ "retried": 1 })
    );
    let paths = ["/lost0".to_string()].into();
    every_path_arrives(&receiver, &paths, Duration::from_secs(30)).await;
}

/// With `[cluster]`, `spool_limit` bounds a webhook's rows in the outbox:
/// with the receiver down, uploads are refused once their events would
/// pass it, the outbox holds no more than it, and every upload that was
/// answered has its event delivered once the receiver is up.
#[tokio::test(flavor = "multi_thread")]
async fn spool_limit_bounds_the_outbox() {
    let database = common::postgres::database().await;
    let (port, url) = later_url();
    let g = Served::start_full(
        "",
        "",
        &format!(
            "{}[[webhooks]]\nname = \"erp\"\nurl = \"{url}\"\nsecret = \"s\"\nevents = [\"upload\"]\nspool_limit = \"4KiB\"\n",
            node(&database, "bound")
        ),
    );
    g.log_line("joined the cluster");
    let stream = tokio::net::TcpStream::connect(g.sftp).await.unwrap();
    let h = common::gateway::ssh_password(stream, "alice", common::gateway::PASSWORD)
        .await
        .unwrap();
    let s = common::gateway::sftp(&h).await;
    let (mut stored, mut refused) = (std::collections::BTreeSet::new(), 0);
    for i in 0..40 {
        let path = format!("/f{i}");
        match s
            .open(&path, common::gateway::write_flags(), Default::default())
            .await
        {
            Ok(f) => {
                s.write(&f.handle, 0, b"x".to_vec()).await.unwrap();
                s.close(f.handle).await.unwrap();
                stored.insert(path);
            }
            Err(e) => {
                assert!(e.to_string().contains("spool is full"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "{} stored, none refused", stored.len());
    let (db, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let held: i64 = db
        .query_one(
            "SELECT coalesce(sum(octet_length(body)), 0)::bigint FROM bucketgate_events",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(held <= 4096, "the outbox holds {held} bytes of events");
    let receiver = common::receiver::Receiver::start_on(port).await;
    every_path_arrives(&receiver, &stored, Duration::from_secs(60)).await;
}
