//! The planner's rules as tables: listings and state in, actions out.

use super::*;
use crate::sync::state::Pair;
use chrono::TimeZone;

fn file(size: u64, mtime: i64) -> Entry {
    Entry::File(Fingerprint {
        size,
        mtime: Some(mtime),
        etag: None,
    })
}

fn dir() -> Entry {
    Entry::Dir
}

fn tree(entries: &[(&str, Entry)]) -> Tree {
    entries
        .iter()
        .map(|(p, e)| (p.to_string(), e.clone()))
        .collect()
}

/// A state where each path was in sync as `(local, remote)`.
fn state(entries: &[(&str, Entry, Entry)]) -> Synced {
    entries
        .iter()
        .map(|(p, l, r)| {
            (
                p.to_string(),
                Pair {
                    local: l.clone(),
                    remote: r.clone(),
                },
            )
        })
        .collect()
}

fn rules(direction: Direction) -> Rules {
    Rules {
        direction,
        delete_after_copy: false,
        delete_empty_folders: true,
        max_delete: 50,
        force: false,
        case_insensitive: BySide::default(),
    }
}

fn side(s: &Side) -> &'static str {
    match s {
        Side::Local => "L",
        Side::Remote => "R",
    }
}

/// The plan in one line per action: `copy L a` copies `a` from local.
fn show(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| match a {
            Action::Copy {
                from,
                path,
                then_delete,
                ..
            } => format!(
                "{} {} {path}",
                if *then_delete { "move" } else { "copy" },
                side(from)
            ),
            Action::VerifyThenDelete { from, path } => {
                format!("verify-delete {} {path}", side(from))
            }
            Action::MakeDir { side: s, path } => format!("mkdir {} {path}", side(s)),
            Action::MoveAside { side: s, path, to } => format!("aside {} {path} {to}", side(s)),
            Action::Delete { side: s, path } => format!("delete {} {path}", side(s)),
            Action::RemoveDir { side: s, path } => format!("rmdir {} {path}", side(s)),
            Action::Record { path } => format!("record {path}"),
            Action::Forget { path } => format!("forget {path}"),
        })
        .collect()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 13, 5, 9).unwrap()
}

fn planned(
    rules: &Rules,
    local: &Tree,
    remote: &Tree,
    state: Option<&Synced>,
) -> Result<Plan, Stop> {
    plan(&Inputs {
        rules,
        trees: BySide { local, remote },
        state,
        now: now(),
    })
}

fn actions(rules: &Rules, local: &Tree, remote: &Tree, state: Option<&Synced>) -> Vec<String> {
    show(&planned(rules, local, remote, state).expect("a plan, not a stop"))
}

#[test]
fn push_copies_what_is_missing_or_different_and_never_deletes() {
    let local = tree(&[
        ("new.txt", file(5, 100)),
        ("grown.txt", file(9, 100)),
        ("kept.txt", file(4, 100)),
        ("seen.txt", file(4, 100)),
        ("docs", dir()),
        ("docs/a.txt", file(1, 100)),
        ("empty", dir()),
        ("empty/deeper", dir()),
    ]);
    let remote = tree(&[
        ("grown.txt", file(4, 200)),
        // Same size, written after the source changed: the copy.
        ("kept.txt", file(4, 150)),
        // Same size but older than the source: the source changed since.
        ("seen.txt", file(4, 50)),
        ("only-remote.txt", file(3, 100)),
    ]);
    assert_eq!(
        actions(&rules(Direction::Push), &local, &remote, None),
        [
            "mkdir R empty/deeper",
            "copy L docs/a.txt",
            "copy L grown.txt",
            "copy L new.txt",
            "copy L seen.txt",
            "record kept.txt",
        ]
    );
}

