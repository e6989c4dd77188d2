//! What the operator reads at 3 a.m.: a whole workflow of ordinary
//! clients (lftp, curl, wget, Python's ftplib and paramiko), their usual
//! misses (a folder that exists, a path that does not), a TLS client that
//! leaves without close_notify, a balancer's TCP probe on every port and a
//! reset connection, against `bucketgate serve` as a process. None of it
//! is a fault: the log holds no WARN or ERROR line, and no line over 1 KiB
//! (a span prints who and where, never a struct).

use crate::common;

use common::gateway::PASSWORD;
use common::run;
use common::served::{Process, Served, user};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A connect and a close, as a TCP health check does; with `reset`, an
/// RST instead of a FIN.
async fn probe(addr: std::net::SocketAddr, reset: bool) {
    let stream = TcpStream::connect(addr).await.unwrap();
    if reset {
        reset_on_drop(&stream);
    }
    drop(stream);
}

/// SO_LINGER 0: the close sends an RST (and does not block, the reason
/// tokio deprecates `set_linger` for other values).
#[allow(deprecated)]
fn reset_on_drop(stream: &TcpStream) {
    stream.set_linger(Some(Duration::ZERO)).unwrap();
}

/// The implicit FTPS address from the "FTP listening" line.
fn implicit_addr(served: &Served) -> std::net::SocketAddr {
    let line = served.log_line("\"message\":\"FTP listening\"");
    let at = line.find("Some(").expect("implicit_listen in the line") + 5;
    line[at..at + line[at..].find(')').unwrap()]
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn ordinary_clients_leave_no_warning_in_the_log() {
    let mut served = Served::start_limited(
        "",
        "",
        "implicit_listen = \"127.0.0.1:0\"",
        &user("alice"),
        // As an operator who wants the details: libunftp's own lines too.
        Process {
            rust_log: Some("info"),
            ..Default::default()
        },
    );
    let d = served.dir.path().to_path_buf();
    let implicit = implicit_addr(&served);
    let ftp = served.ftp.port().to_string();
    std::fs::write(d.join("f.txt"), b"hello").unwrap();
    std::fs::create_dir_all(d.join("tree/sub")).unwrap();
    std::fs::write(d.join("tree/a.txt"), b"a").unwrap();
    std::fs::write(d.join("tree/sub/b.txt"), b"b").unwrap();

    // lftp over explicit FTPS: mirror up and back, a listing, a missing folder.
    let lftp = format!(
        "set ssl:verify-certificate no; set ftp:ssl-force true; set net:max-retries 1; \
         open -u alice,{PASSWORD} -p {ftp} 127.0.0.1; \
         mirror -R {d}/tree /tree; mirror /tree {d}/back; ls /tree; \
         mkdir /tree; cd /nowhere; put {d}/f.txt -o /tree/f.txt; bye",
        d = d.display()
    );
    let (_, out, err) = run("lftp", &["-c", &lftp]).await;
    assert_eq!(
        std::fs::read(d.join("back/sub/b.txt")).ok().as_deref(),
        Some(&b"b"[..]),
        "lftp mirror:\n{out}\n{err}"
    );

    // curl: upload, download, listing, and a missing file.
    let user = format!("alice:{PASSWORD}");
    let base = format!("ftp://127.0.0.1:{ftp}");
    let up = d.join("f.txt");
    let (ok, _, err) = run(
        "curl",
        &[
            "-sS",
            "--ssl-reqd",
            "-k",
            "-u",
            &user,
            "-T",
            up.to_str().unwrap(),
            &format!("{base}/c.txt"),
        ],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, got, err) = run(
        "curl",
        &[
            "-sS",
            "--ssl-reqd",
            "-k",
            "-u",
            &user,
            &format!("{base}/c.txt"),
        ],
    )
    .await;
    assert!(ok && got == "hello", "{got} {err}");
    let (ok, _, _) = run(
        "curl",
        &["-sS", "-u", &user, &format!("{base}/missing.txt")],
    )
    .await;
    assert!(!ok);
    let (ok, _, err) = run("curl", &["-sS", "-u", &user, &format!("{base}/")]).await;
    assert!(ok, "{err}");

    // wget over FTPS, which closes the TLS connection without close_notify.
    let (ok, _, err) = run(
        "wget",
        &[
            "-q",
            "--no-check-certificate",
            "-O",
            d.join("w.txt").to_str().unwrap(),
            &format!("ftps://alice:{PASSWORD}@127.0.0.1:{ftp}/c.txt"),
        ],
    )
    .await;
    assert!(ok, "wget: {err}");
    assert_eq!(std::fs::read(d.join("w.txt")).unwrap(), b"hello");

    // ftplib: the misses clients make every day, and OPTS MLST.
    let script = format!(
        r#"
import ftplib, ssl
def misses(f):
    for cmd in ["MKD /tree", "CWD /nowhere", "SIZE /nowhere.txt", "MDTM /nowhere.txt", "RMD /nowhere", "DELE /nowhere.txt"]:
        try:
            f.sendcmd(cmd)
        except ftplib.error_perm:
            pass
    try:
        f.retrlines("LIST /nowhere", lambda l: None)
    except ftplib.error_perm:
        pass
    print(f.sendcmd("OPTS MLST type;size;modify;"))
    print(sorted(n for n, _ in f.mlsd("/tree")))
    f.quit()
f = ftplib.FTP()
f.connect("127.0.0.1", {ftp})
f.login("alice", "{PASSWORD}")
misses(f)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
f = ftplib.FTP_TLS(context=ctx)
f.connect("127.0.0.1", {ftp})
f.login("alice", "{PASSWORD}")
f.prot_p()
misses(f)
"#
    );
    let (ok, out, err) = run("python3", &["-c", &script]).await;
    assert!(ok, "ftplib:\n{out}\n{err}");
    assert!(out.contains("200 MLST OPTS type;size;modify;"), "{out}");

    // paramiko: a session with the usual misses.
    let script = format!(
        r#"
import paramiko
t = paramiko.Transport(("127.0.0.1", {sftp}))
t.connect(username="alice", password="{PASSWORD}")
s = paramiko.SFTPClient.from_transport(t)
for call in [lambda: s.stat("nowhere"), lambda: s.listdir("nowhere"), lambda: s.mkdir("tree"), lambda: s.remove("nowhere")]:
    try:
        call()
    except IOError:
        pass
print(sorted(s.listdir("tree")))
t.close()
"#,
        sftp = served.sftp.port()
    );
    let (ok, out, err) = run("python3", &["-c", &script]).await;
    assert!(ok, "paramiko:\n{out}\n{err}");

    // Balancers' probes: a connect and close on every port, a reset on each.
    for addr in [served.sftp, served.ftp, implicit] {
        probe(addr, false).await;
        probe(addr, true).await;
    }
    // An implicit FTPS client that leaves after its handshake, without close_notify.
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port})))
print(s.recv(100).decode().strip())
s.close()  # Python's ssl sends no close_notify unless unwrap() is called
"#,
        port = implicit.port()
    );
    let (ok, out, err) = run("python3", &["-c", &script]).await;
    assert!(ok && out.starts_with("220"), "{out}\n{err}");
    // A greeting read on the plain port, then a reset.
    let mut stream = TcpStream::connect(served.ftp).await.unwrap();
    let mut greeting = [0u8; 3];
    stream.read_exact(&mut greeting).await.unwrap();
    reset_on_drop(&stream);
    drop(stream);

    served.signal(libc::SIGTERM);
    let status = served.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(d.join("log")).unwrap();
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        loud.is_empty(),
        "{} WARN or ERROR lines:\n{}",
        loud.len(),
        loud.join("\n")
    );
    let long: Vec<&str> = log.lines().filter(|l| l.len() > 1024).collect();
    assert!(
        long.is_empty(),
        "{} lines over 1 KiB:\n{}",
        long.len(),
        long.join("\n")
    );
    assert!(log.contains("\"message\":\"session ended\""), "{log}");
}
