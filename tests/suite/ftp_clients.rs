//! FTP clients partners use, end to end against the gateway in front of S3
//! on loopback: lftp (GnuTLS, mirror both ways), curl (OpenSSL; upload,
//! download, `-C -` resume) and Python's ftplib (which never resumes TLS
//! sessions). CI installs lftp; curl and Python are there.

use crate::common;

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

/// Every command that takes a path resolves a relative one against the
/// working directory (MLST used the path as given, from `/`), and `ls`
/// options before a LIST or NLST path are not part of it.
#[tokio::test(flavor = "multi_thread")]
async fn relative_paths_and_ls_options_with_ftplib() {
    let g = start("").await;
    let d = g.dir.path();
    write(&d.join("f.txt"), b"hello");
    let script = format!(
        r#"
import ftplib, io
f = ftplib.FTP()
f.connect("127.0.0.1", {port})
f.login("alice", "{PASSWORD}")
def say(label, call):
    try:
        print(label, call())
    except ftplib.all_errors as e:
        print(label, "ERR", e)
say("mkd-abs", lambda: f.mkd("/in"))
say("cwd", lambda: f.cwd("in"))
say("mkd", lambda: f.mkd("sub"))
say("stor", lambda: f.storbinary("STOR f.txt", open("{d}/f.txt", "rb")))
say("appe", lambda: f.storbinary("APPE f.txt", io.BytesIO(b" world")))
say("size", lambda: f.size("f.txt"))
say("mdtm", lambda: f.sendcmd("MDTM f.txt")[:3])
say("mfmt", lambda: f.sendcmd("MFMT 20200102030405 f.txt")[:3])
say("mlst", lambda: f.sendcmd("MLST f.txt").splitlines()[1])
say("hash", lambda: f.sendcmd("HASH f.txt")[:3])
out = io.BytesIO()
say("retr", lambda: f.retrbinary("RETR f.txt", out.write) and out.getvalue())
say("nlst", lambda: sorted(f.nlst()))
say("nlst-1", lambda: sorted(f.nlst("-1")))
say("nlst-a", lambda: sorted(f.nlst("-a")))
say("nlst-1-sub", lambda: f.nlst("-1", "sub"))
lines = []
say("list-la", lambda: f.retrlines("LIST -la", lines.append)[:3])
print("listed", sorted(l.split()[-1] for l in lines))
say("mlsd", lambda: sorted(n for n, _ in f.mlsd("sub")))
say("rnfr", lambda: f.sendcmd("RNFR f.txt")[:3])
say("rnto", lambda: f.sendcmd("RNTO sub/g.txt")[:3])
say("cwd-sub", lambda: f.cwd("sub/"))
say("pwd", lambda: f.pwd())
say("mlst-up", lambda: f.sendcmd("MLST ../sub/g.txt").splitlines()[1])
say("cwd-up", lambda: f.cwd(".."))
say("opts", lambda: f.sendcmd("OPTS MLST type;size;"))
say("feat", lambda: [l.strip() for l in f.sendcmd("FEAT").splitlines() if "MLST" in l])
say("mlst-chosen", lambda: f.sendcmd("MLST sub/g.txt").splitlines()[1])
say("dele", lambda: f.delete("sub/g.txt"))
say("rmd", lambda: f.rmd("sub"))
say("mkd-quote", lambda: f.mkd('say "hi"'))
say("cwd-quote", lambda: f.cwd('say "hi"'))
say("pwd-quote", lambda: f.pwd())
say("mlst-missing", lambda: f.sendcmd("MLST gone.txt"))
f.quit()
"#,
        port = g.ftp.port(),
        d = d.display(),
    );
    let (ok, out, err) = run("python3", &["-c", &script]).await;
    assert!(ok, "ftplib failed:\n{out}\n{err}");
    let said = |label: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{label} ")))
            .unwrap_or_else(|| panic!("no {label} line in:\n{out}"))
            .to_string()
    };
    assert_eq!(said("mkd"), "/in/sub", "{out}");
    // A quote in a 257 reply is doubled (RFC 959): ftplib reads it back.
    assert_eq!(said("mkd-quote"), "/in/say \"hi\"", "{out}");
    assert_eq!(said("pwd-quote"), "/in/say \"hi\"", "{out}");
    assert_eq!(said("size"), "11", "{out}");
    for code in ["mdtm", "mfmt", "hash", "rnfr"] {
        assert!(!said(code).contains("ERR"), "{code}: {out}");
    }
    assert!(
        said("mlst").starts_with(" type=file;size=11;modify="),
        "{out}"
    );
    assert!(said("mlst").ends_with(" /in/f.txt"), "{out}");
    assert_eq!(said("retr"), "b'hello world'", "{out}");
    assert_eq!(said("nlst"), "['f.txt', 'sub']", "{out}");
    assert_eq!(said("nlst-1"), "['f.txt', 'sub']", "{out}");
    assert_eq!(said("nlst-a"), "['f.txt', 'sub']", "{out}");
    assert_eq!(said("nlst-1-sub"), "[]", "{out}");
    assert_eq!(said("listed"), "['f.txt', 'sub']", "{out}");
    assert_eq!(said("mlsd"), "[]", "{out}");
    assert_eq!(said("rnto"), "250", "{out}");
    assert_eq!(said("pwd"), "/in/sub", "{out}");
    assert!(said("mlst-up").ends_with(" /in/sub/g.txt"), "{out}");
    assert_eq!(said("opts"), "200 MLST OPTS type;size;", "{out}");
    assert_eq!(said("feat"), "['MLST type*;size*;modify;']", "{out}");
    assert_eq!(
        said("mlst-chosen"),
        " type=file;size=11; /in/sub/g.txt",
        "{out}"
    );
    assert!(said("mlst-missing").starts_with("ERR 550"), "{out}");
    let left = g.s3(
        "print(sorted(o['Key'] for o in s3.list_objects_v2(Bucket=bucket).get('Contents', [])))",
    );
    assert_eq!(
        left.trim(),
        "['alice/', 'alice/in/', 'alice/in/say \"hi\"/']",
        "{out}"
    );
    g.stop().await;
}

