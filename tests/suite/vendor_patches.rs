//! The FTP library is the published libunftp 0.24.0 and unftp-core 0.1.1,
//! and the SSH library the published russh 0.65.1,
//! plus the series in vendor/patches/: undone, the series gives the
//! published sources exactly (their digest is recorded); redone, it gives
//! vendor/ as Cargo builds it. A change to vendor/ outside the series, or
//! a patch that no longer applies, fails here.

#[test]
fn the_patch_series_turns_the_published_crates_into_vendor() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/scripts/vendor-patches"))
        .arg("check")
        .output()
        .expect("scripts/vendor-patches runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
