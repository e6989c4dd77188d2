//! Quotas as clients meet them: an upload that would pass the quota fails
//! at the write that crosses it, nothing of it is stored (the object it
//! would replace stays, no multipart upload is left), and usage follows
//! what is committed, deleted and moved. Over moto with the russh client,
//! OpenSSH `sftp` (its `df`) and curl (FTP, 552).

use crate::common;
use common::gateway::{HASH, PASSWORD, TestGateway, put, ssh_password, start_full_tables};
use russh::keys::{Algorithm, PrivateKey};
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use serde_json::Value;
use sha2::Digest;
use std::time::{Duration, Instant};

const TOKEN: &str = "bgt_quota-test-token";
const KIB: usize = 1024;

/// `[admin]` keys giving the API to [`TOKEN`].
fn api_token() -> String {
    let hash = bucketgate::base::hex(&sha2::Sha256::digest(TOKEN.as_bytes()));
    format!("[[admin.tokens]]\nname = \"ops\"\nhash = \"sha256:{hash}\"\n")
}

/// `GET /api/v1/usage` of the admin listener at `admin`: each target's row.
async fn usage_at(admin: std::net::SocketAddr) -> Vec<Value> {
    let (ok, out, err) = common::run(
        "curl",
        &[
            "-sf",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            &format!("http://{admin}/api/v1/usage"),
        ],
    )
    .await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["usage"].as_array().unwrap().clone()
}

/// `target`'s (bytes, files), once it is known.
async fn used(g: &TestGateway, target: &str) -> Option<(i64, i64)> {
    used_at(g.admin, target).await
}

async fn used_at(admin: std::net::SocketAddr, target: &str) -> Option<(i64, i64)> {
    let rows = usage_at(admin).await;
    let row = rows.iter().find(|r| r["target"] == target)?;
    Some((row["used_bytes"].as_i64()?, row["used_files"].as_i64()?))
}

