//! Outbound connections to an S3 remote: from the configured local
//! addresses only, spread over them, moved off one that stops working, and
//! never more at once than `max_connections`. S3 is moto_server behind a
//! relay on loopback that records each connection's source address and how
//! many are open at once.

use crate::common;

use bucketgate::vfs::objects::ObjectLayer;
use bucketgate::vfs::{Budget, WriteMode};
use common::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

const MIB: usize = 1 << 20;

/// What the relay saw.
#[derive(Default)]
struct Seen {
    sources: BTreeSet<IpAddr>,
    /// Connections open now: the gateway's socket (to look for its FIN) and
    /// whether it was counted closed.
    live: Vec<(std::os::fd::RawFd, Arc<AtomicBool>)>,
    open: usize,
    most_open: usize,
}

impl Seen {
    fn close(&mut self, closed: &AtomicBool) {
        if !closed.swap(true, Ordering::SeqCst) {
            self.open -= 1;
        }
    }

    /// Counts as closed the connections whose FIN from the gateway is
    /// already here. The gateway closes a connection before it opens the
    /// next, and on loopback the FIN arrives first; the task that copies
    /// it may just not have run yet.
    fn reap(&mut self) {
        let live = std::mem::take(&mut self.live);
        for (fd, closed) in live {
            if closed.load(Ordering::SeqCst) {
                continue;
            }
            let mut byte = 0u8;
            let n = unsafe {
                libc::recv(
                    fd,
                    (&mut byte as *mut u8).cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if n == 0 {
                self.close(&closed);
            } else {
                self.live.push((fd, closed));
            }
        }
    }
}

/// A TCP relay to `upstream` listening on `bind`: 127.0.0.1 (which
/// 127.0.0.2 and 127.0.0.3 reach too) or ::1. A connection counts as closed
/// once either side ends it.
async fn relay(bind: &str, upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Seen>>) {
    use std::os::fd::AsRawFd;
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, peer)) = listener.accept().await else {
                return;
            };
            let closed = Arc::new(AtomicBool::new(false));
            {
                let mut s = state.lock().unwrap();
                s.reap();
                s.sources.insert(peer.ip());
                s.open += 1;
                s.most_open = s.most_open.max(s.open);
                s.live.push((client.as_raw_fd(), closed.clone()));
            }
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                state.lock().unwrap().close(&closed);
                continue;
            };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let (s, c) = (state.clone(), closed.clone());
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                s.lock().unwrap().close(&c);
                let _ = to_server.shutdown().await;
                // The gateway's socket closes when both halves are gone.
                drop(from_client);
            });
            let (s, c) = (state.clone(), closed);
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                s.lock().unwrap().close(&c);
                let _ = to_client.shutdown().await;
            });
        }
    });
    (addr, seen)
}

/// An S3 remote reached through a fresh relay on 127.0.0.1, with `extra` keys.
async fn through_relay(extra: &str) -> (Arc<bucketgate::remote::Remote>, Arc<Mutex<Seen>>) {
    through_relay_at("127.0.0.1:0", extra).await
}

async fn through_relay_at(
    bind: &str,
    extra: &str,
) -> (Arc<bucketgate::remote::Remote>, Arc<Mutex<Seen>>) {
    let endpoint = moto_endpoint();
    let bucket = unique("outbound");
    create_bucket(&endpoint, &bucket);
    let upstream: SocketAddr = endpoint.trim_start_matches("http://").parse().unwrap();
    let (addr, seen) = relay(bind, upstream).await;
    let text = s3_remote_toml(&format!("http://{addr}"), &bucket, extra);
    let config = parse_config(&text);
    let remote = Arc::new(
        bucketgate::remote::Remote::build(&config.remotes["store"], &Default::default()).unwrap(),
    );
    (remote, seen)
}

