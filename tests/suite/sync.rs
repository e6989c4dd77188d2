//! Sync jobs end to end: the real binary (`bucketgate sync run`, `serve`)
//! between a filesystem remote and S3 (moto_server on loopback), checked
//! the way an operator would: the bucket's keys and bytes (boto3), the
//! folder's files, the exit code and what the command printed.

use crate::common;

use common::{boto3, create_bucket, moto_endpoint, pattern, unique};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bucketgate");

/// A gateway config in a temporary folder: remote `local` (a folder) and
/// remote `bucket` (a new bucket on moto), plus the jobs a test adds.
struct Env {
    dir: tempfile::TempDir,
    endpoint: String,
    bucket: String,
}

impl Env {
    fn new() -> Env {
        let endpoint = moto_endpoint();
        let bucket = unique("sync");
        create_bucket(&endpoint, &bucket);
        Env {
            dir: tempfile::tempdir().unwrap(),
            endpoint,
            bucket,
        }
    }

    fn local(&self) -> PathBuf {
        self.dir.path().join("local")
    }

    /// Writes `gateway.toml` (or `name`) with these `[[syncs]]` and state folder.
    fn config_named(&self, name: &str, state: &str, syncs: &str) -> PathBuf {
        self.config_full(name, state, "", syncs)
    }

