//! `[[users]]` → [`UserConfig`]: home, mounts, permissions, keys.

use super::*;

/// How a user logs in.
#[derive(Debug, Clone, Copy)]
pub(super) enum Login {
    /// With the password or keys of the table, as the users file has them;
    /// `certificates`: a certificate of a trusted CA logs users in too.
    Own { certificates: bool },
    /// As an identity source (a directory, the hook) decides.
    BySource,
}

/// A user table at `table` (`users[3]`; empty for a definition from an
/// identity source).
pub(super) fn validate_user(
    cx: &mut Ctx<'_>,
    table: &str,
    spanned: &Spanned<RawUser>,
    remotes: &RemoteNames,
    login: Login,
) -> Option<UserConfig> {
    let line = cx.lines.of(spanned);
    let u = spanned.get_ref();
    let key = |k: &str| join_key(table, k);
    let name = match &u.name {
        Some(n) => match crate::base::check_user_name(n.get_ref()) {
            Ok(()) => n.get_ref().clone(),
            Err(e) => {
                cx.at(n, &key("name"), &e);
                return None;
            }
        },
        None => {
            cx.problem(line, &key("name"), "is required");
            return None;
        }
    };
    let password_hash = u
        .password
        .as_ref()
        .and_then(|p| match is_password_hash(p.get_ref()) {
            Ok(()) => Some(p.get_ref().clone()),
            Err(e) => {
                cx.at(p, &key("password"), e);
                None
            }
        });
    let authorized_keys: Vec<russh::keys::PublicKey> = u
        .authorized_keys
        .iter()
        .enumerate()
        .filter_map(|(k, line_text)| {
            match russh::keys::ssh_key::authorized_keys::Entry::from_str(line_text.get_ref().trim())
            {
                Ok(entry) => Some(entry.public_key().clone()),
                Err(e) => {
                    cx.at(
                        line_text,
                        &format!("{}[{k}]", key("authorized_keys")),
                        format!("is not an authorized_keys line ({e})"),
                    );
                    None
                }
            }
        })
        .collect();
    let cert_principals: Vec<String> = u
        .cert_principals
        .as_ref()
        .map(|list| list.get_ref().iter().map(|p| p.get_ref().clone()).collect())
        .unwrap_or_default();
    let totp = u
        .totp
        .as_ref()
        .and_then(|t| match TotpSecret::parse(t.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                cx.at(t, &key("totp"), e);
                None
            }
        });
    let auth_methods = match &u.auth_methods {
        None => AuthMethods::default_for(u.totp.is_some()),
        Some(lists) => {
            let texts: Vec<String> = lists
                .get_ref()
                .iter()
                .map(|l| l.get_ref().clone())
                .collect();
            AuthMethods::parse(&texts, u.totp.is_some()).unwrap_or_else(|e| {
                cx.at(lists, &key("auth_methods"), e);
                AuthMethods::default_for(u.totp.is_some())
            })
        }
    };
    if matches!(
        login,
        Login::Own {
            certificates: false
        }
    ) && u.password.is_none()
        && u.authorized_keys.is_empty()
    {
        cx.problem(
            line,
            &key("password"),
            "the user has neither a password nor authorized_keys, so cannot log in",
        );
    }
    let home = cx.location(&u.home, &key("home"), line, remotes);
    let permissions = match &u.permissions {
        None => Permissions::all(),
        Some(list) => {
            list.get_ref()
                .iter()
                .enumerate()
                .fold(
                    Permissions::default(),
                    |acc, (k, p)| match Permissions::parse_entry(p.get_ref()) {
                        Ok(set) => acc.union(set),
                        Err(e) => {
                            cx.at(p, &format!("{}[{k}]", key("permissions")), e);
                            acc
                        }
                    },
                )
        }
    };
    let allowed_ips = match &u.allowed_ips {
        None => vec![
            "0.0.0.0/0".parse().expect("any v4"),
            "::/0".parse().expect("any v6"),
        ],
        Some(list) => cx.cidrs(list.get_ref(), &key("allowed_ips")),
    };
    let mut mounts: Vec<(MountConfig, usize)> = Vec::new();
    for (m, spanned_mount) in u.mounts.iter().enumerate() {
        let mline = cx.lines.of(spanned_mount);
        let mount = spanned_mount.get_ref();
        let mkey = |k: &str| join_key(table, &format!("mounts[{m}].{k}"));
        let path = match tree_path(cx, &mount.path, &mkey("path"), mline) {
            Some((p, path)) if path == "/" => {
                cx.at(p, &mkey("path"), "cannot be \"/\": that is the user's home");
                continue;
            }
            Some((_, path)) => path,
            None => continue,
        };
        let Some(target) = cx.location(&mount.target, &mkey("target"), mline, remotes) else {
            continue;
        };
        if let Some((other, _)) = mounts.iter().find(|(o, _)| overlaps(&o.path, &path)) {
            let msg = format!("{path} overlaps the mount at {}", other.path);
            let at = mount.path.as_ref().map_or(mline, |p| cx.lines.of(p));
            cx.problem(at, &mkey("path"), msg);
            continue;
        }
        mounts.push((
            MountConfig {
                path,
                target,
                read_only: Ctx::flag(&mount.read_only, false),
                quota: cx.quota(&mount.quota, &mount.quota_files, &mkey),
            },
            mline,
        ));
    }
    let filters = validate_filters(cx, table, &u.filters);
    Some(UserConfig {
        name,
        password_hash,
        authorized_keys,
        cert_principals,
        totp,
        auth_methods,
        home: home?,
        permissions,
        max_sessions: cx.count(&u.max_sessions, &key("max_sessions"), 10, 1..=100_000),
        allowed_ips,
        mounts: mounts.into_iter().map(|(m, _)| m).collect(),
        filters,
        limits: Limits {
            max_file_size: u
                .max_file_size
                .is_some()
                .then(|| cx.size(&u.max_file_size, &key("max_file_size"), u64::MAX)),
            quota: cx.quota(&u.quota, &u.quota_files, &key),
            bandwidth: Bandwidth {
                up: cx.rate(&u.bandwidth_up, &key("bandwidth_up")),
                down: cx.rate(&u.bandwidth_down, &key("bandwidth_down")),
            },
        },
    })
}

