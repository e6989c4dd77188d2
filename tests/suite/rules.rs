//! File rules (`[[users.filters]]`) as clients meet them: a name a rule
//! refuses is not written, over SFTP (the russh client) and FTP
//! (suppaftp), and the client is told which rule refused it.

use crate::common;
use common::gateway::{HASH, PASSWORD, TestGateway, put, ssh_password, start_with_tables};
use russh_sftp::protocol::{FileAttributes, OpenFlags};

/// erin may not write `*.exe` or `*.js` anywhere; in `/in`, only `*.csv`
/// and `*.xml` files (and no `*.tmp` either).
fn erin() -> String {
    format!(
        r#"
[[users]]
name = "erin"
password = "{HASH}"
home = "store:/erin"

[[users.filters]]
path = "/"
deny = ["*.exe", "*.js"]

[[users.filters]]
path = "/in"
allow = ["*.csv", "*.xml"]
deny = ["*.tmp"]
"#
    )
}

/// The keys under erin's home, sorted.
fn keys(g: &TestGateway) -> Vec<String> {
    let out = g.s3(
        "print('\\n'.join(sorted(o['Key'] for o in s3.list_objects_v2(Bucket=bucket, Prefix='erin/').get('Contents', []))))",
    );
    out.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sftp_uploads_renames_and_folders_keep_to_the_rules() {
    let g = start_with_tables(&erin()).await;
    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let h = ssh_password(stream, "erin", PASSWORD).await.unwrap();
    let s = common::gateway::sftp(&h).await;
    s.mkdir("/in", FileAttributes::empty()).await.unwrap();
    let refused = async |path: &str| {
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        s.open(path, flags, FileAttributes::empty())
            .await
            .err()
            .map(|e| e.to_string())
    };
    let why = refused("/tool.EXE")
        .await
        .expect("a .EXE upload is refused");
    assert!(
        why.contains(r#"deny \"*.exe\""#) || why.contains(r#"deny "*.exe""#),
        "{why}"
    );
    let why = refused("/in/notes.txt")
        .await
        .expect("allow lets only csv and xml in /in");
    assert!(why.contains("allow"), "{why}");
    assert!(
        refused("/in/deep/x.tmp").await.is_some(),
        "/in's deny holds below it"
    );
    put(&s, "/in/data.CSV", b"a,b").await;
    put(&s, "/readme.txt", b"hi").await;
    // A folder is judged by deny alone; a rename by what it moves.
    s.mkdir("/in/archive", FileAttributes::empty())
        .await
        .unwrap();
    let why = s
        .mkdir("/bin.exe", FileAttributes::empty())
        .await
        .unwrap_err()
        .to_string();
    assert!(why.contains("deny"), "{why}");
    let why = s
        .rename("/readme.txt", "/readme.js")
        .await
        .unwrap_err()
        .to_string();
    assert!(why.contains(r#"*.js"#), "{why}");
    let why = s
        .rename("/readme.txt", "/in/readme.txt")
        .await
        .unwrap_err()
        .to_string();
    assert!(why.contains("allow"), "{why}");
    s.rename("/in/archive", "/in/old").await.unwrap();
    assert_eq!(
        keys(&g),
        [
            "erin/",
            "erin/in/",
            "erin/in/data.CSV",
            "erin/in/old/",
            "erin/readme.txt"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ftp_upload_a_rule_refuses_is_not_stored() {
    let g = start_with_tables(&erin()).await;
    let mut ftp = common::ftp::ftp_plain(&g, "erin").await;
    let mut body = std::io::Cursor::new(b"MZ".to_vec());
    let why = ftp
        .put_file("setup.exe", &mut body)
        .await
        .unwrap_err()
        .to_string();
    assert!(why.contains("deny") && why.contains("*.exe"), "{why}");
    let mut body = std::io::Cursor::new(b"ok".to_vec());
    ftp.put_file("fine.txt", &mut body).await.unwrap();
    assert_eq!(keys(&g), ["erin/", "erin/fine.txt"]);
}

/// fran may write files of at most 1 MiB.
fn fran() -> String {
    format!(
        "[[users]]\nname = \"fran\"\npassword = \"{HASH}\"\nhome = \"store:/fran\"\nmax_file_size = \"1MiB\"\n"
    )
}

/// An upload that grows past `max_file_size` fails with the rule named,
/// over SFTP and FTP: the object it would have replaced stays as it was,
/// and no multipart upload is left.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_past_max_file_size_fails_and_stores_nothing() {
    let g = start_with_tables(&fran()).await;
    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let h = ssh_password(stream, "fran", PASSWORD).await.unwrap();
    let s = common::gateway::sftp(&h).await;
    put(&s, "/keep.bin", &vec![1u8; 100 << 10]).await;
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let handle = s
        .open("/keep.bin", flags, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    let mut refused = None;
    for i in 0..64u64 {
        if let Err(e) = s.write(&handle, i * (32 << 10), vec![2u8; 32 << 10]).await {
            refused = Some((i, e.to_string()));
            break;
        }
    }
    let (at, why) = refused.expect("a 2 MiB write sequence is refused");
    assert_eq!(at, 32, "refused at the first write past 1 MiB");
    assert!(
        why.contains("max_file_size") && why.contains("at most 1 MiB"),
        "{why}"
    );
    assert!(
        s.close(handle).await.is_err(),
        "the close of a failed upload fails"
    );
    let fran = "fran/";
    assert_eq!(
        g.stored(fran),
        "[('fran/', 0), ('fran/keep.bin', 102400)] 0"
    );

    let mut ftp = common::ftp::ftp_plain(&g, "fran").await;
    let mut body = std::io::Cursor::new(vec![3u8; 2 << 20]);
    let why = ftp
        .put_file("big.bin", &mut body)
        .await
        .unwrap_err()
        .to_string();
    assert!(why.contains("max_file_size"), "{why}");
    assert_eq!(
        g.stored(fran),
        "[('fran/', 0), ('fran/keep.bin', 102400)] 0"
    );
}
