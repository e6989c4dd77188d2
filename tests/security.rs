//! What protects a gateway facing the internet: login bans shared by SFTP
//! and FTP, checked with real clients over TCP.

mod common;

use common::gateway::{PASSWORD, ssh_password, start_with_tables};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Three failed logins (SFTP and FTP together) ban the address: its next
/// connections, on either protocol and even with the right password, are
/// closed at once, before any greeting.
#[tokio::test]
async fn repeated_failures_ban_the_address_on_both_protocols() {
    let g = start_with_tables(
        "[security]\nban_threshold = 3\nban_window = \"5m\"\nban_time = \"15m\"\n",
    )
    .await;
    for _ in 0..2 {
        let stream = TcpStream::connect(g.addr).await.unwrap();
        let refused = ssh_password(stream, "alice", "wrong").await.err().unwrap();
        assert_eq!(refused, "authentication failed");
    }
    // The third failure is over FTP.
    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect(g.ftp)
        .await
        .unwrap();
    assert!(ftp.login("alice", "wrong").await.is_err());
    drop(ftp);

    let stream = TcpStream::connect(g.addr).await.unwrap();
    let err = ssh_password(stream, "alice", PASSWORD).await.err().unwrap();
    assert_ne!(
        err, "authentication failed",
        "banned before any SSH exchange"
    );
    let mut raw = TcpStream::connect(g.ftp).await.unwrap();
    let mut greeting = Vec::new();
    raw.read_to_end(&mut greeting).await.unwrap();
    assert!(
        greeting.is_empty(),
        "{}",
        String::from_utf8_lossy(&greeting)
    );
    g.stop().await;
}
