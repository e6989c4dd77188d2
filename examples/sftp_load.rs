//! Load client for bench/load.sh and bench/haproxy.sh: N concurrent SFTP
//! sessions (russh client), each logging in, listing its home, putting a
//! small file and getting it back. Prints errors and session-time
//! percentiles.
//!
//!   cargo run --release --example sftp_load -- ADDR USER AUTH SESSIONS [FILE_BYTES]
//!
//! AUTH is a password, `key:PATH` for an OpenSSH private key file, or
//! `cert:PATH` for that key and its certificate at `PATH-cert.pub`.
//! Environment: LOAD_RAMP (seconds over which the sessions start, default
//! 0: all at once), LOAD_PREFIX (the folder the files go to, which must
//! exist; default `load`),
//! LOAD_TOLERATE_ENDED=1 (a logged-in session whose connection the server
//! closes — a gateway shutting down — is counted as ended, not as an error),
//! LOAD_ACKED=FILE (the path of every upload whose close was answered OK is
//! written there, one a line: what the gateway promised to keep and tell),
//! LOAD_HOLD=1 (each session logs in, opens the SFTP channel and lists its
//! home, then stays idle; once all are, a line `held N sessions ...` is
//! printed and the sessions end when a line arrives on stdin: bench/idle.sh
//! reads the gateway's memory in between).

use russh::client;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{Trusting, open_sftp};

/// The largest write or read request sent.
const CHUNK: usize = 32 << 10;

/// How a session failed: an error, or the server closing the connection
/// after login (a gateway shutting down).
enum Failure {
    Error(String),
    Ended(String),
}

/// How a session logs in.
#[derive(Clone)]
enum Auth {
    Password(String),
    Key(Arc<russh::keys::PrivateKey>),
    Certificate(Arc<russh::keys::PrivateKey>, Box<russh::keys::Certificate>),
}

/// One session's work; the time it took or what failed.
async fn session(
    addr: std::net::SocketAddr,
    user: String,
    auth: Auth,
    name: String,
    size: usize,
    acked: &std::sync::atomic::AtomicBool,
    hold: Option<&Hold>,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    let config = Arc::new(client::Config::default());
    let mut h = client::connect(config, addr, Trusting)
        .await
        .map_err(|e| Failure::Error(format!("connect: {e}")))?;
    let auth = match auth {
        Auth::Password(p) => h.authenticate_password(user, p).await,
        Auth::Key(key) => {
            let hash = h.best_supported_rsa_hash().await.ok().flatten().flatten();
            let key = russh::keys::PrivateKeyWithHashAlg::new(key, hash);
            h.authenticate_publickey(user, key).await
        }
        Auth::Certificate(key, cert) => h.authenticate_openssh_cert(user, key, *cert).await,
    }
    .map_err(|e| Failure::Error(format!("auth: {e}")))?;
    if !auth.success() {
        return Err(Failure::Error("auth: refused".into()));
    }
    let done = match hold {
        Some(hold) => idle(&h, hold).await,
        None => work(&h, &name, size, acked).await,
    };
    if let Err(e) = done {
        // Give the connection's end a moment to be seen, then tell apart
        // a session the server closed from one that failed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Err(match h.is_closed() {
            true => Failure::Ended(e),
            false => Failure::Error(e),
        });
    }
    let _ = h.disconnect(russh::Disconnect::ByApplication, "", "").await;
    Ok(started.elapsed())
}

/// Sessions held idle: each counts itself in when its listing is done, then
/// waits for the release.
struct Hold {
    ready: tokio::sync::Semaphore,
    release: tokio::sync::watch::Receiver<bool>,
}

/// Open the SFTP channel, list the home, then wait idle for the release.
async fn idle(h: &client::Handle<Trusting>, hold: &Hold) -> Result<(), String> {
    let s = open_sftp(h).await?;
    list_home(&s).await?;
    hold.ready.add_permits(1);
    let mut release = hold.release.clone();
    let _ = release.wait_for(|r| *r).await;
    Ok(())
}

async fn list_home(s: &RawSftpSession) -> Result<(), String> {
    let dir = s
        .opendir("/")
        .await
        .map_err(|e| format!("opendir: {e}"))?
        .handle;
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
    s.close(dir).await.map_err(|e| format!("close dir: {e}"))?;
    Ok(())
}

