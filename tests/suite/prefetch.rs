//! Listing-driven prefetch of small files, over SFTP (russh) and FTP
//! (suppaftp), with the gateway reaching S3 (moto_server) through a proxy
//! that records every request: what a client reads, and what the bucket
//! was asked for it.
//!
//! Each gateway counts into metrics of its own, so the tests compare its
//! counters before and after while the others run beside it.

use crate::common;

use common::Seen;
use common::ftp::*;
use common::gateway::*;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// A gateway reaching S3 through a recording proxy.
async fn gateway(extra_remote: &str) -> (TestGateway, Seen) {
    let (proxy, seen) = common::counting_proxy(common::moto_endpoint()).await;
    let g = start_via(&format!("http://{proxy}"), extra_remote).await;
    (g, seen)
}

/// `n` small files `f000`… under alice's `dir`, straight into the bucket,
/// each its own bytes.
fn small_files(g: &TestGateway, dir: &str, n: usize) -> Vec<Vec<u8>> {
    g.s3(&format!(
        "for i in range({n}):\n    \
         s3.put_object(Bucket=bucket, Key='alice/{dir}/f%03d' % i, Body=(b'%03d' % i) * (100 + i))"
    ));
    (0..n)
        .map(|i| format!("{i:03}").repeat(100 + i).into_bytes())
        .collect()
}

fn name(i: usize) -> String {
    format!("f{i:03}")
}

/// A counter of the gateway's metrics.
async fn counter(g: &TestGateway, name: &str) -> u64 {
    let text = g.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("bucketgate_{name}_total ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics")) as u64
}

#[derive(Debug, PartialEq)]
struct Counts {
    fetched: u64,
    hits: u64,
    misses: u64,
    wasted: u64,
}

async fn counts(g: &TestGateway) -> Counts {
    Counts {
        fetched: counter(g, "prefetch_fetched").await,
        hits: counter(g, "prefetch_hits").await,
        misses: counter(g, "prefetch_misses").await,
        wasted: counter(g, "prefetch_wasted_bytes").await,
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, b: Counts) -> Counts {
        Counts {
            fetched: self.fetched - b.fetched,
            hits: self.hits - b.hits,
            misses: self.misses - b.misses,
            wasted: self.wasted - b.wasted,
        }
    }
}

/// Lists `dir` to its end, as a client does before fetching.
async fn list(s: &RawSftpSession, dir: &str) -> Vec<String> {
    let h = s.opendir(dir).await.unwrap().handle;
    let mut out = Vec::new();
    while let Ok(page) = s.readdir(&h).await {
        out.extend(page.files.into_iter().map(|f| f.filename));
    }
    s.close(h).await.unwrap();
    out.retain(|n| n != "." && n != "..");
    out
}

/// Open, read to the end, close: how `sftp get` fetches one file.
async fn fetch(s: &RawSftpSession, path: &str) -> Result<Vec<u8>, StatusCode> {
    let h = match s.open(path, OpenFlags::READ, FileAttributes::empty()).await {
        Ok(h) => h.handle,
        Err(SftpError::Status(st)) => return Err(st.status_code),
        Err(e) => panic!("open {path}: {e:?}"),
    };
    let mut out = Vec::new();
    loop {
        match s.read(&h, out.len() as u64, 32 << 10).await {
            Ok(d) => out.extend(d.data),
            Err(SftpError::Status(st)) if st.status_code == StatusCode::Eof => break,
            Err(e) => panic!("read {path}: {e:?}"),
        }
    }
    s.close(h).await.unwrap();
    Ok(out)
}

