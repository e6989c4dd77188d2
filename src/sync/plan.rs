//! The planner: both sides' listings and the last run's state in, the
//! actions that bring the sides together out. Pure — no I/O, no clock — so
//! every rule of DESIGN §4 is a table test below.

use super::state::Synced;
use super::tree::{Entry, Fingerprint, Tree, ancestors, below, file_count};
use super::{BySide, Side};
use crate::config::Direction;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

/// What the job's config and the command line ask of a run.
#[derive(Debug, Clone)]
pub struct Rules {
    pub direction: Direction,
    pub delete_after_copy: bool,
    pub delete_empty_folders: bool,
    /// Percent of a side's files one run may delete.
    pub max_delete: u8,
    /// `--force`: go past the max-delete and empty-side stops.
    pub force: bool,
    pub case_insensitive: BySide<bool>,
}

/// Everything a plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub rules: &'a Rules,
    pub trees: BySide<&'a Tree>,
    /// What the last successful run left in sync; `None` before the first run.
    pub state: Option<&'a Synced>,
    /// Names conflict copies.
    pub now: DateTime<Utc>,
}

/// One step of a run. Paths are relative to the job's folders and the same
/// on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Copies the file at `path` from `from` to the other side, replacing
    /// what is there. With `then_delete`, the source is deleted once the
    /// copy is verified (`after_copy = "delete"`).
    Copy {
        from: Side,
        path: String,
        size: u64,
        then_delete: bool,
    },
    /// The other side already holds this file: check that it holds the
    /// same bytes, then delete the source (`after_copy = "delete"`).
    VerifyThenDelete { from: Side, path: String },
    /// Creates a folder that would not otherwise exist on `side`.
    MakeDir { side: Side, path: String },
    /// A conflict's older file, moved aside before the newer one replaces it.
    MoveAside {
        side: Side,
        path: String,
        to: String,
    },
    /// A file deleted on the other side since the last run.
    Delete { side: Side, path: String },
    /// A folder emptied by this run; left alone if it is not empty.
    RemoveDir { side: Side, path: String },
    /// Both sides hold the same thing; only the state learns it.
    Record { path: String },
    /// Gone from both sides; only the state forgets it.
    Forget { path: String },
}

/// The steps of a run, in the order they run (see [`Plan::actions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    MoveAside,
    MakeDirs,
    Transfer,
    Delete,
    RemoveDirs,
    /// State only: nothing changes on either side.
    Record,
}

impl Phase {
    /// Copies and deletions run `transfers` at a time; folders are made
    /// and removed one by one, in order (parents first, children first).
    pub fn in_parallel(self) -> bool {
        matches!(self, Phase::Transfer | Phase::Delete)
    }

    /// Whether the phase changes files (what a dry run shows).
    pub fn changes_files(self) -> bool {
        self != Phase::Record
    }
}

impl Action {
    /// Where the action goes in a run's order.
    pub fn phase(&self) -> Phase {
        match self {
            Action::MoveAside { .. } => Phase::MoveAside,
            Action::MakeDir { .. } => Phase::MakeDirs,
            Action::Copy { .. } | Action::VerifyThenDelete { .. } => Phase::Transfer,
            Action::Delete { .. } => Phase::Delete,
            Action::RemoveDir { .. } => Phase::RemoveDirs,
            Action::Record { .. } | Action::Forget { .. } => Phase::Record,
        }
    }

    /// The side this action writes to, and the path written there.
    fn writes(&self) -> Option<(Side, &str)> {
        match self {
            Action::Copy { from, path, .. } => Some((from.other(), path)),
            Action::MakeDir { side, path } => Some((*side, path)),
            _ => None,
        }
    }
}

/// A path the run leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In the order they may run: conflicts moved aside, folders made,
    /// copies (in parallel), deletions, then folders removed deepest first.
    pub actions: Vec<Action>,
    pub skipped: Vec<Skipped>,
    pub conflicts: usize,
}

/// Why a run stops before it acts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    #[error(
        "the run would delete {deletes} of the {files} files on the {side} side, more than max_delete = {max}%; run `bucketgate sync run NAME --force` if that is meant"
    )]
    TooManyDeletes {
        side: Side,
        deletes: usize,
        files: usize,
        max: u8,
    },
    #[error(
        "the {side} side lists no files but had {had} after the last run: it is probably unreachable or mounted wrong, not empty; run with --force if it really is empty"
    )]
    SideEmpty { side: Side, had: usize },
}

