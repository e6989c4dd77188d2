//! The VFS conformance suite: every behaviour written once and run against
//! the memory, filesystem and S3 (moto_server over HTTP) remotes.

use crate::common;

use bucketgate::config::RemoteKind;
use bucketgate::vfs::objects::ObjectLayer;
use bucketgate::vfs::{Budget, FileStat, FsError, WriteMode};
use bytes::Bytes;
use common::*;
use futures::TryStreamExt;
use std::sync::Arc;

const MIB: usize = 1 << 20;

fn layer(f: &Fixture) -> Arc<ObjectLayer> {
    let budget = Budget::new(f.config.server.memory_budget, Default::default());
    Arc::new(ObjectLayer::new(f.remote.clone(), budget))
}

async fn put(layer: &ObjectLayer, key: &str, data: &[u8]) {
    let mut up = layer.open_write(key, WriteMode::Truncate).await.unwrap();
    for (i, chunk) in data.chunks(64 << 10).enumerate() {
        up.write_at((i * (64 << 10)) as u64, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    up.close().await.unwrap();
}

async fn get(layer: &ObjectLayer, key: &str) -> Vec<u8> {
    let mut d = layer.open_read(key, 0).await.unwrap();
    let mut out = Vec::new();
    loop {
        let chunk = d.read_at(out.len() as u64, 256 << 10).await.unwrap();
        if chunk.is_empty() {
            return out;
        }
        out.extend_from_slice(&chunk);
    }
}

async fn names(layer: &Arc<ObjectLayer>, key: &str) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = layer
        .list(key)
        .map_ok(|(s, _): (FileStat, _)| (s.name, s.is_dir))
        .try_collect()
        .await
        .unwrap();
    v.sort();
    v
}

fn small_parts() -> &'static str {
    "part_size = \"5MiB\"\nupload_concurrency = 2\n"
}