/// Waits, bounded, until S3 has been asked `n` GETs under alice's `dir`.
async fn until_gets(g: &TestGateway, seen: &Seen, dir: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.gets_under(&g.bucket, &format!("alice/{dir}/")) < n {
        assert!(Instant::now() < deadline, "S3 never got {n} GETs");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// 40 small files of `dir` listed by `lister`, then opened one after
/// another by `fetcher`: each asked of S3 once, all but the first answered
/// from the prefetch, nothing wasted.
async fn walk_is_served_ahead(
    g: &TestGateway,
    seen: &Seen,
    dir: &str,
    lister: &RawSftpSession,
    fetcher: &RawSftpSession,
) {
    let files = small_files(g, dir, 40);
    let before = counts(g).await;
    let listed = list(lister, &format!("/{dir}")).await;
    assert_eq!(listed, (0..40).map(name).collect::<Vec<_>>());
    for (i, want) in files.iter().enumerate() {
        let got = fetch(fetcher, &format!("/{dir}/{}", name(i)))
            .await
            .unwrap();
        assert!(got == *want, "{} came back different", name(i));
    }
    let moved = counts(g).await - before;
    assert_eq!(
        moved,
        Counts {
            fetched: 39,
            hits: 39,
            misses: 1,
            wasted: 0
        }
    );
    for i in 0..40 {
        let key = format!("alice/{dir}/{}", name(i));
        assert_eq!(seen.gets_of(&g.bucket, &key), 1, "GETs of {key}");
    }
}

/// `sftp get -r`: one session lists a folder and fetches its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_fetched_file_after_file_is_served_ahead() {
    let (g, seen) = gateway("").await;
    let (_h, s) = alice(&g).await;
    walk_is_served_ahead(&g, &seen, "docs", &s, &s).await;
}

/// FileZilla's way, and `lftp mirror --parallel`'s: one connection lists,
/// another fetches the files by name. A listing made by one of a user's
/// sessions feeds the prefetch of the others: the files the second session
/// opens were fetched ahead, each asked of S3 once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_in_one_session_feeds_the_opens_of_another() {
    let (g, seen) = gateway("").await;
    let (_browsing, lister) = alice(&g).await;
    let (_transferring, fetcher) = alice(&g).await;
    walk_is_served_ahead(&g, &seen, "together", &lister, &fetcher).await;
}

/// `lftp mirror --parallel=2`: two connections each walk a folder of their
/// own at the same time, their opens alternating. An open in one folder
/// does not drop what was fetched ahead in the other: every file after
/// each folder's first is served ahead, each asked of S3 once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_folders_walked_at_once_are_each_served_ahead() {
    let (g, seen) = gateway("").await;
    let (_h1, one) = alice(&g).await;
    let (_h2, two) = alice(&g).await;
    let files = [small_files(&g, "left", 40), small_files(&g, "right", 40)];
    let before = counts(&g).await;
    assert_eq!(list(&one, "/left").await.len(), 40);
    assert_eq!(list(&two, "/right").await.len(), 40);
    for i in 0..40 {
        for (s, dir, want) in [(&one, "left", &files[0]), (&two, "right", &files[1])] {
            let got = fetch(s, &format!("/{dir}/{}", name(i))).await.unwrap();
            assert!(got == want[i], "{dir}/{} came back different", name(i));
        }
    }
    let moved = counts(&g).await - before;
    assert_eq!(
        moved,
        Counts {
            fetched: 78,
            hits: 78,
            misses: 2,
            wasted: 0
        }
    );
    for dir in ["left", "right"] {
        for i in 0..40 {
            let key = format!("alice/{dir}/{}", name(i));
            assert_eq!(seen.gets_of(&g.bucket, &key), 1, "GETs of {key}");
        }
    }
}

/// The same walk over FTP: LIST, then RETR after RETR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_retr_after_a_listing_is_served_ahead() {
    let (g, seen) = gateway("").await;
    let files = small_files(&g, "docs", 20);
    client(async {
        let mut ftp = ftp_plain(&g, "alice").await;
        let before = counts(&g).await;
        assert_eq!(ftp.nlst(Some("docs")).await.unwrap().len(), 20);
        for (i, want) in files.iter().enumerate() {
            let mut stream = ftp
                .retr_as_stream(&format!("docs/{}", name(i)))
                .await
                .unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await.unwrap();
            stream.finish().await.unwrap();
            assert!(got == *want, "{} came back different", name(i));
        }
        let moved = counts(&g).await - before;
        assert_eq!((moved.hits, moved.misses), (19, 1));
    })
    .await;
    assert_eq!(seen.gets_under(&g.bucket, "alice/docs/"), 20);
}

/// A client that lists 1000 files and fetches one costs two GETs more,
/// not a folder's worth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_a_thousand_and_fetching_one_costs_two_more_gets() {
    let (g, seen) = gateway("").await;
    let files = small_files(&g, "many", 1000);
    let (_h, s) = alice(&g).await;
    let before = counts(&g).await;
    assert_eq!(list(&s, "/many").await.len(), 1000);
    let got = fetch(&s, "/many/f500").await.unwrap();
    assert!(got == files[500]);
    let fetched = (counts(&g).await - before).fetched;
    assert_eq!(fetched, 2, "files fetched ahead");
    // Every GET the gateway started has reached S3: those are all.
    until_gets(&g, &seen, "many", 1 + fetched as usize).await;
    drop(s);
    let bucket = g.bucket.clone();
    g.stop().await;
    assert_eq!(seen.gets_under(&bucket, "alice/many/"), 3);
}