/// Plans one run.
pub fn plan(input: &Inputs) -> Result<Plan, Stop> {
    if !input.rules.force {
        for side in [Side::Local, Side::Remote] {
            let had = input.state.map_or(0, |s| {
                s.values().filter(|p| p[side].file().is_some()).count()
            });
            if had > 0 && file_count(input.trees[side]) == 0 {
                return Err(Stop::SideEmpty { side, had });
            }
        }
    }
    let mut plan = match input.rules.direction {
        Direction::Push => one_way(input, Side::Local),
        Direction::Pull => one_way(input, Side::Remote),
        Direction::TwoWay => two_way(input),
    };
    skip_case_collisions(input, &mut plan);
    if input.rules.delete_after_copy && input.rules.delete_empty_folders {
        remove_emptied_folders(&mut plan);
    }
    if !input.rules.force {
        for side in [Side::Local, Side::Remote] {
            let deletes = plan
                .actions
                .iter()
                .filter(|a| matches!(a, Action::Delete { side: s, .. } if *s == side))
                .count();
            let files = file_count(input.trees[side]);
            let max = input.rules.max_delete;
            if deletes > 0 && deletes * 100 > files * max as usize {
                return Err(Stop::TooManyDeletes {
                    side,
                    deletes,
                    files,
                    max,
                });
            }
        }
    }
    // Stable: within a phase, paths stay in listing order (parents first).
    plan.actions.sort_by_key(|a| {
        let deepest_first = match a {
            Action::RemoveDir { path, .. } => std::cmp::Reverse(path.matches('/').count()),
            _ => std::cmp::Reverse(0),
        };
        (a.phase(), deepest_first)
    });
    Ok(plan)
}

/// Folders that hold anything: only the others need making on the other
/// side, since what is copied into a folder, or made inside it, makes it.
fn folders_with_entries(tree: &Tree) -> HashSet<&str> {
    tree.keys().flat_map(|p| ancestors(p).skip(1)).collect()
}

/// A path that is a file on one side and a folder on the other: neither is
/// touched, nor anything below the folder.
struct Blocked(Vec<String>);

impl Blocked {
    fn check(
        &mut self,
        plan: &mut Plan,
        path: &str,
        local: Option<&Entry>,
        remote: Option<&Entry>,
    ) -> bool {
        if self.0.iter().any(|b| path.starts_with(&format!("{b}/"))) {
            return true;
        }
        if let (Some(l), Some(r)) = (local, remote)
            && l.is_dir() != r.is_dir()
        {
            let (file_side, dir_side) = if l.is_dir() {
                (Side::Remote, Side::Local)
            } else {
                (Side::Local, Side::Remote)
            };
            plan.skipped.push(Skipped {
                path: path.to_string(),
                reason: format!(
                    "a file on the {file_side} side and a folder on the {dir_side} side"
                ),
            });
            self.0.push(path.to_string());
            return true;
        }
        false
    }
}

/// Push or pull: copy what is missing or different on the target; never
/// delete on the target.
fn one_way(input: &Inputs, from: Side) -> Plan {
    let (source, target) = (input.trees[from], input.trees[from.other()]);
    let filled = folders_with_entries(source);
    let mut plan = Plan::default();
    let mut blocked = Blocked(Vec::new());
    let then_delete = input.rules.delete_after_copy;
    for (path, entry) in source {
        let there = target.get(path);
        let (l, r) = match from {
            Side::Local => (Some(entry), there),
            Side::Remote => (there, Some(entry)),
        };
        if blocked.check(&mut plan, path, l, r) {
            continue;
        }
        let path = path.clone();
        match (entry, there) {
            (Entry::Dir, None) if !filled.contains(path.as_str()) => {
                plan.actions.push(Action::MakeDir {
                    side: from.other(),
                    path,
                })
            }
            (Entry::Dir, _) => {}
            (Entry::File(f), None) => plan.actions.push(Action::Copy {
                from,
                size: f.size,
                path,
                then_delete,
            }),
            (Entry::File(f), Some(Entry::File(t))) => {
                let record = input.state.and_then(|s| s.get(&path));
                let recorded = record.is_some_and(|p| {
                    matches!((&p[from], &p[from.other()]), (Entry::File(a), Entry::File(b)) if a.unchanged(f) && b.unchanged(t))
                });
                if !recorded && !same_one_way(f, t) {
                    plan.actions.push(Action::Copy {
                        from,
                        size: f.size,
                        path,
                        then_delete,
                    });
                } else if then_delete {
                    plan.actions.push(Action::VerifyThenDelete { from, path });
                } else if !recorded {
                    plan.actions.push(Action::Record { path });
                }
            }
            (Entry::File(_), Some(Entry::Dir)) => unreachable!("blocked above"),
        }
    }
    // What left the source is no longer this job's to remember.
    for path in input.state.into_iter().flat_map(|s| s.keys()) {
        if !source.contains_key(path) {
            plan.actions.push(Action::Forget { path: path.clone() });
        }
    }
    plan
}

