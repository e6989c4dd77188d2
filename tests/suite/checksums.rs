//! Integrity as a partner's tools check it: rclone asks the gateway for
//! digests over SSH (`md5sum PATH`, after its probes) and compares them with
//! the files it sent.

use crate::common;

use common::gateway::{TestGateway, alice, put, start, write_all, write_flags};
use common::pattern;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use sha2::Digest;

const MIB: usize = 1 << 20;

/// rclone's on-the-fly SFTP remote for alice, with her key.
fn remote(g: &TestGateway) -> String {
    format!(
        ":sftp,host=127.0.0.1,port={},user=alice,key_file={}:",
        g.addr.port(),
        g.key_file.display()
    )
}

/// Runs rclone; the S3 endpoint is plain HTTP on loopback, and rclone 1.60
/// refuses any S3 remote when AWS_CA_BUNDLE is set (as on this machine).
async fn rclone(args: &[&str]) -> String {
    let out = tokio::process::Command::new("rclone")
        .args(["--retries", "1", "--low-level-retries", "1"])
        .args(args)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .await
        .expect("rclone must be installed (.ci/run does it)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "rclone {args:?}: {stdout}\n{stderr}");
    format!("{stdout}{stderr}")
}

/// `name  hash` lines of `rclone md5sum`/`sha1sum`, sorted.
fn sums(out: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, n)| (n.to_string(), h.to_string()))
        .collect();
    v.sort();
    v
}

/// A small file, a multipart one and a resumed one (its old part copied
/// inside S3, so its digest is computed by reading it): `rclone md5sum`
/// and `sha1sum` through the gateway give each file's digests, and
/// `rclone check` compares them with the local files.
#[tokio::test(flavor = "multi_thread")]
async fn rclone_gets_digests_over_ssh() {
    let g = start(
        "part_size = \"5MiB\"\nchecksums = [\"md5\", \"sha1\", \"sha256\"]\nkeep_digests_by_copy = true\n",
    )
    .await;
    let local = tempfile::tempdir().unwrap();
    let files = [
        ("small.txt", pattern(1000, 1)),
        ("multi.bin", pattern(12 * MIB + 5, 2)),
        ("resumed.bin", pattern(9 * MIB, 3)),
    ];
    for (name, data) in &files[..2] {
        std::fs::write(local.path().join(name), data).unwrap();
    }
    let target = remote(&g);
    rclone(&[
        "copy",
        local.path().to_str().unwrap(),
        &format!("{target}in"),
    ])
    .await;

    // The resumed file: 6 MiB, then the rest appended by a resume.
    let (_ssh, s) = alice(&g).await;
    let data = &files[2].1;
    for (flags, range) in [
        (write_flags(), 0..6 * MIB),
        (OpenFlags::WRITE, 6 * MIB..data.len()),
    ] {
        let h = s
            .open("/in/resumed.bin", flags, FileAttributes::empty())
            .await
            .unwrap()
            .handle;
        write_all(&s, &h, range.start, &data[range.clone()], 256 << 10, 8).await;
        s.close(h).await.unwrap();
    }
    std::fs::write(local.path().join("resumed.bin"), data).unwrap();

    let expect = |f: fn(&[u8]) -> String| {
        let mut v: Vec<(String, String)> =
            files.iter().map(|(n, d)| (n.to_string(), f(d))).collect();
        v.sort();
        v
    };
    // rclone probes the shell and the commands the first time it needs a
    // digest (one file here); a saved remote then remembers what the probes
    // found, which the folder-wide runs get in their remote string (an
    // on-the-fly remote cannot save, and rclone's checkers race the probe).
    let one = rclone(&["md5sum", "-vv", &format!("{target}in/multi.bin")]).await;
    assert!(one.contains("Shell type \"unix\" detected"), "{one}");
    assert!(one.contains("Hash command accepted"), "{one}");
    let multi = bucketgate::base::hex(&md5::Md5::digest(&files[1].1));
    assert!(one.contains(&format!("{multi}  multi.bin")), "{one}");
    let target = target.replace(
        ":sftp,",
        ":sftp,shell_type=unix,md5sum_command=md5sum,sha1sum_command=sha1sum,",
    );
    let md5 = rclone(&["md5sum", &format!("{target}in")]).await;
    assert_eq!(
        sums(&md5),
        expect(|d| bucketgate::base::hex(&md5::Md5::digest(d)))
    );
    let sha1 = rclone(&["sha1sum", &format!("{target}in")]).await;
    assert_eq!(
        sums(&sha1),
        expect(|d| bucketgate::base::hex(&sha1::Sha1::digest(d)))
    );
    let check = rclone(&[
        "check",
        local.path().to_str().unwrap(),
        &format!("{target}in"),
    ])
    .await;
    assert!(check.contains("0 differences found"), "{check}");
    assert!(check.contains("3 matching files"), "{check}");
    assert!(!check.contains("hashes could not be checked"), "{check}");

    // Straight against the bucket, rclone's S3 backend reads the MD5 the
    // gateway kept (`md5chksum`): in the PUT of the small file, and, with
    // `keep_digests_by_copy`, in the copy that follows the multipart one's
    // completion. (The resumed file's old bytes were copied inside S3 and
    // never seen: it has none kept.)
    let bucket = format!(
        ":s3,provider=Other,endpoint='{}',access_key_id={},secret_access_key={}:{}/alice/in",
        g.endpoint,
        common::ACCESS_KEY,
        common::SECRET_KEY,
        g.bucket
    );
    let direct = rclone(&[
        "check",
        "--exclude",
        "resumed.bin",
        local.path().to_str().unwrap(),
        &bucket,
    ])
    .await;
    assert!(direct.contains("0 differences found"), "{direct}");
    assert!(direct.contains("2 matching files"), "{direct}");
    assert!(!direct.contains("hashes could not be checked"), "{direct}");
    g.stop().await;
}