/// Replaced by another session right after the listing, while its
/// prefetch is held: read new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_through_the_gateway_is_read_new() {
    let (g, seen) = gateway("").await;
    let files = small_files(&g, "docs", 4);
    let (_h, s) = alice(&g).await;
    list(&s, "/docs").await;
    assert!(fetch(&s, "/docs/f000").await.unwrap() == files[0]);
    // f001 and f002 are fetched ahead; then another session replaces f001.
    until_gets(&g, &seen, "docs", 3).await;
    let (_h2, other) = alice(&g).await;
    put(&other, "/docs/f001", b"new bytes").await;
    let got = fetch(&s, "/docs/f001").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&got), "new bytes");
    assert!(fetch(&s, "/docs/f002").await.unwrap() == files[2]);
}

/// Replaced by another S3 client after the prefetch: once the window has
/// passed, read new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_in_s3_is_read_new_after_the_window() {
    let (g, seen) = gateway("prefetch_window = \"1s\"").await;
    let files = small_files(&g, "docs", 3);
    let (_h, s) = alice(&g).await;
    list(&s, "/docs").await;
    assert!(fetch(&s, "/docs/f000").await.unwrap() == files[0]);
    until_gets(&g, &seen, "docs", 3).await;
    // Counted before the put: on a loaded machine boto3 alone can take
    // longer than the window, and the expired body is counted as it expires.
    let before = counts(&g).await;
    g.s3("s3.put_object(Bucket=bucket, Key='alice/docs/f001', Body=b'replaced in S3')");
    // The window is what a prefetch may be served for; past it, never.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let got = fetch(&s, "/docs/f001").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&got), "replaced in S3");
    let moved = counts(&g).await - before;
    assert_eq!((moved.hits, moved.misses), (0, 1));
    assert!(moved.wasted > 0, "the expired body counts as wasted");
}

/// Deleted after the listing, in S3 before its prefetch or through the
/// gateway after it: NO_SUCH_FILE over SFTP, 550 over FTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_after_the_listing_is_not_found() {
    let (g, seen) = gateway("").await;
    let files = small_files(&g, "docs", 4);
    let (_h, s) = alice(&g).await;
    list(&s, "/docs").await;
    g.s3("s3.delete_object(Bucket=bucket, Key='alice/docs/f001')");
    assert!(fetch(&s, "/docs/f000").await.unwrap() == files[0]);
    until_gets(&g, &seen, "docs", 3).await;
    let (_h2, other) = alice(&g).await;
    other.remove("/docs/f002").await.unwrap();
    assert_eq!(fetch(&s, "/docs/f001").await, Err(StatusCode::NoSuchFile));
    assert_eq!(fetch(&s, "/docs/f002").await, Err(StatusCode::NoSuchFile));
    assert!(fetch(&s, "/docs/f003").await.unwrap() == files[3]);

    client(async {
        let mut ftp = ftp_plain(&g, "alice").await;
        ftp.nlst(Some("docs")).await.unwrap();
        let mut got = ftp.retr_as_stream("docs/f000").await.unwrap();
        got.read_to_end(&mut Vec::new()).await.unwrap();
        got.finish().await.unwrap();
        other.remove("/docs/f003").await.unwrap();
        let e = match ftp.retr_as_stream("docs/f003").await {
            Err(e) => e,
            Ok(mut stream) => {
                let mut got = Vec::new();
                let _ = stream.read_to_end(&mut got).await;
                assert!(got.is_empty(), "bytes of a deleted file were served");
                stream
                    .finish()
                    .await
                    .expect_err("RETR of a deleted file succeeded")
            }
        };
        assert!(e.to_string().contains("550"), "{e}");
    })
    .await;
}

/// `prefetch_window = "0"`: the requests of today, each GET sent only
/// when the client opens its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_off_asks_for_each_file_when_it_is_opened() {
    let (g, seen) = gateway("prefetch_window = \"0\"").await;
    let files = small_files(&g, "docs", 10);
    let (_h, s) = alice(&g).await;
    let before = counts(&g).await;
    list(&s, "/docs").await;
    for (i, want) in files.iter().enumerate() {
        assert_eq!(
            seen.gets_under(&g.bucket, "alice/docs/"),
            i,
            "before opening {}",
            name(i)
        );
        assert!(fetch(&s, &format!("/docs/{}", name(i))).await.unwrap() == *want);
    }
    assert_eq!(seen.gets_under(&g.bucket, "alice/docs/"), 10);
    let moved = counts(&g).await - before;
    assert_eq!(
        moved,
        Counts {
            fetched: 0,
            hits: 0,
            misses: 0,
            wasted: 0
        }
    );
}