    /// As [`Env::config_named`], with more keys for the `local` remote.
    fn config_full(&self, name: &str, state: &str, local_extra: &str, syncs: &str) -> PathBuf {
        let text = format!(
            r#"[server]
state_dir = "{state}"
keys_dir = "{keys}"

[remotes.local]
kind = "filesystem"
root = "{local}"
{local_extra}

[remotes.bucket]
kind = "s3"
endpoint = "{endpoint}"
bucket = "{bucket}"
access_key_id = "{key}"
secret_access_key = "{secret}"
part_size = "5MiB"

{syncs}
"#,
            state = self.dir.path().join(state).display(),
            keys = self.dir.path().join("keys").display(),
            local = self.local().display(),
            endpoint = self.endpoint,
            bucket = self.bucket,
            key = common::ACCESS_KEY,
            secret = common::SECRET_KEY,
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn config(&self, syncs: &str) -> PathBuf {
        self.config_named("gateway.toml", "state", syncs)
    }

    /// Runs `bucketgate <args> --config <config>`.
    fn cli(&self, config: &Path, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .unwrap()
    }

    /// `sync run`, which must succeed; its stdout.
    fn sync_ok(&self, config: &Path, job: &str) -> String {
        let out = self.cli(config, &["sync", "run", job]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "sync run {job} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Every key in the bucket under `prefix`, with its size and MD5.
    fn keys(&self, prefix: &str) -> BTreeMap<String, (u64, String)> {
        let out = boto3(
            &self.endpoint,
            &format!(
                r#"import hashlib
p = s3.get_paginator('list_objects_v2')
for page in p.paginate(Bucket='{b}', Prefix='{prefix}'):
    for o in page.get('Contents', []):
        body = s3.get_object(Bucket='{b}', Key=o['Key'])['Body'].read()
        print(o['Key'] + '\t' + str(o['Size']) + '\t' + hashlib.md5(body).hexdigest())"#,
                b = self.bucket
            ),
        );
        out.lines()
            .map(|l| {
                let mut f = l.split('\t');
                let key = f.next().unwrap().to_string();
                let size = f.next().unwrap().parse().unwrap();
                (key, (size, f.next().unwrap().to_string()))
            })
            .collect()
    }

    fn put_object(&self, key: &str, body: &[u8]) {
        let path = self.dir.path().join("upload.tmp");
        std::fs::write(&path, body).unwrap();
        boto3(
            &self.endpoint,
            &format!(
                "s3.upload_file('{}', '{}', '{key}')",
                path.display(),
                self.bucket
            ),
        );
    }

    fn delete_object(&self, key: &str) {
        boto3(
            &self.endpoint,
            &format!("s3.delete_object(Bucket='{}', Key='{key}')", self.bucket),
        );
    }

    fn multipart_uploads(&self) -> usize {
        boto3(
            &self.endpoint,
            &format!(
                "print(len(s3.list_multipart_uploads(Bucket='{}').get('Uploads', [])))",
                self.bucket
            ),
        )
        .trim()
        .parse()
        .unwrap()
    }
}

fn md5(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file (with its bytes' MD5) and folder (with `/`) under `root`.
fn files(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{path}/"), String::new());
                walk(root, &path, out);
            } else {
                out.insert(path, md5(&std::fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, "", &mut out);
    }
    out
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// The number after `label` in a report line: `copied 3 file(s)` → 3.
fn count(report: &str, label: &str) -> u64 {
    let at = report
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {report}"));
    report[at + label.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

const PUSH_PULL: &str = r#"
[[syncs]]
name = "up"
local = "local:/out"
remote = "bucket:/in"
direction = "push"

[[syncs]]
name = "down"
local = "local:/back"
remote = "bucket:/in"
direction = "pull"
"#;

/// A tree with nested folders, an empty folder, a name with a space and a
/// multipart-sized file goes up, then comes back down equal; a second run
/// of each copies nothing, and a push never deletes on the target.
#[test]
fn push_then_pull_nested_folders_and_an_empty_one() {
    let env = Env::new();
    let config = env.config(PUSH_PULL);
    let out = env.local().join("out");
    let big = pattern(12 << 20, 7);
    write(&out, "a/b/c.txt", b"deep file");
    write(&out, "a/big.bin", &big);
    write(&out, "sp ace.txt", b"spaced");
    std::fs::create_dir_all(out.join("empty/deeper")).unwrap();
    env.put_object("in/remote-only.txt", b"kept by push");

    let report = env.sync_ok(&config, "up");
    assert_eq!(count(&report, "copied"), 3, "{report}");
    let keys = env.keys("in/");
    let listed: Vec<_> = keys.keys().map(String::as_str).collect();
    assert_eq!(
        listed,
        [
            "in/a/b/c.txt",
            "in/a/big.bin",
            "in/empty/deeper/",
            "in/remote-only.txt",
            "in/sp ace.txt"
        ]
    );
    assert_eq!(keys["in/a/big.bin"], (big.len() as u64, md5(&big)));
    assert_eq!(keys["in/a/b/c.txt"].1, md5(b"deep file"));

    // Nothing changed: nothing copied.
    let again = env.sync_ok(&config, "up");
    assert_eq!(count(&again, "copied"), 0, "{again}");

    let report = env.sync_ok(&config, "down");
    assert_eq!(count(&report, "copied"), 4, "{report}");
    let mut expected = files(&out);
    expected.insert("remote-only.txt".into(), md5(b"kept by push"));
    assert_eq!(files(&env.local().join("back")), expected);
    let again = env.sync_ok(&config, "down");
    assert_eq!(count(&again, "copied"), 0, "{again}");

    // A changed source file is copied again, and only it.
    write(&out, "a/b/c.txt", b"deep file, longer now");
    let report = env.sync_ok(&config, "up");
    assert_eq!(count(&report, "copied"), 1, "{report}");
    assert_eq!(
        env.keys("in/a/b/")["in/a/b/c.txt"].1,
        md5(b"deep file, longer now")
    );
}

/// `after_copy = "delete"`: sources go once their copy is verified, and
/// the folders the job emptied with them; a copy already on the target
/// is checked by checksum first, and one that differs keeps its source.
#[test]
fn delete_after_copy_verifies_then_deletes() {
    let env = Env::new();
    let config = env.config(
        r#"
[[syncs]]
name = "move"
local = "local:/outbox"
remote = "bucket:/moved"
direction = "push"
after_copy = "delete"
"#,
    );
    let outbox = env.local().join("outbox");
    let big = pattern(11 << 20, 3);
    write(&outbox, "2026/11/orders.csv", b"id,qty\n1,2\n");
    write(&outbox, "2026/big.bin", &big);
    write(&outbox, "already.txt", b"same bytes");
    write(&outbox, "impostor.txt", b"mine!");
    // Already on the target: the same bytes, and other bytes of the same size.
    env.put_object("moved/already.txt", b"same bytes");
    env.put_object("moved/impostor.txt", b"yours");

    let out = env.cli(&config, &["sync", "run", "move"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a failed verification fails the run: {stdout}"
    );
    assert!(
        stdout.contains("impostor.txt") && stdout.contains("checksum"),
        "{stdout}"
    );
    // Only the impostor's source is left, and the outbox folder itself.
    assert_eq!(files(&outbox).keys().collect::<Vec<_>>(), ["impostor.txt"]);
    let keys = env.keys("moved/");
    assert_eq!(keys["moved/2026/big.bin"], (big.len() as u64, md5(&big)));
    assert_eq!(keys["moved/2026/11/orders.csv"].1, md5(b"id,qty\n1,2\n"));
    assert_eq!(keys["moved/already.txt"].1, md5(b"same bytes"));
    assert_eq!(keys["moved/impostor.txt"].1, md5(b"yours"));
}

/// A copy found on the target is checked by SHA-256 when both sides keep
/// one (no file is read): a kept SHA-256 that is not the source's keeps
/// the source even though the bytes' MD5s agree; matching ones let it go.
#[test]
fn delete_after_copy_trusts_kept_sha256_on_both_sides() {
    let env = Env::new();
    let config = env.config(
        r#"
[[syncs]]
name = "move"
local = "bucket:/outbox"
remote = "bucket:/moved"
direction = "push"
after_copy = "delete"
"#,
    );
    // Same bytes on both sides; `told.txt`'s copy says it is other bytes.
    boto3(
        &env.endpoint,
        &format!(
            r#"import hashlib
def put(key, body, sha):
    s3.put_object(Bucket='{b}', Key=key, Body=body, Metadata={{'sha256': hashlib.sha256(sha).hexdigest()}})
put('outbox/good.txt', b'good bytes', b'good bytes')
put('moved/good.txt', b'good bytes', b'good bytes')
put('outbox/told.txt', b'told bytes', b'told bytes')
put('moved/told.txt', b'told bytes', b'other bytes')"#,
            b = env.bucket
        ),
    );
    let out = env.cli(&config, &["sync", "run", "move"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("told.txt") && stdout.contains("SHA-256"),
        "{stdout}"
    );
    let left: Vec<String> = env.keys("outbox/").into_keys().collect();
    assert_eq!(left, ["outbox/told.txt"]);
}

/// A dry run names every action and changes nothing: no object, no file
/// moved, no state.
#[test]
fn a_dry_run_changes_nothing() {
    let env = Env::new();
    let config = env.config(PUSH_PULL);
    let out = env.local().join("out");
    write(&out, "x/one.txt", b"1");
    std::fs::create_dir_all(out.join("void")).unwrap();
    let before = files(&env.local());

    let run = env.cli(&config, &["sync", "run", "up", "--dry-run"]);
    assert!(run.status.success());
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("copy local:/out/x/one.txt -> bucket:/in/x/one.txt (1 bytes)"),
        "{stdout}"
    );
    assert!(stdout.contains("mkdir bucket:/in/void"), "{stdout}");
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    assert!(env.keys("").is_empty());
    assert_eq!(files(&env.local()), before);
    assert!(!env.dir.path().join("state").exists());
}

/// Two-way: the first run copies both ways; later runs carry changes and
/// deletions across, keep a file deleted on one side but changed on the
/// other, and keep both versions of a file changed on both sides.
#[test]
fn two_way_carries_changes_both_ways_and_keeps_conflicts() {
    let env = Env::new();
    let config = env.config(
        r#"
[[syncs]]
name = "both"
local = "local:/shared"
remote = "bucket:/shared"
direction = "two-way"
"#,
    );
    let local = env.local().join("shared");
    for name in [
        "keep",
        "gone-here",
        "gone-there",
        "edit-here",
        "edit-there",
        "clash",
        "revived",
    ] {
        write(&local, &format!("{name}.txt"), name.as_bytes());
    }
    env.put_object("shared/from-s3/report.txt", b"made in the bucket");
    std::fs::create_dir_all(local.join("empty")).unwrap();

    let first = env.sync_ok(&config, "both");
    assert_eq!(count(&first, "deleted"), 0, "{first}");
    assert_eq!(count(&first, "copied"), 8, "{first}");
    assert!(env.keys("shared/").contains_key("shared/empty/"));
    assert_eq!(
        std::fs::read(local.join("from-s3/report.txt")).unwrap(),
        b"made in the bucket"
    );

    // Changes on each side.
    std::fs::remove_file(local.join("gone-here.txt")).unwrap();
    env.delete_object("shared/gone-there.txt");
    write(&local, "edit-here.txt", b"edited locally");
    env.put_object("shared/edit-there.txt", b"edited in the bucket");
    write(&local, "clash.txt", b"local version");
    // The bucket's edit is later, so it wins: the local one is an hour old.
    std::fs::File::options()
        .write(true)
        .open(local.join("clash.txt"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    env.put_object("shared/clash.txt", b"bucket version!");
    std::fs::remove_file(local.join("revived.txt")).unwrap();
    env.put_object("shared/revived.txt", b"changed while deleted elsewhere");

    let second = env.sync_ok(&config, "both");
    assert_eq!(count(&second, "conflicts"), 1, "{second}");
    let keys = env.keys("shared/");
    let here = files(&local);
    assert!(!keys.contains_key("shared/gone-here.txt"));
    assert!(!here.contains_key("gone-there.txt"));
    assert_eq!(keys["shared/edit-here.txt"].1, md5(b"edited locally"));
    assert_eq!(here["edit-there.txt"], md5(b"edited in the bucket"));
    assert_eq!(here["revived.txt"], md5(b"changed while deleted elsewhere"));
    assert_eq!(here["clash.txt"], md5(b"bucket version!"));
    assert_eq!(keys["shared/clash.txt"].1, md5(b"bucket version!"));
    let aside: Vec<_> = here
        .keys()
        .filter(|k| k.starts_with("clash.txt.conflict-"))
        .collect();
    assert_eq!(aside.len(), 1, "{here:?}");
    assert_eq!(here[aside[0]], md5(b"local version"));
    assert_eq!(
        keys[&format!("shared/{}", aside[0])].1,
        md5(b"local version")
    );

    // In sync now: a third run does nothing.
    let third = env.sync_ok(&config, "both");
    assert_eq!(count(&third, "copied"), 0, "{third}");
    assert_eq!(count(&third, "deleted"), 0, "{third}");
}

/// A run killed half way leaves only whole objects; the next run copies
/// exactly what is missing.
#[test]
fn a_killed_run_is_finished_by_the_next() {
    let env = Env::new();
    let config = env.config(
        r#"
[[syncs]]
name = "up"
local = "local:/out"
remote = "bucket:/in"
direction = "push"
transfers = 1
"#,
    );
    let out = env.local().join("out");
    let n = 24;
    let mut want = BTreeMap::new();
    for i in 0..n {
        let data = pattern(2 << 20, i);
        want.insert(format!("in/f{i:02}.bin"), (data.len() as u64, md5(&data)));
        write(&out, &format!("f{i:02}.bin"), &data);
    }
    let mut child = Command::new(BIN)
        .args(["sync", "run", "up", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the journal shows some files done.
    let journal = env.dir.path().join("state/up/journal.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count());
        if lines >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the run made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let done = env.keys("in/");
    assert!(done.len() < n as usize, "killed before the end");
    for (key, got) in &done {
        assert_eq!(got, &want[key], "{key} is whole");
    }
    let report = env.sync_ok(&config, "up");
    assert_eq!(count(&report, "copied"), n - done.len() as u64, "{report}");
    assert_eq!(env.keys("in/"), want);
}

/// Two `serve` processes with the same job on one bucket: each tries every
/// second, but their runs never overlap, and the other is told why.
#[test]
fn two_gateways_never_run_one_job_at_once() {
    let env = Env::new();
    let job = r#"
[[syncs]]
name = "shared-job"
local = "local:/out"
remote = "bucket:/in"
direction = "push"
interval = "1s"
"#;
    // Big enough that a run lasts longer than the interval.
    let out = env.local().join("out");
    for i in 0..3 {
        write(&out, &format!("big{i}.bin"), &pattern(24 << 20, i));
    }
    let gateways: Vec<_> = ["a", "b"]
        .iter()
        .map(|g| {
            let config = env.config_named(&format!("{g}.toml"), &format!("state-{g}"), job);
            let log = std::fs::File::create(env.dir.path().join(format!("{g}.log"))).unwrap();
            Command::new(BIN)
                .args(["--log-format", "json", "serve", "--config"])
                .arg(config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap()
        })
        .collect();
    let logs = || {
        ["a", "b"]
            .map(|g| std::fs::read_to_string(env.dir.path().join(format!("{g}.log"))).unwrap())
    };
    // Runs as their reports say: a report is written after its run's log
    // line, so the log alone could count a run whose report is not there.
    let reported = || {
        ["a", "b"]
            .iter()
            .map(|g| {
                let path = env
                    .dir
                    .path()
                    .join(format!("state-{g}/shared-job/reports.json"));
                std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).ok())
                    .map_or(0, |r| r.len())
            })
            .sum::<usize>()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let [a, b] = logs();
        let refused = |l: &str| l.matches("running on another gateway").count();
        // The first run (72 MiB) outlasts the interval, so the other
        // gateway's tries meet the lease; wait for one refusal and for a
        // few more runs after it.
        if refused(&a) + refused(&b) >= 1 && reported() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "a: {a}\nb: {b}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for mut g in gateways {
        g.kill().unwrap();
        g.wait().unwrap();
    }
    // Each gateway's runs, from its reports: no two overlap.
    let mut runs: Vec<(f64, f64, &str)> = Vec::new();
    for g in ["a", "b"] {
        let text = std::fs::read_to_string(
            env.dir
                .path()
                .join(format!("state-{g}/shared-job/reports.json")),
        )
        .unwrap();
        let reports: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        for r in reports {
            let started =
                chrono::DateTime::parse_from_rfc3339(r["started"].as_str().unwrap()).unwrap();
            let start = started.timestamp_micros() as f64 / 1e6;
            runs.push((start, start + r["seconds"].as_f64().unwrap(), g));
        }
    }
    assert!(runs.len() >= 3, "{runs:?}");
    runs.sort_by(|x, y| x.0.total_cmp(&y.0));
    for w in runs.windows(2) {
        assert!(w[0].1 <= w[1].0, "runs overlap: {:?} and {:?}", w[0], w[1]);
    }
    assert_eq!(env.keys("in/").len(), 3);
    // The files were copied once, by one of them.
    let [a, b] = logs();
    let copied = |l: &str| l.matches("\"copied\":3,").count();
    assert_eq!(copied(&a) + copied(&b), 1, "a: {a}\nb: {b}");
}

/// A 200 MiB file goes up and comes back with the process's peak memory
/// far below the file's size.
#[test]
fn a_200_mib_file_is_copied_with_bounded_memory() {
    let env = Env::new();
    let config = env.config(PUSH_PULL);
    let data = pattern(200 << 20, 11);
    write(&env.local().join("out"), "huge.bin", &data);
    let digest = md5(&data);
    drop(data);
    // The peak RSS of `sync run JOB`, taken by a small parent of its own:
    // a child spawned from this test process would inherit the test's own
    // high-water mark (Linux carries it across exec).
    let peak = |job: &str| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import resource, subprocess, sys\n\
                 code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n\
                 print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                 sys.exit(code)",
                BIN,
                "sync",
                "run",
                job,
                "--config",
            ])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "sync run {job} failed");
        let kib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        kib / 1024
    };
    let up = peak("up");
    assert_eq!(env.keys("in/")["in/huge.bin"], (200 << 20, digest.clone()));
    let down = peak("down");
    assert_eq!(files(&env.local().join("back"))["huge.bin"], digest);
    assert_eq!(env.multipart_uploads(), 0);
    // Parts in flight (5 × 5 MiB) plus read-ahead and the runtime: well under the file.
    for (job, mib) in [("up", up), ("down", down)] {
        assert!(
            mib < 120,
            "sync run {job} peaked at {mib} MiB for a 200 MiB file"
        );
    }
    eprintln!("peak RSS: push {up} MiB, pull {down} MiB");
}

/// What an operator types wrong, and the other subcommands.
#[test]
fn the_sync_commands_explain_themselves() {
    let env = Env::new();
    let config = env.config(PUSH_PULL);
    let out = env.cli(&config, &["sync", "run", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no sync job named \"nope\"") && err.contains("up, down"),
        "{err}"
    );
    write(&env.local().join("out"), "a.txt", b"a");
    env.sync_ok(&config, "up");
    let list = env.cli(&config, &["sync", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("up: Push local:/out <-> bucket:/in, on demand"),
        "{list}"
    );
    assert!(list.contains("copied 1 file(s)"), "{list}");
    assert!(
        list.contains("down: Pull") && list.contains("never run"),
        "{list}"
    );
    let status = env.cli(&config, &["sync", "status", "up"]);
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("done; copied 1 file(s), 1 byte(s)"));
    let status = env.cli(&config, &["sync", "status", "nope"]);
    assert!(!status.status.success());
}

/// Inside `serve`, jobs run on their interval beside the sessions: a job
/// that fails every run leaves SFTP untouched, and a healthy one copies
/// what a partner just uploaded.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_run_inside_serve_and_a_failing_one_harms_nothing() {
    use russh_sftp::protocol::{FileAttributes, OpenFlags};
    let g = common::gateway::start_with_tables(
        r#"
[remotes.dead]
kind = "s3"
endpoint = "http://127.0.0.1:9"
bucket = "nowhere"
access_key_id = "x"
secret_access_key = "y"
retries = 0

[[syncs]]
name = "broken"
local = "dead:/outbox"
remote = "store:/broken"
direction = "push"
interval = "1s"

[[syncs]]
name = "copy-out"
local = "store:/alice/out"
remote = "store:/copied"
direction = "push"
interval = "1s"
"#,
    )
    .await;
    let reports = |job: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(g.dir.path().join(format!("state/{job}/reports.json")))
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while reports("broken").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the broken job did not run twice"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = &reports("broken")[1];
    assert_eq!(last["outcome"]["kind"], "stopped");
    assert!(
        last["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot list the local side dead:/outbox"),
        "{last}"
    );

    // Meanwhile alice uploads over SFTP.
    let (_h, s) = common::gateway::alice(&g).await;
    s.mkdir("/out", FileAttributes::empty()).await.unwrap();
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let handle = s
        .open("/out/order.csv", flags, FileAttributes::empty())
        .await
        .unwrap()
        .handle;
    s.write(&handle, 0, b"id,qty\n7,1\n".to_vec())
        .await
        .unwrap();
    s.close(handle).await.unwrap();
    // The healthy job picks it up on its next run.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = g.s3("import sys\ntry:\n    print(s3.get_object(Bucket=bucket, Key='copied/order.csv')['Body'].read().decode())\nexcept s3.exceptions.NoSuchKey:\n    print('missing')");
        if got.trim() != "missing" {
            assert_eq!(got, "id,qty\n7,1\n\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "copy-out never copied the upload"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    g.stop().await;
}

/// Onto a folder that ignores case, names that collide without case are
/// skipped and reported, never one written over the other.
#[test]
fn names_that_collide_without_case_are_not_pulled() {
    let env = Env::new();
    let config = env.config_full(
        "gateway.toml",
        "state",
        "case_insensitive = true",
        r#"
[[syncs]]
name = "down"
local = "local:/in"
remote = "bucket:/out"
direction = "pull"
"#,
    );
    env.put_object("out/Report.pdf", b"upper");
    env.put_object("out/report.pdf", b"lower");
    env.put_object("out/Dir/a.txt", b"a");
    env.put_object("out/dir/b.txt", b"b");
    env.put_object("out/fine.txt", b"fine");
    let report = env.sync_ok(&config, "down");
    assert_eq!(count(&report, "copied"), 1, "{report}");
    assert_eq!(count(&report, "skipped"), 4, "{report}");
    assert!(
        report.contains("skipped Report.pdf: names differ only in case and the local side ignores case: Report.pdf, report.pdf"),
        "{report}"
    );
    assert!(report.contains("skipped dir/b.txt"), "{report}");
    assert_eq!(
        files(&env.local().join("in")).keys().collect::<Vec<_>>(),
        ["fine.txt"]
    );
}

/// With `[cluster]`, a job's lease is a row of the fleet's database and
/// its reports are the fleet's: while node a runs the job (its uploads
/// held by a stalling proxy), node b's `sync run` is refused, naming a's
/// run, and no lease object is written to the bucket; then b's
/// `sync status` and `sync list` show a's run, with a's node.
#[tokio::test(flavor = "multi_thread")]
async fn in_a_fleet_one_node_runs_a_job_and_every_node_sees_its_runs() {
    let env = Env::new();
    let database = common::postgres::database().await;
    let proxy = common::fault_proxy_with(env.endpoint.clone(), |method, _| {
        match *method == hyper::Method::PUT {
            true => common::Fault::Stall(Duration::from_secs(8)),
            false => common::Fault::Pass,
        }
    })
    .await;
    let job = "[[syncs]]\nname = \"up\"\nlocal = \"local:/out\"\nremote = \"bucket:/in\"\ndirection = \"push\"\n";
    let node =
        |name: &str| format!("{job}\n[cluster]\ndatabase = \"{database}\"\nnode = \"{name}\"\n");
    let a = env.config_named("a.toml", "state-a", &node("sync-a"));
    let stalled = std::fs::read_to_string(&a)
        .unwrap()
        .replace(&env.endpoint, &format!("http://{proxy}"));
    std::fs::write(&a, stalled).unwrap();
    let b = env.config_named("b.toml", "state-b", &node("sync-b"));
    std::fs::create_dir_all(env.local().join("out")).unwrap();
    std::fs::write(env.local().join("out/f.txt"), b"fleet").unwrap();

    let run_a = Command::new(BIN)
        .args(["sync", "run", "up", "--config"])
        .arg(&a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (db, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder: String = loop {
        let row = db
            .query_opt(
                "SELECT holder FROM bucketgate_sync_leases WHERE job = 'up'",
                &[],
            )
            .await
            .ok()
            .flatten();
        if let Some(row) = row {
            break row.get(0);
        }
        assert!(Instant::now() < deadline, "node a never took the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let refused = env.cli(&b, &["sync", "run", "up"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "node b ran the job too: {said}");
    assert!(
        said.contains("running elsewhere") && said.contains(&holder),
        "{said}"
    );
    let ran = run_a.wait_with_output().unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        env.keys(".bucketgate").is_empty(),
        "a lease object in the bucket"
    );
    assert_eq!(env.keys("in").len(), 1);

    let status = env.cli(&b, &["sync", "status", "up"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(" at node sync-a ") && status.contains("done; copied 1 file(s)"),
        "{status}"
    );
    let list = env.cli(&b, &["sync", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("last run") && list.contains("at node sync-a"),
        "{list}"
    );
}
