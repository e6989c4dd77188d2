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