/// SFTP's check-file extension: paramiko's `SFTPFile.check` (by handle) and
/// a `check-file-name` request as WinSCP sends it, answered from the digest
/// the upload kept or by reading the file; a range is refused with a clear
/// status.
#[tokio::test(flavor = "multi_thread")]
async fn check_file_answers_paramiko_and_winscp_requests() {
    let g = start("checksums = [\"md5\", \"sha256\"]\n").await;
    let (_ssh, s) = alice(&g).await;
    let data = pattern(300_000, 7);
    put(&s, "/c.bin", &data).await;
    let script = format!(
        "import paramiko\n\
         from paramiko.sftp import CMD_EXTENDED, int64\n\
         t = paramiko.Transport(('127.0.0.1', {port}))\n\
         t.connect(username='alice', password='{pw}')\n\
         s = paramiko.SFTPClient.from_transport(t)\n\
         with s.open('/c.bin', 'rb') as f:\n\
         \x20   print('handle', f.check('sha256').hex())\n\
         _, m = s._request(CMD_EXTENDED, 'check-file-name', '/c.bin', 'sha1,md5', int64(0), int64(0), 0)\n\
         print('name', m.get_text(), m.get_text(), m.get_remainder().hex())\n\
         try:\n\
         \x20   s._request(CMD_EXTENDED, 'check-file-name', '/c.bin', 'md5', int64(10), int64(5), 0)\n\
         except IOError as e:\n\
         \x20   print('range', e)\n\
         t.close()\n",
        port = g.addr.port(),
        pw = common::gateway::PASSWORD,
    );
    let (ok, out, err) = common::run("python3", &["-c", &script]).await;
    assert!(ok, "paramiko: {out}\n{err}");
    let sha256 = bucketgate::base::hex(&sha2::Sha256::digest(&data));
    // The client's first choice is answered, kept or not: SHA-1 is not
    // kept here, so it is computed by reading the file.
    let sha1 = bucketgate::base::hex(&sha1::Sha1::digest(&data));
    assert!(out.contains(&format!("handle {sha256}")), "{out}");
    assert!(
        out.contains(&format!("name check-file sha1 {sha1}")),
        "{out}"
    );
    assert!(out.contains("range") && out.contains("whole file"), "{out}");
    g.stop().await;
}

