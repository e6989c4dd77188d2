//! Bandwidth limits as clients meet them (the russh SFTP client over
//! moto): a throttled download takes at least what its rate allows and
//! holds no more memory for it; a user's sessions share the user's rate;
//! another user is not slowed. Times are lower bounds, or ratios between
//! transfers running side by side — never an upper bound on a clock.

use crate::common;
use common::gateway::{HASH, PASSWORD, TestGateway, ssh_password, start_with_tables};
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// tess reads at 2 MiB/s and writes at 2 MiB/s; uma has no limit.
fn users() -> String {
    format!(
        "[[users]]\nname = \"tess\"\npassword = \"{HASH}\"\nhome = \"store:/shared-files\"\n\
         bandwidth_down = \"2MiB/s\"\nbandwidth_up = \"2MiB/s\"\n\
         [[users]]\nname = \"uma\"\npassword = \"{HASH}\"\nhome = \"store:/shared-files\"\n"
    )
}

async fn login(g: &TestGateway, user: &str) -> (common::gateway::SshHandle, RawSftpSession) {
    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let h = ssh_password(stream, user, PASSWORD).await.unwrap();
    let s = common::gateway::sftp(&h).await;
    (h, s)
}

/// Reads `path` whole in 64 KiB READs; its bytes and how long it took.
async fn download(s: &RawSftpSession, path: &str) -> (usize, Duration) {
    let started = Instant::now();
    let handle = s
        .open(path, OpenFlags::READ, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    let mut got = 0usize;
    loop {
        match s.read(&handle, got as u64, 64 << 10).await {
            Ok(data) => got += data.data.len(),
            Err(russh_sftp::client::error::Error::Status(st))
                if st.status_code == russh_sftp::protocol::StatusCode::Eof =>
            {
                break;
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
    s.close(handle).await.unwrap();
    (got, started.elapsed())
}

/// The gateway's `buffered_bytes` gauge, now.
async fn buffered(g: &TestGateway) -> u64 {
    let metrics = g.metrics().await;
    metrics
        .lines()
        .find(|l| l.starts_with("bucketgate_buffered_bytes "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_download_keeps_its_rate_without_memory_and_others_go_free() {
    let g = start_with_tables(&users()).await;
    g.s3(
        "s3.put_object(Bucket=bucket, Key='shared-files/big.bin', Body=b'x' * (16 << 20))\n\
          s3.put_object(Bucket=bucket, Key='shared-files/half.bin', Body=b'y' * (8 << 20))",
    );
    let (_h1, tess) = login(&g, "tess").await;

    // 16 MiB at 2 MiB/s: at least 7 s, and the buffers stay small.
    let (peak, done) = (AtomicU64::new(0), AtomicBool::new(false));
    let sample = async {
        while !done.load(Ordering::Relaxed) {
            peak.fetch_max(buffered(&g).await, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let run = async {
        let r = download(&tess, "/big.bin").await;
        done.store(true, Ordering::Relaxed);
        r
    };
    let ((got, took), ()) = tokio::join!(run, sample);
    assert_eq!(got, 16 * MIB);
    assert!(
        took >= Duration::from_secs(7),
        "16 MiB at 2 MiB/s took {took:?}"
    );
    // One GET's read-ahead (8 MiB, and a chunk), not the file.
    let peak = peak.into_inner();
    assert!(
        peak <= (8 * MIB + (256 << 10)) as u64,
        "a throttled download held {peak} bytes"
    );

    // Two sessions of tess share her 2 MiB/s: 2 × 8 MiB take at least 7 s;
    // uma, beside them, is not held to it.
    let (_h2, tess2) = login(&g, "tess").await;
    let (_h3, uma) = login(&g, "uma").await;
    let started = Instant::now();
    let (a, b, u) = tokio::join!(
        download(&tess, "/half.bin"),
        download(&tess2, "/half.bin"),
        download(&uma, "/big.bin"),
    );
    let both = started.elapsed();
    assert_eq!((a.0, b.0, u.0), (8 * MIB, 8 * MIB, 16 * MIB));
    assert!(both >= Duration::from_secs(7), "two sessions took {both:?}");
    assert!(
        u.1 * 2 < a.1.min(b.1),
        "uma's 16 MiB ({:?}) waited on tess's rate ({:?}, {:?})",
        u.1,
        a.1,
        b.1
    );
    g.stop().await;
}

/// An upload at 2 MiB/s: 6 MiB take at least 2.5 s (its burst aside), the
/// bytes arrive whole, and the memory held stays within one part's bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_upload_is_read_at_its_rate() {
    let g = start_with_tables(&users()).await;
    let (_h, tess) = login(&g, "tess").await;
    let started = Instant::now();
    let data = vec![5u8; 6 * MIB];
    common::gateway::put(&tess, "/up.bin", &data).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "6 MiB at 2 MiB/s took {took:?}"
    );
    let size =
        g.s3("print(s3.head_object(Bucket=bucket, Key='shared-files/up.bin')['ContentLength'])");
    assert_eq!(size.trim(), (6 * MIB).to_string());
    assert!(buffered(&g).await <= 16 * MIB as u64);
    g.stop().await;
}
