//! The command line as an operator uses it: the real binary, real files.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bucketgate");

#[test]
fn check_config_accepts_the_shipped_file() {
    let out = Command::new(BIN)
        .args([
            "check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[remotes.local]\nkind = \"filesystem\"\nroot = \"data\"\n\n[[users]]\nname = \"x\"\npassword = \"plain\"\nhome = \"nope:/x\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(
        err.contains("bad.toml:line 7: users[0].password: plain-text"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:line 8: users[0].home: names unknown remote \"nope\""),
        "{err}"
    );
}

/// check-config reads the FTPS certificate and key as serve would, and
/// names the file that is wrong.
#[test]
fn check_config_reads_the_ftps_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    let cert = dir.path().join("ftps.pem");
    let key = dir.path().join("ftps.key");
    let tls = format!(
        "passive_host = \"auto\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    );
    std::fs::write(&path, shipped.replace("passive_host = \"auto\"", &tls)).unwrap();
    let check = || {
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let (code, err) = check();
    assert_eq!(code, Some(1));
    assert!(
        err.contains("ftp.tls_cert")
            && err.contains("ftps.pem")
            && err.contains("no PEM certificate"),
        "{err}"
    );
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    let (code, err) = check();
    assert_eq!(code, Some(1));
    assert!(
        err.contains("ftp.tls_key") && err.contains("ftps.key"),
        "{err}"
    );
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    assert_eq!(check(), (Some(0), String::new()));
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["check-config", "--config", "/nonexistent/gateway.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

#[test]
fn hash_password_reads_one_line_from_stdin() {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(bucketgate::auth::verify_password(
        hash.trim(),
        "correct horse"
    ));
    assert!(!bucketgate::auth::verify_password(
        hash.trim(),
        "correct horse\n"
    ));
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "check-config", "hash-password"] {
        assert!(help.contains(cmd), "{help}");
    }
}

/// Runs `serve` until it reports that it runs, then SIGTERM; returns its log
/// lines up to that point.
fn serve_once(dir: &std::path::Path, config: &std::path::Path) -> Vec<String> {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .current_dir(dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let done = line.contains("bucketgate is running");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.last()
            .is_some_and(|l| l.contains("bucketgate is running")),
        "serve never reported that it runs: {seen:#?}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    seen
}

fn fingerprints(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.contains("SSH host key") && l.contains("fingerprint"))
        .filter_map(|l| {
            l.split("SHA256:")
                .nth(1)
                .map(|f| f.split_whitespace().next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn serve_starts_on_the_shipped_config_and_stops_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    // Any free port, so a gateway already running here does not matter.
    let free = shipped
        .replace("127.0.0.1:2222", "127.0.0.1:0")
        .replace("127.0.0.1:2121", "127.0.0.1:0");
    std::fs::write(&config, free).unwrap();
    let first = serve_once(dir.path(), &config);
    assert!(
        dir.path().join("data").is_dir(),
        "the filesystem remote's root is created"
    );
    for key in ["ssh_host_ed25519_key", "ssh_host_rsa_key"] {
        let mode = std::fs::metadata(dir.path().join("keys").join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let keys = fingerprints(&first);
    assert_eq!(
        keys.len(),
        2,
        "both host keys' fingerprints are logged: {first:#?}"
    );
    let second = serve_once(dir.path(), &config);
    assert_eq!(
        fingerprints(&second),
        keys,
        "host keys are reused, not regenerated"
    );
}

/// A listener that believes PROXY headers must say whose: a config problem,
/// so serve and check-config both report it.
#[test]
fn serve_refuses_the_proxy_protocol_without_proxy_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    let text = shipped
        .replace(
            "listen = \"127.0.0.1:2222\"",
            "listen = \"127.0.0.1:0\"\nproxy_protocol = \"required\"",
        )
        .replace("127.0.0.1:2121", "127.0.0.1:0");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let problem = "sftp.proxy_allowed: is empty: with proxy_protocol on, list the addresses of the load balancers that send the PROXY header";
    assert!(err.contains(problem), "{err}");
    // check-config says the same.
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(problem), "{err}");
}