async fn streams_large_upload_within_memory_bound(kind: &str) {
    let f = fixture(kind, small_parts());
    let l = layer(&f);
    let data = pattern(50 * MIB, 1);
    let mut up = l.open_write("big.bin", WriteMode::Truncate).await.unwrap();
    for (i, chunk) in data.chunks(32 << 10).enumerate() {
        up.write_at((i * (32 << 10)) as u64, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    let peak = up.peak_buffered();
    assert_eq!(
        l.stat("big.bin").await.unwrap().size,
        data.len() as u64,
        "stat reports the bytes received so far"
    );
    up.close().await.unwrap();
    assert!(
        peak <= (2 + 1) * 5 * MIB,
        "peak {peak} exceeds (concurrency + 1) × part_size"
    );
    assert!(
        peak >= 5 * MIB,
        "the upload never buffered a whole part ({peak})"
    );
    assert_eq!(l.stat("big.bin").await.unwrap().size, data.len() as u64);
    assert!(get(&l, "big.bin").await == data, "downloaded bytes differ");
}

async fn small_upload_is_one_put_and_visible_only_after_close(kind: &str) {
    let f = fixture(kind, "");
    let l = layer(&f);
    let mut up = l.open_write("note.txt", WriteMode::Truncate).await.unwrap();
    up.write_at(0, Bytes::from_static(b"hello ")).await.unwrap();
    up.write_at(6, Bytes::from_static(b"world")).await.unwrap();
    assert!(
        names(&l, "").await.is_empty(),
        "nothing is listed before close"
    );
    assert_eq!(up.close().await.unwrap(), 11);
    assert_eq!(get(&l, "note.txt").await, b"hello world");
    assert_eq!(names(&l, "").await, vec![("note.txt".into(), false)]);
}

async fn dropped_upload_leaves_no_object(kind: &str) {
    let f = fixture(kind, small_parts());
    let l = layer(&f);
    let data = pattern(12 * MIB, 2);
    let mut up = l.open_write("cut.bin", WriteMode::Truncate).await.unwrap();
    up.write_at(0, Bytes::from(data)).await.unwrap();
    drop(up);
    assert!(matches!(l.stat("cut.bin").await, Err(FsError::NotFound)));
    assert!(names(&l, "").await.is_empty());
    // S3 never lists an unfinished multipart upload as an object: the
    // abort must also have removed the upload and its two parts.
    if let RemoteKind::S3(s3) = &f.config.remotes["store"].kind {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let script = format!(
                "print(len(s3.list_multipart_uploads(Bucket='{}').get('Uploads', [])))",
                s3.bucket
            );
            let open = boto3(&s3.endpoint, &script);
            if open.trim() == "0" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the dropped upload's multipart upload is still open"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

async fn random_offset_reads(kind: &str) {
    let f = fixture(kind, "");
    let l = layer(&f);
    let data = pattern(20 * MIB + 123, 3);
    put(&l, "r.bin", &data).await;
    let mut d = l.open_read("r.bin", 0).await.unwrap();
    let mut seed = 7u64;
    for _ in 0..40 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let off = (seed >> 11) as usize % data.len();
        let len = 1 + (seed >> 40) as usize % (300 << 10);
        let got = d.read_at(off as u64, len).await.unwrap();
        let want = &data[off..(off + len).min(data.len())];
        assert_eq!(got.len(), want.len(), "length at offset {off}");
        assert!(got == want, "bytes differ at offset {off}");
    }
    assert!(
        d.read_at(data.len() as u64, 10).await.unwrap().is_empty(),
        "EOF is empty"
    );
}

async fn out_of_order_writes_inside_the_window(kind: &str) {
    let f = fixture(kind, small_parts());
    let l = layer(&f);
    let data = pattern(11 * MIB, 4);
    let mut up = l.open_write("ooo.bin", WriteMode::Truncate).await.unwrap();
    // Pipelined client: each pair of 32 KiB chunks arrives swapped.
    let chunks: Vec<(usize, &[u8])> = data
        .chunks(32 << 10)
        .enumerate()
        .map(|(i, c)| (i * (32 << 10), c))
        .collect();
    for pair in chunks.chunks(2) {
        for (off, c) in pair.iter().rev() {
            up.write_at(*off as u64, Bytes::copy_from_slice(c))
                .await
                .unwrap();
        }
    }
    assert!(up.peak_buffered() <= 3 * 5 * MIB);
    up.close().await.unwrap();
    assert!(get(&l, "ooo.bin").await == data);
}

async fn writes_outside_the_window_fail_clearly(kind: &str) {
    let f = fixture(kind, small_parts());
    let l = layer(&f);
    let mut up = l.open_write("far.bin", WriteMode::Truncate).await.unwrap();
    up.write_at(0, Bytes::from_static(b"start")).await.unwrap();
    let err = up
        .write_at(20 * MIB as u64, Bytes::from_static(b"far"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FsError::Unsupported(_)), "{msg}");
    assert!(
        msg.contains("non-sequential write outside the 5 MiB window"),
        "{msg}"
    );
    let err = up
        .write_at(0, Bytes::from_static(b"again"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already uploaded"), "{err}");
}

async fn folders_markers_and_rmdir(kind: &str) {
    let f = fixture(kind, "");
    let l = layer(&f);
    l.create_dir("d").await.unwrap();
    assert!(matches!(
        l.create_dir("d").await,
        Err(FsError::AlreadyExists)
    ));
    assert!(matches!(
        l.create_dir("missing/child").await,
        Err(FsError::NotFound)
    ));
    assert_eq!(names(&l, "").await, vec![("d".into(), true)]);
    assert!(
        names(&l, "d").await.is_empty(),
        "a marker is never listed as a file"
    );
    let stat = l.stat("d").await.unwrap();
    assert!(stat.is_dir);
    assert!(
        stat.modified.timestamp() > 1_000_000_000,
        "folder mtime is never 1970"
    );
    put(&l, "d/f.txt", b"x").await;
    assert!(matches!(l.rmdir("d").await, Err(FsError::NotEmpty)));
    assert_eq!(
        l.rmdir("d").await.unwrap_err().to_string(),
        "directory not empty"
    );
    l.remove("d/f.txt").await.unwrap();
    l.rmdir("d").await.unwrap();
    assert!(matches!(l.stat("d").await, Err(FsError::NotFound)));
    assert!(matches!(l.remove("nope").await, Err(FsError::NotFound)));
}

async fn rename_file_and_nested_folder(kind: &str) {
    let f = fixture(kind, "");
    let l = layer(&f);
    for d in ["a", "a/b", "a/empty"] {
        l.create_dir(d).await.unwrap();
    }
    put(&l, "a/b/c.txt", b"deep").await;
    put(&l, "a/x.txt", b"top").await;
    put(&l, "other.txt", b"other").await;
    l.rename("a", "z", false).await.unwrap();
    assert!(matches!(l.stat("a").await, Err(FsError::NotFound)));
    assert_eq!(
        names(&l, "z").await,
        vec![
            ("b".into(), true),
            ("empty".into(), true),
            ("x.txt".into(), false)
        ]
    );
    assert_eq!(get(&l, "z/b/c.txt").await, b"deep");
    assert!(l.stat("z/empty").await.unwrap().is_dir);
    // Files: plain rename refuses an existing target, overwrite replaces it.
    assert!(matches!(
        l.rename("other.txt", "z/x.txt", false).await,
        Err(FsError::AlreadyExists)
    ));
    l.rename("other.txt", "z/x.txt", true).await.unwrap();
    assert_eq!(get(&l, "z/x.txt").await, b"other");
    assert!(matches!(l.stat("other.txt").await, Err(FsError::NotFound)));
}

async fn exclusive_create_refuses_existing(kind: &str) {
    let f = fixture(kind, "");
    let l = layer(&f);
    put(&l, "e.txt", b"1").await;
    assert!(matches!(
        l.open_write("e.txt", WriteMode::CreateNew).await,
        Err(FsError::AlreadyExists)
    ));
}

async fn set_times_is_a_noop_unless_preserved(kind: &str) {
    let f = fixture(kind, "");
    let l = layer(&f);
    put(&l, "t.txt", b"1").await;
    let before = l.stat("t.txt").await.unwrap().modified;
    let old = chrono::DateTime::from_timestamp(1_500_000_000, 0).unwrap();
    l.set_mtime("t.txt", old).await.unwrap();
    assert_eq!(l.stat("t.txt").await.unwrap().modified, before);

    let f = fixture(kind, "preserve_mtime = true\n");
    let l = layer(&f);
    put(&l, "t.txt", b"1").await;
    l.set_mtime("t.txt", old).await.unwrap();
    assert_eq!(l.stat("t.txt").await.unwrap().modified, old);
    assert!(l.space().await.unwrap().free_bytes > 0);
}

/// Appends `extra` to the file through a resumed upload.
async fn resume(l: &ObjectLayer, key: &str, from: usize, extra: &[u8]) {
    let mut up = l.open_write(key, WriteMode::Append).await.unwrap();
    assert_eq!(
        up.bytes_received(),
        from as u64,
        "resume starts at the old size"
    );
    for (i, chunk) in extra.chunks(32 << 10).enumerate() {
        up.write_at(
            (from + i * (32 << 10)) as u64,
            Bytes::copy_from_slice(chunk),
        )
        .await
        .unwrap();
    }
    up.close().await.unwrap();
}

async fn resumed_upload_continues_the_object(kind: &str) {
    let f = fixture(kind, small_parts());
    let l = layer(&f);
    // Below S3's 5 MiB copy minimum (streamed through) and above it (copied in S3).
    for (key, old_len) in [("small.bin", MIB + 17), ("large.bin", 11 * MIB + 3)] {
        let data = pattern(old_len + 3 * MIB, old_len as u64);
        put(&l, key, &data[..old_len]).await;

        // An abandoned resume leaves the old object as it was.
        let mut up = l.open_write(key, WriteMode::Append).await.unwrap();
        up.write_at(old_len as u64, Bytes::from_static(b"lost"))
            .await
            .unwrap();
        assert_eq!(get(&l, key).await.len(), old_len, "visible before close");
        drop(up);
        tokio::task::yield_now().await;
        assert_eq!(get(&l, key).await, &data[..old_len]);

        resume(&l, key, old_len, &data[old_len..]).await;
        let got = get(&l, key).await;
        assert_eq!(got.len(), data.len());
        assert!(got == data, "{key}: resumed bytes differ");
    }
    // Resuming a missing file is a plain upload.
    resume(&l, "new.bin", 0, b"fresh").await;
    assert_eq!(get(&l, "new.bin").await, b"fresh");
}

/// SFTP `APPEND`: every write lands at the end of the file, whatever
/// offset the client gave (asyncssh writes at 0), small and large objects.
async fn appending_writes_land_at_the_end(kind: &str) {
    let f = fixture(kind, small_parts());
    let l = layer(&f);
    for (key, old_len) in [("small.bin", 1000), ("large.bin", 6 * MIB + 5)] {
        let data = pattern(old_len + MIB + 300, old_len as u64 + 1);
        put(&l, key, &data[..old_len]).await;
        let mut up = l.open_write(key, WriteMode::Append).await.unwrap();
        for chunk in data[old_len..].chunks(64 << 10) {
            up.write_at_end(Bytes::copy_from_slice(chunk))
                .await
                .unwrap();
        }
        up.close().await.unwrap();
        let got = get(&l, key).await;
        assert_eq!(got.len(), data.len(), "{key}: appended size");
        assert!(got == data, "{key}: appended bytes differ");
    }
    // Onto nothing, it is the file.
    let mut up = l.open_write("none.bin", WriteMode::Append).await.unwrap();
    up.write_at_end(Bytes::from_static(b"first")).await.unwrap();
    up.write_at_end(Bytes::from_static(b" second"))
        .await
        .unwrap();
    up.close().await.unwrap();
    assert_eq!(get(&l, "none.bin").await, b"first second");
}

async fn a_replaced_object_is_never_read_mixed(kind: &str) {
    let f = fixture(kind, "");
    let l = layer(&f);
    let old = pattern(3 * MIB, 1);
    put(&l, "v.bin", &old).await;
    let mut d = l.open_read("v.bin", 0).await.unwrap();
    assert_eq!(d.read_at(0, 1024).await.unwrap(), &old[..1024]);
    assert_eq!(
        d.read_at(2 * MIB as u64, 1024).await.unwrap(),
        &old[2 * MIB..2 * MIB + 1024]
    );
    put(&l, "v.bin", &pattern(3 * MIB, 2)).await;
    // Back to bytes already passed: whatever was read ahead, this takes a
    // new GET, pinned to the version opened; it must fail, not serve the
    // new version's bytes.
    let e = d.read_at(MIB as u64, 1024).await.unwrap_err();
    assert!(
        e.to_string().contains("changed while it was being read"),
        "{e}"
    );
}

async fn a_known_folder_is_not_overwritten_by_a_file(kind: &str) {
    let f = fixture(kind, "");
    let l = layer(&f);
    l.create_dir("d").await.unwrap();
    put(&l, "d/inside.txt", b"x").await;
    let e = l.open_write("d", WriteMode::Truncate).await.unwrap_err();
    assert!(e.to_string().contains("is a folder"), "{e}");
    assert_eq!(names(&l, "").await, vec![("d".to_string(), true)]);
}

async fn a_large_sequential_read_is_whole_however_it_is_split(kind: &str) {
    let f = fixture(kind, "part_size = \"16MiB\"\n");
    let l = layer(&f);
    let data = pattern(90 * MIB + 7, 4);
    put(&l, "large.bin", &data).await;
    let mut d = l.open_read("large.bin", 0).await.unwrap();
    let (mut out, mut most_gets) = (Vec::with_capacity(data.len()), 0);
    loop {
        let chunk = d.read_at(out.len() as u64, 255 << 10).await.unwrap();
        most_gets = most_gets.max(d.gets_in_flight());
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    assert!(out == data, "bytes differ (up to {most_gets} GETs at once)");
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name("memory").await } )* }
        mod filesystem { $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name("filesystem").await } )* }
        mod s3 { $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name("s3").await } )* }
    };
}

conformance!(
    streams_large_upload_within_memory_bound,
    small_upload_is_one_put_and_visible_only_after_close,
    dropped_upload_leaves_no_object,
    random_offset_reads,
    out_of_order_writes_inside_the_window,
    writes_outside_the_window_fail_clearly,
    folders_markers_and_rmdir,
    rename_file_and_nested_folder,
    exclusive_create_refuses_existing,
    set_times_is_a_noop_unless_preserved,
    resumed_upload_continues_the_object,
    appending_writes_land_at_the_end,
    a_replaced_object_is_never_read_mixed,
    a_known_folder_is_not_overwritten_by_a_file,
    a_large_sequential_read_is_whole_however_it_is_split,
);