/// A table's required `path` in the user's tree, absolute and normalised
/// (`/` for the whole tree), with where it was written; `None` once the
/// problem is reported.
fn tree_path<'a>(
    cx: &mut Ctx<'_>,
    path: &'a S<String>,
    key: &str,
    line: usize,
) -> Option<(&'a Spanned<String>, String)> {
    let Some(p) = path else {
        cx.problem(line, key, "is required");
        return None;
    };
    match normalise_config_path(p.get_ref()) {
        Ok(n) => Some((p, format!("/{n}"))),
        Err(e) => {
            cx.at(p, key, e);
            None
        }
    }
}

/// `filters`, deepest folder first: a name is judged by the first that
/// covers its folder.
fn validate_filters(
    cx: &mut Ctx<'_>,
    table: &str,
    raw: &[Spanned<RawFilter>],
) -> Vec<FilterConfig> {
    let mut filters: Vec<FilterConfig> = Vec::new();
    for (f, spanned) in raw.iter().enumerate() {
        let fline = cx.lines.of(spanned);
        let filter = spanned.get_ref();
        let fkey = |k: &str| join_key(table, &format!("filters[{f}].{k}"));
        let Some((_, path)) = tree_path(cx, &filter.path, &fkey("path"), fline) else {
            continue;
        };
        if filters.iter().any(|o| o.path == path) {
            cx.problem(fline, &fkey("path"), format!("{path} has a filter already"));
            continue;
        }
        let texts = |v: &S<Vec<Spanned<String>>>| -> Vec<String> {
            v.as_ref()
                .map(|l| l.get_ref().iter().map(|s| s.get_ref().clone()).collect())
                .unwrap_or_default()
        };
        if filter.allow.is_none() && filter.deny.is_none() {
            cx.problem(fline, &fkey("allow"), "a filter needs allow or deny globs");
            continue;
        }
        match FilterConfig::new(path, texts(&filter.allow), texts(&filter.deny)) {
            Ok(made) => filters.push(made),
            Err(e) => cx.problem(fline, &fkey("allow"), e),
        }
    }
    filters.sort_by_key(|f| std::cmp::Reverse(f.path.len()));
    filters
}

/// Two mount paths overlap when equal or one lies inside the other.
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
    inside(a, b) || inside(b, a)
}
