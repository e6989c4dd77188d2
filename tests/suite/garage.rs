//! Against Garage, an S3 server that checks what moto takes on trust:
//! each request's signature, and each checksum a body carries, answering
//! the checksum it verified. Keys are created and deleted while it serves.

use crate::common;
use common::garage::{Garage, Keys};
use common::gateway::PASSWORD;
use common::served::{Process, Served, user};

const MIB: usize = 1 << 20;

/// paramiko puts the file at argv[2] as argv[3], then argv[4] (if given)
/// as argv[5] in the same session; prints "ok" once both are closed.
const PUT: &str = r#"
import paramiko, sys
port, password, *files = sys.argv[1:]
t = paramiko.Transport(("127.0.0.1", int(port)))
t.connect(username="alice", password=password)
s = paramiko.SFTPClient.from_transport(t)
for local, remote in zip(files[::2], files[1::2]):
    s.put(local, remote)
t.close()
print("ok")
"#;

/// Runs [`PUT`] with `files` (local, remote, …): its output.
fn put(g: &Served, files: &[&std::path::Path], names: &[&str]) -> tokio::process::Child {
    let mut command = tokio::process::Command::new("python3");
    command.args(["-c", PUT, &g.sftp.port().to_string(), PASSWORD]);
    for (file, name) in files.iter().zip(names) {
        command.arg(file).arg(name);
    }
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

async fn said(child: tokio::process::Child) -> String {
    let out = child.wait_with_output().await.unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `len` bytes of a pattern, written to `dir/name`: its path and bytes.
fn file(dir: &std::path::Path, name: &str, len: usize, seed: u32) -> (std::path::PathBuf, Vec<u8>) {
    let bytes: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// A Garage with bucket `files` that key `gateway` may use, and the
/// gateway serving `users` from it (at the endpoint `via` makes of
/// Garage's, with `env`) with the admin endpoint on: Garage, the key, the
/// gateway.
async fn gateway_on_garage(
    via: impl FnOnce(String) -> String,
    users: &str,
    env: Vec<(String, String)>,
) -> (Garage, Keys, Served) {
    let garage = tokio::task::spawn_blocking(Garage::start).await.unwrap();
    let keys = garage.key("gateway");
    garage.bucket("files", &["gateway"]);
    let process = Process {
        endpoint: Some(via(garage.endpoint())),
        bucket: Some("files".into()),
        credentials: Some(keys.clone()),
        env,
        ..Process::default()
    };
    let users = format!("{users}\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    let g = tokio::task::spawn_blocking(move || Served::start_limited("", "", "", &users, process))
        .await
        .unwrap();
    (garage, keys, g)
}

/// What the gateway's `GET /metrics` answers now.
async fn metrics(g: &Served) -> String {
    let line = g.log_line("admin endpoint listening");
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    let admin = line["fields"]["listen"].as_str().unwrap().to_string();
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Garage checks the SHA-256 each part carries (the one SigV4 signs it
/// with) and answers it: the gateway hashes each byte once, for the kept
/// digest, and not again as MD5 against the part's ETag (moto, which
/// checks nothing, gets that pass: see checksums.rs).
#[tokio::test(flavor = "multi_thread")]
async fn parts_the_store_verified_by_checksum_are_hashed_once_by_the_gateway() {
    let (garage, keys, g) = gateway_on_garage(|e| e, &user("alice"), vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = file(dir.path(), "multi.bin", 12 * MIB, 1);
    let out = said(put(&g, &[&path], &["multi.bin"])).await;
    assert_eq!(out.trim(), "ok", "{out}");
    assert!(garage.object(&keys, "files", "alice/multi.bin") == bytes);
    let metrics = metrics(&g).await;
    let hashed = |pass| common::hashed_bytes(&metrics, pass);
    assert_eq!(hashed("digest_sha256"), (12 * MIB) as u64, "{metrics}");
    assert_eq!(hashed("part_md5"), 0, "{metrics}");
}

/// A part changed on the way to the store, now that the gateway no longer
/// checks parts by MD5 where the store checks their checksum: Garage
/// refuses it, the client is told, nothing is stored, and the same file
/// sent again is stored whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_part_changed_on_the_way_is_refused_by_the_store_and_nothing_is_stored() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let damaged = std::sync::Arc::new(AtomicBool::new(false));
    let once = damaged.clone();
    let (garage, keys, g) = gateway_on_garage(
        |endpoint| {
            let proxy = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(common::fault_proxy_with(
                    endpoint,
                    move |method, query| {
                        let part_two = *method == hyper::Method::PUT
                            && format!("{query}&").contains("partNumber=2&");
                        match part_two && !once.swap(true, Ordering::SeqCst) {
                            true => common::Fault::Corrupt,
                            false => common::Fault::Pass,
                        }
                    },
                ))
            });
            format!("http://{proxy}")
        },
        &user("alice"),
        vec![],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = file(dir.path(), "damaged.bin", 12 * MIB, 2);
    let out = said(put(&g, &[&path], &["damaged.bin"])).await;
    assert!(
        damaged.load(Ordering::SeqCst),
        "no part was damaged: {out}\n{}",
        std::fs::read_to_string(g.dir.path().join("log")).unwrap()
    );
    assert!(
        !out.trim().ends_with("ok"),
        "the client was not told: {out}"
    );
    let left = common::boto3_as(
        &garage.endpoint(),
        &keys,
        "print(s3.list_objects_v2(Bucket='files', Prefix='alice/damaged').get('KeyCount', 0), \
         len(s3.list_multipart_uploads(Bucket='files').get('Uploads', [])))",
    );
    assert_eq!(left.trim(), "0 0", "no object, no upload left behind");
    let log = std::fs::read_to_string(g.dir.path().join("log")).unwrap();
    assert!(
        log.contains("InvalidDigest")
            || log.contains("SignatureDoesNotMatch")
            || log.contains("Invalid signature"),
        "{log}"
    );

    let out = said(put(&g, &[&path], &["damaged.bin"])).await;
    assert_eq!(out.trim(), "ok", "{out}");
    assert!(garage.object(&keys, "files", "alice/damaged.bin") == bytes);
}

/// The remote's keys as `file:` values of files in `dir`, which hold `keys`.
fn key_files(dir: &std::path::Path, keys: &Keys) -> (String, String) {
    std::fs::write(dir.join("access_key_id"), format!("{}\n", keys.0)).unwrap();
    std::fs::write(dir.join("secret_access_key"), format!("{}\n", keys.1)).unwrap();
    (
        format!("file:{}", dir.join("access_key_id").display()),
        format!("file:{}", dir.join("secret_access_key").display()),
    )
}

/// The rotation an operator gets wrong: the key file gets the new key and
/// the old key is deleted on the store before the gateway is told. A part
/// of the upload in flight signed with the old key is refused; it waits
/// for the reload and is sent again under its own number with the new key.
/// A small file's single PUT is held alike. Both uploads complete whole
/// and the same session uploads again.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_deleted_on_the_store_before_the_reload_costs_an_upload_in_flight_nothing() {
    use std::sync::{Arc, Mutex};
    let garage = tokio::task::spawn_blocking(Garage::start).await.unwrap();
    let (old, new) = (garage.key("old"), garage.key("new"));
    garage.bucket("files", &["old", "new"]);
    // Which key signed each part that went out.
    let parts = Arc::new(Mutex::new(Vec::<String>::new()));
    let noted = parts.clone();
    let relay = common::fault_proxy_seeing(garage.endpoint(), move |request, _| {
        if request
            .uri
            .query()
            .is_some_and(|q| q.contains("partNumber="))
        {
            let signed = request.headers.get(http::header::AUTHORIZATION);
            let key = signed
                .and_then(|v| v.to_str().ok())
                .and_then(|a| a.split("Credential=").nth(1));
            noted
                .lock()
                .unwrap()
                .push(key.unwrap_or("").split('/').next().unwrap().to_string());
        }
        common::Fault::Pass
    })
    .await;
    let secrets = tempfile::tempdir().unwrap();
    let process = Process {
        endpoint: Some(format!("http://{relay}")),
        bucket: Some("files".into()),
        credentials: Some(key_files(secrets.path(), &old)),
        ..Process::default()
    };
    // alice's uploads go at 3 MiB/s: 16 MiB take about 5 s.
    let users = format!("{}bandwidth_up = \"3MiB/s\"\n", user("alice"));
    let g = tokio::task::spawn_blocking(move || Served::start_limited("", "", "", &users, process))
        .await
        .unwrap();
    let (big, bytes) = file(secrets.path(), "big.bin", 16 * MIB, 3);
    let (small, small_bytes) = file(secrets.path(), "small.bin", 1000, 4);
    let (after, after_bytes) = file(secrets.path(), "after.bin", 2000, 5);
    let upload = put(&g, &[&big, &after], &["big.bin", "after.bin"]);

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !parts.lock().unwrap().contains(&old.0) {
        assert!(tokio::time::Instant::now() < deadline, "no part was sent");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    key_files(secrets.path(), &new);
    garage.delete_key("old");
    let g = tokio::task::spawn_blocking(move || {
        let line = g.log_line("waiting for a reload's new keys");
        assert!(line.contains("AccessDenied: no such key"), "{line}");
        g
    })
    .await
    .unwrap();
    let single = put(&g, &[&small], &["small.bin"]);
    let g = tokio::task::spawn_blocking(move || {
        let waiting = g.log_lines("waiting for a reload's new keys", 2);
        assert!(
            waiting[1].contains("storing alice/small.bin"),
            "{waiting:?}"
        );
        g
    })
    .await
    .unwrap();
    g.signal(libc::SIGHUP);

    let (out, single_out) = (said(upload).await, said(single).await);
    assert_eq!(out.trim(), "ok", "{out}");
    assert_eq!(single_out.trim(), "ok", "{single_out}");
    assert!(garage.object(&new, "files", "alice/big.bin") == bytes);
    assert_eq!(garage.object(&new, "files", "alice/small.bin"), small_bytes);
    assert_eq!(garage.object(&new, "files", "alice/after.bin"), after_bytes);
    let parts = parts.lock().unwrap().clone();
    assert!(
        parts.contains(&new.0),
        "no part signed with the new key: {parts:?}"
    );
    let again = g.log_lines("sent again with the reload's new keys", 2);
    assert!(
        again.iter().any(|l| l.contains("of alice/big.bin"))
            && again.iter().any(|l| l.contains("storing alice/small.bin")),
        "{again:#?}"
    );
}

/// Each part's request as the store was sent it: whether it was signed by
/// its SHA-256 (not `UNSIGNED-PAYLOAD`), and which checksum it carried.
type PartsSeen = std::sync::Arc<std::sync::Mutex<Vec<(bool, Option<&'static str>)>>>;

/// Garage behind a TLS front, reached through a relay noting each part and
/// refusing a CreateMultipartUpload that announces CRC64-NVME with 400
/// when `refuse_crc` (as servers before 2025 do): the gateway serving
/// alice from it over `https://` (the front's certificate written in
/// `dir`), and what the relay saw.
async fn gateway_over_https(
    refuse_crc: bool,
    dir: &std::path::Path,
) -> (Garage, Keys, Served, PartsSeen) {
    let parts = PartsSeen::default();
    let noted = parts.clone();
    let cert = dir.join("s3.pem");
    let front = {
        let cert = cert.clone();
        move |endpoint: String| {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    let relay = common::fault_proxy_seeing(endpoint, move |request, _| {
                        let header = |name| request.headers.get(name).and_then(|v| v.to_str().ok());
                        let query = request.uri.query().unwrap_or("");
                        if refuse_crc
                            && query.starts_with("uploads")
                            && header("x-amz-checksum-algorithm") == Some("CRC64NVME")
                        {
                            return common::Fault::Fail(
                                400,
                                "<Error><Code>InvalidArgument</Code><Message>Unsupported checksum algorithm</Message></Error>",
                            );
                        }
                        if query.contains("partNumber=") {
                            let signed = header("x-amz-content-sha256") != Some("UNSIGNED-PAYLOAD");
                            let checksum = ["x-amz-checksum-sha256", "x-amz-checksum-crc64nvme"]
                                .into_iter()
                                .find(|name| header(name).is_some());
                            noted.lock().unwrap().push((signed, checksum));
                        }
                        common::Fault::Pass
                    })
                    .await;
                    let front = common::tls_front(relay, &cert).await;
                    format!("https://{front}")
                })
            })
        }
    };
    let env = vec![("SSL_CERT_FILE".to_string(), cert.display().to_string())];
    let (garage, keys, g) = gateway_on_garage(front, &user("alice"), env).await;
    (garage, keys, g, parts)
}

/// Over HTTPS a part goes `UNSIGNED-PAYLOAD` with a CRC64-NVME checksum
/// that Garage checks and answers: no SHA-256 of the part (TLS keeps it on
/// the way), no MD5 either; the object is whole.
#[tokio::test(flavor = "multi_thread")]
async fn over_https_parts_go_unsigned_with_a_crc_the_store_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (garage, keys, g, parts) = gateway_over_https(false, dir.path()).await;
    let (path, bytes) = file(dir.path(), "multi.bin", 12 * MIB, 6);
    let out = said(put(&g, &[&path], &["multi.bin"])).await;
    assert_eq!(out.trim(), "ok", "{out}");
    assert!(garage.object(&keys, "files", "alice/multi.bin") == bytes);
    let parts = parts.lock().unwrap().clone();
    assert_eq!(parts, vec![(false, Some("x-amz-checksum-crc64nvme")); 3]);
    let metrics = metrics(&g).await;
    assert_eq!(common::hashed_bytes(&metrics, "part_md5"), 0, "{metrics}");
}

/// A server that refuses CRC64-NVME (400 to the CreateMultipartUpload
/// announcing it): the upload goes signed by SHA-256 at once, as over
/// HTTP, one WARN line says so, and the remote's later uploads do not ask
/// again.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_refuses_crc64_gets_signed_parts() {
    let dir = tempfile::tempdir().unwrap();
    let (garage, keys, g, parts) = gateway_over_https(true, dir.path()).await;
    let (path, bytes) = file(dir.path(), "first.bin", 12 * MIB, 7);
    let (again, again_bytes) = file(dir.path(), "again.bin", 6 * MIB, 8);
    let out = said(put(&g, &[&path, &again], &["first.bin", "again.bin"])).await;
    assert_eq!(out.trim(), "ok", "{out}");
    assert!(garage.object(&keys, "files", "alice/first.bin") == bytes);
    assert!(garage.object(&keys, "files", "alice/again.bin") == again_bytes);
    let parts = parts.lock().unwrap().clone();
    assert_eq!(parts, vec![(true, Some("x-amz-checksum-sha256")); 5]);
    let log = std::fs::read_to_string(g.dir.path().join("log")).unwrap();
    let warned = log
        .lines()
        .filter(|l| l.contains("refused a part sent unsigned"))
        .count();
    assert_eq!(warned, 1, "{log}");
}
