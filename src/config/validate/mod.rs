//! Raw config → validated [`Config`], collecting every problem with its line.
//! Defaults live here, one place, next to the check of each key.

use super::memory::{MIN_MEMORY_BUDGET, default_memory_budget};
use super::raw::*;
use super::units::{parse_duration, parse_size};
use super::*;
use crate::base::{MAX_KEY_BYTES, check_segment};
use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;

mod admin;
mod auth;
mod cluster;
mod ctx;
mod ftp;
mod remote;
mod server;
mod sftp;
mod sync;
mod user;
mod web;
mod webhook;

use admin::validate_admin;
use ctx::{Ctx, is_password_hash, normalise_config_path, parse_port_range};
use ftp::validate_ftp;
use remote::validate_remote;
use server::validate_server;
use sync::validate_sync;
use user::{Login, validate_user};
use webhook::validate_webhook;

/// The names of the configured remotes, which a location must use.
pub(super) type RemoteNames = std::collections::BTreeSet<String>;

const MIB: u64 = 1 << 20;
/// S3 refuses parts under 5 MiB (except the last) and over 5 GiB.
const S3_MIN_PART: u64 = 5 * MIB;
const S3_MAX_PART: u64 = 5 << 30;

pub(super) fn validate(raw: RawConfig, lines: &LineIndex, problems: &mut Vec<Problem>) -> Config {
    let mut cx = Ctx { lines, problems };
    let server = validate_server(&mut cx, &raw.server);
    let security = SecurityConfig {
        ban_threshold: cx.count(
            &raw.security.ban_threshold,
            "security.ban_threshold",
            5,
            1..=1_000_000,
        ) as u32,
        ban_window: cx.duration(
            &raw.security.ban_window,
            "security.ban_window",
            Duration::from_secs(300),
        ),
        ban_time: cx.duration(
            &raw.security.ban_time,
            "security.ban_time",
            Duration::from_secs(900),
        ),
    };
    let sftp = raw.sftp.as_ref().map(|t| sftp::validate_sftp(&mut cx, t));
    let certificates = sftp
        .as_ref()
        .is_some_and(|s| !s.trusted_user_ca_keys.is_empty());
    let ftp = raw.ftp.as_ref().map(|t| validate_ftp(&mut cx, t));
    let admin = raw.admin.as_ref().map(|t| validate_admin(&mut cx, t));
    let web = raw.web.as_ref().map(|t| web::validate_web(&mut cx, t));
    let remotes = raw
        .remotes
        .iter()
        .filter_map(|(name, r)| validate_remote(&mut cx, name, r).map(|c| (name.clone(), c)))
        .collect();

    budget_fits_parts(&mut cx, &raw.server, server.memory_budget, &remotes);
    let names: RemoteNames = raw.remotes.keys().cloned().collect();
    let users: Vec<UserConfig> = raw
        .users
        .iter()
        .enumerate()
        .filter_map(|(i, u)| {
            let login = Login::Own { certificates };
            validate_user(&mut cx, &format!("users[{i}]"), u, &names, login)
        })
        .collect();
    let user_names = raw.users.iter().map(|u| &u.get_ref().name);
    duplicates(&mut cx, user_names, "users", "user");
    one_quota_per_target(&mut cx, &raw.users, &users);
    let syncs = raw
        .syncs
        .iter()
        .enumerate()
        .filter_map(|(i, s)| validate_sync(&mut cx, i, s, &names))
        .collect();
    duplicates(
        &mut cx,
        raw.syncs.iter().map(|s| &s.get_ref().name),
        "syncs",
        "sync",
    );

    let webhooks = raw
        .webhooks
        .iter()
        .enumerate()
        .filter_map(|(i, w)| validate_webhook(&mut cx, i, w))
        .collect();
    duplicates(
        &mut cx,
        raw.webhooks.iter().map(|w| &w.get_ref().name),
        "webhooks",
        "webhook",
    );

    let auth = auth::validate_auth(&mut cx, &raw.auth, &names, raw.users.len());
    let cluster = raw
        .cluster
        .as_ref()
        .map(|t| cluster::validate_cluster(&mut cx, t));
    Config {
        auth,
        cluster,
        server,
        security,
        sftp,
        ftp,
        admin,
        web,
        remotes,
        users,
        syncs,
        webhooks,
    }
}

/// An upload holds its part whole from the memory budget, and three
/// quarters of the budget serve parts: the largest part must fit a few
/// times, or uploads would wait on each other for ever.
fn budget_fits_parts(
    cx: &mut Ctx<'_>,
    raw: &RawServer,
    budget: u64,
    remotes: &BTreeMap<String, RemoteConfig>,
) {
    let Some((name, largest)) = remotes
        .iter()
        .map(|(name, r)| (name, r.part_size))
        .max_by_key(|(_, size)| *size)
    else {
        return;
    };
    if budget < 4 * largest {
        let message = format!(
            "{} is under 4 x the largest part_size ({} on remote {name:?}): raise it or lower part_size",
            units::format_size(budget),
            units::format_size(largest)
        );
        match &raw.memory_budget {
            Some(v) => cx.at(v, "server.memory_budget", message),
            None => cx.problem(1, "server.memory_budget", message),
        }
    }
}

/// Reports every repeat of a name in a list of tables.
fn duplicates<'a>(
    cx: &mut Ctx<'_>,
    names: impl Iterator<Item = &'a S<String>>,
    table: &str,
    what: &str,
) {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if let Some(n) = name
            && !seen.insert(n.get_ref().clone())
        {
            cx.at(
                n,
                &format!("{table}[{i}].name"),
                format!("duplicate {what} name {:?}", n.get_ref()),
            );
        }
    }
}

/// A quota belongs to its target (a remote and prefix), not to who
/// reaches it: two users, or two mounts, giving one target different
/// quotas is refused rather than one of them silently winning.
fn one_quota_per_target(cx: &mut Ctx<'_>, raw: &[Spanned<RawUser>], users: &[UserConfig]) {
    let mut seen: std::collections::HashMap<String, (Quota, String)> = Default::default();
    for user in users {
        let line = raw
            .iter()
            .find(|r| {
                r.get_ref()
                    .name
                    .as_ref()
                    .is_some_and(|n| n.get_ref() == &user.name)
            })
            .map_or(0, |r| cx.lines.of(r));
        let homes = std::iter::once((&user.home, user.limits.quota));
        let mounts = user.mounts.iter().map(|m| (&m.target, m.quota));
        for (place, quota) in homes.chain(mounts).filter(|(_, q)| q.is_set()) {
            let name = place.to_string();
            match seen.get(&name) {
                Some((other, who)) if *other != quota => cx.problem(
                    line,
                    &format!("users.{}", user.name),
                    format!("{name} has another quota at user {who}: one target, one quota"),
                ),
                Some(_) => {}
                None => {
                    seen.insert(name, (quota, user.name.clone()));
                }
            }
        }
    }
}
