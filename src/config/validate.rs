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

mod auth;

/// The names of the configured remotes, which a location must use.
pub(super) type RemoteNames = std::collections::BTreeSet<String>;

const MIB: u64 = 1 << 20;
/// S3 refuses parts under 5 MiB (except the last) and over 5 GiB.
const S3_MIN_PART: u64 = 5 * MIB;
const S3_MAX_PART: u64 = 5 << 30;

struct Ctx<'a> {
    lines: &'a LineIndex,
    problems: &'a mut Vec<Problem>,
}

impl Ctx<'_> {
    fn problem(&mut self, line: usize, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn at<T>(&mut self, value: &Spanned<T>, key: &str, message: impl Into<String>) {
        let line = self.lines.of(value);
        self.problem(line, key, message);
    }

    fn text(&mut self, v: &S<String>, default: &str) -> String {
        v.as_ref()
            .map_or_else(|| default.to_string(), |s| s.get_ref().clone())
    }

    fn duration(&mut self, v: &S<String>, key: &str, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(s.get_ref()).unwrap_or_else(|e| {
                self.at(s, key, e);
                default
            }),
        }
    }

    /// A duration no longer than `most`.
    fn duration_at_most(
        &mut self,
        v: &S<String>,
        key: &str,
        default: Duration,
        most: Duration,
    ) -> Duration {
        let d = self.duration(v, key, default);
        if let Some(s) = v.as_ref().filter(|_| d > most) {
            self.at(
                s,
                key,
                format!("is at most {}", humantime::format_duration(most)),
            );
            return default;
        }
        d
    }

    fn size(&mut self, v: &S<String>, key: &str, default: u64) -> u64 {
        match v {
            None => default,
            Some(s) => parse_size(s.get_ref()).unwrap_or_else(|e| {
                self.at(s, key, e);
                default
            }),
        }
    }

    fn count(
        &mut self,
        v: &S<i64>,
        key: &str,
        default: usize,
        range: RangeInclusive<i64>,
    ) -> usize {
        match v {
            None => default,
            Some(n) if range.contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.at(
                    n,
                    key,
                    format!(
                        "{} is out of range {}..={}",
                        n.get_ref(),
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }

    fn listen(&mut self, v: &S<String>, key: &str, default: &str) -> SocketAddr {
        match v {
            None => default.parse().expect("default listen address"),
            Some(s) => s.get_ref().parse().unwrap_or_else(|_| {
                self.at(
                    s,
                    key,
                    format!(
                        "{:?} is not an address like \"127.0.0.1:2222\"",
                        s.get_ref()
                    ),
                );
                default.parse().expect("default listen address")
            }),
        }
    }

    /// A file the gateway reads at start (a CA bundle): it must be there.
    fn file(&mut self, v: &S<String>, key: &str) -> Option<PathBuf> {
        v.as_ref().map(|c| {
            let path = PathBuf::from(c.get_ref());
            if !path.is_file() {
                self.at(c, key, format!("{} is not a readable file", path.display()));
            }
            path
        })
    }

    /// A required secret: an `env:` variable set to nothing is refused.
    fn secret(&mut self, v: &S<String>, key: &str, table_line: usize, required: &str) -> String {
        match v {
            Some(s) if !s.get_ref().is_empty() => s.get_ref().clone(),
            Some(s) => {
                self.at(s, key, "is empty (an env: variable that is not set?)");
                String::new()
            }
            None => {
                self.problem(table_line, key, required);
                String::new()
            }
        }
    }

    /// A required `http://` or `https://` URL of `whose` server.
    fn http_url(
        &mut self,
        v: &S<String>,
        key: &str,
        table_line: usize,
        whose: &str,
    ) -> Option<url::Url> {
        match v {
            None => {
                self.problem(
                    table_line,
                    key,
                    format!("is required: {whose} http:// or https:// URL"),
                );
                None
            }
            Some(u) => match url::Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
                _ => {
                    self.at(u, key, "is not an http:// or https:// URL");
                    None
                }
            },
        }
    }

    fn flag(v: &S<bool>, default: bool) -> bool {
        v.as_ref().map_or(default, |b| *b.get_ref())
    }

    fn cidrs(&mut self, items: &[Spanned<String>], key: &str) -> Vec<IpNet> {
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match parse_cidr(item.get_ref()) {
                Ok(net) => Some(net),
                Err(e) => {
                    self.at(item, &format!("{key}[{i}]"), e);
                    None
                }
            })
            .collect()
    }

    /// `proxy_protocol` and `proxy_allowed` of a listener table. With the
    /// protocol on, the balancers must be named: with none, every header
    /// would be refused (required) or ignored (optional).
    fn proxy_rules(
        &mut self,
        mode: &S<String>,
        allowed: &[Spanned<String>],
        table: &str,
    ) -> (ProxyProtocol, Vec<IpNet>) {
        let protocol = self.proxy(mode, &format!("{table}.proxy_protocol"));
        let nets = self.cidrs(allowed, &format!("{table}.proxy_allowed"));
        if let (Some(span), true) = (mode, protocol != ProxyProtocol::Off && allowed.is_empty()) {
            self.at(
                span,
                &format!("{table}.proxy_allowed"),
                "is empty: with proxy_protocol on, list the addresses of the load balancers that send the PROXY header",
            );
        }
        (protocol, nets)
    }

    fn proxy(&mut self, v: &S<String>, key: &str) -> ProxyProtocol {
        match v.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "off")) => ProxyProtocol::Off,
            Some((_, "optional")) => ProxyProtocol::Optional,
            Some((_, "required")) => ProxyProtocol::Required,
            Some((s, other)) => {
                self.at(
                    s,
                    key,
                    format!("{other:?} is not one of off, optional, required"),
                );
                ProxyProtocol::Off
            }
        }
    }

    /// `remote:/path`, naming a configured remote.
    fn location(
        &mut self,
        v: &S<String>,
        key: &str,
        table_line: usize,
        remotes: &RemoteNames,
    ) -> Option<Location> {
        let Some(s) = v else {
            self.problem(
                table_line,
                key,
                "is required (a location like \"local:/folder\")",
            );
            return None;
        };
        let Some((remote, path)) = s.get_ref().split_once(':') else {
            self.at(
                s,
                key,
                format!(
                    "{:?} is not a location like \"remote:/folder\"",
                    s.get_ref()
                ),
            );
            return None;
        };
        if !remotes.contains(remote) {
            let known: Vec<&str> = remotes.iter().map(String::as_str).collect();
            self.at(
                s,
                key,
                format!(
                    "names unknown remote {remote:?} (configured: {})",
                    known.join(", ")
                ),
            );
            return None;
        }
        match normalise_config_path(path) {
            Ok(prefix) => Some(Location {
                remote: remote.to_string(),
                prefix,
            }),
            Err(e) => {
                self.at(s, key, e);
                None
            }
        }
    }
}

