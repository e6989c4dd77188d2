//! Legacy SCP with OpenSSH's own `scp -O` (the rcp protocol over `scp -t`
//! and `scp -f`, as old clients and many partner scripts speak it), over
//! moto: files and folders both ways with their names, bytes and times;
//! an upload cut midway leaves nothing; a read-only folder refuses an
//! upload with the message SFTP gives.

use crate::common;
use common::gateway::*;
use common::pattern;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

const MIB: usize = 1 << 20;

/// `scp -O` with `args`, as alice with her key.
fn scp(g: &TestGateway, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("scp");
    cmd.current_dir(g.dir.path())
        .args(["-O", "-P", &g.addr.port().to_string(), "-i"])
        .arg(&g.key_file)
        .args(OPENSSH_OPTIONS)
        .args(args);
    cmd
}

async fn run(g: &TestGateway, args: &[&str]) -> Output {
    scp(g, args).output().await.expect("scp (openssh-client)")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "scp failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn set_mtime(path: &Path, unix: u64) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(unix);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn scp_legacy_copies_files_and_folders_both_ways_with_names_bytes_and_times() {
    let g = start("preserve_mtime = true").await;
    let dir = g.dir.path();
    let big = pattern(20 * MIB, 1);
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    ok(&run(&g, &["big.bin", "alice@127.0.0.1:/big.bin"]).await);
    assert_eq!(
        common::s3_object(&g.endpoint, &g.bucket, "alice/big.bin"),
        big
    );
    ok(&run(&g, &["alice@127.0.0.1:/big.bin", "back.bin"]).await);
    assert_eq!(std::fs::read(dir.join("back.bin")).unwrap(), big);

    // A folder with -r -p: names, bytes and file times, there and back.
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("sub dir")).unwrap();
    let files = [
        ("a.txt", b"alpha\n".to_vec(), 1_600_000_000),
        ("sub dir/b.bin", pattern(MIB + 7, 2), 1_600_000_500),
        ("sub dir/empty", Vec::new(), 1_600_001_000),
    ];
    for (name, data, t) in &files {
        std::fs::write(tree.join(name), data).unwrap();
        set_mtime(&tree.join(name), *t);
    }
    ok(&run(&g, &["-r", "-p", "tree", "alice@127.0.0.1:/"]).await);
    assert_eq!(
        common::s3_state(&g.endpoint, &g.bucket, "alice/tree/").0,
        [
            "alice/tree/",
            "alice/tree/a.txt",
            "alice/tree/sub dir/",
            "alice/tree/sub dir/b.bin",
            "alice/tree/sub dir/empty"
        ]
    );
    ok(&run(&g, &["-r", "-p", "alice@127.0.0.1:/tree", "copy"]).await);
    for (name, data, t) in &files {
        let got = dir.join("copy").join(name);
        assert_eq!(&std::fs::read(&got).unwrap(), data, "{name}");
        assert_eq!(
            mtime(&got),
            SystemTime::UNIX_EPOCH + Duration::from_secs(*t),
            "{name}"
        );
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_scp_upload_cut_midway_leaves_nothing() {
    let g = start("").await;
    std::fs::write(g.dir.path().join("cut.bin"), pattern(200 * MIB, 3)).unwrap();
    let mut child = scp(&g, &["-l", "80000", "cut.bin", "alice@127.0.0.1:/cut.bin"])
        .spawn()
        .unwrap();
    g.wait_for_multipart("alice/cut.bin").await;
    child.kill().await.unwrap();
    common::until("the cut upload aborted", async || {
        common::s3_state(&g.endpoint, &g.bucket, "alice/") == (vec!["alice/".to_string()], 0)
    })
    .await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_folder_refuses_an_scp_upload_with_the_usual_message() {
    let g = start("").await;
    std::fs::write(g.dir.path().join("f.txt"), b"no").unwrap();
    let out = run(&g, &["f.txt", "alice@127.0.0.1:/shared/f.txt"]).await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("/shared/f.txt: permission denied: /shared is read-only"),
        "{said}"
    );
    assert_eq!(
        common::s3_state(&g.endpoint, &g.bucket, "shared/").0,
        Vec::<String>::new()
    );
    g.stop().await;
}