#[test]
fn an_unchanged_file_is_never_copied_again() {
    // After a push: the remote copy has its own time and ETag.
    let copy = Entry::File(Fingerprint {
        size: 4,
        mtime: Some(90),
        etag: Some("e1".into()),
    });
    let local = tree(&[("a.txt", file(4, 100))]);
    let remote = tree(&[("a.txt", copy.clone())]);
    let s = state(&[("a.txt", file(4, 100), copy)]);
    // Without the state, the remote looks older than the source; the state says it is the copy.
    assert_eq!(
        actions(&rules(Direction::Push), &local, &remote, Some(&s)),
        Vec::<String>::new()
    );
    // The source changes (same size, new time): copied again.
    let local = tree(&[("a.txt", file(4, 300))]);
    assert_eq!(
        actions(&rules(Direction::Push), &local, &remote, Some(&s)),
        ["copy L a.txt"]
    );
}

#[test]
fn pull_mirrors_push() {
    let local = tree(&[("old.txt", file(1, 1))]);
    let remote = tree(&[("in/order.csv", file(7, 5)), ("in", dir()), ("out", dir())]);
    assert_eq!(
        actions(&rules(Direction::Pull), &local, &remote, None),
        ["mkdir L out", "copy R in/order.csv"]
    );
}

#[test]
fn etags_that_are_md5s_decide_equality() {
    let md5 = |tag: &str| {
        Entry::File(Fingerprint {
            size: 4,
            mtime: Some(1),
            etag: Some(tag.into()),
        })
    };
    let a = "9e107d9d372bb6826bd81d3542a419d6";
    let b = "e4d909c290d0fb1ca068ffaddf22cbd0";
    let local = tree(&[("same", md5(a)), ("differs", md5(a))]);
    let remote = tree(&[("same", md5(a)), ("differs", md5(b))]);
    assert_eq!(
        actions(&rules(Direction::Push), &local, &remote, None),
        ["copy L differs", "record same"]
    );
}

/// A case name, local now, remote now, the last state, the actions wanted.
type Row = (
    &'static str,
    Option<Entry>,
    Option<Entry>,
    Option<(Entry, Entry)>,
    Vec<&'static str>,
);

/// Two-way, one row per case: (local now, remote now, last state) → actions.
#[test]
fn two_way_applies_each_sides_changes() {
    let r = rules(Direction::TwoWay);
    let v1 = || file(4, 100);
    let cases: Vec<Row> = vec![
        ("new on local", Some(v1()), None, None, vec!["copy L f"]),
        ("new on remote", None, Some(v1()), None, vec!["copy R f"]),
        (
            "changed on local",
            Some(file(5, 200)),
            Some(v1()),
            Some((v1(), v1())),
            vec!["copy L f"],
        ),
        (
            "changed on remote",
            Some(v1()),
            Some(file(4, 300)),
            Some((v1(), v1())),
            vec!["copy R f"],
        ),
        (
            "unchanged",
            Some(v1()),
            Some(v1()),
            Some((v1(), v1())),
            vec![],
        ),
        (
            "deleted on local",
            None,
            Some(v1()),
            Some((v1(), v1())),
            vec!["delete R f"],
        ),
        (
            "deleted on remote",
            Some(v1()),
            None,
            Some((v1(), v1())),
            vec!["delete L f"],
        ),
        (
            "deleted on both",
            None,
            None,
            Some((v1(), v1())),
            vec!["forget f"],
        ),
        (
            "deleted on local, changed on remote",
            None,
            Some(file(6, 300)),
            Some((v1(), v1())),
            vec!["copy R f"],
        ),
        (
            "changed on local, deleted on remote",
            Some(file(6, 300)),
            None,
            Some((v1(), v1())),
            vec!["copy L f"],
        ),
        (
            "new on both, same size",
            Some(file(4, 100)),
            Some(file(4, 500)),
            None,
            vec!["record f"],
        ),
        (
            "changed on both: remote newer",
            Some(file(5, 200)),
            Some(file(6, 300)),
            Some((v1(), v1())),
            vec![
                "aside L f f.conflict-20261129T130509",
                "copy R f",
                "copy L f.conflict-20261129T130509",
            ],
        ),
        (
            "changed on both: local newer",
            Some(file(5, 400)),
            Some(file(6, 300)),
            Some((v1(), v1())),
            vec![
                "aside R f f.conflict-20261129T130509",
                "copy L f",
                "copy R f.conflict-20261129T130509",
            ],
        ),
        (
            "changed on both to the same size: still a conflict without a checksum",
            Some(file(5, 200)),
            Some(file(5, 300)),
            Some((v1(), v1())),
            vec![
                "aside L f f.conflict-20261129T130509",
                "copy R f",
                "copy L f.conflict-20261129T130509",
            ],
        ),
        (
            "new on both, sizes differ",
            Some(file(3, 100)),
            Some(file(4, 50)),
            None,
            vec![
                "aside R f f.conflict-20261129T130509",
                "copy L f",
                "copy R f.conflict-20261129T130509",
            ],
        ),
    ];
    for (name, l, rr, s, want) in cases {
        // A second, untouched file keeps every deletion under max_delete.
        let mut local = tree(&[("other", v1()), ("more", v1())]);
        let mut remote = local.clone();
        let mut synced = state(&[("other", v1(), v1()), ("more", v1(), v1())]);
        if let Some(e) = l {
            local.insert("f".into(), e);
        }
        if let Some(e) = rr {
            remote.insert("f".into(), e);
        }
        if let Some((a, b)) = s {
            synced.insert(
                "f".into(),
                Pair {
                    local: a,
                    remote: b,
                },
            );
        }
        assert_eq!(actions(&r, &local, &remote, Some(&synced)), want, "{name}");
    }
}