/// A folder path written in the config: `/a/b`, `a/b/` → `a/b`. No `.` or `..`.
fn normalise_config_path(path: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        check_segment(seg).map_err(|e| format!("path {path:?}: {e}"))?;
        parts.push(seg);
    }
    let joined = parts.join("/");
    if joined.len() > MAX_KEY_BYTES {
        return Err(format!(
            "path {path:?} is longer than {MAX_KEY_BYTES} bytes"
        ));
    }
    Ok(joined)
}

fn parse_cidr(text: &str) -> Result<IpNet, String> {
    IpNet::from_str(text)
        .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP address or CIDR like \"10.0.0.0/8\""))
}

fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("{text:?} is not a port range like \"50000-50100\"");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(format!(
            "{text:?}: the range must run from a low port (1 or more) to a higher one"
        ));
    }
    Ok(lo..=hi)
}

fn is_password_hash(text: &str) -> Result<(), String> {
    const PLAIN: &str =
        "plain-text passwords are not accepted: store a hash from `bucketgate hash-password`";
    if text.starts_with("$argon2") {
        argon2::password_hash::PasswordHash::new(text)
            .map(|_| ())
            .map_err(|e| format!("is not a valid argon2 PHC hash ({e})"))
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
        if text.len() == 60 {
            Ok(())
        } else {
            Err("is not a valid bcrypt hash (expected 60 characters)".into())
        }
    } else {
        Err(PLAIN.into())
    }
}

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
    let sftp = raw.sftp.as_ref().map(|t| {
        let t = t.get_ref();
        let (proxy_protocol, proxy_allowed) =
            cx.proxy_rules(&t.proxy_protocol, &t.proxy_allowed, "sftp");
        SftpConfig {
            listen: cx.listen(&t.listen, "sftp.listen", "127.0.0.1:2222"),
            max_channels: cx.count(&t.max_channels, "sftp.max_channels", 10, 1..=1000),
            max_handles: cx.count(&t.max_handles, "sftp.max_handles", 64, 1..=100_000),
            proxy_protocol,
            proxy_allowed,
        }
    });
    let ftp = raw.ftp.as_ref().map(|t| validate_ftp(&mut cx, t));
    let admin = raw.admin.as_ref().map(|t| validate_admin(&mut cx, t));
    let remotes = raw
        .remotes
        .iter()
        .filter_map(|(name, r)| validate_remote(&mut cx, name, r).map(|c| (name.clone(), c)))
        .collect();

    budget_fits_parts(&mut cx, &raw.server, server.memory_budget, &remotes);
    let names: RemoteNames = raw.remotes.keys().cloned().collect();
    let users = raw
        .users
        .iter()
        .enumerate()
        .filter_map(|(i, u)| validate_user(&mut cx, &format!("users[{i}]"), u, &names, true))
        .collect();
    let user_names = raw.users.iter().map(|u| &u.get_ref().name);
    duplicates(&mut cx, user_names, "users", "user");
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
    Config {
        auth,
        server,
        security,
        sftp,
        ftp,
        admin,
        remotes,
        users,
        syncs,
        webhooks,
    }
}

