//! A real PostgreSQL for the cluster tests: Debian's `postgresql`, one
//! server per test binary on a loopback port, in a temporary folder, and a
//! database of its own for each test. `initdb` refuses root, so as root
//! the server runs as the `postgres` user.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Server {
    port: u16,
    /// Kept for the process's life: the data folder.
    _dir: tempfile::TempDir,
}

/// The newest installed PostgreSQL's programs.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort_by_key(|p| {
        let version = p.parent().and_then(|v| v.file_name()).unwrap_or_default();
        version.to_string_lossy().parse::<u32>().unwrap_or(0)
    });
    found
        .pop()
        .expect("PostgreSQL must be installed for the cluster tests: scripts/test installs it")
}

/// The user the server runs as: `postgres` when we are root, else us.
fn server_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("the postgres user (Debian's postgresql package makes it)");
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().unwrap(), fields[3].parse().unwrap()))
}

fn as_server_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::init)
}

impl Server {
    /// A new server in a folder of its own, started.
    fn init() -> Server {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let init = as_server_user(Command::new(bin.join("initdb")).current_dir(dir.path()))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        for _ in 0..5 {
            let port = super::free_port();
            if start(&bin, dir.path(), &data, port) {
                return Server { port, _dir: dir };
            }
        }
        panic!("PostgreSQL did not start on any of 5 ports");
    }

    fn data(&self) -> PathBuf {
        self._dir.path().join("data")
    }
}

/// A PostgreSQL of one test's own, which it may stop and start again
/// (the shared one stays up for every other test).
pub struct Own(Server);

impl Own {
    pub fn start() -> Own {
        Own(Server::init())
    }

    /// The `postgres` database's URL.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.0.port
        )
    }

    /// Stops the server (fast: open connections are cut).
    pub fn stop(&self) {
        let out = as_server_user(&mut Command::new(bin_dir().join("pg_ctl")))
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.0.data())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again on its port.
    pub fn restart(&self) {
        assert!(
            start(&bin_dir(), self.0._dir.path(), &self.0.data(), self.0.port),
            "PostgreSQL did not start again"
        );
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        let _ = as_server_user(&mut Command::new(bin_dir().join("pg_ctl")))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.0.data())
            .output();
    }
}

/// Starts the server on `port` from a thread that lives as long as the
/// process (PR_SET_PDEATHSIG follows the spawning thread), so that it
/// dies with the tests; `false` if it exited (its port was taken).
fn start(bin: &std::path::Path, dir: &std::path::Path, data: &std::path::Path, port: u16) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let (bin, dir, data) = (bin.to_owned(), dir.to_owned(), data.to_owned());
    std::thread::spawn(move || {
        let log = std::fs::File::create(dir.join(format!("log.{port}"))).unwrap();
        let mut cmd = Command::new(bin.join("postgres"));
        as_server_user(&mut cmd)
            .current_dir(&dir)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
            ])
            .stdout(Stdio::null())
            .stderr(log);
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let _ = tx.send(());
        let _ = child.wait();
    });
    rx.recv().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ready = Command::new(bin_dir().join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A new, empty database of the test server: its `postgres://` URL.
pub async fn database() -> String {
    let port = tokio::task::spawn_blocking(|| server().port).await.unwrap();
    let name = super::unique("t").replace('-', "_");
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    format!("postgres://postgres@127.0.0.1:{port}/{name}?sslmode=disable")
}
