//! A large folder is streamed to the client page by page, over FTP (LIST,
//! NLST, MLSD) and SFTP (READDIR), never gathered whole first: the
//! gateway's memory for a listing is a page, whatever the folder's size.
//! S3 (moto_server) is reached through a proxy that holds the second page
//! of every listing for a minute; the client must have the first page's
//! entries while it is held.

use crate::common;

use common::ftp::RawFtp;
use common::gateway::*;
use common::{Fault, fault_proxy_with};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long the proxy holds a listing's second page.
const HELD: Duration = Duration::from_secs(60);
/// What a client waits for the first page's entries: far less than [`HELD`].
const PATIENCE: Duration = Duration::from_secs(20);
/// The folders of S3's first page: the gateway asks for 1000 keys a page,
/// and the first is the folder's own marker.
const FIRST_PAGE: usize = 999;

/// A gateway whose S3 holds every listing's second page, with `alice/big`
/// holding 1100 folders.
async fn gateway_with_a_big_folder() -> TestGateway {
    let proxy = fault_proxy_with(common::moto_endpoint(), |method, query| {
        if *method == hyper::Method::GET
            && query.contains("list-type=2")
            && query.contains("continuation-token")
        {
            Fault::Stall(HELD)
        } else {
            Fault::Pass
        }
    })
    .await;
    let g = start_via(&format!("http://{proxy}"), "prefetch_window = \"0s\"\n").await;
    g.s3("import concurrent.futures\n\
         s3.put_object(Bucket=bucket, Key='alice/big/', Body=b'')\n\
         put = lambda i: s3.put_object(Bucket=bucket, Key='alice/big/d%05d/' % i, Body=b'')\n\
         with concurrent.futures.ThreadPoolExecutor(8) as ex: list(ex.map(put, range(1100)))");
    g
}