fn validate_webhook(
    cx: &mut Ctx<'_>,
    i: usize,
    spanned: &Spanned<RawWebhook>,
) -> Option<WebhookConfig> {
    let line = cx.lines.of(spanned);
    let w = spanned.get_ref();
    let key = |k: &str| format!("webhooks[{i}].{k}");
    let name = match &w.name {
        Some(n) if crate::base::check_segment(n.get_ref()).is_ok() => n.get_ref().clone(),
        Some(n) => {
            cx.at(
                n,
                &key("name"),
                "must be a plain name (it names the webhook's spool folder)",
            );
            return None;
        }
        None => {
            cx.problem(line, &key("name"), "is required");
            return None;
        }
    };
    let url = cx.http_url(&w.url, &key("url"), line, "the receiver's");
    let events = match &w.events {
        None => vec![EventKind::Upload],
        Some(list) => {
            let mut events = Vec::new();
            for (j, e) in list.get_ref().iter().enumerate() {
                match EventKind::parse(e.get_ref()) {
                    Some(kind) if !events.contains(&kind) => events.push(kind),
                    Some(_) => {}
                    None => {
                        let names: Vec<_> = EventKind::ALL.iter().map(|k| k.name()).collect();
                        cx.at(
                            e,
                            &format!("{}[{j}]", key("events")),
                            format!("{:?} is not one of {}", e.get_ref(), names.join(", ")),
                        );
                    }
                }
            }
            if events.is_empty() && list.get_ref().is_empty() {
                cx.at(
                    list,
                    &key("events"),
                    "names no event: leave it out for [\"upload\"]",
                );
            }
            events
        }
    };
    let mut globs = globset::GlobSetBuilder::new();
    for (j, p) in w.paths.iter().enumerate() {
        let pattern = p.get_ref();
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build();
        match glob {
            Ok(g) if pattern.starts_with('/') => {
                globs.add(g);
            }
            Ok(_) => cx.at(
                p,
                &format!("{}[{j}]", key("paths")),
                "a path glob starts with /",
            ),
            Err(e) => cx.at(p, &format!("{}[{j}]", key("paths")), e.kind().to_string()),
        }
    }
    let paths = match w.paths.is_empty() {
        true => None,
        false => globs.build().ok(),
    };
    let secret = cx.secret(
        &w.secret,
        &key("secret"),
        line,
        "is required: the key receivers check the signature with (use env:NAME)",
    );
    let ca_file = cx.file(&w.ca_file, &key("ca_file"));
    Some(WebhookConfig {
        name,
        url: url?,
        events,
        users: w.users.iter().map(|u| u.get_ref().clone()).collect(),
        paths,
        secret,
        timeout: cx.duration(&w.timeout, &key("timeout"), Duration::from_secs(10)),
        retry_for: cx.duration(
            &w.retry_for,
            &key("retry_for"),
            Duration::from_secs(72 * 3600),
        ),
        concurrency: cx.count(&w.concurrency, &key("concurrency"), 4, 1..=64),
        spool_limit: cx.size(&w.spool_limit, &key("spool_limit"), 64 * MIB),
        ca_file,
    })
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

fn validate_server(cx: &mut Ctx<'_>, s: &RawServer) -> ServerConfig {
    ServerConfig {
        keys_dir: cx.text(&s.keys_dir, "keys").into(),
        state_dir: cx.text(&s.state_dir, "state").into(),
        idle_timeout: cx.duration(
            &s.idle_timeout,
            "server.idle_timeout",
            Duration::from_secs(600),
        ),
        max_sessions: cx.count(&s.max_sessions, "server.max_sessions", 1000, 1..=1_000_000),
        shutdown_grace: cx.duration(
            &s.shutdown_grace,
            "server.shutdown_grace",
            Duration::from_secs(30),
        ),
        shutdown_drain: cx.duration(&s.shutdown_drain, "server.shutdown_drain", Duration::ZERO),
        login_timeout: cx.duration(
            &s.login_timeout,
            "server.login_timeout",
            Duration::from_secs(30),
        ),
        max_unauthenticated: cx.count(
            &s.max_unauthenticated,
            "server.max_unauthenticated",
            512,
            1..=1_000_000,
        ),
        max_unauthenticated_per_source: cx.count(
            &s.max_unauthenticated_per_source,
            "server.max_unauthenticated_per_source",
            16,
            1..=1_000_000,
        ),
        memory_budget: match &s.memory_budget {
            Some(v) if v.get_ref() == "auto" => default_memory_budget(),
            v => {
                let budget = cx.size(v, "server.memory_budget", default_memory_budget());
                if let (Some(v), true) = (v, budget < MIN_MEMORY_BUDGET) {
                    cx.at(
                        v,
                        "server.memory_budget",
                        format!(
                            "is below the smallest workable budget, {} (one part of each kind)",
                            units::format_size(MIN_MEMORY_BUDGET)
                        ),
                    );
                }
                budget
            }
        },
    }
}

fn validate_admin(cx: &mut Ctx<'_>, spanned: &Spanned<RawAdmin>) -> AdminConfig {
    let t = spanned.get_ref();
    let line = cx.lines.of(spanned);
    let tls = match (&t.tls_cert, &t.tls_key) {
        (Some(c), Some(k)) => {
            let cert = cx.file(&t.tls_cert, "admin.tls_cert");
            let key = cx.file(&t.tls_key, "admin.tls_key");
            let _ = (c, k);
            cert.zip(key)
        }
        (None, None) => None,
        _ => {
            cx.problem(line, "admin.tls_cert", "tls_cert and tls_key go together");
            None
        }
    };
    let mut entries = |list: &[Spanned<RawAdminUser>], table: &str, token: bool| {
        let mut out = Vec::new();
        for (i, e) in list.iter().enumerate() {
            let key = |k: &str| format!("admin.{table}[{i}].{k}");
            let u = e.get_ref();
            let eline = cx.lines.of(e);
            let name = match &u.name {
                Some(n) if !n.get_ref().is_empty() => n.get_ref().clone(),
                _ => {
                    cx.problem(eline, &key("name"), "is required");
                    continue;
                }
            };
            let role = match u.role.as_ref().map(|r| (r, r.get_ref().as_str())) {
                None | Some((_, "admin")) => Some(AdminRole::Admin),
                Some((_, "read-only")) => Some(AdminRole::ReadOnly),
                Some((r, other)) => {
                    cx.at(
                        r,
                        &key("role"),
                        format!("{other:?} is not one of admin, read-only"),
                    );
                    None
                }
            };
            let (field, wrong) = match token {
                true => (&u.hash, &u.password),
                false => (&u.password, &u.hash),
            };
            if let Some(w) = wrong {
                let (here, there) = if token {
                    ("password", "hash")
                } else {
                    ("hash", "password")
                };
                cx.at(
                    w,
                    &key(here),
                    format!("is not a key of this table: use {there}"),
                );
            }
            let hash = match field {
                None if token => {
                    cx.problem(
                        eline,
                        &key("hash"),
                        "is required: the sha256: line `bucketgate admin-token` prints",
                    );
                    continue;
                }
                None => {
                    cx.problem(
                        eline,
                        &key("password"),
                        "is required: a hash from `bucketgate hash-password`",
                    );
                    continue;
                }
                Some(h) => {
                    let checked = match token {
                        true => is_token_hash(h.get_ref()),
                        false => is_password_hash(h.get_ref()),
                    };
                    if let Err(e) = checked {
                        cx.at(h, &key(if token { "hash" } else { "password" }), e);
                        continue;
                    }
                    h.get_ref().clone()
                }
            };
            if let Some(role) = role {
                out.push(AdminUser { name, hash, role });
            }
        }
        out
    };
    let users = entries(&t.users, "users", false);
    let tokens = entries(&t.tokens, "tokens", true);
    duplicates(
        cx,
        t.users.iter().map(|u| &u.get_ref().name),
        "admin.users",
        "admin user",
    );
    duplicates(
        cx,
        t.tokens.iter().map(|u| &u.get_ref().name),
        "admin.tokens",
        "token",
    );
    let protect_metrics = Ctx::flag(&t.protect_metrics, false);
    if let Some(p) = t.protect_metrics.as_ref().filter(|_| protect_metrics)
        && t.users.is_empty()
        && t.tokens.is_empty()
    {
        cx.at(
            p,
            "admin.protect_metrics",
            "asks for a token on /metrics, and no [[admin.tokens]] or [[admin.users]] is configured",
        );
    }
    AdminConfig {
        listen: cx.listen(&t.listen, "admin.listen", "127.0.0.1:9100"),
        tls,
        protect_metrics,
        users,
        tokens,
    }
}

/// `sha256:` and 64 hex digits: tokens are random, so a fast hash is
/// enough, and every API request can check it.
fn is_token_hash(text: &str) -> Result<(), String> {
    match text.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        _ => Err(
            "is not a token hash: `bucketgate admin-token` prints a token and its sha256: line"
                .into(),
        ),
    }
}