/// An object another S3 client wrote has no digest kept: the first ask
/// reads it through (bounded memory), a second ask answers from what the
/// gateway remembers for that ETag without reading it again; past
/// `checksum_read_limit` the answer says why there is none.
#[tokio::test(flavor = "multi_thread")]
async fn digests_of_foreign_objects_are_computed_once_and_limited() {
    use std::sync::{Arc, Mutex};
    let gets = Arc::new(Mutex::new(0usize));
    let counted = gets.clone();
    let proxy = common::fault_proxy_with(common::moto_endpoint(), move |method, query| {
        if method == hyper::Method::GET && query.is_empty() {
            *counted.lock().unwrap() += 1;
        }
        common::Fault::Pass
    })
    .await;
    let g = common::gateway::start_via(
        &format!("http://{proxy}"),
        "checksum_read_limit = \"2MiB\"\n",
    )
    .await;
    g.s3(
        "import random\nr = random.Random(5)\n\
         s3.put_object(Bucket=bucket, Key='alice/foreign.bin', Body=bytes(r.getrandbits(8) for _ in range(100000)))\n\
         s3.put_object(Bucket=bucket, Key='alice/huge.bin', Body=b'x' * (3 << 20))",
    );
    let expected = g.s3(
        "import hashlib\nprint(hashlib.sha256(s3.get_object(Bucket=bucket, Key='alice/foreign.bin')['Body'].read()).hexdigest())",
    );
    let script = format!(
        "import paramiko\n\
         t = paramiko.Transport(('127.0.0.1', {port}))\n\
         t.connect(username='alice', password='{pw}')\n\
         for path in ['/foreign.bin', '/foreign.bin', '/huge.bin']:\n\
         \x20   c = t.open_session()\n\
         \x20   c.exec_command('sha256sum ' + path)\n\
         \x20   out = c.makefile('rb').read().decode()\n\
         \x20   err = c.makefile_stderr('rb').read().decode()\n\
         \x20   print(repr(out), repr(err), c.recv_exit_status())\n\
         \x20   import sys; sys.stdout.flush()\n\
         t.close()\n",
        port = g.addr.port(),
        pw = common::gateway::PASSWORD,
    );
    let (ok, out, err) = common::run("python3", &["-c", &script]).await;
    assert!(ok, "paramiko: {out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    let answer = format!("'{}  /foreign.bin\\n' '' 0", expected.trim());
    assert_eq!(lines.first(), Some(&answer.as_str()), "{out}");
    assert_eq!(lines.get(1), Some(&answer.as_str()), "{out}");
    assert!(
        lines
            .get(2)
            .is_some_and(|l| l.contains("checksum_read_limit") && l.ends_with(" 1")),
        "{out}"
    );
    // One GET for the first ask (the read-through), none for the second.
    assert_eq!(*gets.lock().unwrap(), 1, "object GETs");
    g.stop().await;
}

/// A SHA-256 kept with an object that does not match its bytes (written
/// here by boto3): a download from start to end fails at its last read,
/// with a message the client sees; a matching one reads whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_download_that_does_not_match_its_kept_digest_fails() {
    let g = start("").await;
    let data = pattern(3 * MIB + 17, 9);
    let good = bucketgate::base::hex(&sha2::Sha256::digest(&data));
    std::fs::write(g.dir.path().join("body"), &data).unwrap();
    g.s3(&format!(
        "b = open('{body}', 'rb').read()\n\
         s3.put_object(Bucket=bucket, Key='alice/bad.bin', Body=b, Metadata={{'sha256': '{bad}'}})\n\
         s3.put_object(Bucket=bucket, Key='alice/good.bin', Body=b, Metadata={{'sha256': '{good}'}})",
        body = g.dir.path().join("body").display(),
        bad = "0".repeat(64),
    ));
    let (_ssh, s) = alice(&g).await;
    for (path, intact) in [("/good.bin", true), ("/bad.bin", false)] {
        let h = s
            .open(path, OpenFlags::READ, FileAttributes::empty())
            .await
            .unwrap()
            .handle;
        let mut got = Vec::new();
        let failure = loop {
            match s.read(&h, got.len() as u64, 255 << 10).await {
                Ok(d) if d.data.is_empty() => break None,
                Ok(d) => got.extend_from_slice(&d.data),
                Err(russh_sftp::client::error::Error::Status(st))
                    if st.status_code == russh_sftp::protocol::StatusCode::Eof =>
                {
                    break None;
                }
                Err(e) => break Some(e.to_string()),
            }
        };
        s.close(h).await.unwrap();
        match intact {
            true => {
                assert_eq!(failure, None, "{path}");
                assert!(got == data, "{path}: bytes differ");
            }
            false => {
                let failure = failure.expect("the last read must fail");
                assert!(failure.contains("integrity check failed"), "{failure}");
                assert!(got.len() < data.len(), "the last read was served");
            }
        }
    }
    g.stop().await;
}