/// Whether a target file is the source's copy when no state says so: the
/// same size, the same MD5 where both ETags are one, and written no earlier
/// than the source was last changed (an object store stamps the time of
/// the copy; a filesystem copy gets the source's time).
fn same_one_way(source: &Fingerprint, target: &Fingerprint) -> bool {
    if source.size != target.size {
        return false;
    }
    if let (Some(a), Some(b)) = (source.md5(), target.md5()) {
        return a == b;
    }
    match (source.mtime, target.mtime) {
        (Some(s), Some(t)) => t >= s,
        _ => true,
    }
}

/// How one side's path moved since the last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Absent,
    New,
    Same,
    Changed,
    Deleted,
}

fn change(now: Option<&Entry>, then: Option<&Entry>) -> Change {
    match (now, then) {
        (None, None) => Change::Absent,
        (None, Some(_)) => Change::Deleted,
        (Some(_), None) => Change::New,
        (Some(Entry::Dir), Some(Entry::Dir)) => Change::Same,
        (Some(Entry::File(a)), Some(Entry::File(b))) if b.unchanged(a) => Change::Same,
        (Some(_), Some(_)) => Change::Changed,
    }
}

/// Two-way: each side's changes since the last run are applied to the other.
fn two_way(input: &Inputs) -> Plan {
    let mut plan = Plan::default();
    let mut blocked = Blocked(Vec::new());
    let no_state = Synced::new();
    let state = input.state.unwrap_or(&no_state);
    let paths: BTreeSet<&String> = input
        .trees
        .local
        .keys()
        .chain(input.trees.remote.keys())
        .chain(state.keys())
        .collect();
    let filled = [
        folders_with_entries(input.trees.local),
        folders_with_entries(input.trees.remote),
    ];
    // Folders deleted on one side: removed on the other if this run empties them.
    let mut gone_folders: Vec<(Side, String)> = Vec::new();
    for path in paths {
        let (l, r) = (input.trees.local.get(path), input.trees.remote.get(path));
        if blocked.check(&mut plan, path, l, r) {
            continue;
        }
        let record = state.get(path);
        let lc = change(l, record.map(|p| &p.local));
        let rc = change(r, record.map(|p| &p.remote));
        let path = path.clone();
        let copy = |from: Side, f: &Fingerprint| Action::Copy {
            from,
            path: path.clone(),
            size: f.size,
            then_delete: false,
        };
        match (l, r) {
            (None, None) => plan.actions.push(Action::Forget { path }),
            (Some(Entry::Dir), Some(Entry::Dir)) => {
                if record.is_none() {
                    plan.actions.push(Action::Record { path });
                }
            }
            (Some(Entry::Dir), None) | (None, Some(Entry::Dir)) => {
                let (here, deleted) = if l.is_some() {
                    (Side::Local, rc == Change::Deleted)
                } else {
                    (Side::Remote, lc == Change::Deleted)
                };
                if deleted {
                    gone_folders.push((here, path));
                } else if !filled[here as usize].contains(path.as_str()) {
                    plan.actions.push(Action::MakeDir {
                        side: here.other(),
                        path,
                    });
                }
            }
            (Some(Entry::File(f)), None) | (None, Some(Entry::File(f))) => {
                let (here, here_change) = if l.is_some() {
                    (Side::Local, lc)
                } else {
                    (Side::Remote, rc)
                };
                if here_change == Change::Same {
                    plan.actions.push(Action::Delete { side: here, path });
                } else {
                    // New here, or changed here and deleted there: it survives.
                    plan.actions.push(copy(here, f));
                }
            }
            (Some(Entry::File(lf)), Some(Entry::File(rf))) => match (lc, rc) {
                (Change::Same, Change::Same) => {}
                (Change::Same, _) => plan.actions.push(copy(Side::Remote, rf)),
                (_, Change::Same) => plan.actions.push(copy(Side::Local, lf)),
                _ if same_two_way(lf, rf, lc == Change::New && rc == Change::New) => {
                    plan.actions.push(Action::Record { path })
                }
                _ => {
                    let newer_local = lf.mtime >= rf.mtime;
                    let (winner, loser) = if newer_local {
                        (Side::Local, Side::Remote)
                    } else {
                        (Side::Remote, Side::Local)
                    };
                    let (wf, lof) = if newer_local { (lf, rf) } else { (rf, lf) };
                    let aside = format!("{path}.conflict-{}", input.now.format("%Y%m%dT%H%M%S"));
                    plan.conflicts += 1;
                    plan.actions.push(Action::MoveAside {
                        side: loser,
                        path: path.clone(),
                        to: aside.clone(),
                    });
                    plan.actions.push(copy(winner, wf));
                    plan.actions.push(Action::Copy {
                        from: loser,
                        path: aside,
                        size: lof.size,
                        then_delete: false,
                    });
                }
            },
            (Some(_), Some(_)) => unreachable!("blocked above"),
        }
    }
    remove_gone_folders(input, &mut plan, gone_folders);
    plan
}