/// Apache Commons Net's `mlistFile` of a name relative to the working
/// directory, over explicit FTPS (it answered 550 and the client got null).
#[tokio::test(flavor = "multi_thread")]
async fn commons_net_mlist_file_relative_to_the_working_directory() {
    let g = start("").await;
    let big = g.dir.path().join("big.bin");
    write(&big, &pattern(3 * MIB + 1, 8));
    g.s3(&format!(
        "s3.upload_file('{}', bucket, 'alice/in/big.bin')",
        big.display()
    ));
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/Mlst.java");
    let port = g.ftp.port().to_string();
    let (ok, out, err) = run(
        "java",
        &[
            "-cp",
            "/usr/share/java/commons-net.jar",
            source,
            &port,
            "alice",
            PASSWORD,
        ],
    )
    .await;
    assert!(ok, "Commons Net failed:\n{out}\n{err}");
    let size = (3 * MIB + 1).to_string();
    assert!(out.contains(&format!("relative {size}")), "{out}");
    assert!(out.contains(&format!("absolute {size}")), "{out}");
    assert!(out.contains(&format!("entry big.bin {size}")), "{out}");
    g.stop().await;
}

/// ncftp's `ncftpls -1` sends `NLST -1`: the option is not a path.
#[tokio::test(flavor = "multi_thread")]
async fn ncftpls_one_per_line() {
    let g = start("").await;
    let f = g.dir.path().join("a.txt");
    write(&f, b"a");
    for key in ["alice/inbox/a.txt", "alice/inbox/b.txt"] {
        g.s3(&format!(
            "s3.upload_file('{}', bucket, '{key}')",
            f.display()
        ));
    }
    let port = g.ftp.port().to_string();
    let (ok, out, err) = run(
        "ncftpls",
        &[
            "-u",
            "alice",
            "-p",
            PASSWORD,
            "-P",
            &port,
            "-1",
            "ftp://127.0.0.1/inbox/",
        ],
    )
    .await;
    assert!(ok, "ncftpls failed:\n{out}\n{err}");
    let mut names: Vec<&str> = out.split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["a.txt", "b.txt"], "{out}\n{err}");
    g.stop().await;
}