fn validate_ftp(cx: &mut Ctx<'_>, t: &Spanned<RawFtp>) -> FtpConfig {
    let t = t.get_ref();
    let passive_ports = match &t.passive_ports {
        None => 50000..=50100,
        Some(s) => parse_port_range(s.get_ref()).unwrap_or_else(|e| {
            cx.at(s, "ftp.passive_ports", e);
            50000..=50100
        }),
    };
    let passive_host = match &t.passive_host {
        None => PassiveHost::Auto,
        Some(s) if s.get_ref() == "auto" => PassiveHost::Auto,
        Some(s) if s.get_ref().trim().is_empty() => {
            cx.at(
                s,
                "ftp.passive_host",
                "is empty: use \"auto\", an IP address or a DNS name",
            );
            PassiveHost::Auto
        }
        Some(s) => PassiveHost::Given(s.get_ref().clone()),
    };
    let tls = match (&t.tls_cert, &t.tls_key) {
        (Some(c), Some(k)) => Some((c.get_ref().into(), k.get_ref().into())),
        (None, None) => None,
        (Some(c), None) => {
            cx.at(
                c,
                "ftp.tls_cert",
                "is set without ftp.tls_key: FTPS needs both",
            );
            None
        }
        (None, Some(k)) => {
            cx.at(
                k,
                "ftp.tls_key",
                "is set without ftp.tls_cert: FTPS needs both",
            );
            None
        }
    };
    let tls_required = Ctx::flag(&t.tls_required, false);
    if tls_required && tls.is_none() {
        let at = t.tls_required.as_ref().expect("set when true");
        cx.at(at, "ftp.tls_required", "needs ftp.tls_cert and ftp.tls_key");
    }
    let implicit_listen = t.implicit_listen.as_ref().map(|s| {
        if tls.is_none() {
            cx.at(
                s,
                "ftp.implicit_listen",
                "needs ftp.tls_cert and ftp.tls_key",
            );
        }
        cx.listen(&Some(s.clone()), "ftp.implicit_listen", "127.0.0.1:9990")
    });
    let (proxy_protocol, proxy_allowed) =
        cx.proxy_rules(&t.proxy_protocol, &t.proxy_allowed, "ftp");
    FtpConfig {
        listen: cx.listen(&t.listen, "ftp.listen", "127.0.0.1:2121"),
        passive_ports,
        passive_host,
        tls,
        tls_required,
        implicit_listen,
        proxy_protocol,
        proxy_allowed,
    }
}