/// FTP's HASH (draft-bryan-ftp-hash, with OPTS HASH and FEAT) and the older
/// XMD5, XSHA1 and XSHA256, over plain FTP and over TLS.
#[tokio::test(flavor = "multi_thread")]
async fn ftp_hash_commands_answer_with_the_digest() {
    use suppaftp::Status;
    let g = start("checksums = [\"md5\", \"sha256\"]\n").await;
    let data = pattern(70_000, 11);
    let sha256 = bucketgate::base::hex(&sha2::Sha256::digest(&data));
    let sha1 = bucketgate::base::hex(&sha1::Sha1::digest(&data));
    let md5 = bucketgate::base::hex(&md5::Md5::digest(&data));
    let text = |r: suppaftp::types::Response| String::from_utf8_lossy(&r.body).trim().to_string();

    let mut plain = common::ftp::ftp_plain(&g, "alice").await;
    plain.put_file("h.bin", &mut &data[..]).await.unwrap();
    let feat = plain.feat().await.unwrap();
    assert_eq!(
        feat.get("HASH"),
        Some(&Some("SHA-256*;SHA-1;MD5".to_string())),
        "{feat:?}"
    );
    assert!(feat.contains_key("XSHA256"), "{feat:?}");
    let hash = text(
        plain
            .custom_command("HASH h.bin", &[Status::File])
            .await
            .unwrap(),
    );
    assert_eq!(hash, format!("213 SHA-256 0-{} {sha256} h.bin", data.len()));
    let chosen = text(
        plain
            .custom_command("OPTS HASH SHA-1", &[Status::CommandOk])
            .await
            .unwrap(),
    );
    assert!(chosen.ends_with("SHA-1"), "{chosen}");
    let hash = text(
        plain
            .custom_command("HASH h.bin", &[Status::File])
            .await
            .unwrap(),
    );
    assert_eq!(hash, format!("213 SHA-1 0-{} {sha1} h.bin", data.len()));
    plain
        .custom_command("OPTS HASH MD5", &[Status::CommandOk])
        .await
        .unwrap();
    let hash = text(
        plain
            .custom_command("HASH h.bin", &[Status::File])
            .await
            .unwrap(),
    );
    assert_eq!(hash, format!("213 MD5 0-{} {md5} h.bin", data.len()));
    let unknown = plain
        .custom_command("OPTS HASH CRC32", &[Status::CommandOk])
        .await;
    assert!(unknown.is_err(), "an unknown algorithm is refused");
    let missing = plain
        .custom_command("XSHA256 nothing.bin", &[Status::RequestedFileActionOk])
        .await;
    assert!(
        missing.unwrap_err().to_string().contains("550"),
        "a missing file is 550"
    );

    let mut tls = common::ftp::ftp_tls(&g, "alice").await;
    let x = text(
        tls.custom_command("XMD5 h.bin", &[Status::RequestedFileActionOk])
            .await
            .unwrap(),
    );
    assert_eq!(x, format!("250 {md5}"));
    let x = text(
        tls.custom_command("XSHA256 /h.bin", &[Status::RequestedFileActionOk])
            .await
            .unwrap(),
    );
    assert_eq!(x, format!("250 {sha256}"));
    let hash = text(
        tls.custom_command("HASH h.bin", &[Status::File])
            .await
            .unwrap(),
    );
    assert!(
        hash.starts_with("213 SHA-256 "),
        "each session starts with SHA-256: {hash}"
    );
    g.stop().await;
}

