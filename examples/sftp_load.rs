//! Load client for bench/load.sh: N concurrent SFTP sessions (russh
//! client), each logging in, listing its home, putting a small file and
//! getting it back. Prints errors and session-time percentiles.
//!
//!   cargo run --release --example sftp_load -- ADDR USER PASSWORD SESSIONS [FILE_BYTES]

use russh::client;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Trusting;

impl client::Handler for Trusting {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// One session's work; the time it took or what failed.
async fn session(
    addr: std::net::SocketAddr,
    user: String,
    password: String,
    n: usize,
    size: usize,
) -> Result<Duration, String> {
    let started = Instant::now();
    let config = Arc::new(client::Config::default());
    let mut h = client::connect(config, addr, Trusting)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let auth = h
        .authenticate_password(user, password)
        .await
        .map_err(|e| format!("auth: {e}"))?;
    if !auth.success() {
        return Err("auth: refused".into());
    }
    let channel = h.channel_open_session().await.map_err(|e| e.to_string())?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| e.to_string())?;
    let s = RawSftpSession::new(channel.into_stream());
    s.init().await.map_err(|e| format!("init: {e}"))?;
    let err =
        |what: &'static str| move |e: russh_sftp::client::error::Error| format!("{what}: {e}");
    // List the home.
    let dir = s.opendir("/").await.map_err(err("opendir"))?.handle;
    loop {
        match s.readdir(&dir).await {
            Ok(_) => {}
            Err(russh_sftp::client::error::Error::Status(st))
                if st.status_code == StatusCode::Eof =>
            {
                break;
            }
            Err(e) => return Err(format!("readdir: {e}")),
        }
    }
    s.close(dir).await.map_err(err("close dir"))?;
    // Put a small file, then get it back.
    let data: Vec<u8> = (0..size).map(|i| (i * 31 + n) as u8).collect();
    let name = format!("/load-{n}.bin");
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let f = s
        .open(&name, flags, FileAttributes::empty())
        .await
        .map_err(err("open for write"))?
        .handle;
    s.write(&f, 0, data.clone()).await.map_err(err("write"))?;
    s.close(f).await.map_err(err("close after write"))?;
    let f = s
        .open(&name, OpenFlags::READ, FileAttributes::empty())
        .await
        .map_err(err("open for read"))?
        .handle;
    let got = s.read(&f, 0, size as u32).await.map_err(err("read"))?.data;
    s.close(f).await.map_err(err("close after read"))?;
    if got != data {
        return Err("the file read back differs".into());
    }
    let _ = h.disconnect(russh::Disconnect::ByApplication, "", "").await;
    Ok(started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: sftp_load ADDR USER PASSWORD SESSIONS [FILE_BYTES]");
        std::process::exit(2);
    }
    let addr: std::net::SocketAddr = args[1].parse().expect("ADDR is host:port");
    let sessions: usize = args[4].parse().expect("SESSIONS is a number");
    let size: usize = args.get(5).map_or(4096, |s| s.parse().expect("FILE_BYTES"));
    let started = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|n| tokio::spawn(session(addr, args[2].clone(), args[3].clone(), n, size)))
        .collect();
    let mut times = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(d)) => times.push(d),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    times.sort();
    println!(
        "sessions {sessions}: ok {}, errors {}, p50 {:.3} s, p99 {:.3} s, max {:.3} s, all done in {:.2} s",
        times.len(),
        errors.len(),
        percentile(&times, 0.5).as_secs_f64(),
        percentile(&times, 0.99).as_secs_f64(),
        times.last().copied().unwrap_or_default().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for e in errors.iter().take(10) {
        println!("error: {e}");
    }
    if !errors.is_empty() {
        std::process::exit(1);
    }
}
