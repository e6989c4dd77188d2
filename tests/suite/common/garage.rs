//! Garage, the S3 server the benchmarks run on, one node on loopback for
//! a test: it checks every signature and every checksum a request carries,
//! answers the checksum it verified, and has keys created and deleted
//! while it serves, as an operator rotates them. `scripts/test` builds it
//! into `target/tools`; `GARAGE` names another binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Garage {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

/// An access key id and its secret.
pub type Keys = (String, String);

fn binary() -> String {
    std::env::var("GARAGE")
        .unwrap_or_else(|_| format!("{}/target/tools/bin/garage", env!("CARGO_MANIFEST_DIR")))
}

impl Garage {
    /// A one-node Garage, its layout applied, ready for buckets and keys.
    pub fn start() -> Garage {
        for _ in 0..5 {
            if let Some(garage) = try_start() {
                return garage;
            }
        }
        panic!("garage did not start on any of 5 ports");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs the `garage` CLI on this node; its output, or a panic with it.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.dir.path(), args).unwrap_or_else(|e| panic!("garage {args:?}: {e}"))
    }

    /// A new key named `name`: its id and secret.
    pub fn key(&self, name: &str) -> Keys {
        self.cli(&["key", "create", name]);
        let info = self.cli(&["key", "info", "--show-secret", name]);
        let field = |label: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .unwrap_or_else(|| panic!("no {label} in {info}"))
                .trim()
                .to_string()
        };
        (field("Key ID:"), field("Secret key:"))
    }

    /// Deletes key `name`: requests signed with it are refused from now.
    pub fn delete_key(&self, name: &str) {
        self.cli(&["key", "delete", "--yes", name]);
    }

    /// A new bucket that each of `keys` (by name) may read and write.
    pub fn bucket(&self, bucket: &str, keys: &[&str]) {
        self.cli(&["bucket", "create", bucket]);
        for key in keys {
            self.cli(&[
                "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", key,
            ]);
        }
    }

    /// Object `key` of `bucket`, read with `keys`.
    pub fn object(&self, keys: &Keys, bucket: &str, key: &str) -> Vec<u8> {
        super::s3_object_as(&self.endpoint(), keys, bucket, key)
    }
}

fn try_start() -> Option<Garage> {
    let dir = tempfile::tempdir().unwrap();
    let (port, rpc) = (super::free_port(), super::free_port());
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let config = format!(
        "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"lmdb\"\n\
         replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
         rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
         [s3_api]\ns3_region = \"us-east-1\"\napi_bind_addr = \"127.0.0.1:{port}\"\n",
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("garage.toml"), config).unwrap();
    let binary = binary();
    let mut child = Command::new(&binary)
        .arg("-c")
        .arg(dir.path().join("garage.toml"))
        .arg("server")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{binary}: {e} (scripts/test builds it)"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if cli(dir.path(), &["status"]).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let garage = Garage { child, dir, port };
    if !ready {
        return None;
    }
    let id = garage.cli(&["node", "id", "-q"]);
    let id = id.trim().split('@').next().unwrap().to_string();
    garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
    garage.cli(&["layout", "apply", "--version", "1"]);
    Some(garage)
}

/// The `garage` CLI on the node configured in `dir`: its output, or what
/// it said when it failed.
fn cli(dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(binary())
        .arg("-c")
        .arg(dir.join("garage.toml"))
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    match out.status.success() {
        true => Ok(text),
        false => Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr))),
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