/// On a filesystem remote the digests are kept in an extended attribute
/// with the size and mtime the file had: a gateway started afresh answers
/// from it; a file changed behind the gateway's back gets its digest anew.
#[tokio::test(flavor = "multi_thread")]
async fn a_filesystem_remote_keeps_digests_beside_the_file() {
    use bucketgate::base::{Algorithm, hex};
    use bucketgate::config::RemoteKind;
    use bucketgate::remote::Remote;
    use bucketgate::vfs::objects::ObjectLayer;
    use bucketgate::vfs::{Budget, WriteMode};
    use std::sync::Arc;
    let f = common::fixture("filesystem", "checksums = [\"sha256\"]");
    let RemoteKind::Filesystem { root, .. } = &f.config.remotes["store"].kind else {
        unreachable!()
    };
    let budget = Budget::new(f.config.server.memory_budget, Default::default());
    let data = pattern(100_000, 3);
    let l = ObjectLayer::new(f.remote.clone(), budget.clone());
    let mut up = l.open_write("kept.bin", WriteMode::Truncate).await.unwrap();
    up.write_at(0, bytes::Bytes::from(data.clone()))
        .await
        .unwrap();
    up.close().await.unwrap();

    let file = root.join("kept.bin");
    let mut buf = [0u8; 512];
    let n = rustix::fs::getxattr(&file, "user.bucketgate.digests", &mut buf[..]).unwrap();
    let sha256 = hex(&sha2::Sha256::digest(&data));
    assert!(String::from_utf8_lossy(&buf[..n]).contains(&sha256));

    // A new remote on the same folder, as after a restart: it knows nothing
    // but what the attribute says.
    // (The bytes are swapped for others of the same size and mtime first:
    // the answer can only have come from the attribute.)
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, pattern(100_000, 4)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let fresh = Arc::new(Remote::build(&f.config.remotes["store"], &Default::default()).unwrap());
    let l = ObjectLayer::new(fresh, budget);
    assert_eq!(
        hex(&l
            .digest("kept.bin", Algorithm::Sha256, "test")
            .await
            .unwrap()),
        sha256
    );

    // Changed in place by another program: the attribute no longer matches.
    let mut changed = data.clone();
    changed.extend_from_slice(b"more");
    std::fs::write(&file, &changed).unwrap();
    let now = hex(&sha2::Sha256::digest(&changed));
    assert_eq!(
        hex(&l
            .digest("kept.bin", Algorithm::Sha256, "test")
            .await
            .unwrap()),
        now
    );
}

/// A part damaged on its way to S3 (the proxy flips a byte of UploadPart 2
/// and forwards it with its headers as they were) fails the upload: the
/// client sees an error, no object appears and no multipart upload is
/// left. moto stores whatever it gets; the gateway notices because the
/// part's ETag is the MD5 of the bytes S3 received.
#[tokio::test(flavor = "multi_thread")]
async fn a_part_damaged_on_the_way_fails_the_upload() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let damaged = AtomicBool::new(false);
    let proxy = common::fault_proxy_with(common::moto_endpoint(), move |method, query| {
        let query = format!("{query}&");
        let part_two = *method == hyper::Method::PUT
            && query.contains("partNumber=2&")
            && query.contains("uploadId=");
        // Only the first upload's part 2: a retry is not damaged again.
        match part_two && !damaged.swap(true, Ordering::SeqCst) {
            true => common::Fault::Corrupt,
            false => common::Fault::Pass,
        }
    })
    .await;
    let g = common::gateway::start_via(&format!("http://{proxy}"), "part_size = \"5MiB\"\n").await;
    let (_ssh, s) = alice(&g).await;
    let data = pattern(12 * MIB, 7);
    let h = s
        .open("/damaged.bin", write_flags(), FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    let mut failure = None;
    for (i, chunk) in data.chunks(256 << 10).enumerate() {
        if let Err(e) = s.write(&h, (i * (256 << 10)) as u64, chunk.to_vec()).await {
            failure = Some(e);
            break;
        }
    }
    let closed = s.close(h).await;
    assert!(
        failure.is_some() || closed.is_err(),
        "the client must be told the upload failed"
    );
    let out = g.s3(
        "o = s3.list_objects_v2(Bucket=bucket, Prefix='alice/damaged').get('KeyCount', 0)\n\
         u = len(s3.list_multipart_uploads(Bucket=bucket).get('Uploads', []))\n\
         print(o, u)",
    );
    assert_eq!(out.trim(), "0 0", "no object, no upload left behind");

    // Sent again, through the same proxy, the file is stored whole.
    put(&s, "/damaged.bin", &data).await;
    let stored = g.s3(
        "import hashlib\nprint(hashlib.sha256(s3.get_object(Bucket=bucket, Key='alice/damaged.bin')['Body'].read()).hexdigest())",
    );
    assert_eq!(
        stored.trim(),
        bucketgate::base::hex(&sha2::Sha256::digest(&data))
    );
    g.stop().await;
}