fn validate_remote(
    cx: &mut Ctx<'_>,
    name: &str,
    spanned: &Spanned<RawRemote>,
) -> Option<RemoteConfig> {
    let line = cx.lines.of(spanned);
    let r = spanned.get_ref();
    let key = |k: &str| format!("remotes.{name}.{k}");
    let Some(kind_text) = &r.kind else {
        cx.problem(line, &key("kind"), "is required: filesystem, s3 or memory");
        return None;
    };
    let part_size = cx.size(&r.part_size, &key("part_size"), 8 * MIB);
    let upload_concurrency = cx.count(&r.upload_concurrency, &key("upload_concurrency"), 4, 1..=64);
    let preserve_mtime = Ctx::flag(&r.preserve_mtime, false);
    let checksums = match &r.checksums {
        None => Checksums::DEFAULT,
        Some(list) => {
            list.get_ref()
                .iter()
                .enumerate()
                .fold(Checksums::default(), |acc, (i, name)| {
                    match acc.with(name.get_ref()) {
                        Ok(set) => set,
                        Err(e) => {
                            cx.at(name, &format!("{}[{i}]", key("checksums")), e);
                            acc
                        }
                    }
                })
        }
    };

    // Keys that only mean something for S3.
    let s3_only: [(&str, bool); 15] = [
        ("endpoint", r.endpoint.is_some()),
        ("bucket", r.bucket.is_some()),
        ("region", r.region.is_some()),
        ("access_key_id", r.access_key_id.is_some()),
        ("secret_access_key", r.secret_access_key.is_some()),
        ("path_style", r.path_style.is_some()),
        ("outbound_ips", !r.outbound_ips.is_empty()),
        ("use_dedicated_ips", r.use_dedicated_ips.is_some()),
        ("max_connections", r.max_connections.is_some()),
        ("connect_timeout", r.connect_timeout.is_some()),
        ("request_timeout", r.request_timeout.is_some()),
        ("retries", r.retries.is_some()),
        ("wire_checksums", r.wire_checksums.is_some()),
        ("keep_digests_by_copy", r.keep_digests_by_copy.is_some()),
        (
            "multipart_copy_threshold",
            r.multipart_copy_threshold.is_some(),
        ),
    ];
    let kind = match kind_text.get_ref().as_str() {
        "s3" => {
            let mut required = |v: &S<String>, k: &str| match v {
                Some(s) if !s.get_ref().is_empty() => s.get_ref().clone(),
                _ => {
                    cx.problem(line, &key(k), "is required for an s3 remote");
                    String::new()
                }
            };
            let endpoint = required(&r.endpoint, "endpoint");
            let bucket = required(&r.bucket, "bucket");
            let access_key_id = required(&r.access_key_id, "access_key_id");
            let secret_access_key = required(&r.secret_access_key, "secret_access_key");
            if let Some(e) = &r.endpoint
                && url::Url::parse(e.get_ref())
                    .map(|u| !matches!(u.scheme(), "http" | "https"))
                    .unwrap_or(true)
            {
                cx.at(
                    e,
                    &key("endpoint"),
                    format!("{:?} is not an http:// or https:// URL", e.get_ref()),
                );
            }
            if !(S3_MIN_PART..=S3_MAX_PART).contains(&part_size) {
                let at = r.part_size.as_ref().map_or(line, |s| cx.lines.of(s));
                cx.problem(
                    at,
                    &key("part_size"),
                    "S3 parts must be between 5 MiB and 5 GiB",
                );
            }
            let outbound_ips = r
                .outbound_ips
                .iter()
                .enumerate()
                .filter_map(|(i, ip)| match ip.get_ref().parse::<IpAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        cx.at(
                            ip,
                            &format!("{}[{i}]", key("outbound_ips")),
                            format!("{:?} is not an IP address", ip.get_ref()),
                        );
                        None
                    }
                })
                .collect::<Vec<_>>();
            let region = cx.text(&r.region, "");
            let multipart_copy_threshold = cx.size(
                &r.multipart_copy_threshold,
                &key("multipart_copy_threshold"),
                S3_MAX_PART,
            );
            if !(S3_MIN_PART..=S3_MAX_PART).contains(&multipart_copy_threshold) {
                let at = r
                    .multipart_copy_threshold
                    .as_ref()
                    .map_or(line, |s| cx.lines.of(s));
                cx.problem(
                    at,
                    &key("multipart_copy_threshold"),
                    "must be between 5 MiB and 5 GiB (one CopyObject copies at most 5 GiB)",
                );
            }
            RemoteKind::S3(S3Config {
                endpoint: endpoint.trim_end_matches('/').to_string(),
                bucket,
                region: if region.is_empty() {
                    "us-east-1".into()
                } else {
                    region
                },
                access_key_id,
                secret_access_key,
                path_style: Ctx::flag(&r.path_style, true),
                use_dedicated_ips: Ctx::flag(&r.use_dedicated_ips, !outbound_ips.is_empty()),
                outbound_ips,
                max_connections: cx.count(
                    &r.max_connections,
                    &key("max_connections"),
                    0,
                    0..=100_000,
                ),
                connect_timeout: cx.duration(
                    &r.connect_timeout,
                    &key("connect_timeout"),
                    Duration::from_secs(5),
                ),
                request_timeout: cx.duration(
                    &r.request_timeout,
                    &key("request_timeout"),
                    Duration::from_secs(60),
                ),
                retries: cx.count(&r.retries, &key("retries"), 5, 0..=100),
                wire_checksums: Ctx::flag(&r.wire_checksums, true),
                keep_digests_by_copy: Ctx::flag(&r.keep_digests_by_copy, false),
                multipart_copy_threshold,
            })
        }
        other @ ("filesystem" | "memory") => {
            for (k, set) in s3_only {
                if set {
                    cx.problem(
                        line,
                        &key(k),
                        format!("only applies to kind = \"s3\", not {other:?}"),
                    );
                }
            }
            if other == "memory" {
                if let Some(root) = &r.root {
                    cx.at(root, &key("root"), "a memory remote has no root");
                }
                RemoteKind::Memory
            } else {
                let Some(root) = &r.root else {
                    cx.problem(line, &key("root"), "is required for a filesystem remote");
                    return None;
                };
                RemoteKind::Filesystem {
                    root: root.get_ref().into(),
                    case_insensitive: r.case_insensitive.as_ref().map(|b| *b.get_ref()),
                }
            }
        }
        other => {
            cx.at(
                kind_text,
                &key("kind"),
                format!("{other:?} is not one of filesystem, s3, memory"),
            );
            return None;
        }
    };
    if r.case_insensitive.is_some() && !matches!(kind, RemoteKind::Filesystem { .. }) {
        cx.problem(
            line,
            &key("case_insensitive"),
            "only applies to kind = \"filesystem\"",
        );
    }
    Some(RemoteConfig {
        name: name.to_string(),
        kind,
        part_size,
        upload_concurrency,
        preserve_mtime,
        checksums,
        checksum_read_limit: cx.size(&r.checksum_read_limit, &key("checksum_read_limit"), 4 << 30),
        prefetch_window: cx.duration_at_most(
            &r.prefetch_window,
            &key("prefetch_window"),
            Duration::from_secs(5),
            Duration::from_secs(60),
        ),
    })
}

