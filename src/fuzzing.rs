//! Entry points for the fuzz targets in `fuzz/` and for the test that
//! replays their corpora (`tests/suite/fuzz_corpus.rs`): each takes the bytes a
//! client or an operator controls and must never panic. Not an API.

use crate::config::Config;
use crate::remote::Remotes;
use crate::vfs::{Budget, Storage, UserVfs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A PROXY protocol header (v1 or v2), as the listeners parse it.
pub fn proxy_header(data: &[u8]) {
    let _ = crate::proxy::source(data);
}

/// A gateway.toml: every problem must be reported, never a panic.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text, &|name| (name == "SET").then(|| "value".into()));
    }
}

/// FTP command lines, through libunftp's decoder and parser; the first
/// byte sets how the rest arrives (read sizes).
pub fn ftp_control(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    libunftp::fuzzing::decode_control(rest, usize::from(chunk) * 16 + 1);
}

const SFTP_CONFIG: &str = r#"
[remotes.mem]
kind = "memory"
[[users]]
name = "fuzz"
password = "$argon2id$v=19$m=19456,t=2,p=1$zbURedr/3LNZOR44c0aY6A$+xFJJgF1BW2u2HQD7E1eR9O5gcRrh9Fhtk/e5e317mI"
home = "mem:/home"
[[users.mounts]]
path = "/ro"
target = "mem:/shared"
read_only = true
"#;

/// SFTP requests as a client sends them on a channel (length-prefixed
/// packets), through the request loop and every handler over a memory
/// remote; the replies are read and dropped.
pub fn sftp_requests(data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let config = Config::parse(SFTP_CONFIG, &|_| None).expect("the fuzz config");
        let remotes = Remotes::build(&config, &Default::default()).expect("a memory remote");
        let storage = Storage::new(&remotes, &Budget::new(64 << 20, Default::default()));
        let vfs = UserVfs::for_user(&config.users[0], &storage)
            .await
            .expect("the fuzz user's home");
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let served = tokio::spawn(crate::sftp::serve_stream(server, vfs));
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut replies = Vec::new();
        let _ = client.read_to_end(&mut replies).await;
        let _ = served.await;
    });
}