#[test]
fn a_first_two_way_run_only_copies() {
    let local = tree(&[("a", file(1, 1)), ("d", dir())]);
    let remote = tree(&[("b", file(2, 2)), ("e", dir()), ("e/f", file(3, 3))]);
    assert_eq!(
        actions(&rules(Direction::TwoWay), &local, &remote, None),
        ["mkdir R d", "copy L a", "copy R b", "copy R e/f"]
    );
}

#[test]
fn a_folder_deleted_on_one_side_goes_on_the_other() {
    let local = tree(&[("keep", file(1, 1)), ("k2", file(1, 1)), ("k3", file(1, 1))]);
    let remote = tree(&[
        ("keep", file(1, 1)),
        ("k2", file(1, 1)),
        ("k3", file(1, 1)),
        ("old", dir()),
        ("old/a", file(1, 1)),
        ("old/sub", dir()),
    ]);
    let s = state(&[
        ("keep", file(1, 1), file(1, 1)),
        ("k2", file(1, 1), file(1, 1)),
        ("k3", file(1, 1), file(1, 1)),
        ("old", dir(), dir()),
        ("old/a", file(1, 1), file(1, 1)),
        ("old/sub", dir(), dir()),
    ]);
    assert_eq!(
        actions(&rules(Direction::TwoWay), &local, &remote, Some(&s)),
        [
            "delete R old/a",
            "rmdir R old/sub",
            "rmdir R old",
            "forget old/sub",
            "forget old"
        ]
    );
    // A file new in that folder on the remote survives, and so does the folder.
    let mut remote = remote;
    remote.insert("old/new".into(), file(2, 2));
    assert_eq!(
        actions(&rules(Direction::TwoWay), &local, &remote, Some(&s)),
        [
            "copy R old/new",
            "delete R old/a",
            "rmdir R old/sub",
            "forget old/sub"
        ]
    );
}

