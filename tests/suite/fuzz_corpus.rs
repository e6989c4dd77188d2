//! The fuzz targets' corpora (`fuzz/corpus/<target>/`), replayed on every
//! `cargo test`: each input that once found a fault, and each that covers
//! a path the fuzzer found, must still pass through without a panic.
//! Fuzzing itself: `cargo fuzz run <target>` in `fuzz/` (see docs/operations.md).

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    for input in &inputs {
        let data = std::fs::read(input).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panicked", input.display());
    }
}

#[test]
fn sftp_requests() {
    replay("sftp_requests", bucketgate::fuzzing::sftp_requests);
}

#[test]
fn ftp_control() {
    replay("ftp_control", bucketgate::fuzzing::ftp_control);
}

#[test]
fn proxy_header() {
    replay("proxy_header", bucketgate::fuzzing::proxy_header);
}

#[test]
fn config() {
    replay("config", bucketgate::fuzzing::config);
}