/// A user table at `table` (`users[3]`; empty for a definition from an
/// identity source). `own_login`: the table holds the user's password or
/// keys, as the users file does; a directory's user logs in by the source.
fn validate_user(
    cx: &mut Ctx<'_>,
    table: &str,
    spanned: &Spanned<RawUser>,
    remotes: &RemoteNames,
    own_login: bool,
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
    if own_login && u.password.is_none() && u.authorized_keys.is_empty() {
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
        let path = match &mount.path {
            None => {
                cx.problem(mline, &mkey("path"), "is required");
                continue;
            }
            Some(p) => match normalise_config_path(p.get_ref()) {
                Ok(n) if n.is_empty() => {
                    cx.at(p, &mkey("path"), "cannot be \"/\": that is the user's home");
                    continue;
                }
                Ok(n) => format!("/{n}"),
                Err(e) => {
                    cx.at(p, &mkey("path"), e);
                    continue;
                }
            },
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
            },
            mline,
        ));
    }
    Some(UserConfig {
        name,
        password_hash,
        authorized_keys,
        home: home?,
        permissions,
        max_sessions: cx.count(&u.max_sessions, &key("max_sessions"), 10, 1..=100_000),
        allowed_ips,
        mounts: mounts.into_iter().map(|(m, _)| m).collect(),
    })
}

/// Two mount paths overlap when equal or one lies inside the other.
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
    inside(a, b) || inside(b, a)
}

fn validate_sync(
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
