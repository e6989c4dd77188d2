//! S3 behaviours that other remotes cannot show: objects written by a plain
//! S3 client (boto3), keys object_store cannot parse, and an endpoint that
//! fails mid-upload.

use crate::common;

use bucketgate::remote::Remote;
use bucketgate::vfs::objects::ObjectLayer;
use bucketgate::vfs::{Budget, FsError, WriteMode};
use bytes::Bytes;
use common::*;
use futures::TryStreamExt;
use std::sync::Arc;

fn s3_layer(endpoint: &str, bucket: &str, extra: &str) -> Arc<ObjectLayer> {
    let config = parse_config(&s3_remote_toml(endpoint, bucket, extra));
    let budget = Budget::new(config.server.memory_budget, Default::default());
    Arc::new(ObjectLayer::new(
        Arc::new(Remote::build(&config.remotes["store"], &Default::default()).unwrap()),
        budget,
    ))
}

async fn listing(layer: &Arc<ObjectLayer>, key: &str) -> Vec<(String, bool, u64)> {
    let mut v: Vec<_> = layer
        .list(key)
        .map_ok(|(s, _)| (s.name, s.is_dir, s.size))
        .try_collect()
        .await
        .unwrap();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_from_a_plain_client_list_as_folders() {
    let endpoint = moto_endpoint();
    let bucket = unique("plain");
    create_bucket(&endpoint, &bucket);
    boto3(
        &endpoint,
        &format!(
            "s3.put_object(Bucket='{bucket}', Key='a/b/c.txt', Body=b'abc')\n\
             s3.put_object(Bucket='{bucket}', Key='empty/', Body=b'')\n\
             s3.put_object(Bucket='{bucket}', Key='top.txt', Body=b'12345')"
        ),
    );
    let l = s3_layer(&endpoint, &bucket, "");
    assert_eq!(
        listing(&l, "").await,
        vec![
            ("a".into(), true, 0),
            ("empty".into(), true, 0),
            ("top.txt".into(), false, 5)
        ]
    );
    assert_eq!(listing(&l, "a").await, vec![("b".into(), true, 0)]);
    assert_eq!(listing(&l, "a/b").await, vec![("c.txt".into(), false, 3)]);
    assert!(
        listing(&l, "empty").await.is_empty(),
        "the marker is not a file"
    );
    assert!(
        l.stat("a").await.unwrap().is_dir,
        "a prefix without marker is a folder"
    );
    assert!(l.stat("empty").await.unwrap().is_dir);
    // An object written now appears at once.
    boto3(
        &endpoint,
        &format!("s3.put_object(Bucket='{bucket}', Key='a/new.txt', Body=b'n')"),
    );
    assert!(
        listing(&l, "a")
            .await
            .contains(&("new.txt".into(), false, 1))
    );

    // Our marker is what other S3 tools expect: a zero-byte `dir/` object.
    l.create_dir("made").await.unwrap();
    let out = boto3(
        &endpoint,
        &format!(
            "r = s3.head_object(Bucket='{bucket}', Key='made/')\nprint(r['ContentLength'], r['ContentType'])"
        ),
    );
    assert_eq!(out.trim(), "0 application/x-directory");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_object_store_cannot_parse_does_not_break_its_folder() {
    let endpoint = moto_endpoint();
    let bucket = unique("badkeys");
    create_bucket(&endpoint, &bucket);
    boto3(
        &endpoint,
        &format!(
            "for k in ['mixed/good.txt', 'mixed/ctl\\x01name.txt', 'mixed/double//slash.txt', 'mixed/./dot.txt', 'mixed/other.txt']:\n    s3.put_object(Bucket='{bucket}', Key=k, Body=b'x')"
        ),
    );
    let l = s3_layer(&endpoint, &bucket, "");
    let names: Vec<String> = listing(&l, "mixed")
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    // `double/` is a real prefix; the control-character and `.` keys are skipped.
    assert_eq!(names, vec!["double", "good.txt", "other.txt"]);
    assert!(
        listing(&l, "mixed/double").await.is_empty(),
        "the `//` key is skipped, not an error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_upload_part_fails_close_and_leaves_no_object() {
    let endpoint = moto_endpoint();
    let bucket = unique("fault");
    create_bucket(&endpoint, &bucket);
    let proxy = fault_proxy(endpoint.clone(), 2).await;
    let l = s3_layer(
        &format!("http://{proxy}"),
        &bucket,
        "part_size = \"5MiB\"\nupload_concurrency = 2\nretries = 1\n",
    );
    let data = pattern(16 << 20, 9);
    let mut up = l
        .open_write("doomed.bin", WriteMode::Truncate)
        .await
        .unwrap();
    let mut write_failed = false;
    for (i, chunk) in data.chunks(256 << 10).enumerate() {
        if up
            .write_at((i * (256 << 10)) as u64, Bytes::copy_from_slice(chunk))
            .await
            .is_err()
        {
            write_failed = true;
            break;
        }
    }
    let closed = up.close().await;
    assert!(closed.is_err() || write_failed, "the upload must fail");
    if let Err(e) = closed {
        assert!(e.to_string().contains("part"), "{e}");
    }
    // Nothing under that name, seen directly on the endpoint.
    let out = boto3(
        &endpoint,
        &format!("r = s3.list_objects_v2(Bucket='{bucket}')\nprint(r.get('KeyCount', 0))"),
    );
    assert_eq!(out.trim(), "0");
    assert!(matches!(l.stat("doomed.bin").await, Err(FsError::NotFound)));
    // The multipart upload was aborted, not left behind.
    let out = boto3(
        &endpoint,
        &format!(
            "r = s3.list_multipart_uploads(Bucket='{bucket}')\nprint(len(r.get('Uploads', [])))"
        ),
    );
    assert_eq!(out.trim(), "0", "the multipart upload is aborted");
}

/// A single-PUT upload keeps the digests of its bytes as object metadata,
/// where a plain S3 client reads them: `md5chksum` (base64, rclone's key)
/// and `sha1`/`sha256` (hex). A multipart upload's (S3 takes no metadata at
/// completion) are remembered by the remote for that version: asked for,
/// they are answered without reading the object.
#[tokio::test(flavor = "multi_thread")]
async fn uploads_keep_their_digests() {
    use base64::Engine;
    use bucketgate::base::{Algorithm, hex};
    use sha2::Digest;
    let endpoint = moto_endpoint();
    let bucket = unique("digests");
    create_bucket(&endpoint, &bucket);
    let l = s3_layer(
        &endpoint,
        &bucket,
        "part_size = \"5MiB\"\nchecksums = [\"md5\", \"sha1\", \"sha256\"]",
    );
    for (key, data) in [
        ("small.bin", pattern(1000, 1)),
        ("multi.bin", pattern(12 << 20, 2)),
    ] {
        let mut up = l.open_write(key, WriteMode::Truncate).await.unwrap();
        for (i, chunk) in data.chunks(256 << 10).enumerate() {
            up.write_at((i * (256 << 10)) as u64, Bytes::copy_from_slice(chunk))
                .await
                .unwrap();
        }
        let stored = up.close_stored().await.unwrap();
        let sha256 = hex(&sha2::Sha256::digest(&data));
        assert_eq!(stored.digests.sha256.map(|d| hex(&d)), Some(sha256.clone()));
        let md5 = md5::Md5::digest(&data);
        let meta = boto3(
            &endpoint,
            &format!(
                "m = s3.head_object(Bucket='{bucket}', Key='{key}')['Metadata']\n\
                 print(m.get('md5chksum'), m.get('sha1'), m.get('sha256'))"
            ),
        );
        let expected = match key {
            "small.bin" => format!(
                "{} {} {}",
                base64::engine::general_purpose::STANDARD.encode(md5),
                hex(&sha1::Sha1::digest(&data)),
                sha256
            ),
            _ => "None None None".to_string(),
        };
        assert_eq!(meta.trim(), expected, "{key}");
        assert_eq!(
            hex(&l.digest(key, Algorithm::Sha256, "test").await.unwrap()),
            sha256
        );
        assert_eq!(
            hex(&l.digest(key, Algorithm::Md5, "test").await.unwrap()),
            hex(&md5)
        );
    }
}
