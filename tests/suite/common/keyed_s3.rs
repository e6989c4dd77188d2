//! s3s-fs: an S3 server on loopback that checks every request's SigV4
//! signature against the one key it runs with (moto takes any key). Its
//! objects and unfinished uploads are files under its root, so it can be
//! started again with another key, the old one deleted, and an upload
//! begun under the old key goes on. `scripts/test` builds it into
//! `target/tools`; `S3S_FS` names another binary.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct KeyedS3 {
    child: Child,
    port: u16,
    pub root: tempfile::TempDir,
    pub bucket: String,
}

/// The secret of access key `key_id`, in every keyed test alike.
pub fn secret_of(key_id: &str) -> String {
    format!("{key_id}-secret")
}

fn binary() -> String {
    std::env::var("S3S_FS")
        .unwrap_or_else(|_| format!("{}/target/tools/bin/s3s-fs", env!("CARGO_MANIFEST_DIR")))
}

impl KeyedS3 {
    /// A server with one bucket, taking `key_id` only.
    pub fn start(key_id: &str) -> KeyedS3 {
        let root = tempfile::tempdir().unwrap();
        let bucket = "keyed".to_string();
        std::fs::create_dir(root.path().join(&bucket)).unwrap();
        for _ in 0..5 {
            let port = super::free_port();
            if let Some(child) = run(root.path(), port, key_id) {
                return KeyedS3 {
                    child,
                    port,
                    root,
                    bucket,
                };
            }
        }
        panic!("s3s-fs did not start on any of 5 ports");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server and starts it again on the same port and files
    /// taking `key_id` only: the old key is deleted. s3s-fs ties each
    /// unfinished upload to the key that began it (`.upload-ID.json`),
    /// where S3 and Garage tie it to the bucket, whose owner's key this is
    /// now: those records move to the new key, as a rotation of one
    /// user's key leaves their uploads theirs.
    pub fn rekey(&mut self, key_id: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for entry in std::fs::read_dir(self.root.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if name.starts_with(".upload-") && name.ends_with(".json") {
                std::fs::write(&path, serde_json::to_vec(&Some(key_id)).unwrap()).unwrap();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        self.child = loop {
            // The port is ours until another process takes it; a start that
            // finds it still held by the dying server is tried again.
            if let Some(child) = run(self.root.path(), self.port, key_id) {
                break child;
            }
            assert!(Instant::now() < deadline, "s3s-fs did not start again");
            std::thread::sleep(Duration::from_millis(50));
        };
    }

    /// The bytes of object `key`, as the server stores them.
    pub fn object(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.root.path().join(&self.bucket).join(key)).unwrap()
    }
}

/// s3s-fs on `port` once it accepts connections; `None` if it exited.
fn run(root: &std::path::Path, port: u16, key_id: &str) -> Option<Child> {
    let binary = binary();
    let mut child = Command::new(&binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", key_id, "--secret-key", &secret_of(key_id)])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{binary}: {e} (scripts/test builds it)"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for KeyedS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
