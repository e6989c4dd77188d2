//! FileZilla's way of downloading a tree, for bench/smallfiles.sh: one
//! connection lists the folders (breadth first) and queues each file it
//! finds; TRANSFERS other connections (2, FileZilla's default) take files
//! from the queue and download them, while the listing goes on. Each file
//! is written under OUT at its path relative to DIR.
//!
//!   cargo run --release --example sftp_walk -- ADDR USER KEY DIR OUT
//!
//! KEY is an OpenSSH private key file. Environment: TRANSFERS (2).
//! Prints the files and bytes fetched; exits 1 on any error.

use russh::client;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};

mod common;
use common::{Trusting, open_sftp};

type Failed = Box<dyn std::error::Error + Send + Sync>;

/// A logged-in SFTP session (its SSH connection kept alive beside it).
async fn connect(
    addr: &str,
    user: &str,
    key: Arc<russh::keys::PrivateKey>,
) -> Result<(client::Handle<Trusting>, RawSftpSession), Failed> {
    let config = Arc::new(client::Config::default());
    let mut h = client::connect(config, addr, Trusting).await?;
    let hash = h.best_supported_rsa_hash().await.ok().flatten().flatten();
    let key = russh::keys::PrivateKeyWithHashAlg::new(key, hash);
    if !h.authenticate_publickey(user, key).await?.success() {
        return Err("the key was refused".into());
    }
    let s = open_sftp(&h).await?;
    Ok((h, s))
}

fn is_eof(e: &russh_sftp::client::error::Error) -> bool {
    matches!(e, russh_sftp::client::error::Error::Status(st) if st.status_code == StatusCode::Eof)
}

/// Lists `root` and every folder under it, sending each file's path
/// (relative to `root`) as soon as its folder's listing names it.
async fn list(s: &RawSftpSession, root: &str, files: mpsc::Sender<String>) -> Result<(), Failed> {
    let mut folders = vec![String::new()];
    while let Some(rel) = folders.pop() {
        let dir = s.opendir(format!("{root}/{rel}")).await?.handle;
        loop {
            let names = match s.readdir(&dir).await {
                Ok(names) => names,
                Err(e) if is_eof(&e) => break,
                Err(e) => return Err(e.into()),
            };
            for f in names.files {
                if f.filename == "." || f.filename == ".." {
                    continue;
                }
                let path = format!("{rel}{}", f.filename);
                if f.attrs.is_dir() {
                    folders.insert(0, format!("{path}/"));
                } else {
                    files.send(path).await?;
                }
            }
        }
        s.close(dir).await?;
    }
    Ok(())
}

/// Downloads queued files until the queue is closed and empty.
async fn transfer(
    s: RawSftpSession,
    root: String,
    out: PathBuf,
    queue: Arc<Mutex<mpsc::Receiver<String>>>,
) -> Result<(usize, u64), Failed> {
    let (mut count, mut bytes) = (0, 0);
    loop {
        let Some(rel) = queue.lock().await.recv().await else {
            return Ok((count, bytes));
        };
        let f = s
            .open(
                format!("{root}/{rel}"),
                OpenFlags::READ,
                FileAttributes::empty(),
            )
            .await?
            .handle;
        let mut data = Vec::new();
        loop {
            match s.read(&f, data.len() as u64, 32 << 10).await {
                Ok(chunk) => data.extend_from_slice(&chunk.data),
                Err(e) if is_eof(&e) => break,
                Err(e) => return Err(e.into()),
            }
        }
        s.close(f).await?;
        let path = out.join(&rel);
        tokio::fs::create_dir_all(path.parent().expect("a file under OUT")).await?;
        tokio::fs::write(&path, &data).await?;
        count += 1;
        bytes += data.len() as u64;
    }
}

#[tokio::main]
async fn main() -> Result<(), Failed> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: sftp_walk ADDR USER KEY DIR OUT");
        std::process::exit(2);
    }
    let (addr, user, root) = (
        &args[1],
        &args[2],
        args[4].trim_end_matches('/').to_string(),
    );
    let key = Arc::new(russh::keys::load_secret_key(&args[3], None)?);
    let out = PathBuf::from(&args[5]);
    let transfers: usize = std::env::var("TRANSFERS").map_or(Ok(2), |t| t.parse())?;
    let (lister_ssh, lister) = connect(addr, user, key.clone()).await?;
    let (tx, rx) = mpsc::channel(10_000);
    let queue = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    let mut keep = vec![lister_ssh];
    for _ in 0..transfers {
        let (ssh, s) = connect(addr, user, key.clone()).await?;
        keep.push(ssh);
        workers.push(tokio::spawn(transfer(
            s,
            root.clone(),
            out.clone(),
            queue.clone(),
        )));
    }
    list(&lister, &root, tx).await?;
    let (mut files, mut bytes) = (0, 0);
    for w in workers {
        let (n, b) = w.await??;
        files += n;
        bytes += b;
    }
    println!("{files} files, {bytes} bytes over {transfers} transfer connections");
    Ok(())
}