/// `get -r` of a tree: from the second folder on, the first files are
/// fetched as the folder is listed, so only the very first open waits
/// for S3; a folder listed and not opened makes the next listing fetch
/// nothing ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_walk_keeps_its_pace_and_browsing_stops_it() {
    let (g, _seen) = gateway("").await;
    let trees: Vec<_> = (0..4)
        .map(|d| small_files(&g, &format!("tree/d{d}"), 10))
        .collect();
    let (_h, s) = alice(&g).await;
    let before = counts(&g).await;
    assert_eq!(list(&s, "/tree").await, ["d0", "d1", "d2", "d3"]);
    for (d, files) in trees.iter().enumerate().take(2) {
        list(&s, &format!("/tree/d{d}")).await;
        for (i, want) in files.iter().enumerate() {
            let got = fetch(&s, &format!("/tree/d{d}/{}", name(i))).await.unwrap();
            assert!(got == *want, "d{d}/{} came back different", name(i));
        }
    }
    let walked = counts(&g).await - before;
    assert_eq!((walked.hits, walked.misses, walked.wasted), (19, 1, 0));
    // Listed, not opened: its files were fetched ahead, then the next
    // listing (the client browses) fetches none.
    let before = counts(&g).await;
    list(&s, "/tree/d2").await;
    assert_eq!((counts(&g).await - before).fetched, 10);
    let before = counts(&g).await;
    list(&s, "/tree/d3").await;
    assert_eq!((counts(&g).await - before).fetched, 0);
}

/// With the read-ahead pool of the memory budget spent (here: a budget of
/// a few bytes), nothing is fetched ahead and every file is served as
/// without prefetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_fetches_nothing_ahead() {
    use bucketgate::vfs::{Budget, Storage, UserPath, UserVfs, Vfs, WriteMode};
    use futures::TryStreamExt;
    let config = common::parse_config(&format!(
        "[remotes.mem]\nkind = \"memory\"\n\n[[users]]\nname = \"alice\"\npassword = \"{HASH}\"\nhome = \"mem:/alice\"\n"
    ));
    let m = bucketgate::metrics::Metrics::new();
    let remotes = bucketgate::remote::Remotes::build(&config, &m).unwrap();
    let storage = Storage::new(&remotes, &Budget::new(8, Default::default()));
    let vfs = UserVfs::for_user(&config.users[0], &storage).await.unwrap();
    let p = |s: &str| UserPath::parse(s).unwrap();
    vfs.mkdir(&p("/docs")).await.unwrap();
    for i in 0..20 {
        let mut up = vfs
            .open_write(&p(&format!("/docs/{}", name(i))), WriteMode::Truncate)
            .await
            .unwrap();
        up.write_at(0, format!("file {i}").into_bytes().into())
            .await
            .unwrap();
        up.close().await.unwrap();
    }
    let (fetched, misses) = (m.prefetch_fetched.get(), m.prefetch_misses.get());
    let listed: Vec<_> = vfs
        .list(&p("/docs"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 20);
    for i in 0..20 {
        let mut d = vfs
            .open_read(&p(&format!("/docs/{}", name(i))), 0)
            .await
            .unwrap();
        let got = d.read_next(1 << 20).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&got), format!("file {i}"));
    }
    assert_eq!(
        m.prefetch_fetched.get() - fetched,
        0,
        "nothing fits the budget"
    );
    assert_eq!(m.prefetch_misses.get() - misses, 20);
}

/// The attack of issue 30: sessions that ramp their prefetch up in one
/// folder, then list other folders and open one file in each. The pace
/// does not carry over to a folder the client only glanced at, and a
/// session's fetches ahead stay paid for by its opens: S3 GETs at most
/// twice the opens plus the allowance of each session (`MAX_DEBT`, 64).
/// Before, 20 sessions made 700 opens cost 5 702 GETs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_then_a_jump_costs_at_most_twice_the_opens() {
    let (g, seen) = gateway("").await;
    small_files(&g, "ramp", 100);
    for d in 0..10 {
        small_files(&g, &format!("jump{d}"), 100);
    }
    let before = seen.gets_under(&g.bucket, "alice/");
    let mut opens = 0;
    let sessions = 3;
    for _ in 0..sessions {
        let (_h, s) = alice(&g).await;
        list(&s, "/ramp").await;
        for i in 0..30 {
            fetch(&s, &format!("/ramp/{}", name(i))).await.unwrap();
            opens += 1;
        }
        for d in 0..10 {
            list(&s, &format!("/jump{d}")).await;
            fetch(&s, &format!("/jump{d}/{}", name(50))).await.unwrap();
            opens += 1;
        }
    }
    let bucket = g.bucket.clone();
    g.stop().await;
    let gets = seen.gets_under(&bucket, "alice/") - before;
    let bound = 2 * opens + sessions * 64;
    assert!(
        gets <= bound,
        "{gets} GETs for {opens} opens (at most {bound})"
    );
}