/// Reads `stream` until it holds `lines` lines, or gives up after [`PATIENCE`].
async fn first_lines(stream: &mut tokio::net::TcpStream, lines: usize) -> usize {
    let mut seen = 0;
    let mut buf = vec![0u8; 64 << 10];
    let reading = async {
        while seen < lines {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += buf[..n].iter().filter(|b| **b == b'\n').count(),
            }
        }
    };
    let _ = tokio::time::timeout(PATIENCE, reading).await;
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn ftp_listings_send_the_first_page_before_the_folder_is_read() {
    let g = gateway_with_a_big_folder().await;
    for command in ["LIST big", "NLST big", "MLSD big"] {
        let mut ftp = RawFtp::login(&g, "alice").await;
        let (_, mut data) = ftp.pasv().await;
        let reply = ftp.cmd(command).await;
        assert!(reply.starts_with("150"), "{command}: {reply}");
        let got = first_lines(&mut data, FIRST_PAGE).await;
        assert!(
            got >= FIRST_PAGE,
            "{command}: {got} entries before S3's second page; the listing is gathered whole first"
        );
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sftp_readdir_sends_the_first_page_before_the_folder_is_read() {
    let g = gateway_with_a_big_folder().await;
    let (_ssh, s) = alice(&g).await;
    let dir = s.opendir("/big").await.unwrap().handle;
    let reading = async {
        let mut seen = 0;
        while seen < FIRST_PAGE {
            seen += s.readdir(&dir).await.unwrap().files.len();
        }
        seen
    };
    let got = tokio::time::timeout(PATIENCE, reading).await;
    assert!(
        got.is_ok(),
        "no first page of entries while S3's second page was held"
    );
    g.stop().await;
}

/// The least time of five listings, each run to its end by `list`, which
/// answers how many entries it saw.
async fn least_of_five<F: std::future::Future<Output = usize>>(
    entries: usize,
    mut list: impl FnMut() -> F,
) -> Duration {
    let mut least = Duration::MAX;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let seen = list().await;
        least = least.min(started.elapsed());
        assert!(seen >= entries, "{seen} entries listed of {entries}");
    }
    least
}

/// Listing 5 000 and then 20 000 subfolders over FTP (curl LIST) and SFTP
/// (READDIR to the end), on a filesystem remote so that making them is
/// quick. Four times the folders cost about four times the time: each
/// folder listed is remembered as known, and that was a sweep of every
/// known folder per insert past 4096 (37× the time for 4× the folders).
/// Listing the large folder ten times more leaves the gateway's memory
/// about where the first time put it: nothing is kept per listing.
#[tokio::test(flavor = "multi_thread")]
async fn listing_grows_linearly_with_the_folder_and_memory_stays_flat() {
    use common::served::{Served, user};
    let users = format!(
        "{}\n[remotes.disk]\nkind = \"filesystem\"\nroot = \"{{dir}}/disk\"\n\n[[users]]\nname = \"erin\"\npassword = \"{}\"\nhome = \"disk:/erin\"\n",
        user("alice"),
        HASH
    );
    let served = Served::start_limited("", "", "", &users, Default::default());
    let home = served.dir.path().join("disk/erin");
    for (folder, n) in [("small", 5_000), ("large", 20_000)] {
        for i in 0..n {
            std::fs::create_dir_all(home.join(format!("{folder}/d{i:05}"))).unwrap();
        }
    }
    let stream = tokio::net::TcpStream::connect(served.sftp).await.unwrap();
    let h = ssh_password(stream, "erin", PASSWORD).await.unwrap();
    let s = sftp(&h).await;
    let sftp_list = |folder: &'static str| {
        let s = &s;
        move || async move {
            let dir = s.opendir(format!("/{folder}")).await.unwrap().handle;
            let mut seen = 0;
            loop {
                match s.readdir(&dir).await {
                    Ok(names) => seen += names.files.len(),
                    Err(russh_sftp::client::error::Error::Status(st))
                        if st.status_code == russh_sftp::protocol::StatusCode::Eof =>
                    {
                        break;
                    }
                    Err(e) => panic!("READDIR /{folder} after {seen} entries: {e}"),
                }
            }
            let _ = s.close(dir).await;
            seen
        }
    };
    let ftp = served.ftp;
    let ftp_list = |folder: &'static str| {
        move || async move {
            let url = format!("ftp://erin:{PASSWORD}@{ftp}/{folder}/");
            let (ok, out, err) = common::run("curl", &["-sS", &url]).await;
            assert!(ok, "curl LIST {folder}: {err}");
            out.lines().count()
        }
    };

    let small_sftp = least_of_five(5_000, sftp_list("small")).await;
    let small_ftp = least_of_five(5_000, ftp_list("small")).await;
    let rss_small = served.rss() >> 20;
    let large_sftp = least_of_five(20_000, sftp_list("large")).await;
    let large_ftp = least_of_five(20_000, ftp_list("large")).await;
    let rss_large = served.rss() >> 20;
    least_of_five(20_000, sftp_list("large")).await;
    least_of_five(20_000, ftp_list("large")).await;
    let rss_again = served.rss() >> 20;
    eprintln!(
        "RSS after listing 5 000: {rss_small} MiB, 20 000: {rss_large} MiB, 20 000 ten times more: {rss_again} MiB"
    );

    for (protocol, small, large) in [
        ("SFTP", small_sftp, large_sftp),
        ("FTP", small_ftp, large_ftp),
    ] {
        let ratio = large.as_secs_f64() / small.as_secs_f64();
        eprintln!("{protocol}: 5 000 in {small:?}, 20 000 in {large:?}: ratio {ratio:.2}");
        // Linear is 4; the sweep was 37. The margin is for a loaded machine.
        assert!(
            ratio < 12.0,
            "{protocol}: 4× the folders cost {ratio:.1}× the time ({small:?}, {large:?}): not linear"
        );
    }
    // A listing kept whole after it ended would add a few MiB each time,
    // tens over ten listings; the allocator's own give and take (it hands
    // pages back in the background) moves RSS by some MiB either way.
    assert!(
        rss_again <= rss_large + 16,
        "listing 20 000 folders ten times more took RSS from {rss_large} to {rss_again} MiB"
    );
}
