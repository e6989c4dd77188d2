//! `bucketgate serve` as a child process, for what only a process shows:
//! signals, the JSON log, its own memory.

/// How the process runs: its limits (soft and hard alike), its log filter.
#[derive(Debug, Default, Clone)]
pub struct Process {
    /// `RUST_LOG`, as an operator may set it (default: the binary's own filter).
    pub rust_log: Option<&'static str>,
    /// RLIMIT_FSIZE: a write past it fails with EFBIG, as on a full disk.
    pub max_file: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// The bucket of another node (a fleet on one bucket); default: its own.
    pub bucket: Option<String>,
    /// More `[sftp]` keys (certificates); `{dir}` is the gateway's folder.
    pub sftp: String,
    /// Another S3 endpoint than the shared moto (with `bucket`).
    pub endpoint: Option<String>,
    /// The remote's `access_key_id` and `secret_access_key` as written;
    /// two empty strings leave both out (the credential chain).
    pub credentials: Option<(String, String)>,
    /// More environment variables of the process.
    pub env: Vec<(String, String)>,
}

/// `bucketgate serve` as a process, on a config file it can reload.
pub struct Served {
    pub child: std::process::Child,
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub bucket: String,
    pub sftp: std::net::SocketAddr,
    pub ftp: std::net::SocketAddr,
}

/// A config for [`Served`]; `server` are more `[server]` keys, `listeners`
/// keys for both `[sftp]` and `[ftp]`.
pub fn served_config(
    dir: &std::path::Path,
    endpoint: &str,
    bucket: &str,
    server: &str,
    listeners: &str,
    users: &str,
) -> String {
    let keys = Listeners {
        both: listeners,
        ftp: "",
        sftp: "",
    };
    served_config_ftp(dir, endpoint, bucket, server, keys, users)
}

/// Keys of the listener tables: for both `[sftp]` and `[ftp]`, and for each.
pub struct Listeners<'a> {
    pub both: &'a str,
    pub ftp: &'a str,
    pub sftp: &'a str,
}

/// As [`served_config`], with `ftp` keys for `[ftp]` alone.
pub fn served_config_ftp(
    dir: &std::path::Path,
    endpoint: &str,
    bucket: &str,
    server: &str,
    keys: Listeners<'_>,
    users: &str,
) -> String {
    let Listeners {
        both: listeners,
        ftp,
        sftp,
    } = keys;
    format!(
        r#"[server]
keys_dir = "{dir}/keys"
state_dir = "{dir}/state"
shutdown_grace = "5s"
{server}

[security]
ban_threshold = 2

[sftp]
listen = "127.0.0.1:0"
{listeners}
{sftp}

[ftp]
listen = "127.0.0.1:0"
passive_ports = "30000-39999"
tls_cert = "{dir}/ftps.pem"
tls_key = "{dir}/ftps.key"
{listeners}
{ftp}

{remote}

{users}
"#,
        dir = dir.display(),
        remote = super::s3_remote_toml(endpoint, bucket, "part_size = \"5MiB\""),
    )
}

pub fn user(name: &str) -> String {
    format!(
        "[[users]]\nname = \"{name}\"\npassword = \"{}\"\nhome = \"store:/{name}\"\n",
        super::gateway::HASH
    )
}

impl Served {
    pub fn start() -> Served {
        Served::start_with("", &user("alice"))
    }

    pub fn start_with(listeners: &str, users: &str) -> Served {
        Served::start_full("", listeners, users)
    }

    /// With more `[server]` keys too.
    pub fn start_full(server: &str, listeners: &str, users: &str) -> Served {
        Served::start_limited(server, listeners, "", users, Process::default())
    }

