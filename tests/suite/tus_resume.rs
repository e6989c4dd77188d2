//! tus uploads that outlive the gateway holding them: a client resumes
//! after the process is killed, or at another node of a fleet, from the
//! parts S3 holds; an abandoned upload is aborted at its expiry even when
//! no process holds it any more. Each gateway is a process of its own
//! (`common::served`), over moto, in 5 MiB parts.

use crate::common;
use crate::web::Web;
use common::served::{Process, Served, user};
use common::until;
use reqwest::StatusCode;

const MIB: usize = 1 << 20;

/// alice with the web client on; `more` is appended (`[cluster]`…).
fn with_web(more: &str) -> String {
    format!(
        "{}\n[web]\nlisten = \"127.0.0.1:0\"\n{more}\n",
        user("alice")
    )
}

fn web_base(g: &Served) -> String {
    format!("http://{}", g.listening("web client listening"))
}

fn bucket_state(g: &Served) -> (Vec<String>, usize) {
    common::s3_state(&g.endpoint, &g.bucket, "alice/")
}

fn object(g: &Served, key: &str) -> Vec<u8> {
    common::s3_object(&g.endpoint, &g.bucket, key)
}

fn records(g: &Served) -> usize {
    match std::fs::read_dir(g.dir.path().join("state/uploads")) {
        Ok(dir) => dir.count(),
        Err(_) => 0,
    }
}

/// Killed (SIGKILL: nothing runs at exit) with two parts in S3, the
/// gateway restarts; the client logs in again and
/// HEAD says 10 MiB, the end of the parts S3 holds; the rest completes
/// the file from there, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tus_upload_resumes_after_the_gateway_is_killed() {
    let mut g = Served::start_full("", "", &with_web(""));
    let data = common::pattern(17 * MIB, 7);
    let web = Web::login_at(&web_base(&g), "alice").await;
    let (status, at) = web.create("/", "big.bin", data.len() as u64).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        web.patch(&at, 0, data[..12 * MIB].to_vec()).await,
        (StatusCode::NO_CONTENT, Some(12 * MIB as u64))
    );
    assert_eq!(records(&g), 1);
    // Where S3's parts end once the second is in (a part may still be on
    // its way when a PATCH is answered).
    assert_eq!(web.head(&at).await, (StatusCode::OK, Some(10 * MIB as u64)));

    g.kill_and_restart();
    let web = Web::login_at(&web_base(&g), "alice").await;
    assert_eq!(web.head(&at).await, (StatusCode::OK, Some(10 * MIB as u64)));
    assert!(
        g.log_line("tus upload taken up from its record")
            .contains("\"offset\":10485760")
    );
    let (status, offset) = web
        .patch(&at, 10 * MIB as u64, data[10 * MIB..].to_vec())
        .await;
    assert_eq!(
        (status, offset),
        (StatusCode::NO_CONTENT, Some(data.len() as u64))
    );
    assert_eq!(object(&g, "alice/big.bin"), data);
    assert_eq!(bucket_state(&g).1, 0);
    assert_eq!(records(&g), 0);
    assert_eq!(web.head(&at).await.0, StatusCode::NOT_FOUND);
}

/// An upload left with a part in S3 when its gateway was killed is
/// aborted at its expiry by the gateway that restarted, which never held
/// it: no multipart upload, no record left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_upload_is_aborted_at_its_expiry_after_a_restart() {
    let mut g = Served::start_full("", "", &with_web("upload_expiry = \"3s\""));
    let web = Web::login_at(&web_base(&g), "alice").await;
    let (_, at) = web.create("/", "left.bin", 12 * MIB as u64).await;
    assert_eq!(
        web.patch(&at, 0, vec![5; 6 * MIB]).await.0,
        StatusCode::NO_CONTENT
    );
    let home = vec!["alice/".to_string()];
    until("the first part in S3", async || {
        bucket_state(&g) == (home.clone(), 1)
    })
    .await;
    g.kill_and_restart();
    until("the abandoned upload aborted", async || {
        bucket_state(&g) == (home.clone(), 0) && records(&g) == 0
    })
    .await;
    g.log_line("an unfinished tus upload expired and was aborted");
    let web = Web::login_at(&web_base(&g), "alice").await;
    assert_eq!(web.head(&at).await.0, StatusCode::NOT_FOUND);
}

/// A fleet of two on one bucket: an upload begun at a goes on at b (a
/// new login there) from the parts in S3, then back at a, which lets go
/// of what it held (it no longer holds the upload) and takes it up again
/// from S3; the file is whole and no multipart upload is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tus_upload_moves_between_the_nodes_of_a_fleet() {
    let database = common::postgres::database().await;
    let fleet = |name: &str| {
        with_web(&format!(
            "[cluster]\ndatabase = \"{database}\"\nnode = \"{name}\"\nheartbeat = \"1s\"\n"
        ))
    };
    let a = Served::start_full("", "", &fleet("tus-a"));
    let on_a = Process {
        bucket: Some(a.bucket.clone()),
        ..Process::default()
    };
    let b = Served::start_limited("", "", "", &fleet("tus-b"), on_a);
    let data = common::pattern(23 * MIB, 3);
    let at_a = Web::login_at(&web_base(&a), "alice").await;
    let at_b = Web::login_at(&web_base(&b), "alice").await;
    let (status, at) = at_a.create("/", "moved.bin", data.len() as u64).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        at_a.patch(&at, 0, data[..12 * MIB].to_vec()).await.0,
        StatusCode::NO_CONTENT
    );
    // Once a's two parts are in S3, b answers where they end.
    assert_eq!(
        at_a.head(&at).await,
        (StatusCode::OK, Some(10 * MIB as u64))
    );
    assert_eq!(
        at_b.head(&at).await,
        (StatusCode::OK, Some(10 * MIB as u64))
    );
    assert_eq!(
        at_b.patch(&at, 10 * MIB as u64, data[10 * MIB..16 * MIB].to_vec())
            .await,
        (StatusCode::NO_CONTENT, Some(16 * MIB as u64))
    );
    assert_eq!(
        at_b.head(&at).await,
        (StatusCode::OK, Some(15 * MIB as u64))
    );
    // Back at a: what a held (10 MiB) is stale; it stands where S3's parts end.
    assert_eq!(
        at_a.patch(&at, 12 * MIB as u64, vec![1]).await,
        (StatusCode::CONFLICT, Some(15 * MIB as u64))
    );
    let (status, offset) = at_a
        .patch(&at, 15 * MIB as u64, data[15 * MIB..].to_vec())
        .await;
    assert_eq!(
        (status, offset),
        (StatusCode::NO_CONTENT, Some(data.len() as u64))
    );
    assert_eq!(object(&a, "alice/moved.bin"), data);
    assert_eq!(bucket_state(&a).1, 0);
    assert_eq!(at_b.head(&at).await.0, StatusCode::NOT_FOUND);
}
