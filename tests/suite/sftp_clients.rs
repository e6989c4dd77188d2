//! Other SFTP clients partners use, end to end: paramiko (Python scripts,
//! Ansible) and curl (libssh2). CI installs both.

use crate::common;

use common::gateway::*;
use common::{pattern, run};

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread")]
async fn paramiko_prefetch_append_and_errors() {
    let g = start("part_size = \"5MiB\"\n").await;
    let d = g.dir.path();
    let data = pattern(48 * MIB + 3, 2);
    std::fs::write(d.join("up.bin"), &data).unwrap();
    let script = format!(
        r#"
import paramiko, sys
t = paramiko.Transport(("127.0.0.1", {port}))
t.connect(username="alice", password="{PASSWORD}")
s = paramiko.SFTPClient.from_transport(t)
s.mkdir("p")
s.put("{d}/up.bin", "p/up.bin")
# get() prefetches: every READ of the file is sent before the first answer.
s.get("p/up.bin", "{d}/down.bin")
with s.open("p/up.bin", "a") as f:
    f.write(b"appended")
print("size", s.stat("p/up.bin").st_size)
try:
    s.open("p/up.bin", "x")
    print("exclusive open of an existing file succeeded")
except IOError as e:
    print("exclusive refused")
try:
    s.rmdir("p")
except IOError as e:
    print("rmdir:", e)
try:
    s.stat("p/missing")
except FileNotFoundError:
    print("missing is missing")
print(sorted(a.filename for a in s.listdir_attr("p")))
"#,
        port = g.addr.port(),
        d = d.display(),
    );
    let (ok, out, err) = run("python3", &["-c", &script]).await;
    assert!(ok, "paramiko failed:\n{out}\n{err}");
    assert!(
        std::fs::read(d.join("down.bin")).unwrap() == data,
        "prefetched bytes differ"
    );
    assert!(out.contains(&format!("size {}", data.len() + 8)), "{out}");
    assert!(out.contains("exclusive refused"), "{out}");
    assert!(out.contains("rmdir: directory not empty"), "{out}");
    assert!(out.contains("missing is missing"), "{out}");
    assert!(out.contains("['up.bin']"), "{out}");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_upload_download_and_listing() {
    let g = start("").await;
    let d = g.dir.path();
    let data = pattern(7 * MIB + 1, 9);
    std::fs::write(d.join("c.bin"), &data).unwrap();
    let base = format!("sftp://127.0.0.1:{}", g.addr.port());
    let user = format!("alice:{PASSWORD}");
    let up = d.join("c.bin");
    let (ok, _, err) = run(
        "curl",
        &[
            "-sS",
            "-k",
            "-u",
            &user,
            "--ftp-create-dirs",
            "-T",
            up.to_str().unwrap(),
            &format!("{base}/in/c.bin"),
        ],
    )
    .await;
    assert!(ok, "{err}");
    let down = d.join("down.bin");
    let (ok, _, err) = run(
        "curl",
        &[
            "-sS",
            "-k",
            "-u",
            &user,
            "-o",
            down.to_str().unwrap(),
            &format!("{base}/in/c.bin"),
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(std::fs::read(&down).unwrap() == data);
    let (ok, listing, err) = run("curl", &["-sS", "-k", "-u", &user, &format!("{base}/in/")]).await;
    assert!(ok, "{err}");
    assert!(
        listing.lines().any(|l| l.starts_with("-rw-r--r--")
            && l.ends_with(" c.bin")
            && l.contains(&data.len().to_string())),
        "{listing}"
    );
    let (ok, _, err) = run(
        "curl",
        &["-sS", "-k", "-u", "alice:nope", &format!("{base}/in/")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("Authentication failure"), "{err}");
    g.stop().await;
}

/// SFTP `APPEND` (draft-ietf-secsh-filexfer-02 §6.3): every write goes to
/// the end of the file, whatever its offset. asyncssh's `'ab'` writes at
/// offset 0; the gateway used to take that as a rewrite and kept only the
/// appended bytes, telling the client OK.
#[tokio::test(flavor = "multi_thread")]
async fn append_writes_land_at_the_end_whatever_their_offset() {
    let g = start("part_size = \"5MiB\"\n").await;
    let old = pattern(8490, 3);
    let more = pattern(6490, 4);
    let big = pattern(6 * MIB + 11, 5);
    let put = |key: &str, data: &[u8]| {
        std::fs::write(g.dir.path().join(key), data).unwrap();
        g.s3(&format!(
            "s3.upload_file('{}', bucket, 'alice/{key}')",
            g.dir.path().join(key).display()
        ));
    };
    put("async.bin", &old);
    put("raw.bin", &old);
    put("big.bin", &big);
    std::fs::write(g.dir.path().join("more.bin"), &more).unwrap();
    let script = format!(
        r#"
import asyncio, asyncssh, paramiko
from paramiko.sftp import CMD_OPEN, CMD_WRITE, CMD_CLOSE, SFTP_FLAG_WRITE, SFTP_FLAG_APPEND, int64
from paramiko.sftp_attr import SFTPAttributes
more = open("{d}/more.bin", "rb").read()

async def main():
    async with asyncssh.connect("127.0.0.1", {port}, username="alice", password="{PASSWORD}",
                                known_hosts=None) as conn:
        async with conn.start_sftp_client() as sftp:
            async with sftp.open("async.bin", "ab") as f:
                await f.write(more)
            async with sftp.open("big.bin", "ab") as f:
                await f.write(more)
            async with sftp.open("fresh.bin", "ab") as f:
                await f.write(more)
asyncio.run(main())

t = paramiko.Transport(("127.0.0.1", {port}))
t.connect(username="alice", password="{PASSWORD}")
s = paramiko.SFTPClient.from_transport(t)
_, msg = s._request(CMD_OPEN, "raw.bin", SFTP_FLAG_WRITE | SFTP_FLAG_APPEND, SFTPAttributes())
handle = msg.get_binary()
s._request(CMD_WRITE, handle, int64(0), more[:1000])
s._request(CMD_WRITE, handle, int64(0), more[1000:])
s._request(CMD_CLOSE, handle)
print("done")
"#,
        port = g.addr.port(),
        d = g.dir.path().display(),
    );
    let (ok, out, err) = run("python3", &["-c", &script]).await;
    assert!(ok, "asyncssh/paramiko failed:\n{out}\n{err}");
    let stored = |key: &str| {
        let path = g.dir.path().join(format!("{key}.got"));
        g.s3(&format!(
            "s3.download_file(bucket, 'alice/{key}', '{}')",
            path.display()
        ));
        std::fs::read(path).unwrap()
    };
    for (key, before) in [("async.bin", &old), ("raw.bin", &old), ("big.bin", &big)] {
        let got = stored(key);
        assert_eq!(got.len(), before.len() + more.len(), "{key}: size");
        assert!(got[..before.len()] == before[..], "{key}: the old bytes");
        assert!(got[before.len()..] == more[..], "{key}: the appended bytes");
    }
    assert!(stored("fresh.bin") == more, "append onto nothing");
    let left = g.s3("print(len(s3.list_multipart_uploads(Bucket=bucket).get('Uploads', [])))");
    assert_eq!(left.trim(), "0", "no multipart upload left");
    g.stop().await;
}