    /// As [`Served::start_full`], with `ftp` keys for `[ftp]` alone;
    /// `{dir}` in `users` is the gateway's own folder (for a filesystem
    /// remote), and the process runs as `limits` says.
    pub fn start_limited(
        server: &str,
        listeners: &str,
        ftp: &str,
        users: &str,
        limits: Process,
    ) -> Served {
        let endpoint = limits.endpoint.clone().unwrap_or_else(super::moto_endpoint);
        let bucket = limits.bucket.clone().unwrap_or_else(|| {
            let bucket = super::unique("served");
            super::create_bucket(&endpoint, &bucket);
            bucket
        });
        let dir = tempfile::tempdir().unwrap();
        super::host_keys_into(dir.path());
        let tls = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("ftps.pem"), tls.cert.pem()).unwrap();
        std::fs::write(dir.path().join("ftps.key"), tls.signing_key.serialize_pem()).unwrap();
        let config = dir.path().join("gateway.toml");
        let in_dir = |text: &str| text.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(
            &config,
            served_config_ftp(
                dir.path(),
                &endpoint,
                &bucket,
                server,
                Listeners {
                    both: listeners,
                    ftp: &in_dir(ftp),
                    sftp: &in_dir(&limits.sftp),
                },
                &in_dir(users),
            ),
        )
        .unwrap();
        if let Some((key_id, secret)) = &limits.credentials {
            let line = |key: &str, value: &str| match value {
                "" => String::new(),
                value => format!("{key} = {value:?}"),
            };
            let text = std::fs::read_to_string(&config).unwrap();
            let text = text
                .replace(
                    &format!("access_key_id = \"{}\"", super::ACCESS_KEY),
                    &line("access_key_id", key_id),
                )
                .replace(
                    &format!("secret_access_key = \"{}\"", super::SECRET_KEY),
                    &line("secret_access_key", secret),
                );
            std::fs::write(&config, text).unwrap();
        }
        let mut command = serve_command(dir.path());
        command.envs(limits.env.iter().map(|(k, v)| (k, v)));
        match limits.rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                let set = |resource, max: u64| {
                    let limit = libc::rlimit {
                        rlim_cur: max,
                        rlim_max: max,
                    };
                    match libc::setrlimit(resource, &limit) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                };
                if let Some(max) = limits.max_file {
                    // A write past the limit fails instead of killing the process.
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    set(libc::RLIMIT_FSIZE, max)?;
                }
                if let Some(max) = limits.open_files {
                    set(libc::RLIMIT_NOFILE, max)?;
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        let mut served = Served {
            child,
            dir,
            endpoint,
            bucket,
            sftp: "0.0.0.0:0".parse().unwrap(),
            ftp: "0.0.0.0:0".parse().unwrap(),
        };
        served.find_listeners();
        served
    }

    /// Kills the process (SIGKILL: nothing runs at exit) and starts it
    /// again on the same config and folder, its log started anew.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    /// SIGKILL, and waited for.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the gateway again on its config, after [`Served::kill`].
    pub fn restart(&mut self) {
        let old = self.dir.path().join("log");
        std::fs::rename(&old, self.dir.path().join("log.before")).unwrap();
        self.child = serve_command(self.dir.path()).spawn().unwrap();
        self.find_listeners();
    }

    fn find_listeners(&mut self) {
        self.sftp = self.listening("\"message\":\"SFTP listening\"");
        self.ftp = self.listening("\"message\":\"FTP listening\"");
    }

    /// Where the listener whose start logged `message` listens.
    pub fn listening(&self, message: &str) -> std::net::SocketAddr {
        let line = self.log_line(message);
        let at = line.find("\"listen\":\"").unwrap() + 10;
        line[at..line[at..].find('"').unwrap() + at]
            .parse()
            .unwrap()
    }

    /// The admin listener's address.
    pub fn admin(&self) -> std::net::SocketAddr {
        self.listening("admin endpoint listening")
    }

    /// Waits for the log line containing `text`.
    pub fn log_line(&self, text: &str) -> String {
        self.log_lines(text, 1).swap_remove(0)
    }

    /// Waits for `count` log lines containing `text`: the first `count`.
    pub fn log_lines(&self, text: &str, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap();
            let lines: Vec<String> = log
                .lines()
                .filter(|l| l.contains(text))
                .take(count)
                .map(str::to_string)
                .collect();
            if lines.len() == count {
                return lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not {count} {text:?} in\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn signal(&self, signal: i32) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    pub fn s3(&self, script: &str) -> String {
        super::boto3(
            &self.endpoint,
            &format!("bucket = '{}'\n{script}", self.bucket),
        )
    }
}

/// `bucketgate serve` on `dir/gateway.toml`, its JSON log to `dir/log`.
fn serve_command(dir: &std::path::Path) -> std::process::Command {
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bucketgate"));
    command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(dir.join("gateway.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(log);
    command
}

impl Served {
    /// The minor page faults the gateway process has taken so far.
    pub fn minor_faults(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // After the command name's closing parenthesis: state is field 3,
        // minflt field 10.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(7))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The resident memory of the gateway process now, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib << 10)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's resident memory until dropped; the highest seen.
pub struct PeakRss {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PeakRss {
    pub fn watch(pid: u32) -> PeakRss {
        use std::sync::atomic::Ordering;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .unwrap_or(0);
                p.fetch_max(kib << 10, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        PeakRss { peak, stop }
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