/// Whether two files changed on both sides since the last run (or found on
/// both sides by the first run) are the same file. Without a checksum
/// only a first run trusts equal sizes; a file edited on both sides is a
/// conflict unless the checksums say otherwise.
fn same_two_way(local: &Fingerprint, remote: &Fingerprint, first_meeting: bool) -> bool {
    if local.size != remote.size {
        return false;
    }
    match (local.md5(), remote.md5()) {
        (Some(a), Some(b)) => a == b,
        _ => first_meeting,
    }
}

/// A folder deleted on one side goes on the other when everything in it
/// there is being deleted too; what survives in it is copied across and
/// brings the folder back.
fn remove_gone_folders(input: &Inputs, plan: &mut Plan, mut gone: Vec<(Side, String)>) {
    let mut going: [HashSet<String>; 2] = Default::default();
    for a in &plan.actions {
        if let Action::Delete { side, path } = a {
            going[*side as usize].insert(path.clone());
        }
    }
    gone.sort_by_key(|(_, p)| std::cmp::Reverse(p.matches('/').count()));
    for (side, dir) in gone {
        let tree = input.trees[side];
        let empties = below(tree, &dir).all(|(p, _)| going[side as usize].contains(p));
        if empties {
            going[side as usize].insert(dir.clone());
            plan.actions.push(Action::RemoveDir {
                side,
                path: dir.clone(),
            });
            plan.actions.push(Action::Forget { path: dir });
        }
    }
}

/// With `after_copy = "delete"`: the folders above each moved file, to be
/// removed if the run left them empty.
fn remove_emptied_folders(plan: &mut Plan) {
    let mut folders: BTreeMap<(Side, String), ()> = BTreeMap::new();
    for a in &plan.actions {
        if let Action::Copy {
            from,
            path,
            then_delete: true,
            ..
        }
        | Action::VerifyThenDelete { from, path } = a
        {
            for dir in ancestors(path).skip(1) {
                folders.insert((*from, dir.to_string()), ());
            }
        }
    }
    plan.actions.extend(
        folders
            .into_keys()
            .map(|(side, path)| Action::RemoveDir { side, path }),
    );
}

/// Before writing onto a side where case is ignored: a written name that
/// matches another name there (written or already present) when case is
/// ignored, at any level, is skipped and reported — never one file over
/// another, never two folders merged.
fn skip_case_collisions(input: &Inputs, plan: &mut Plan) {
    for side in [Side::Local, Side::Remote] {
        if !input.rules.case_insensitive[side] {
            continue;
        }
        let written: Vec<String> = plan
            .actions
            .iter()
            .filter_map(|a| {
                a.writes()
                    .filter(|(s, _)| *s == side)
                    .map(|(_, p)| p.to_string())
            })
            .collect();
        let mut spellings: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for path in written.iter().chain(input.trees[side].keys()) {
            for at in ancestors(path) {
                spellings.entry(at.to_lowercase()).or_default().insert(at);
            }
        }
        let clash = |path: &str| {
            ancestors(path).find_map(|at| {
                let names = &spellings[&at.to_lowercase()];
                (names.len() > 1).then(|| names.iter().copied().collect::<Vec<_>>().join(", "))
            })
        };
        let mut kept = Vec::with_capacity(plan.actions.len());
        for a in std::mem::take(&mut plan.actions) {
            match a
                .writes()
                .filter(|(s, _)| *s == side)
                .and_then(|(_, p)| clash(p).map(|c| (p.to_string(), c)))
            {
                Some((path, names)) => plan.skipped.push(Skipped {
                    path,
                    reason: format!(
                        "names differ only in case and the {side} side ignores case: {names}"
                    ),
                }),
                None => kept.push(a),
            }
        }
        plan.actions = kept;
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Local => "local",
            Side::Remote => "remote",
        })
    }
}

#[cfg(test)]
mod tests;
