//! `[[syncs]]` → [`SyncConfig`].

use super::*;

pub(super) fn validate_sync(
    cx: &mut Ctx<'_>,
    i: usize,
    spanned: &Spanned<RawSync>,
    remotes: &RemoteNames,
) -> Option<SyncConfig> {
    let line = cx.lines.of(spanned);
    let s = spanned.get_ref();
    let key = |k: &str| format!("syncs[{i}].{k}");
    let name = match &s.name {
        Some(n) if !n.get_ref().trim().is_empty() => n.get_ref().clone(),
        _ => {
            cx.problem(line, &key("name"), "is required");
            String::new()
        }
    };
    let local = cx.location(&s.local, &key("local"), line, remotes);
    let remote = cx.location(&s.remote, &key("remote"), line, remotes);
    let named = |d: &str| Direction::ALL.into_iter().find(|k| k.name() == d);
    let direction = match s.direction.as_ref().map(|d| (d, named(d.get_ref()))) {
        Some((_, Some(direction))) => direction,
        Some((d, None)) => {
            let other = d.get_ref();
            cx.at(
                d,
                &key("direction"),
                format!("{other:?} is not one of push, pull, two-way"),
            );
            Direction::Push
        }
        None => {
            cx.problem(
                line,
                &key("direction"),
                "is required: push, pull or two-way",
            );
            Direction::Push
        }
    };
    let delete_after_copy = match s.after_copy.as_ref().map(|a| (a, a.get_ref().as_str())) {
        None | Some((_, "keep")) => false,
        Some((a, "delete")) => {
            if direction == Direction::TwoWay {
                cx.at(
                    a,
                    &key("after_copy"),
                    "\"delete\" applies to one-way jobs (push or pull) only",
                );
            }
            true
        }
        Some((a, other)) => {
            cx.at(
                a,
                &key("after_copy"),
                format!("{other:?} is not one of keep, delete"),
            );
            false
        }
    };
    let interval = s
        .interval
        .as_ref()
        .map(|v| cx.duration(&Some(v.clone()), &key("interval"), Duration::from_secs(300)));
    let transfers = cx.count(&s.transfers, &key("transfers"), 4, 1..=256);
    let max_delete = cx.count(&s.max_delete, &key("max_delete"), 50, 0..=100) as u8;
    Some(SyncConfig {
        name,
        local: local?,
        remote: remote?,
        direction,
        delete_after_copy,
        interval,
        transfers,
        max_delete,
        delete_empty_folders: Ctx::flag(&s.delete_empty_folders, true),
    })
}
