//! The SFTP frontend driven by the russh + russh-sftp client over TCP, in
//! front of S3 on loopback (moto_server). Each test asserts what a user of
//! an SFTP client would see: bytes, listings, status codes and messages.

use crate::common;

use common::gateway::*;
use common::pattern;
use futures::{StreamExt, TryStreamExt};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const KIB: usize = 1 << 10;

/// The status a request failed with.
fn status_of(e: SftpError) -> (StatusCode, String) {
    match e {
        SftpError::Status(s) => (s.status_code, s.error_message),
        other => panic!("expected a status reply, got {other:?}"),
    }
}

/// Reads a whole file with `inflight` pipelined READs of `chunk` bytes, then
/// checks that reading past the end is an EOF status.
async fn get_with(s: &RawSftpSession, path: &str, chunk: usize, inflight: usize) -> Vec<u8> {
    let h = s
        .open(path, OpenFlags::READ, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    let size = s.fstat(&h).await.unwrap().attrs.size.unwrap() as usize;
    let parts: Vec<Vec<u8>> = futures::stream::iter((0..size).step_by(chunk))
        .map(|off| s.read(&h, off as u64, chunk as u32))
        .buffered(inflight)
        .map_ok(|d| d.data)
        .try_collect()
        .await
        .unwrap();
    let eof = s.read(&h, size as u64, chunk as u32).await.unwrap_err();
    assert_eq!(
        status_of(eof).0,
        StatusCode::Eof,
        "EOF is a status, not empty data"
    );
    s.close(h).await.unwrap();
    parts.concat()
}

async fn get(s: &RawSftpSession, path: &str) -> Vec<u8> {
    get_with(s, path, 32 * KIB, 64).await
}

/// Waits, bounded, until the aborted upload of `key` is gone from S3's
/// multipart uploads; the object itself must never appear meanwhile.
async fn wait_until_nothing_left(g: &TestGateway, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = g.s3(&format!(
            "u = len(s3.list_multipart_uploads(Bucket=bucket).get('Uploads', []))\n\
             o = len(s3.list_objects_v2(Bucket=bucket, Prefix='{key}').get('Contents', []))\n\
             print(u, o)"
        ));
        assert_eq!(
            out.split_whitespace().nth(1),
            Some("0"),
            "an unfinished upload must never be visible"
        );
        if out.trim() == "0 0" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "multipart upload still open: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn names(s: &RawSftpSession, dir: &str) -> Vec<(String, u64, String)> {
    let h = s.opendir(dir).await.unwrap().handle;
    let mut out = Vec::new();
    loop {
        match s.readdir(&h).await {
            Ok(name) => out.extend(
                name.files
                    .into_iter()
                    .map(|f| (f.filename, f.attrs.size.unwrap_or(0), f.longname)),
            ),
            Err(e) => {
                assert_eq!(status_of(e).0, StatusCode::Eof);
                break;
            }
        }
    }
    s.close(h).await.unwrap();
    out.sort();
    out
}

/// An upload's data is copied into memory the gateway already has, not
/// into pages the kernel must fault in and zero for each request: fewer
/// page faults than 4 KiB pages uploaded. A calloc'd buffer per request
/// costs at least one per page it holds, since jemalloc zeroes a recycled
/// one by purging its pages (it was two per page: russh's channel data and
/// the request; about one per 8 KiB is left, jemalloc's decay returning
/// pages between parts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_does_not_fault_in_a_page_per_request() {
    use common::served::Served;
    let served = Served::start();
    let stream = tokio::net::TcpStream::connect(served.sftp).await.unwrap();
    let h = ssh_password(stream, "alice", PASSWORD).await.unwrap();
    let s = sftp(&h).await;
    let put = async |name: &str, size: usize| {
        let data = pattern(size, 7);
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let f = s
            .open(name, flags, FileAttributes::empty())
            .await
            .unwrap()
            .handle;
        for (i, chunk) in data.chunks(32 << 10).enumerate() {
            let offset = (i * (32 << 10)) as u64;
            s.write(&f, offset, chunk.to_vec()).await.unwrap();
        }
        s.close(f).await.unwrap();
    };
    // The first upload maps what the parts in flight need.
    put("/warm.bin", 32 << 20).await;
    let before = served.minor_faults();
    let size = 64 << 20;
    put("/big.bin", size).await;
    let faults = served.minor_faults() - before;
    assert!(
        faults < (size / (4 << 10)) as u64,
        "{faults} page faults for a {size}-byte upload"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_and_many_small_files_round_trip() {
    let g = start("").await;
    let (_ssh, s) = alice(&g).await;
    let data = pattern(64 * MIB, 7);
    put(&s, "/big.bin", &data).await;
    assert_eq!(
        g.s3("print(s3.head_object(Bucket=bucket, Key='alice/big.bin')['ContentLength'])")
            .trim(),
        (64 * MIB).to_string(),
        "the object in the bucket has every byte"
    );
    assert!(
        get(&s, "/big.bin").await == data,
        "64 MiB read back differs"
    );

    // 255 KiB requests, as OpenSSH sends after limits@openssh.com: 64 in
    // flight is 16 MiB, the whole SSH window; the client's 10 s request
    // timeout turns a stall into a failure.
    let limits = s.limits().await.unwrap();
    assert_eq!(limits.max_read_len, 255 * 1024);
    assert!(limits.max_open_handles == 0 || limits.max_open_handles >= 64);
    assert!(get_with(&s, "/big.bin", 255 * KIB, 64).await == data);

    // paramiko's prefetch: every READ of the file at once.
    assert!(get_with(&s, "/big.bin", 32 * KIB, 2048).await == data);

    s.mkdir("/many", FileAttributes::empty()).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..200 {
        let body = pattern(100 + i * 37, i as u64);
        put(&s, &format!("/many/f{i:03}.txt"), &body).await;
        expected.push((format!("f{i:03}.txt"), body.len() as u64));
    }
    let listed: Vec<(String, u64)> = names(&s, "/many")
        .await
        .into_iter()
        .map(|(n, sz, _)| (n, sz))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(
        get(&s, "/many/f123.txt").await,
        pattern(100 + 123 * 37, 123)
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn folders_rename_and_remove() {
    let g = start("").await;
    let (_ssh, s) = alice(&g).await;
    s.mkdir("/docs", FileAttributes::empty()).await.unwrap();
    s.mkdir("/docs/2024", FileAttributes::empty())
        .await
        .unwrap();
    put(&s, "/docs/2024/a.txt", b"alpha").await;
    put(&s, "/docs/b.txt", b"beta").await;

    let listing = names(&s, "/docs").await;
    assert_eq!(listing.len(), 2);
    assert!(
        listing[0].2.starts_with('d'),
        "folder long name: {}",
        listing[0].2
    );
    assert!(
        listing[1].2.starts_with("-rw"),
        "file long name: {}",
        listing[1].2
    );
    let stat = s.stat("/docs").await.unwrap().attrs;
    assert!(stat.is_dir());

    let (code, msg) = status_of(s.rmdir("/docs").await.unwrap_err());
    assert_eq!(code, StatusCode::Failure);
    assert!(msg.contains("directory not empty"), "{msg}");

    // Plain RENAME refuses an existing target; posix-rename replaces it.
    put(&s, "/docs/c.txt", b"gamma").await;
    assert!(s.rename("/docs/b.txt", "/docs/c.txt").await.is_err());
    let mut data = Vec::new();
    for p in ["/docs/b.txt", "/docs/c.txt"] {
        data.extend_from_slice(&(p.len() as u32).to_be_bytes());
        data.extend_from_slice(p.as_bytes());
    }
    s.extended("posix-rename@openssh.com", data).await.unwrap();
    assert_eq!(get(&s, "/docs/c.txt").await, b"beta");
    assert_eq!(
        status_of(s.stat("/docs/b.txt").await.unwrap_err()).0,
        StatusCode::NoSuchFile
    );

    s.rename("/docs/2024", "/archive").await.unwrap();
    assert_eq!(get(&s, "/archive/a.txt").await, b"alpha");
    assert_eq!(
        status_of(s.lstat("/docs/2024").await.unwrap_err()).0,
        StatusCode::NoSuchFile
    );

    s.remove("/docs/c.txt").await.unwrap();
    s.rmdir("/docs").await.unwrap();
    let root: Vec<String> = names(&s, "/").await.into_iter().map(|(n, ..)| n).collect();
    assert_eq!(root, vec!["archive", "shared"]);

    // What the bucket holds matches.
    let keys = g.s3(
        "print(sorted(o['Key'] for o in s3.list_objects_v2(Bucket=bucket, Prefix='alice/').get('Contents', [])))",
    );
    assert_eq!(
        keys.trim(),
        "['alice/', 'alice/archive/', 'alice/archive/a.txt']"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn object_written_to_s3_is_listed_at_once() {
    let g = start("").await;
    let (_ssh, s) = alice(&g).await;
    assert!(
        names(&s, "/")
            .await
            .iter()
            .all(|(n, ..)| n != "partner.csv")
    );
    g.s3("s3.put_object(Bucket=bucket, Key='alice/in/partner.csv', Body=b'a,b\\n')");
    let listed = names(&s, "/in").await;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].0.as_str(), listed[0].1), ("partner.csv", 4));
    assert_eq!(get(&s, "/in/partner.csv").await, b"a,b\n");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_refused_and_key_login_works() {
    let g = start("").await;
    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    assert!(ssh_password(stream, "alice", "wrong").await.is_err());
    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    assert!(ssh_password(stream, "mallory", PASSWORD).await.is_err());

    let h = ssh_key(g.addr, "alice", g.key.clone()).await.unwrap();
    let s = sftp(&h).await;
    put(&s, "/k.txt", b"by key").await;
    assert_eq!(get(&s, "/k.txt").await, b"by key");
    // bob has no authorized key.
    assert!(ssh_key(g.addr, "bob", g.key.clone()).await.is_err());
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn per_user_session_limit_and_allowed_ips() {
    let g = start("").await;
    let connect = || tokio::net::TcpStream::connect(g.addr);
    // dave may log in only from 192.0.2.0/24, even with the right password.
    assert!(
        ssh_password(connect().await.unwrap(), "dave", PASSWORD)
            .await
            .is_err()
    );

    // carol has max_sessions = 1: a second session waits for the first to end.
    let first = ssh_password(connect().await.unwrap(), "carol", PASSWORD)
        .await
        .unwrap();
    let s = sftp(&first).await;
    put(&s, "/one.txt", b"1").await;
    assert!(
        ssh_password(connect().await.unwrap(), "carol", PASSWORD)
            .await
            .is_err()
    );
    first
        .disconnect(russh::Disconnect::ByApplication, "bye", "en")
        .await
        .unwrap();
    drop((s, first));
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        match ssh_password(connect().await.unwrap(), "carol", PASSWORD).await {
            Ok(h) => break h,
            Err(e) => assert!(Instant::now() < deadline, "slot never freed: {e}"),
        }
    };
    assert_eq!(get(&sftp(&second).await, "/one.txt").await, b"1");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_are_closed() {
    let g = start_with("idle_timeout = \"1s\"", "").await;
    let (ssh, s) = alice(&g).await;
    put(&s, "/before.txt", b"x").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ssh.is_closed() {
        assert!(Instant::now() < deadline, "an idle session stayed open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_cannot_escape_and_read_only_mount_refuses_writes() {
    let g = start("").await;
    g.s3("s3.put_object(Bucket=bucket, Key='bob/secret.txt', Body=b'bob only')\ns3.put_object(Bucket=bucket, Key='shared/notice.txt', Body=b'read me')");
    let (_ssh, s) = alice(&g).await;
    assert_eq!(
        s.realpath("/../../..").await.unwrap().files[0].filename,
        "/"
    );
    for path in [
        "../bob/secret.txt",
        "/../bob/secret.txt",
        "/../../bob/secret.txt",
        "/./../bob/secret.txt",
    ] {
        let e = s
            .open(path, OpenFlags::READ, FileAttributes::empty())
            .await
            .unwrap_err();
        assert_eq!(status_of(e).0, StatusCode::NoSuchFile, "{path}");
    }
    // Escape attempts that write land inside alice's home, never in bob's.
    let e = s
        .open("/../bob/secret.txt", write_flags(), FileAttributes::empty())
        .await
        .unwrap_err();
    assert_eq!(
        status_of(e).0,
        StatusCode::NoSuchFile,
        "alice has no folder /bob"
    );
    s.mkdir("../../bob", FileAttributes::empty()).await.unwrap();
    put(&s, "/../bob/secret.txt", b"overwritten?").await;
    assert_eq!(
        g.s3("print(s3.get_object(Bucket=bucket, Key='alice/bob/secret.txt')['Body'].read())")
            .trim(),
        "b'overwritten?'"
    );
    assert_eq!(
        g.s3("print(s3.get_object(Bucket=bucket, Key='bob/secret.txt')['Body'].read())")
            .trim(),
        "b'bob only'"
    );

    assert_eq!(get(&s, "/shared/notice.txt").await, b"read me");
    let e = s
        .open("/shared/new.txt", write_flags(), FileAttributes::empty())
        .await
        .unwrap_err();
    assert_eq!(status_of(e).0, StatusCode::PermissionDenied);
    for e in [
        s.remove("/shared/notice.txt").await.unwrap_err(),
        s.mkdir("/shared/d", FileAttributes::empty())
            .await
            .unwrap_err(),
        s.rename("/shared/notice.txt", "/mine.txt")
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status_of(e).0, StatusCode::PermissionDenied);
    }
    // A name S3 cannot hold gets a clear error, not a broken object.
    let e = s
        .open("/bad\u{1}name", write_flags(), FileAttributes::empty())
        .await
        .unwrap_err();
    let (code, msg) = status_of(e);
    assert_eq!(code, StatusCode::Failure);
    assert!(msg.contains("invalid name"), "{msg}");
    g.stop().await;
}

/// A folder rename copies its objects a few at once, never more than 8:
/// S3 holds each copy 300 ms here, so the copies that start within 250 ms
/// of each other were all in flight together.
#[tokio::test(flavor = "multi_thread")]
async fn a_folder_rename_copies_several_objects_at_once_within_a_bound() {
    let starts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = starts.clone();
    let proxy = common::fault_proxy_seeing(common::moto_endpoint(), move |req, _| {
        if req.method == hyper::Method::PUT
            && req.headers.contains_key("x-amz-copy-source")
            && req.uri.query().is_none()
        {
            seen.lock().unwrap().push(Instant::now());
            common::Fault::Stall(Duration::from_millis(300))
        } else {
            common::Fault::Pass
        }
    })
    .await;
    let g = start_via(&format!("http://{proxy}"), "").await;
    g.s3(
        "s3.put_object(Bucket=bucket, Key='alice/many/', Body=b'')\n\
         for i in range(40): s3.put_object(Bucket=bucket, Key='alice/many/f%02d' % i, Body=b'%d' % i)",
    );
    let (_ssh, s) = alice(&g).await;
    s.rename("/many", "/moved").await.unwrap();
    assert_eq!(get(&s, "/moved/f07").await, b"7");
    assert!(s.stat("/many").await.is_err());
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 41, "each object and the marker copied once");
    let together = starts
        .iter()
        .map(|t| {
            starts
                .iter()
                .filter(|u| **u >= *t && **u - *t < Duration::from_millis(250))
                .count()
        })
        .max()
        .unwrap();
    assert!(together > 1, "the copies ran one at a time");
    assert!(together <= 8, "{together} copies in flight at once");
    g.stop().await;
}

/// A file at or above `multipart_copy_threshold` is renamed by a
/// multipart copy (UploadPartCopy), which S3 allows past the 5 GiB where
/// one CopyObject stops; the threshold is lowered to 5 MiB here. Bytes and
/// metadata (the file time) travel, nothing stays at the old name, and a
/// file under the threshold is still one CopyObject.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_over_the_copy_threshold_is_renamed_by_a_multipart_copy() {
    let (proxy, seen) = common::counting_proxy(common::moto_endpoint()).await;
    let remote = "multipart_copy_threshold = \"5MiB\"\npreserve_mtime = true\n";
    let g = start_via(&format!("http://{proxy}"), remote).await;
    let (_ssh, s) = alice(&g).await;
    let data = pattern(7 * MIB, 9);
    put(&s, "/big.bin", &data).await;
    put(&s, "/small.bin", b"small").await;
    let mut attrs = FileAttributes::empty();
    (attrs.atime, attrs.mtime) = (Some(1_500_000_000), Some(1_500_000_000));
    s.setstat("/big.bin", attrs).await.unwrap();
    let metadata = |key: &str| {
        g.s3(&format!(
            "print(sorted(s3.head_object(Bucket=bucket, Key='{key}')['Metadata'].items()))"
        ))
    };
    let before = metadata("alice/big.bin");
    assert!(before.contains("mtime"), "{before}");
    s.rename("/big.bin", "/moved.bin").await.unwrap();
    s.rename("/small.bin", "/small2.bin").await.unwrap();
    assert!(
        get(&s, "/moved.bin").await == data,
        "the moved bytes differ"
    );
    assert_eq!(get(&s, "/small2.bin").await, b"small");
    assert!(s.stat("/big.bin").await.is_err());
    assert_eq!(metadata("alice/moved.bin"), before);
    let puts_to = |key: &str| -> Vec<String> {
        let path = format!("/{}/alice/{key}", g.bucket);
        seen.requests()
            .into_iter()
            .filter(|(m, p)| *m == hyper::Method::PUT && p.split('?').next() == Some(&path))
            .map(|(_, p)| p)
            .collect()
    };
    let moved = puts_to("moved.bin");
    assert!(
        !moved.is_empty() && moved.iter().all(|p| p.contains("partNumber=")),
        "the large file was not copied by parts: {moved:?}"
    );
    assert_eq!(puts_to("small2.bin").len(), 1, "one CopyObject");
    g.stop().await;
}

/// Each gateway tracks its own transfers: one shutting down does not wait
/// for another's upload in the same process, which then finishes whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_shutting_down_does_not_wait_for_anothers_transfers() {
    let (busy, idle) = (start("").await, start("").await);
    let (_ssh, s) = alice(&busy).await;
    let h = s
        .open("/open.bin", write_flags(), FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    s.write(&h, 0, b"first".to_vec()).await.unwrap();
    // With one tracker for the process, the idle gateway would wait the
    // whole grace period for the busy one's upload.
    tokio::time::timeout(
        Duration::from_secs(60),
        idle.shutdown(Duration::from_secs(600)),
    )
    .await
    .expect("the idle gateway waited for another gateway's transfer");
    s.write(&h, 5, b" second".to_vec()).await.unwrap();
    s.close(&h).await.unwrap();
    assert_eq!(get(&s, "/open.bin").await, b"first second");
    busy.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_cut_by_closing_the_connection_leaves_no_object() {
    let g = start("part_size = \"5MiB\"\n").await;
    let std_stream = std::net::TcpStream::connect(g.addr).unwrap();
    let killer = std_stream.try_clone().unwrap();
    std_stream.set_nonblocking(true).unwrap();
    let stream = tokio::net::TcpStream::from_std(std_stream).unwrap();
    let ssh = ssh_password(stream, "alice", PASSWORD).await.unwrap();
    let s = sftp(&ssh).await;
    let h = s
        .open("/cut.bin", write_flags(), FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    // Past one part, so a multipart upload is under way in S3.
    write_all(&s, &h, 0, &pattern(12 * MIB, 3), 32 * KIB, 64).await;
    g.wait_for_multipart("alice/cut.bin").await;
    killer.shutdown(std::net::Shutdown::Both).unwrap();

    // The abort runs after the session notices; wait for it, bounded.
    wait_until_nothing_left(&g, "alice/cut").await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_s3_is_reported_at_fsync_and_close_and_leaves_nothing() {
    // Every attempt at UploadPart 2 answers 500.
    let proxy = common::fault_proxy(common::moto_endpoint(), 2).await;
    let g = start_via(
        &format!("http://{proxy}"),
        "part_size = \"5MiB\"\nupload_concurrency = 2\nretries = 1\n",
    )
    .await;
    let (_ssh, s) = alice(&g).await;
    let h = s
        .open("/doomed.bin", write_flags(), FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    for (i, chunk) in pattern(16 * MIB, 8).chunks(256 * KIB).enumerate() {
        if s.write(&h, (i * 256 * KIB) as u64, chunk.to_vec())
            .await
            .is_err()
        {
            break;
        }
    }
    // fsync reports the failed part once S3 has answered for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, msg) = loop {
        match s.fsync(&h).await {
            Err(e) => break status_of(e),
            Ok(_) => assert!(
                Instant::now() < deadline,
                "fsync never reported the failed part"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, StatusCode::Failure);
    assert!(msg.contains("uploading a part"), "{msg}");
    let (code, msg) = status_of(s.close(&h).await.unwrap_err());
    assert_eq!(code, StatusCode::Failure);
    assert!(msg.contains("uploading a part"), "{msg}");

    wait_until_nothing_left(&g, "alice/doomed").await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn winscp_filepart_sequence() {
    let g = start("").await;
    let (_ssh, s) = alice(&g).await;
    put(&s, "/report.pdf", b"old version").await;
    let data = pattern(3 * MIB + 12345, 11);

    // OPEN .filepart, WRITEs of WinSCP's odd size, CLOSE sent behind the
    // unacknowledged WRITEs; then REMOVE, RENAME and SETSTAT of the target.
    let h = s
        .open(
            "/report.pdf.filepart",
            write_flags(),
            FileAttributes::empty(),
        )
        .await
        .unwrap()
        .handle;
    let chunk = 32757;
    let writes = futures::future::try_join_all(
        data.chunks(chunk)
            .enumerate()
            .map(|(i, c)| s.write(&h, (i * chunk) as u64, c.to_vec())),
    );
    let (written, closed) = tokio::join!(writes, s.close(&h));
    written.unwrap();
    closed.unwrap();
    s.remove("/report.pdf").await.unwrap();
    s.rename("/report.pdf.filepart", "/report.pdf")
        .await
        .unwrap();
    let attrs = FileAttributes {
        mtime: Some(1_600_000_000),
        atime: Some(1_600_000_000),
        permissions: Some(0o100600),
        ..FileAttributes::empty()
    };
    s.setstat("/report.pdf", attrs.clone()).await.unwrap();
    assert!(get(&s, "/report.pdf").await == data);

    // WinSCP resumes an interrupted transfer by reopening the .filepart.
    put(&s, "/next.bin.filepart", &data[..MIB]).await;
    let h = s
        .open(
            "/next.bin.filepart",
            OpenFlags::WRITE | OpenFlags::CREATE,
            FileAttributes::empty(),
        )
        .await
        .unwrap()
        .handle;
    assert_eq!(s.fstat(&h).await.unwrap().attrs.size, Some(MIB as u64));
    write_all(&s, &h, MIB, &data[MIB..], chunk, 64).await;
    // FSETSTAT on a handle still uploading (OpenSSH `put -p`) is accepted.
    s.fsetstat(&h, attrs).await.unwrap();
    s.close(&h).await.unwrap();
    s.rename("/next.bin.filepart", "/next.bin").await.unwrap();
    assert!(get(&s, "/next.bin").await == data);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resumed_uploads_continue_the_object() {
    let g = start("part_size = \"5MiB\"\n").await;
    let (_ssh, s) = alice(&g).await;
    let data = pattern(9 * MIB + 999, 5);
    // FileZilla: OPEN(WRITE) without TRUNC, FSTAT, write from the size. The
    // old part is 6 MiB, so S3 copies it (UploadPartCopy) instead of the
    // gateway reading it back.
    put(&s, "/fz.bin", &data[..6 * MIB]).await;
    let h = s
        .open("/fz.bin", OpenFlags::WRITE, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    let size = s.fstat(&h).await.unwrap().attrs.size.unwrap() as usize;
    assert_eq!(size, 6 * MIB);
    write_all(&s, &h, size, &data[size..], 32 * KIB, 64).await;
    s.close(&h).await.unwrap();
    assert!(get(&s, "/fz.bin").await == data);

    // OpenSSH reput / paramiko 'a': CREAT|APPEND on a small file, streamed through.
    put(&s, "/ap.bin", &data[..1000]).await;
    let h = s
        .open(
            "/ap.bin",
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::APPEND,
            FileAttributes::empty(),
        )
        .await
        .unwrap()
        .handle;
    write_all(&s, &h, 1000, &data[1000..2 * MIB], 32 * KIB, 64).await;
    s.close(&h).await.unwrap();
    assert!(get(&s, "/ap.bin").await == data[..2 * MIB]);

    // Opened without TRUNC but written from 0: the file is rewritten.
    let h = s
        .open("/ap.bin", OpenFlags::WRITE, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    s.write(&h, 0, b"short".to_vec()).await.unwrap();
    s.close(&h).await.unwrap();
    assert_eq!(get(&s, "/ap.bin").await, b"short");
    g.stop().await;
}

/// A client that opens without TRUNC may resume or rewrite; nothing of the
/// old object is copied or read before its first WRITE tells which. Written
/// from 0, the file is simply replaced: no multipart upload, no GET.
#[tokio::test(flavor = "multi_thread")]
async fn resume_work_waits_for_the_first_write() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let proxy = common::fault_proxy_with(common::moto_endpoint(), move |method, query| {
        log.lock().unwrap().push(format!("{method} ?{query}"));
        common::Fault::Pass
    })
    .await;
    let g = start_via(&format!("http://{proxy}"), "part_size = \"5MiB\"\n").await;
    let (_ssh, s) = alice(&g).await;
    put(&s, "/big.bin", &pattern(6 * MIB, 3)).await;
    // What copies or reads the old object: a multipart upload (UploadPartCopy
    // runs inside one) or a GET of the object itself.
    let continuing = |requests: &[String]| -> Vec<String> {
        requests
            .iter()
            .filter(|r| r.contains("uploads") || r.contains("uploadId=") || *r == "GET ?")
            .cloned()
            .collect()
    };
    seen.lock().unwrap().clear();
    let h = s
        .open("/big.bin", OpenFlags::WRITE, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    assert_eq!(s.fstat(&h).await.unwrap().attrs.size, Some(6 * MIB as u64));
    let at_open = continuing(&seen.lock().unwrap());
    assert!(at_open.is_empty(), "work at OPEN: {at_open:?}");
    s.write(&h, 0, b"fresh".to_vec()).await.unwrap();
    s.close(&h).await.unwrap();
    let rewriting = continuing(&seen.lock().unwrap());
    assert!(
        rewriting.is_empty(),
        "a rewrite read or copied the old object: {rewriting:?}"
    );
    assert_eq!(get(&s, "/big.bin").await, b"fresh");
    g.stop().await;
}

/// When S3 fails, the client is told so in the gateway's words; S3's own
/// error body (its hosts, request ids, internals) stays in the log.
#[tokio::test(flavor = "multi_thread")]
async fn s3_error_text_does_not_reach_the_client() {
    const BODY: &str = "<Error><Code>InternalError</Code><Message>disk 7 of rack b12 failed</Message><RequestId>REQ-INTERNAL-42</RequestId></Error>";
    // A DELETE, or the multi-object delete (POST ?delete).
    let proxy = common::fault_proxy_with(common::moto_endpoint(), |method, query| {
        let delete = method == hyper::Method::DELETE
            || (method == hyper::Method::POST && query.starts_with("delete"));
        if delete {
            common::Fault::Fail(500, BODY)
        } else {
            common::Fault::Pass
        }
    })
    .await;
    let g = start_via(&format!("http://{proxy}"), "retries = 0\n").await;
    let (_ssh, s) = alice(&g).await;
    put(&s, "/kept.txt", b"still here").await;
    let (code, msg) = status_of(s.remove("/kept.txt").await.unwrap_err());
    assert_eq!(code, StatusCode::Failure);
    assert!(msg.starts_with("storage error"), "{msg}");
    assert!(
        !msg.contains("rack b12") && !msg.contains("REQ-INTERNAL"),
        "{msg}"
    );

    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect(g.ftp)
        .await
        .unwrap();
    ftp.login("alice", PASSWORD).await.unwrap();
    let reply = ftp.rm("kept.txt").await.unwrap_err().to_string();
    assert!(reply.contains("storage error"), "{reply}");
    assert!(
        !reply.contains("rack b12") && !reply.contains("REQ-INTERNAL"),
        "{reply}"
    );
    assert_eq!(get(&s, "/kept.txt").await, b"still here");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_codes_a_client_relies_on() {
    let g = start("").await;
    let (_ssh, s) = alice(&g).await;
    assert_eq!(
        status_of(s.stat("/missing").await.unwrap_err()).0,
        StatusCode::NoSuchFile
    );
    assert_eq!(
        status_of(s.lstat("/missing").await.unwrap_err()).0,
        StatusCode::NoSuchFile
    );
    put(&s, "/x.txt", b"12345").await;
    let attrs = s.stat("/x.txt").await.unwrap().attrs;
    assert_eq!(attrs.size, Some(5));
    assert_eq!(attrs.permissions, Some(0o100644));
    assert!(attrs.mtime.unwrap() > 1_700_000_000);

    let e = s
        .open(
            "/x.txt",
            write_flags() | OpenFlags::EXCLUDE,
            FileAttributes::empty(),
        )
        .await
        .unwrap_err();
    let (code, msg) = status_of(e);
    assert_eq!(code, StatusCode::Failure);
    assert!(msg.contains("already exists"), "{msg}");
    s.open(
        "/new.txt",
        OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE,
        FileAttributes::empty(),
    )
    .await
    .unwrap();

    let e = s.readlink("/x.txt").await.unwrap_err();
    assert_eq!(status_of(e).0, StatusCode::OpUnsupported);

    // A write far beyond the reorder window is refused with the reason.
    let h = s
        .open("/gap.bin", write_flags(), FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    let (code, msg) = status_of(
        s.write(&h, 512 * MIB as u64, b"x".to_vec())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, StatusCode::Failure);
    assert!(
        msg.contains("non-sequential write outside the")
            && msg.contains("window is not supported on object storage"),
        "{msg}"
    );

    let vfs = s.statvfs("/").await.unwrap();
    assert!(vfs.blocks_avail > 0);
    let fsync = {
        let h = s
            .open("/f.txt", write_flags(), FileAttributes::empty())
            .await
            .unwrap()
            .handle;
        s.write(&h, 0, b"abc".to_vec()).await.unwrap();
        let r = s.fsync(&h).await;
        s.close(&h).await.unwrap();
        r
    };
    fsync.unwrap();
    assert_eq!(get(&s, "/f.txt").await, b"abc");
    g.stop().await;
}