/// Uploads `n` files of `size` at once and lists them back.
async fn traffic(remote: &Arc<bucketgate::remote::Remote>, n: usize, size: usize) {
    let layer = Arc::new(ObjectLayer::new(
        remote.clone(),
        Budget::new(1 << 30, Default::default()),
    ));
    let uploads = (0..n).map(|i| {
        let layer = layer.clone();
        tokio::spawn(async move {
            let data = pattern(size, i as u64);
            let mut up = layer
                .open_write(&format!("f{i}"), WriteMode::Truncate)
                .await
                .unwrap();
            for (k, chunk) in data.chunks(MIB).enumerate() {
                up.write_at((k * MIB) as u64, bytes::Bytes::copy_from_slice(chunk))
                    .await
                    .unwrap();
            }
            up.close().await.unwrap()
        })
    });
    for u in uploads.collect::<Vec<_>>() {
        assert_eq!(u.await.unwrap(), size as u64);
    }
    for i in 0..n {
        assert_eq!(
            layer.stat(&format!("f{i}")).await.unwrap().size,
            size as u64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_leaves_from_the_dedicated_addresses_only() {
    let (remote, seen) = through_relay("outbound_ips = [\"127.0.0.2\", \"127.0.0.3\"]").await;
    traffic(&remote, 4, MIB).await;
    let sources = seen.lock().unwrap().sources.clone();
    let want: BTreeSet<IpAddr> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(sources, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dedicated_ips_the_system_chooses() {
    let (remote, seen) =
        through_relay("outbound_ips = [\"127.0.0.2\"]\nuse_dedicated_ips = false").await;
    traffic(&remote, 2, MIB).await;
    let sources = seen.lock().unwrap().sources.clone();
    assert_eq!(
        sources,
        BTreeSet::from(["127.0.0.1".parse::<IpAddr>().unwrap()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_caps_what_is_open_and_fails_nothing() {
    let (remote, seen) =
        through_relay("max_connections = 2\npart_size = \"5MiB\"\nupload_concurrency = 4").await;
    traffic(&remote, 4, 12 * MIB).await;
    let most = seen.lock().unwrap().most_open;
    assert!(
        (1..=2).contains(&most),
        "{most} connections were open at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_stops_working_is_skipped() {
    // ::1 is local but cannot reach an IPv4 endpoint: every connect from it fails.
    let (remote, seen) = through_relay("outbound_ips = [\"::1\", \"127.0.0.2\"]").await;
    traffic(&remote, 4, MIB).await;
    let sources = seen.lock().unwrap().sources.clone();
    assert_eq!(
        sources,
        BTreeSet::from(["127.0.0.2".parse::<IpAddr>().unwrap()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_addresses_work() {
    let (remote, seen) = through_relay_at("[::1]:0", "outbound_ips = [\"::1\"]").await;
    traffic(&remote, 2, MIB).await;
    let sources = seen.lock().unwrap().sources.clone();
    assert_eq!(sources, BTreeSet::from(["::1".parse::<IpAddr>().unwrap()]));
}

#[test]
fn an_address_not_on_this_host_is_named() {
    let text = s3_remote_toml(
        "http://127.0.0.1:9",
        "b",
        "outbound_ips = [\"127.0.0.2\", \"203.0.113.10\"]",
    );
    let config = parse_config(&text);
    let err = bucketgate::remote::Remote::build(&config.remotes["store"], &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("203.0.113.10") && err.contains("not an address of this host"),
        "{err}"
    );
}

/// A request that waits for a connection under `max_connections` is not
/// timed out by `request_timeout` while it waits: a HEAD queued behind a
/// download that holds the only connection for longer than the timeout
/// succeeds once the download is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_connection_cap_is_not_a_stall() {
    let (remote, _) =
        through_relay("max_connections = 1\nrequest_timeout = \"1s\"\nretries = 0").await;
    let layer = Arc::new(ObjectLayer::new(
        remote.clone(),
        Budget::new(1 << 30, Default::default()),
    ));
    let data = pattern(24 << 20, 5);
    let mut upload = layer
        .open_write("big.bin", WriteMode::Truncate)
        .await
        .unwrap();
    upload.write_at(0, data.clone().into()).await.unwrap();
    upload.close().await.unwrap();
    let mut download = layer.open_read("big.bin", 0).await.unwrap();
    let first = download.read_at(0, 64 << 10).await.unwrap();
    // The download's GET holds the one connection; a HEAD waits for it.
    let waiting = {
        let layer = layer.clone();
        tokio::spawn(async move { layer.stat("big.bin").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        !waiting.is_finished(),
        "the HEAD did not wait for the connection"
    );
    let mut got = first.to_vec();
    while got.len() < data.len() {
        got.extend_from_slice(&download.read_at(got.len() as u64, 1 << 20).await.unwrap());
    }
    assert!(got == data);
    drop(download);
    let stat = waiting.await.unwrap().expect("the queued HEAD succeeds");
    assert_eq!(stat.size, data.len() as u64);
}
