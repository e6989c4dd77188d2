//! End to end with the OpenSSH `sftp` program in batch mode, as partner
//! scripts run it. CI installs openssh-client.

use crate::common;

use common::gateway::*;
use common::pattern;
use std::path::Path;
use std::process::Output;

const MIB: usize = 1 << 20;

/// Runs `sftp -b` with `commands` as alice, logging in with her key.
async fn sftp_batch(g: &TestGateway, commands: &str) -> Output {
    let batch = g.dir.path().join("batch");
    std::fs::write(&batch, commands).unwrap();
    let port = g.addr.port().to_string();
    let key = g.key_file.clone();
    let mut cmd = tokio::process::Command::new("sftp");
    cmd.current_dir(g.dir.path())
        .args(["-b", batch.to_str().unwrap(), "-P", &port, "-i"])
        .arg(&key)
        .args(OPENSSH_OPTIONS)
        .arg("alice@127.0.0.1");
    cmd.output()
        .await
        .expect("OpenSSH sftp must be installed (apt-get install openssh-client)")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "sftp failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn openssh_sftp_batch_session() {
    let g = start("part_size = \"5MiB\"\n").await;
    let d = g.dir.path();
    let data = pattern(24 * MIB + 5, 21);
    write(d, "up.bin", &data);
    let out = ok(&sftp_batch(
        &g,
        "mkdir inbox\n\
         put -p up.bin inbox/up.bin\n\
         get inbox/up.bin down.bin\n\
         ls -l inbox\n\
         ls -l\n\
         rename inbox/up.bin inbox/renamed.bin\n\
         df\n\
         mkdir empty\n\
         rmdir empty\n",
    )
    .await);
    assert!(read(d, "down.bin") == data, "downloaded bytes differ");
    assert!(
        out.lines().any(|l| l.starts_with("-rw-r--r--")
            && l.ends_with("up.bin")
            && l.contains(&data.len().to_string())),
        "ls -l of a file:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("drwxr-xr-x") && l.ends_with("inbox")),
        "ls -l of a folder:\n{out}"
    );
    assert!(
        out.contains("Avail"),
        "df answered through statvfs@openssh.com:\n{out}"
    );

    // posix-rename replaces; the old name is gone.
    write(d, "other.txt", b"other");
    ok(&sftp_batch(&g, "put other.txt inbox/other.txt\nrename inbox/other.txt inbox/renamed.bin\nget inbox/renamed.bin back.txt\n").await);
    assert_eq!(read(d, "back.txt"), b"other");

    // A failing command fails the batch (OpenSSH prints the status code,
    // not the server's message; the russh tests check the message).
    let out = sftp_batch(&g, "rmdir inbox\n").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("remote rmdir \"/inbox\": Failure"), "{err}");

    // reput: the first 7 MiB are there (S3 copies them), the rest follows.
    write(d, "part.bin", &data[..7 * MIB]);
    ok(&sftp_batch(&g, "put part.bin inbox/resumed.bin\nreput up.bin inbox/resumed.bin\nget inbox/resumed.bin resumed.bin\n").await);
    assert!(read(d, "resumed.bin") == data, "resumed upload differs");

    ok(&sftp_batch(
        &g,
        "rm inbox/renamed.bin\nrm inbox/resumed.bin\nrmdir inbox\n",
    )
    .await);
    let left = g.s3(
        "print(sorted(o['Key'] for o in s3.list_objects_v2(Bucket=bucket).get('Contents', [])))",
    );
    assert_eq!(
        left.trim(),
        "['alice/']",
        "everything removed, the home marker stays"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn openssh_wrong_password_is_refused() {
    let g = start("").await;
    let askpass = g.dir.path().join("askpass.sh");
    std::fs::write(&askpass, "#!/bin/sh\necho not-the-password\n").unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let out = tokio::process::Command::new("sftp")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .args(["-P", &g.addr.port().to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=1",
            "alice@127.0.0.1",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    g.stop().await;
}

/// OpenSSH 9's `scp` speaks SFTP and exits with the status the server
/// sends when the subsystem ends: without one it printed nothing and exited
/// 1 after every whole transfer, failing every cron job that uses it.
#[tokio::test(flavor = "multi_thread")]
async fn openssh_scp_over_sftp_exits_zero() {
    let g = start("part_size = \"5MiB\"\n").await;
    let d = g.dir.path();
    let data = pattern(6 * MIB + 77, 5);
    write(d, "up.bin", &data);
    let port = g.addr.port().to_string();
    let scp = |from: String, to: String| {
        let mut cmd = tokio::process::Command::new("scp");
        // -v: a failure shows what ssh saw (the exit status it got).
        cmd.current_dir(d)
            .args(["-v", "-P", &port, "-i"])
            .arg(&g.key_file)
            .args(OPENSSH_OPTIONS)
            .args([from, to]);
        cmd
    };
    let up = scp("up.bin".into(), "alice@127.0.0.1:up.bin".into())
        .output()
        .await
        .expect("OpenSSH scp must be installed (openssh-client)");
    assert!(
        up.status.success(),
        "scp upload: {}\n{}",
        up.status,
        String::from_utf8_lossy(&up.stderr)
    );
    let stored = g.s3("print(s3.head_object(Bucket=bucket, Key='alice/up.bin')['ContentLength'])");
    assert_eq!(stored.trim(), data.len().to_string());
    let down = scp("alice@127.0.0.1:up.bin".into(), "down.bin".into())
        .output()
        .await
        .unwrap();
    assert!(
        down.status.success(),
        "scp download: {}\n{}",
        down.status,
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(read(d, "down.bin") == data, "downloaded bytes differ");
    // A failure is still a failure.
    let missing = scp("alice@127.0.0.1:missing.bin".into(), "m.bin".into())
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());
    g.stop().await;
}

/// The SFTP channel's exit status goes out before its EOF, as sshd sends
/// them. OpenSSH's `ssh` closes a channel once both sides have sent EOF,
/// and the server answers a CLOSE at once: an exit status sent after the
/// EOF was lost whenever that CLOSE crossed it, and `scp` then exited 1
/// after a whole upload (now and then, on a busy machine).
#[tokio::test(flavor = "multi_thread")]
async fn an_sftp_channel_s_exit_status_comes_before_its_eof() {
    let g = start("").await;
    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let h = ssh_password(stream, "alice", PASSWORD).await.unwrap();
    let mut channel = h.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    // SSH_FXP_INIT, version 3; then the client's end of a clean session.
    channel
        .data(&[0, 0, 0, 5, 1, 0, 0, 0, 3][..])
        .await
        .unwrap();
    channel.eof().await.unwrap();
    let mut seen = Vec::new();
    while let Some(msg) = channel.wait().await {
        match msg {
            russh::ChannelMsg::ExitStatus { exit_status } => {
                seen.push(format!("exit-status {exit_status}"))
            }
            russh::ChannelMsg::Eof => seen.push("eof".into()),
            russh::ChannelMsg::Close => seen.push("close".into()),
            _ => {}
        }
    }
    assert_eq!(seen, ["exit-status 0", "eof", "close"]);
    g.stop().await;
}