/// List, put, get on a logged-in connection.
async fn work(
    h: &client::Handle<Trusting>,
    name: &str,
    size: usize,
    acked: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    let s = open_sftp(h).await?;
    let err =
        |what: &'static str| move |e: russh_sftp::client::error::Error| format!("{what}: {e}");
    list_home(&s).await?;
    // Put a small file, then get it back.
    let data = content(name, size);
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let f = s
        .open(name, flags, FileAttributes::empty())
        .await
        .map_err(err("open for write"))?
        .handle;
    // In 32 KiB requests, as OpenSSH's sftp sends them (the gateway takes
    // at most 256 KiB in one).
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        let offset = (i * CHUNK) as u64;
        s.write(&f, offset, chunk.to_vec())
            .await
            .map_err(err("write"))?;
    }
    s.close(f).await.map_err(err("close after write"))?;
    acked.store(true, std::sync::atomic::Ordering::Relaxed);
    let f = s
        .open(name, OpenFlags::READ, FileAttributes::empty())
        .await
        .map_err(err("open for read"))?
        .handle;
    let mut got = Vec::with_capacity(size);
    while got.len() < size {
        let chunk = s.read(&f, got.len() as u64, CHUNK as u32).await;
        got.extend(chunk.map_err(err("read"))?.data);
    }
    s.close(f).await.map_err(err("close after read"))?;
    if got != data {
        return Err("the file read back differs".into());
    }
    Ok(())
}

/// The bytes of file `name`: its name's bytes repeated (the bench checks
/// the bucket against this).
fn content(name: &str, size: usize) -> Vec<u8> {
    name.bytes().cycle().take(size).collect()
}

/// Wait until every session is idle or has ended, say how many are held
/// and how fast they logged in, then wait for a line on stdin.
async fn hold_until_told<T>(
    hold: &Hold,
    sessions: usize,
    started: Instant,
    tasks: &[tokio::task::JoinHandle<T>],
) {
    loop {
        let ready = hold.ready.available_permits();
        let ended = tasks.iter().filter(|t| t.is_finished()).count();
        if ready + ended >= sessions {
            let took = started.elapsed().as_secs_f64();
            println!(
                "held {ready} sessions ({ended} ended), logged in and listed in {took:.2} s: {:.0} logins/s",
                ready as f64 / took
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
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
        eprintln!("usage: sftp_load ADDR USER AUTH SESSIONS [FILE_BYTES]");
        std::process::exit(2);
    }
    let addr: std::net::SocketAddr = args[1].parse().expect("ADDR is host:port");
    let key = |path: &str| {
        Arc::new(russh::keys::load_secret_key(path, None).expect("a readable OpenSSH key"))
    };
    let auth = if let Some(path) = args[3].strip_prefix("key:") {
        Auth::Key(key(path))
    } else if let Some(path) = args[3].strip_prefix("cert:") {
        let cert = russh::keys::load_openssh_certificate(format!("{path}-cert.pub"))
            .expect("a readable certificate at PATH-cert.pub");
        Auth::Certificate(key(path), Box::new(cert))
    } else {
        Auth::Password(args[3].clone())
    };
    let sessions: usize = args[4].parse().expect("SESSIONS is a number");
    let size: usize = args.get(5).map_or(4096, |s| s.parse().expect("FILE_BYTES"));
    let env = |k: &str| std::env::var(k).ok();
    let ramp =
        Duration::from_secs_f64(env("LOAD_RAMP").map_or(0.0, |s| s.parse().expect("LOAD_RAMP")));
    let prefix = env("LOAD_PREFIX").unwrap_or_else(|| "load".into());
    let tolerate_ended = env("LOAD_TOLERATE_ENDED").as_deref() == Some("1");
    let (release, released) = tokio::sync::watch::channel(false);
    let hold = (env("LOAD_HOLD").as_deref() == Some("1")).then(|| {
        Arc::new(Hold {
            ready: tokio::sync::Semaphore::new(0),
            release: released,
        })
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|n| {
            let (user, auth) = (args[2].clone(), auth.clone());
            let name = format!("/{prefix}/{n}.bin");
            let delay = ramp.mul_f64(n as f64 / sessions.max(1) as f64);
            let hold = hold.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let acked = std::sync::atomic::AtomicBool::new(false);
                let result = session(
                    addr,
                    user,
                    auth,
                    name.clone(),
                    size,
                    &acked,
                    hold.as_deref(),
                )
                .await;
                (result, acked.into_inner().then_some(name))
            })
        })
        .collect();
    if let Some(hold) = &hold {
        hold_until_told(hold, sessions, started, &tasks).await;
        let _ = release.send(true);
    }
    let mut times = Vec::new();
    let mut errors = Vec::new();
    let mut ended = 0;
    let mut acked = Vec::new();
    for t in tasks {
        let result = match t.await {
            Ok((result, name)) => {
                acked.extend(name);
                result
            }
            Err(e) => Err(Failure::Error(e.to_string())),
        };
        match result {
            Ok(d) => times.push(d),
            Err(Failure::Ended(_)) if tolerate_ended => ended += 1,
            Err(Failure::Error(e) | Failure::Ended(e)) => errors.push(e),
        }
    }
    if let Some(path) = env("LOAD_ACKED") {
        let lines: String = acked.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(&path, lines).expect("LOAD_ACKED is writable");
    }
    times.sort();
    println!(
        "sessions {sessions}: ok {}, ended by the server {ended}, errors {}, p50 {:.3} s, p99 {:.3} s, max {:.3} s, all done in {:.2} s",
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
