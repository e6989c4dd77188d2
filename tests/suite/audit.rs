//! The audit trail as an operator reads it: one JSON line per file
//! operation, the same for SFTP and FTP, from the gateway's own log.

use crate::common;

use common::gateway::{self, PASSWORD};
use common::served::Served;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use serde_json::Value;
use tokio::net::TcpStream;

/// The fields of one audit line an operator relies on: the session's
/// protocol, then operation, path, destination, bytes, the upload's
/// SHA-256 and result.
type Line = (
    String,
    String,
    String,
    Option<String>,
    Option<u64>,
    Option<String>,
    String,
);

fn audit_lines(served: &Served) -> Vec<Line> {
    let log = std::fs::read_to_string(served.dir.path().join("log")).unwrap();
    log.lines()
        .filter(|l| l.contains("\"target\":\"audit\""))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let f = &v["fields"];
            let mut keys: Vec<&str> = f.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            keys.sort();
            // Exactly these fields: a line that gained or lost one reads differently.
            let mut expected = vec!["ms", "op", "path", "result"];
            expected.extend(f.get("to").map(|_| "to"));
            expected.extend(f.get("bytes").map(|_| "bytes"));
            expected.extend(f.get("sha256").map(|_| "sha256"));
            expected.sort();
            assert_eq!(keys, expected, "{l}");
            assert!(f["ms"].is_u64(), "{l}");
            let s = |k: &str| f[k].as_str().map(str::to_string);
            (
                v["span"]["protocol"].as_str().unwrap_or("").to_string(),
                s("op").unwrap(),
                s("path").unwrap(),
                s("to"),
                f["bytes"].as_u64(),
                s("sha256"),
                s("result").unwrap(),
            )
        })
        .collect()
}

fn line(protocol: &str, op: &str, path: &str, to: Option<&str>, bytes: Option<&[u8]>) -> Line {
    use sha2::Digest;
    (
        protocol.into(),
        op.into(),
        path.into(),
        to.map(str::to_string),
        bytes.map(|b| b.len() as u64),
        bytes.map(|b| bucketgate::base::hex(&sha2::Sha256::digest(b))),
        "ok".into(),
    )
}

/// An upload, a rename and a delete over SFTP, then over FTP: one line
/// each, in order, with the same fields on both protocols; an upload's
/// line carries the SHA-256 of the bytes it stored.
#[tokio::test(flavor = "multi_thread")]
async fn sftp_and_ftp_write_the_same_audit_lines() {
    let served = Served::start();
    let data = b"hello audit";

    let stream = TcpStream::connect(served.sftp).await.unwrap();
    let h = gateway::ssh_password(stream, "alice", PASSWORD)
        .await
        .unwrap();
    let s = gateway::sftp(&h).await;
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let handle = s
        .open("/s.txt", flags, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    s.write(&handle, 0, data.to_vec()).await.unwrap();
    s.close(handle).await.unwrap();
    s.rename("/s.txt", "/s2.txt").await.unwrap();
    s.remove("/s2.txt").await.unwrap();

    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect(served.ftp)
        .await
        .unwrap();
    ftp.login("alice", PASSWORD).await.unwrap();
    ftp.put_file("f.txt", &mut &data[..]).await.unwrap();
    ftp.rename("f.txt", "f2.txt").await.unwrap();
    ftp.rm("f2.txt").await.unwrap();
    ftp.quit().await.unwrap();

    served.log_line("\"op\":\"remove\",\"path\":\"/f2.txt\"");
    let n = Some(&data[..]);
    assert_eq!(
        audit_lines(&served),
        vec![
            line("sftp", "upload", "/s.txt", None, n),
            line("sftp", "rename", "/s.txt", Some("/s2.txt"), None),
            line("sftp", "remove", "/s2.txt", None, None),
            line("ftp", "upload", "/f.txt", None, n),
            line("ftp", "rename", "/f.txt", Some("/f2.txt"), None),
            line("ftp", "remove", "/f2.txt", None, None),
        ]
    );
}
