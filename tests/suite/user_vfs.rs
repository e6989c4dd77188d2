//! A user's tree: the path jail, mounts, read-only folders and permissions.

use crate::common;

use bucketgate::config::Config;
use bucketgate::remote::Remotes;
use bucketgate::vfs::{Budget, FsError, Storage, UserPath, UserVfs, Vfs, WriteMode};
use bytes::Bytes;
use common::parse_config;
use futures::TryStreamExt;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$zbURedr/3LNZOR44c0aY6A$+xFJJgF1BW2u2HQD7E1eR9O5gcRrh9Fhtk/e5e317mI";

fn config(permissions: &str) -> Config {
    parse_config(&format!(
        r#"
[remotes.mem]
kind = "memory"

[[users]]
name = "alice"
password = "{HASH}"
home = "mem:/home/alice"
permissions = {permissions}

[[users.mounts]]
path = "/reports"
target = "mem:/shared/reports"
read_only = true

[[users]]
name = "bob"
password = "{HASH}"
home = "mem:/home/bob"
"#
    ))
}

async fn session(permissions: &str) -> (UserVfs, UserVfs) {
    let c = config(permissions);
    let budget = Budget::new(c.server.memory_budget, Default::default());
    let storage = Storage::new(&Remotes::build(&c, &Default::default()).unwrap(), &budget);
    let alice = UserVfs::for_user(&c.users[0], &storage).await.unwrap();
    let bob = UserVfs::for_user(&c.users[1], &storage).await.unwrap();
    (alice, bob)
}

fn p(s: &str) -> UserPath {
    UserPath::parse(s).unwrap()
}

async fn write(vfs: &UserVfs, path: &str, data: &'static [u8]) -> Result<(), FsError> {
    let mut up = vfs.open_write(&p(path), WriteMode::Truncate).await?;
    up.write_at(0, Bytes::from_static(data)).await?;
    up.close().await.map(|_| ())
}

async fn read(vfs: &UserVfs, path: &UserPath) -> Result<Vec<u8>, FsError> {
    let mut d = vfs.open_read(path, 0).await?;
    Ok(d.read_at(0, 1 << 20).await?.to_vec())
}

#[tokio::test]
async fn hostile_paths_never_leave_the_home() {
    let (alice, bob) = session(r#"["*"]"#).await;
    write(&bob, "/secret.txt", b"bob's").await.unwrap();
    let hostile = [
        "../bob/secret.txt",
        "/../bob/secret.txt",
        "/../../home/bob/secret.txt",
        "../../../../../../home/bob/secret.txt",
        "//..//..//home//bob//secret.txt",
        "/./../bob/./secret.txt",
        "..%2fbob%2fsecret.txt",
        "%2e%2e/bob/secret.txt",
        "..\\bob\\secret.txt",
        "/reports/../../bob/secret.txt",
    ];
    let cwd = p("/");
    for input in hostile {
        let path = match UserPath::resolve(&cwd, input) {
            Ok(path) => path,
            Err(_) => continue, // refused outright: also fine
        };
        assert!(
            matches!(alice.stat(&path).await, Err(FsError::NotFound)),
            "{input:?} resolved to {path} and reached another user's file"
        );
        assert!(
            read(&alice, &path).await.is_err(),
            "{input:?} read bob's file"
        );
        // Writing there lands inside alice's home, never on bob's file.
        if write(&alice, path.as_str(), b"alice's").await.is_ok() {
            assert_eq!(read(&alice, &path).await.unwrap(), b"alice's");
        }
    }
    assert_eq!(
        read(&bob, &p("/secret.txt")).await.unwrap(),
        b"bob's",
        "bob's file is untouched"
    );
}

#[tokio::test]
async fn names_storage_cannot_hold_are_refused_with_a_reason() {
    for bad in ["/nul\0byte", "/ctl\x01char", "/new\nline"] {
        let err = UserPath::parse(bad).unwrap_err();
        assert!(matches!(err, FsError::InvalidName(_)));
        assert!(
            err.to_string().contains("object storage cannot hold"),
            "{err}"
        );
    }
    let (alice, _) = session(r#"["*"]"#).await;
    let long = format!("/{}", vec!["x".repeat(200); 6].join("/"));
    let err = alice
        .open_write(&p(&long), WriteMode::Truncate)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1024"), "{err}");
}

#[tokio::test]
async fn a_read_only_mount_refuses_writes_and_shows_in_the_listing() {
    let (alice, _) = session(r#"["*"]"#).await;
    let root: Vec<_> = alice
        .list(&p("/"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        root.iter()
            .any(|e| e.name == "reports" && e.is_dir && e.read_only)
    );
    for result in [
        write(&alice, "/reports/x.txt", b"no").await,
        alice.mkdir(&p("/reports/sub")).await,
        alice.remove(&p("/reports/anything")).await,
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, FsError::PermissionDenied(_)), "{err}");
        assert!(err.to_string().contains("read-only"), "{err}");
    }
    let err = alice.rmdir(&p("/reports")).await.unwrap_err();
    assert!(matches!(err, FsError::PermissionDenied(_)), "{err}");
}

#[tokio::test]
async fn permissions_are_enforced() {
    let (alice, _) = session(r#"["list", "download", "upload"]"#).await;
    write(&alice, "/a.txt", b"1").await.unwrap();
    let err = write(&alice, "/a.txt", b"2").await.unwrap_err();
    assert!(
        err.to_string().contains("overwrite is not allowed"),
        "{err}"
    );
    for err in [
        alice.remove(&p("/a.txt")).await.unwrap_err(),
        alice.mkdir(&p("/d")).await.unwrap_err(),
        alice
            .rename(&p("/a.txt"), &p("/b.txt"), false)
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, FsError::PermissionDenied(_)), "{err}");
    }
    assert_eq!(read(&alice, &p("/a.txt")).await.unwrap(), b"1");
}