/// What the storage server is given to check each body against: a single
/// PUT carries `Content-MD5` and `x-amz-checksum-sha256` of its bytes, each
/// UploadPart `x-amz-checksum-sha256` of its own; with `wire_checksums =
/// false`, only `Content-MD5`.
#[tokio::test(flavor = "multi_thread")]
async fn puts_and_parts_carry_checksums_of_their_bytes() {
    use base64::Engine;
    use std::sync::{Arc, Mutex};
    for wire in [true, false] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let proxy = common::fault_proxy_seeing(common::moto_endpoint(), move |req, body| {
            let (query, headers) = (req.uri.query().unwrap_or(""), &req.headers);
            if req.method == hyper::Method::PUT
                && !body.is_empty()
                && !headers.contains_key("x-amz-copy-source")
            {
                let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
                let matches = |name: &str, want: String| {
                    headers.get(name).map(|v| v.to_str().unwrap() == want)
                };
                record.lock().unwrap().push((
                    if query.contains("uploadId=") {
                        "part"
                    } else {
                        "object"
                    },
                    matches("content-md5", b64(&md5::Md5::digest(body))),
                    matches("x-amz-checksum-sha256", b64(&sha2::Sha256::digest(body))),
                ));
            }
            common::Fault::Pass
        })
        .await;
        let extra = format!("part_size = \"5MiB\"\nwire_checksums = {wire}\n");
        let g = common::gateway::start_via(&format!("http://{proxy}"), &extra).await;
        let (_ssh, s) = alice(&g).await;
        put(&s, "/small.txt", &pattern(1000, 1)).await;
        put(&s, "/multi.bin", &pattern(11 * MIB, 2)).await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        let sha = Some(true).filter(|_| wire);
        let part = ("part", None, sha);
        assert_eq!(
            seen,
            [("object", Some(true), sha), part, part, part],
            "wire_checksums = {wire}"
        );
        g.stop().await;
    }
}

/// The gateway's own hashing of an upload, counted: each byte once for the
/// kept digest (SHA-256 by default), and, since moto checks no checksum a
/// part carries, each part's bytes once more as MD5 against its ETag. A
/// single small PUT adds its Content-MD5. A further pass over every byte
/// shows here; so does a part check a store made needless (see
/// garage.rs for a store that checks).
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_s_bytes_are_hashed_once_plus_the_checks_the_store_does_not_make() {
    let g = start("part_size = \"5MiB\"\n").await;
    let (_ssh, s) = alice(&g).await;
    put(&s, "/multi.bin", &pattern(12 * MIB, 3)).await;
    put(&s, "/small.txt", &pattern(1000, 4)).await;
    let metrics = g.metrics().await;
    let hashed = common::hashed_bytes;
    assert_eq!(
        hashed(&metrics, "digest_sha256"),
        (12 * MIB + 1000) as u64,
        "{metrics}"
    );
    assert_eq!(hashed(&metrics, "part_md5"), (12 * MIB) as u64, "{metrics}");
    assert_eq!(hashed(&metrics, "content_md5"), 1000, "{metrics}");
    assert_eq!(hashed(&metrics, "digest_md5"), 0, "{metrics}");
    g.stop().await;
}
