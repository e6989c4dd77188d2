//! SSH certificates made by OpenSSH's `ssh-keygen -s`, used by OpenSSH's
//! `sftp`: a user certificate of a trusted CA logs in for its principals,
//! its time and its source addresses, and nothing else does; a host
//! certificate lets a client that trusts its CA connect with strict host
//! checking and no known key. Each refused case comes from its own
//! loopback address, so that the failures do not add up to a ban.

use crate::common;
use common::gateway::OPENSSH_OPTIONS;
use common::served::{Process, Served, user};
use std::path::{Path, PathBuf};
use std::process::Command;

fn keygen(dir: &Path, args: &[&str]) {
    let out = Command::new("ssh-keygen")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("ssh-keygen (openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new ed25519 key `name` (and `name.pub`) in `dir`.
fn new_key(dir: &Path, name: &str) -> PathBuf {
    keygen(
        dir,
        &["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", name],
    );
    dir.join(name)
}

/// Signs `key`'s public half with `ca` as `ssh-keygen -s` does with
/// `options`; returns the certificate's path (`KEY-cert.pub`).
fn sign(dir: &Path, ca: &str, key: &Path, options: &[&str]) -> PathBuf {
    let public = format!("{}.pub", key.display());
    let mut args = vec!["-q", "-s", ca];
    args.extend_from_slice(options);
    args.push(&public);
    keygen(dir, &args);
    PathBuf::from(format!("{}-cert.pub", key.display()))
}

/// `sftp` as `user` from loopback address `from`, with `key` and its
/// certificate, running `put` of a file named `name`: whether it worked.
fn put_with(
    g: &Served,
    dir: &Path,
    from: &str,
    user: &str,
    key: &Path,
    cert: &Path,
    name: &str,
) -> bool {
    std::fs::write(dir.join(name), name.as_bytes()).unwrap();
    let batch = format!("{name}.batch");
    let out = sftp_batch(g, dir, &batch, &format!("put {name}\n"), key)
        .arg("-o")
        .arg(format!("CertificateFile={}", cert.display()))
        .args([
            "-o",
            &format!("BindAddress={from}"),
            "-o",
            "PreferredAuthentications=publickey",
        ])
        .args(OPENSSH_OPTIONS)
        .arg(format!("{user}@127.0.0.1"))
        .output()
        .expect("sftp (openssh-client)");
    out.status.success()
}

/// OpenSSH `sftp` to the gateway running `batch` (written to `name` in
/// `dir`) with the key `key`; the caller adds options and the destination.
fn sftp_batch(g: &Served, dir: &Path, name: &str, batch: &str, key: &Path) -> Command {
    let file = dir.join(name);
    std::fs::write(&file, batch).unwrap();
    let mut sftp = Command::new("sftp");
    sftp.current_dir(dir)
        .arg("-b")
        .arg(&file)
        .args(["-P", &g.sftp.port().to_string(), "-i"])
        .arg(key);
    sftp
}

/// A gateway with more `[sftp]` keys, serving `users`.
fn with_sftp(sftp: String, users: &str) -> Served {
    Served::start_limited(
        "",
        "",
        "",
        users,
        Process {
            sftp,
            ..Process::default()
        },
    )
}

fn stored(g: &Served, prefix: &str) -> Vec<String> {
    common::s3_state(&g.endpoint, &g.bucket, prefix).0
}

#[test]
fn user_certificates_log_in_for_their_principals_time_address_and_ca_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = new_key(dir, "ca");
    new_key(dir, "rogue");
    let ca_line = std::fs::read_to_string(dir.join("ca.pub")).unwrap();
    let key = new_key(dir, "id");
    let revoked = new_key(dir, "stolen");
    std::fs::write(
        dir.join("revoked"),
        format!(
            "# keys no one may use\n{}",
            std::fs::read_to_string(dir.join("stolen.pub")).unwrap()
        ),
    )
    .unwrap();
    let sftp = format!(
        "trusted_user_ca_keys = [{:?}]\nrevoked_keys = {:?}\n",
        ca_line.trim(),
        dir.join("revoked").display().to_string()
    );
    let users = format!(
        "{}\n[[users]]\nname = \"svc\"\nhome = \"store:/svc\"\ncert_principals = [\"partner-batch\"]\n",
        user("alice")
    );
    let g = with_sftp(sftp, &users);
    let ca = ca.to_str().unwrap();

    // Valid for an hour, for alice: logs in, and the login line names it.
    let good = sign(
        dir,
        ca,
        &key,
        &[
            "-I",
            "alice-laptop",
            "-n",
            "alice",
            "-V",
            "-5m:+1h",
            "-z",
            "42",
        ],
    );
    assert!(put_with(
        &g,
        dir,
        "127.0.0.1",
        "alice",
        &key,
        &good,
        "good.txt"
    ));
    assert_eq!(
        common::s3_object(&g.endpoint, &g.bucket, "alice/good.txt"),
        b"good.txt"
    );
    let line = g.log_line("\"message\":\"logged in\"");
    assert!(
        line.contains("\"key_id\":\"alice-laptop\"")
            && line.contains("\"serial\":42")
            && line.contains("\"method\":\"certificate\""),
        "{line}"
    );
    // A name mapped by cert_principals; a source-address that admits the client.
    let mapped = sign(
        dir,
        ca,
        &key,
        &[
            "-I",
            "batch",
            "-n",
            "partner-batch",
            "-O",
            "source-address=127.0.0.0/8",
        ],
    );
    assert!(put_with(
        &g,
        dir,
        "127.0.0.2",
        "svc",
        &key,
        &mapped,
        "mapped.txt"
    ));
    assert_eq!(stored(&g, "svc/"), ["svc/", "svc/mapped.txt"]);

    // Each refused, from an address of its own, with nothing written.
    let rogue = dir.join("rogue");
    let rogue = rogue.to_str().unwrap();
    let cases: [(&str, &str, &[&str], Option<&str>); 7] = [
        (
            "expired",
            ca,
            &["-n", "alice", "-V", "20200101:20200102"],
            None,
        ),
        ("early", ca, &["-n", "alice", "-V", "+1d:+2d"], None),
        (
            "principal",
            ca,
            &["-n", "bob"],
            Some("neither the user nor its cert_principals"),
        ),
        ("untrusted", rogue, &["-n", "alice"], Some("not trusted")),
        (
            "address",
            ca,
            &["-n", "alice", "-O", "source-address=10.9.9.9/32"],
            Some("does not admit"),
        ),
        (
            "option",
            ca,
            &["-n", "alice", "-O", "verify-required"],
            Some("which the gateway does not know"),
        ),
        ("revoked", ca, &["-n", "alice"], Some("its key is revoked")),
    ];
    let mut wrong = Vec::new();
    for (i, (case, signer, options, why)) in cases.iter().enumerate() {
        let mut with_id = vec!["-I", case];
        with_id.extend_from_slice(options);
        let holder = if *case == "revoked" { &revoked } else { &key };
        let cert = sign(dir, signer, holder, &with_id);
        let from = format!("127.0.1.{}", i + 1);
        let name = format!("{case}.txt");
        if put_with(&g, dir, &from, "alice", holder, &cert, &name) {
            wrong.push(format!("{case}: logged in"));
            continue;
        }
        // russh refuses a certificate out of its time before the gateway
        // is asked (and so before its log); the gateway says why for the rest.
        if let Some(why) = why {
            let failed = g.log_line(&format!("certificate \\\"{case}\\\""));
            if !failed.contains(why) {
                wrong.push(format!("{case}: {failed}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(stored(&g, "alice/"), ["alice/", "alice/good.txt"]);
}

/// The gateway's host key signed by a CA: OpenSSH with only
/// `@cert-authority` in its known_hosts and strict checking connects.
#[test]
fn a_host_certificate_is_trusted_through_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = new_key(dir, "host_ca");
    // The test gateways' host keys, signed before the gateway starts.
    common::host_keys_into(dir);
    let host = dir.join("keys/ssh_host_ed25519_key");
    let cert = sign(
        dir,
        ca.to_str().unwrap(),
        &host,
        &["-h", "-I", "gateway", "-n", "127.0.0.1"],
    );
    let sftp = format!("host_certificate = {:?}\n", cert.display().to_string());
    let mut alice = user("alice");
    let key = new_key(dir, "alice");
    alice.push_str(&format!(
        "authorized_keys = [{:?}]\n",
        std::fs::read_to_string(dir.join("alice.pub"))
            .unwrap()
            .trim()
    ));
    let g = with_sftp(sftp, &alice);
    let known = dir.join("known_hosts");
    let ca_line = std::fs::read_to_string(dir.join("host_ca.pub")).unwrap();
    std::fs::write(&known, format!("@cert-authority * {ca_line}")).unwrap();
    let connect = |known: &Path| {
        sftp_batch(&g, dir, "batch", "pwd\n", &key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .arg("alice@127.0.0.1")
            .output()
            .unwrap()
    };
    let out = connect(&known);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the CA line, strict checking refuses the same gateway.
    let empty = dir.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    assert!(!connect(&empty).status.success());
}

/// `revoked_keys` as a KRL made by `ssh-keygen -k`: certificates revoked
/// by serial and by key id, and a key revoked both inside a certificate
/// and as a plain authorized key; a certificate of the same CA not named
/// still logs in.
#[test]
fn a_key_revocation_list_revokes_by_serial_key_id_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = new_key(dir, "ca");
    let key = new_key(dir, "id");
    let stolen = new_key(dir, "stolen");
    std::fs::write(dir.join("spec"), "serial: 13\nid: lost-laptop\n").unwrap();
    keygen(
        dir,
        &["-q", "-k", "-f", "revoked.krl", "-s", "ca.pub", "spec"],
    );
    keygen(dir, &["-q", "-k", "-u", "-f", "revoked.krl", "stolen.pub"]);
    let line = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let sftp = format!(
        "trusted_user_ca_keys = [{:?}]\nrevoked_keys = {:?}\n",
        line("ca.pub"),
        dir.join("revoked.krl").display().to_string()
    );
    let users = format!(
        "{}\n[[users]]\nname = \"bob\"\nhome = \"store:/bob\"\nauthorized_keys = [{:?}]\n",
        user("alice"),
        line("stolen.pub")
    );
    let g = with_sftp(sftp, &users);
    let ca = ca.to_str().unwrap();
    let fine = sign(dir, ca, &key, &["-I", "desk", "-n", "alice", "-z", "14"]);
    assert!(put_with(
        &g,
        dir,
        "127.0.2.1",
        "alice",
        &key,
        &fine,
        "fine.txt"
    ));
    let mut wrong = Vec::new();
    let cases: [(&str, &Path, &[&str]); 3] = [
        ("by-serial", &key, &["-z", "13"]),
        ("lost-laptop", &key, &["-z", "15"]),
        ("stolen-key", &stolen, &["-z", "16"]),
    ];
    for (i, (id, holder, options)) in cases.iter().enumerate() {
        let mut args = vec!["-I", id, "-n", "alice"];
        args.extend_from_slice(options);
        let cert = sign(dir, ca, holder, &args);
        let from = format!("127.0.2.{}", i + 2);
        if put_with(&g, dir, &from, "alice", holder, &cert, &format!("{id}.txt")) {
            wrong.push(format!("{id}: logged in"));
        }
        let failed = g.log_line(&format!("certificate \\\"{id}\\\""));
        if !failed.contains("revoked") {
            wrong.push(format!("{id}: {failed}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The stolen key, as bob's own authorized key, is refused too.
    let out = sftp_batch(&g, dir, "bob.batch", "pwd\n", &stolen)
        .args(["-o", "BindAddress=127.0.2.9"])
        .args(OPENSSH_OPTIONS)
        .arg("bob@127.0.0.1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(stored(&g, "alice/"), ["alice/", "alice/fine.txt"]);
}

/// A user of the HTTP hook logs in by certificate with paramiko: the hook
/// is told the certificate's key id, serial and principals, and the
/// definition it answers maps the certificate's principal to the user.
#[tokio::test(flavor = "multi_thread")]
async fn a_hook_user_logs_in_by_certificate_with_paramiko() {
    let hook = common::receiver::Receiver::start().await;
    hook.answer_with(|q| match q["user"].as_str() {
        Some("henry") => (
            200,
            serde_json::json!({"home": "store:/hooked/henry", "permissions": ["*"],
                               "cert_principals": ["partner-x"]})
            .to_string(),
        ),
        _ => (404, String::new()),
    });
    let url = hook.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (g, script) = tokio::task::spawn_blocking(move || {
        let ca = new_key(&dir, "ca");
        let ca = ca.to_str().unwrap();
        let mapped = new_key(&dir, "mapped");
        sign(&dir, ca, &mapped, &["-I", "partner-laptop", "-n", "partner-x", "-z", "7"]);
        let other = new_key(&dir, "other");
        sign(&dir, ca, &other, &["-I", "elsewhere", "-n", "someone-else"]);
        let ca_line = std::fs::read_to_string(dir.join("ca.pub")).unwrap();
        let hooked = format!(
            "{}\n[auth]\ncache_time = \"0\"\n\n[auth.http]\nurl = \"{url}\"\nsecret = \"hook-secret\"\n",
            user("alice")
        );
        let g = with_sftp(
            format!("trusted_user_ca_keys = [{:?}]\n", ca_line.trim()),
            &hooked,
        );
        let script = format!(
            r#"
import io, paramiko
def put(name):
    key = paramiko.Ed25519Key.from_private_key_file("{dir}/" + name)
    key.load_certificate("{dir}/" + name + "-cert.pub")
    t = paramiko.Transport(("127.0.0.1", {port}))
    t.start_client()
    try:
        t.auth_publickey("henry", key)
        sftp = paramiko.SFTPClient.from_transport(t)
        sftp.putfo(io.BytesIO(name.encode()), name + ".txt")
        return "in"
    except paramiko.AuthenticationException:
        return "refused"
    finally:
        t.close()
print(put("mapped"), put("other"))
"#,
            dir = dir.display(),
            port = g.sftp.port()
        );
        (g, script)
    })
    .await
    .unwrap();
    let out = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "in refused",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asked = hook
        .requests()
        .into_iter()
        .find(|q| q.json()["certificate"]["key_id"] == "partner-laptop")
        .expect("the hook was asked about the certificate");
    assert_eq!(
        asked.json()["certificate"],
        serde_json::json!({"key_id": "partner-laptop", "serial": 7, "principals": ["partner-x"]})
    );
    assert_eq!(asked.json()["method"], "publickey");
    let line = g.log_line("\"message\":\"logged in\"");
    assert!(line.contains("\"key_id\":\"partner-laptop\""), "{line}");
    assert_eq!(
        stored(&g, "hooked/"),
        ["hooked/", "hooked/henry/", "hooked/henry/mapped.txt"]
    );
}