/// Waits, bounded, until `target`'s usage is `want`.
async fn wait_used(g: &TestGateway, target: &str, want: (i64, i64)) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = used(g, target).await;
        if now == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{target} never held {want:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes `len` bytes to `path` in 32 KiB WRITEs: the index of the
/// first refused, with its message, and whether the close went through.
async fn write_sftp(
    s: &russh_sftp::client::RawSftpSession,
    path: &str,
    len: usize,
) -> (Option<(usize, String)>, bool) {
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let handle = s
        .open(path, flags, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    let mut refused = None;
    for i in 0..len / (32 * KIB) {
        let at = (i * 32 * KIB) as u64;
        if let Err(e) = s.write(&handle, at, vec![7u8; 32 * KIB]).await {
            refused = Some((i, e.to_string()));
            break;
        }
    }
    (refused, s.close(handle).await.is_ok())
}

/// quinn may store 1 MiB and 3 files, and logs in with `key` too.
fn quinn(key: &PrivateKey) -> String {
    let public = key.public_key().to_openssh().unwrap();
    format!(
        "[[users]]\nname = \"quinn\"\npassword = \"{HASH}\"\nhome = \"store:/quinn\"\n\
         authorized_keys = [\"{public}\"]\nquota = \"1MiB\"\nquota_files = 3\n"
    )
}

/// One quota over SFTP and FTP: refusals at the crossing write, nothing
/// stored of a refused upload, overwrite counting the difference, delete
/// giving back, `df` in OpenSSH's `sftp` showing the quota.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_past_the_quota_fails_and_usage_follows_what_is_stored() {
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let g = start_full_tables("", &api_token(), &quinn(&key)).await;
    let target = "store:/quinn";
    wait_used(&g, target, (0, 0)).await;
    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let h = ssh_password(stream, "quinn", PASSWORD).await.unwrap();
    let s = common::gateway::sftp(&h).await;

    put(&s, "/a.bin", &vec![1u8; 600 * KIB]).await;
    assert_eq!(used(&g, target).await, Some((600 * KIB as i64, 1)));
    let metrics = g.metrics().await;
    for series in [
        "bucketgate_quota_used_bytes{target=\"store:/quinn\"} 614400",
        "bucketgate_quota_used_files{target=\"store:/quinn\"} 1",
        "bucketgate_quota_limit_bytes{target=\"store:/quinn\"} 1048576",
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }

    // 600 KiB more cross 1 MiB at the write that ends past 424 KiB.
    let (refused, closed) = write_sftp(&s, "/b.bin", 600 * KIB).await;
    let (at, why) = refused.expect("the upload past the quota is refused");
    assert_eq!(at, 13, "refused at the write crossing 1 MiB: {why}");
    assert!(
        why.contains("quota exceeded: 600.0 KiB of 1.0 MiB used"),
        "{why}"
    );
    assert!(!closed, "the close of a refused upload fails");
    assert_eq!(
        g.stored("quinn/"),
        "[('quinn/', 0), ('quinn/a.bin', 614400)] 0"
    );
    assert_eq!(used(&g, target).await, Some((600 * KIB as i64, 1)));

    // Overwriting counts the difference: 896 KiB in place of 600 (which
    // would not fit beside it).
    let (refused, closed) = write_sftp(&s, "/a.bin", 896 * KIB).await;
    assert!(refused.is_none() && closed, "{refused:?}");
    assert_eq!(used(&g, target).await, Some((896 * KIB as i64, 1)));

    // OpenSSH's sftp: df shows the quota (1024 KiB, 128 free), and a put
    // of 400 KiB fails with nothing stored.
    let key_file = g.dir.path().join("quinn_key");
    key.write_openssh_file(&key_file, russh::keys::ssh_key::LineEnding::LF)
        .unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(g.dir.path().join("over.bin"), vec![4u8; 400 * KIB]).unwrap();
    let openssh = async |commands: &str| {
        let batch = g.dir.path().join("batch");
        std::fs::write(&batch, commands).unwrap();
        let port = g.addr.port().to_string();
        let args = [
            "-b",
            batch.to_str().unwrap(),
            "-P",
            &port,
            "-i",
            key_file.to_str().unwrap(),
        ];
        let mut cmd = tokio::process::Command::new("sftp");
        cmd.current_dir(g.dir.path()).args(args);
        cmd.args(common::gateway::OPENSSH_OPTIONS)
            .arg("quinn@127.0.0.1");
        let out = cmd.output().await.unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, out, err) = openssh("df\n").await;
    assert!(ok, "{out} {err}");
    let figures: Vec<&str> = out
        .lines()
        .find(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(figures[..3], ["1024", "896", "128"], "{out}");
    let (ok, out, err) = openssh("put over.bin\n").await;
    assert!(!ok, "{out}");
    assert!(err.contains("over.bin"), "{err}");
    assert_eq!(
        g.stored("quinn/"),
        "[('quinn/', 0), ('quinn/a.bin', 917504)] 0"
    );

    // Files count too: two more files fill quota_files = 3.
    put(&s, "/c.txt", b"c").await;
    put(&s, "/d.txt", b"d").await;
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let why = s
        .open("/e.txt", flags, FileAttributes::empty())
        .await
        .unwrap_err()
        .to_string();
    assert!(why.contains("quota exceeded: 3 of 3 files"), "{why}");
    // At the limit of files, an overwrite is no new file: it goes through.
    put(&s, "/d.txt", b"D").await;

    // Deleting gives back.
    s.remove("/a.bin").await.unwrap();
    s.remove("/d.txt").await.unwrap();
    assert_eq!(used(&g, target).await, Some((1, 1)));

    // FTP: a 2 MiB STOR over c.txt is refused with 552; c.txt stays as it was.
    let src = g.dir.path().join("big.bin");
    std::fs::write(&src, vec![9u8; 2 << 20]).unwrap();
    let (ok, out, err) = common::run(
        "curl",
        &[
            "-sSv",
            "--user",
            &format!("quinn:{PASSWORD}"),
            "-T",
            src.to_str().unwrap(),
            &format!("ftp://127.0.0.1:{}/c.txt", g.ftp.port()),
        ],
    )
    .await;
    assert!(!ok, "{out}");
    let reply = err
        .lines()
        .find(|l| l.starts_with("< 552"))
        .unwrap_or_default();
    assert!(reply.contains("quota exceeded"), "{err}");
    assert_eq!(g.stored("quinn/"), "[('quinn/', 0), ('quinn/c.txt', 1)] 0");
    assert_eq!(used(&g, target).await, Some((1, 1)));

    // ALLO with a size is answered before any byte moves.
    let mut raw = common::ftp::RawFtp::login(&g, "quinn").await;
    let refused = raw.cmd("ALLO 2000000").await;
    assert!(
        refused.starts_with("552") && refused.contains("quota exceeded"),
        "{refused}"
    );
    assert!(raw.cmd("ALLO 1000").await.starts_with("202"));
    g.stop().await;
}

/// A mount's quota belongs to its target: two users mounting it share it;
/// a rename between a home and the mount moves usage; an object written
/// behind the gateway's back is counted after the next listing.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_target_is_one_quota_and_renames_and_scans_move_usage() {
    let tables = format!(
        "[[users]]\nname = \"rita\"\npassword = \"{HASH}\"\nhome = \"store:/rita\"\nquota = \"1MiB\"\n\
         [[users.mounts]]\npath = \"/team\"\ntarget = \"store:/team\"\nquota = \"512KiB\"\n\
         [[users]]\nname = \"sam\"\npassword = \"{HASH}\"\nhome = \"store:/sam\"\n\
         [[users.mounts]]\npath = \"/team\"\ntarget = \"store:/team\"\nquota = \"512KiB\"\n"
    );
    let g = start_full_tables("quota_scan = \"2s\"", &api_token(), &tables).await;
    wait_used(&g, "store:/rita", (0, 0)).await;
    wait_used(&g, "store:/team", (0, 0)).await;
    let login = async |user: &str| {
        let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
        let h = ssh_password(stream, user, PASSWORD).await.unwrap();
        let s = common::gateway::sftp(&h).await;
        (h, s)
    };
    let (_hr, rita) = login("rita").await;
    let (_hs, sam) = login("sam").await;
    put(&rita, "/team/r.bin", &vec![1u8; 300 * KIB]).await;
    // sam's upload meets what rita stored: 300 + 300 KiB pass 512 KiB.
    let (refused, _) = write_sftp(&sam, "/team/s.bin", 300 * KIB).await;
    let (_, why) = refused.expect("the shared quota holds for sam");
    assert!(why.contains("of 512.0 KiB used"), "{why}");
    // A file moved from rita's home into the team folder moves its usage.
    put(&rita, "/x.bin", &vec![2u8; 100 * KIB]).await;
    assert_eq!(used(&g, "store:/rita").await, Some((100 * KIB as i64, 1)));
    rita.rename("/x.bin", "/team/x.bin").await.unwrap();
    assert_eq!(used(&g, "store:/rita").await, Some((0, 0)));
    assert_eq!(used(&g, "store:/team").await, Some((400 * KIB as i64, 2)));
    // A rename that would pass the target's quota is refused.
    put(&rita, "/y.bin", &vec![3u8; 200 * KIB]).await;
    let why = rita
        .rename("/y.bin", "/team/y.bin")
        .await
        .unwrap_err()
        .to_string();
    assert!(why.contains("quota exceeded"), "{why}");
    // Another S3 client writes into the team prefix: the next listing counts it.
    g.s3("s3.put_object(Bucket=bucket, Key='team/outside.bin', Body=b'z' * 1000)");
    wait_used(&g, "store:/team", (400 * KIB as i64 + 1000, 3)).await;
    g.stop().await;
}

/// Usage survives a node killed outright: what was counted is written to
/// `state_dir` within seconds and read back at the start, so the node does
/// not wait for a listing (an object put behind its back while it was down
/// shows it is the kept count, not a new listing).
#[tokio::test(flavor = "multi_thread")]
async fn usage_is_kept_across_a_restart() {
    use common::served::Served;
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}\n[[users]]\nname = \"vic\"\npassword = \"{HASH}\"\n\
         home = \"store:/vic\"\nquota = \"1MiB\"\n",
        api_token()
    );
    let mut g = Served::start_full("", "", &config);
    g.log_line("quota usage listed");
    let stream = tokio::net::TcpStream::connect(g.sftp).await.unwrap();
    let h = ssh_password(stream, "vic", PASSWORD).await.unwrap();
    let s = common::gateway::sftp(&h).await;
    put(&s, "/kept.bin", &vec![1u8; 100 * KIB]).await;
    let file = g.dir.path().join("state/quota-usage.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains("102400")) {
        assert!(
            Instant::now() < deadline,
            "the usage never reached {file:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((s, h));
    g.kill();
    common::boto3(
        &g.endpoint,
        &format!(
            "s3.put_object(Bucket='{}', Key='vic/behind.bin', Body=b'z' * 1000)",
            g.bucket
        ),
    );
    g.restart();
    let admin = g.admin();
    assert_eq!(
        used_at(admin, "store:/vic").await,
        Some((100 * KIB as i64, 1))
    );
}

/// HEADs the gateway has sent to S3, whatever they answered.
fn heads(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("bucketgate_s3_requests_total{operation=\"HeadObject\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Once a target is listed, an upload of a name it does not hold asks S3
/// nothing about what it replaces (the HEAD was the whole cost of a quota
/// on many small files); a name it holds, even one another client put
/// before the listing, is asked for, and its overwrite counts the difference.
#[tokio::test(flavor = "multi_thread")]
async fn uploads_of_new_names_send_no_head() {
    let tables = format!(
        "[[users]]\nname = \"nina\"\npassword = \"{HASH}\"\nhome = \"store:/nina\"\nquota = \"10MiB\"\n"
    );
    let g = start_full_tables("quota_scan = \"1s\"", &api_token(), &tables).await;
    g.s3("s3.put_object(Bucket=bucket, Key='nina/old.bin', Body=b'o' * 100)");
    let target = "store:/nina";
    wait_used(&g, target, (100, 1)).await;
    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let h = ssh_password(stream, "nina", PASSWORD).await.unwrap();
    let s = common::gateway::sftp(&h).await;

    let before = heads(&g.metrics().await);
    for i in 0..5 {
        put(&s, &format!("/n{i}.bin"), &[7u8; 1000]).await;
    }
    assert_eq!(
        heads(&g.metrics().await),
        before,
        "new names were asked for"
    );
    assert_eq!(used(&g, target).await, Some((5100, 6)));

    // Rewritten: the name is held, the HEAD says what it replaces.
    put(&s, "/old.bin", &[8u8; 300]).await;
    put(&s, "/n0.bin", &[9u8; 10]).await;
    assert_eq!(used(&g, target).await, Some((4310, 6)));
    assert!(heads(&g.metrics().await) >= before + 2.0);

    // A folder renamed inside the target: what it holds is still asked
    // for under its new name (rewriting it counts the difference).
    s.mkdir("/d", FileAttributes::empty()).await.unwrap();
    put(&s, "/d/x.bin", &[1u8; 100]).await;
    s.rename("/d", "/e").await.unwrap();
    put(&s, "/e/x.bin", &[2u8; 40]).await;
    assert_eq!(used(&g, target).await, Some((4350, 7)));
    g.stop().await;
}

/// A sync job's copies into a quota target count there as they are made
/// (the target's next listing is an hour away).
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_jobs_copies_count_toward_the_target() {
    let tables = format!(
        "[[users]]\nname = \"sid\"\npassword = \"{HASH}\"\nhome = \"store:/sid\"\nquota = \"1MiB\"\n\
         [[syncs]]\nname = \"feed\"\nlocal = \"store:/outbox\"\nremote = \"store:/sid/in\"\n\
         direction = \"push\"\ninterval = \"1s\"\n"
    );
    let g = start_full_tables("", &api_token(), &tables).await;
    let target = "store:/sid";
    wait_used(&g, target, (0, 0)).await;
    g.s3(
        "s3.put_object(Bucket=bucket, Key='outbox/a.csv', Body=b'a' * 1000)\n\
         s3.put_object(Bucket=bucket, Key='outbox/b.csv', Body=b'b' * 2000)",
    );
    wait_used(&g, target, (3000, 2)).await;
    assert_eq!(
        g.stored("sid/"),
        "[('sid/in/a.csv', 1000), ('sid/in/b.csv', 2000)] 0"
    );
    g.stop().await;
}