#[test]
fn names_that_collide_without_case_are_skipped() {
    let mut r = rules(Direction::Pull);
    r.case_insensitive.local = true;
    let local = tree(&[("dir", dir()), ("dir/y", file(1, 1))]);
    let remote = tree(&[
        ("Report.pdf", file(1, 1)),
        ("report.pdf", file(2, 1)),
        ("Dir", dir()),
        ("Dir/x", file(1, 1)),
        ("fine.txt", file(1, 1)),
    ]);
    let p = planned(&r, &local, &remote, None).unwrap();
    assert_eq!(show(&p), ["copy R fine.txt"]);
    let skipped: Vec<_> = p
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            (
                "Dir/x",
                "names differ only in case and the local side ignores case: Dir, dir"
            ),
            (
                "Report.pdf",
                "names differ only in case and the local side ignores case: Report.pdf, report.pdf"
            ),
            (
                "report.pdf",
                "names differ only in case and the local side ignores case: Report.pdf, report.pdf"
            ),
        ]
    );
    // The same names onto a case-sensitive side are copied.
    r.case_insensitive.local = false;
    assert_eq!(planned(&r, &local, &remote, None).unwrap().actions.len(), 4);
}

#[test]
fn a_file_against_a_folder_is_skipped_with_what_is_below() {
    let local = tree(&[("x", file(1, 1))]);
    let remote = tree(&[("x", dir()), ("x/y", file(1, 1)), ("z", file(1, 1))]);
    let p = planned(&rules(Direction::TwoWay), &local, &remote, None).unwrap();
    assert_eq!(show(&p), ["copy R z"]);
    assert_eq!(p.skipped[0].path, "x");
    assert_eq!(
        p.skipped[0].reason,
        "a file on the local side and a folder on the remote side"
    );
}

#[test]
fn deleting_over_max_delete_stops_unless_forced() {
    let all = ["a", "b", "c", "d"];
    let remote = tree(&all.map(|p| (p, file(1, 1))));
    let s = state(&all.map(|p| (p, file(1, 1), file(1, 1))));
    let mut r = rules(Direction::TwoWay);
    // Two of four deleted locally: 50%, allowed.
    let local = tree(&[("a", file(1, 1)), ("b", file(1, 1))]);
    assert_eq!(
        actions(&r, &local, &remote, Some(&s)),
        ["delete R c", "delete R d"]
    );
    // Three of four: 75% > 50%.
    let local = tree(&[("a", file(1, 1))]);
    assert_eq!(
        planned(&r, &local, &remote, Some(&s)),
        Err(Stop::TooManyDeletes {
            side: Side::Remote,
            deletes: 3,
            files: 4,
            max: 50
        })
    );
    r.force = true;
    assert_eq!(actions(&r, &local, &remote, Some(&s)).len(), 3);
}

#[test]
fn a_side_that_lists_empty_after_having_files_stops() {
    let s = state(&[("a", file(1, 1), file(1, 1))]);
    let remote = tree(&[("a", file(1, 1))]);
    for direction in [Direction::Push, Direction::Pull, Direction::TwoWay] {
        let mut r = rules(direction);
        assert_eq!(
            planned(&r, &Tree::new(), &remote, Some(&s)),
            Err(Stop::SideEmpty {
                side: Side::Local,
                had: 1
            }),
            "{direction:?}"
        );
        r.force = true;
        assert!(planned(&r, &Tree::new(), &remote, Some(&s)).is_ok());
    }
    // Never had files: empty is just empty.
    assert!(planned(&rules(Direction::Push), &Tree::new(), &remote, None).is_ok());
}

#[test]
fn delete_after_copy_moves_files_and_removes_emptied_folders() {
    let mut r = rules(Direction::Push);
    r.delete_after_copy = true;
    let local = tree(&[
        ("in", dir()),
        ("in/a.csv", file(3, 1)),
        ("in/sub", dir()),
        ("in/sub/b.csv", file(3, 1)),
        ("done.csv", file(2, 1)),
    ]);
    let remote = tree(&[("done.csv", file(2, 5))]);
    assert_eq!(
        actions(&r, &local, &remote, None),
        [
            "verify-delete L done.csv",
            "move L in/a.csv",
            "move L in/sub/b.csv",
            "rmdir L in/sub",
            "rmdir L in",
        ]
    );
    r.delete_empty_folders = false;
    assert_eq!(actions(&r, &local, &remote, None).len(), 3);
}
