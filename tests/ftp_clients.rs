//! FTP clients partners use, end to end against the gateway in front of S3
//! on loopback: lftp (GnuTLS, mirror both ways), curl (OpenSSL; upload,
//! download, `-C -` resume) and Python's ftplib (which never resumes TLS
//! sessions). CI installs lftp; curl and Python are there.

mod common;

use common::gateway::*;
use common::{pattern, run};
use std::path::Path;

const MIB: usize = 1 << 20;

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// lftp over explicit FTPS (`ftp:ssl-force`, certificate checked): `mirror
/// -R` of a tree with nested and empty folders, then `mirror` back, equal
/// by `diff -r`.
#[tokio::test(flavor = "multi_thread")]
async fn lftp_mirrors_a_tree_both_ways_over_tls() {
    let g = start("").await;
    let d = g.dir.path();
    let up = d.join("up");
    write(&up.join("top.bin"), &pattern(7 * MIB + 11, 1));
    write(&up.join("a/b/c.txt"), b"three levels down\n");
    write(&up.join("a/name with spaces.txt"), b"spaces\n");
    std::fs::create_dir_all(up.join("a/empty")).unwrap();
    std::fs::create_dir_all(up.join("void")).unwrap();
    let script = format!(
        "set ftp:ssl-force true\n\
         set ftp:ssl-protect-data true\n\
         set ssl:ca-file {ca}\n\
         set ssl:check-hostname no\n\
         set net:max-retries 1\n\
         open -u alice,{PASSWORD} -p {port} 127.0.0.1\n\
         mirror -R {up} tree\n\
         mirror tree {down}\n\
         cls -1 tree/a\n\
         bye\n",
        ca = d.join("ftps.pem").display(),
        port = g.ftp.port(),
        up = up.display(),
        down = d.join("down").display(),
    );
    let (ok, out, err) = run("lftp", &["-c", &script]).await;
    assert!(ok, "lftp failed:\n{out}\n{err}");
    let (same, diff, _) = run(
        "diff",
        &["-r", up.to_str().unwrap(), d.join("down").to_str().unwrap()],
    )
    .await;
    assert!(same, "the tree came back different:\n{diff}");
    assert!(d.join("down/a/empty").is_dir() && d.join("down/void").is_dir());
    let keys = g.s3(
        "print(sorted(o['Key'] for o in s3.list_objects_v2(Bucket=bucket, Prefix='alice/tree/')['Contents']))",
    );
    for key in [
        "alice/tree/a/empty/",
        "alice/tree/void/",
        "alice/tree/a/b/c.txt",
        "alice/tree/top.bin",
    ] {
        assert!(
            keys.contains(&format!("'{key}'")),
            "{key} missing from {keys}"
        );
    }
    g.stop().await;
}

/// curl over explicit FTPS (`--ssl-reqd`, certificate checked): upload,
/// download, and `-C -` resume of both an upload and a download.
#[tokio::test(flavor = "multi_thread")]
async fn curl_uploads_downloads_and_resumes() {
    let g = start("").await;
    let d = g.dir.path();
    let data = pattern(11 * MIB + 3, 2);
    write(&d.join("full.bin"), &data);
    write(&d.join("head.bin"), &data[..6 * MIB]);
    let url = |name: &str| format!("ftp://127.0.0.1:{}/{name}", g.ftp.port());
    let ca = d.join("ftps.pem");
    let curl = |extra: Vec<String>| {
        let mut args: Vec<String> = [
            "-sS",
            "--ssl-reqd",
            "--cacert",
            ca.to_str().unwrap(),
            "--user",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("alice:{PASSWORD}"));
        args.extend(extra);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, out, err) = run("curl", &args).await;
            assert!(ok, "curl {args:?} failed: {out} {err}");
            out
        }
    };
    let s = |x: &str| x.to_string();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    // Upload into a new folder, and download.
    curl(vec![
        s("--ftp-create-dirs"),
        s("-T"),
        path(&d.join("full.bin")),
        url("in/plain.bin"),
    ])
    .await;
    curl(vec![
        s("-o"),
        path(&d.join("plain.out")),
        url("in/plain.bin"),
    ])
    .await;
    assert!(std::fs::read(d.join("plain.out")).unwrap() == data);
    // Upload resume: the first 6 MiB are there; -C - sends the rest.
    curl(vec![
        s("-T"),
        path(&d.join("head.bin")),
        url("in/resumed.bin"),
    ])
    .await;
    curl(vec![
        s("-C"),
        s("-"),
        s("-T"),
        path(&d.join("full.bin")),
        url("in/resumed.bin"),
    ])
    .await;
    // Download resume: a local partial file is completed.
    write(&d.join("partial.out"), &data[..3 * MIB]);
    curl(vec![
        s("-C"),
        s("-"),
        s("-o"),
        path(&d.join("partial.out")),
        url("in/resumed.bin"),
    ])
    .await;
    assert!(
        std::fs::read(d.join("partial.out")).unwrap() == data,
        "resumed download differs"
    );
    // The listing names both.
    let listing = curl(vec![s("-l"), url("in/")]).await;
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort();
    assert_eq!(names, ["plain.bin", "resumed.bin"]);
    // Implicit-style URL against the explicit port fails cleanly, and a wrong password is refused.
    let (ok, _, err) = run(
        "curl",
        &[
            "-sS",
            "--user",
            "alice:wrong",
            &url("in/plain.bin"),
            "-o",
            "/dev/null",
        ],
    )
    .await;
    assert!(!ok && err.contains("530"), "{err}");
    g.stop().await;
}

/// Python's ftplib never resumes the control connection's TLS session on
/// data connections; transfers must work anyway.
#[tokio::test(flavor = "multi_thread")]
async fn python_ftplib_over_tls_without_resumption() {
    let g = start("").await;
    let d = g.dir.path();
    let data = pattern(2 * MIB + 9, 3);
    write(&d.join("py.bin"), &data);
    let script = format!(
        r#"
import ftplib, ssl, io
ctx = ssl.create_default_context(cafile="{ca}")
ctx.check_hostname = False
f = ftplib.FTP_TLS(context=ctx)
f.connect("127.0.0.1", {port})
f.login("alice", "{PASSWORD}")
f.prot_p()
with open("{d}/py.bin", "rb") as src:
    f.storbinary("STOR py.bin", src)
out = io.BytesIO()
f.retrbinary("RETR py.bin", out.write)
open("{d}/py.out", "wb").write(out.getvalue())
print(f.size("py.bin"), sorted(f.nlst()))
f.quit()
"#,
        ca = d.join("ftps.pem").display(),
        port = g.ftp.port(),
        d = d.display(),
    );
    let (ok, out, err) = run("python3", &["-c", &script]).await;
    assert!(ok, "ftplib failed:\n{out}\n{err}");
    assert_eq!(out.trim(), format!("{} ['py.bin', 'shared']", data.len()));
    assert!(std::fs::read(d.join("py.out")).unwrap() == data);
    g.stop().await;
}
