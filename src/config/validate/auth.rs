//! `[auth]` → [`AuthConfig`]; and a user definition from a template or the
//! HTTP hook → [`UserConfig`], through the checks of a `[[users]]` table.

use super::super::auth::*;
use super::*;

/// What `{user}` and the attributes stand for when a template is checked
/// at start: a plain name, so what fails is the template itself.
const SAMPLE: &str = "sample";

pub(super) fn validate_auth(
    cx: &mut Ctx<'_>,
    raw: &Option<Spanned<RawAuth>>,
    remotes: &RemoteNames,
    file_users: usize,
) -> AuthConfig {
    let Some(spanned) = raw else {
        return AuthConfig::default();
    };
    let a = spanned.get_ref();
    let line = cx.lines.of(spanned);
    let ldap = a.ldap.as_ref().and_then(|l| validate_ldap(cx, l));
    let http = a.http.as_ref().and_then(|h| validate_hook(cx, h));
    let configured = |kind: SourceKind| match kind {
        SourceKind::File => true,
        SourceKind::Ldap => a.ldap.is_some(),
        SourceKind::Http => a.http.is_some(),
    };
    let order = match &a.order {
        None => SourceKind::ALL
            .into_iter()
            .filter(|k| configured(*k))
            .collect(),
        Some(list) => {
            let mut order = Vec::new();
            for (i, item) in list.get_ref().iter().enumerate() {
                let key = format!("auth.order[{i}]");
                match SourceKind::ALL
                    .into_iter()
                    .find(|k| k.name() == item.get_ref())
                {
                    None => cx.at(
                        item,
                        &key,
                        format!("{:?} is not one of file, ldap, http", item.get_ref()),
                    ),
                    Some(kind) if order.contains(&kind) => {
                        cx.at(item, &key, format!("{} is named twice", kind.name()))
                    }
                    Some(kind) if !configured(kind) => cx.at(
                        item,
                        &key,
                        format!("names {0}, but [auth.{0}] is not configured", kind.name()),
                    ),
                    Some(kind) => order.push(kind),
                }
            }
            for kind in [SourceKind::Ldap, SourceKind::Http] {
                if configured(kind) && !list.get_ref().iter().any(|s| s.get_ref() == kind.name()) {
                    cx.at(
                        list,
                        "auth.order",
                        format!(
                            "[auth.{0}] is configured but {0} is not in the order",
                            kind.name()
                        ),
                    );
                }
            }
            if file_users > 0 && !order.contains(&SourceKind::File) {
                cx.at(
                    list,
                    "auth.order",
                    "leaves out file, so the [[users]] of this file could not log in",
                );
            }
            order
        }
    };
    let templates: Vec<TemplateConfig> = a
        .templates
        .iter()
        .enumerate()
        .filter_map(|(i, t)| validate_template(cx, i, t, remotes))
        .collect();
    duplicates(
        cx,
        a.templates.iter().map(|t| &t.get_ref().name),
        "auth.templates",
        "template",
    );
    match (a.ldap.is_some(), a.templates.is_empty()) {
        (true, true) => cx.problem(
            a.ldap.as_ref().map_or(line, |l| cx.lines.of(l)),
            "auth.templates",
            "[auth.ldap] gives its users a home through [[auth.templates]], and none is configured",
        ),
        (false, false) => cx.problem(
            cx.lines.of(&a.templates[0]),
            "auth.templates",
            "templates map LDAP groups, and [auth.ldap] is not configured",
        ),
        _ => {}
    }
    AuthConfig {
        order,
        cache_time: cx.duration_at_most(
            &a.cache_time,
            "auth.cache_time",
            Duration::from_secs(300),
            Duration::from_secs(24 * 3600),
        ),
        ldap,
        http,
        templates,
    }
}

fn validate_ldap(cx: &mut Ctx<'_>, spanned: &Spanned<RawLdap>) -> Option<LdapConfig> {
    let line = cx.lines.of(spanned);
    let l = spanned.get_ref();
    let key = |k: &str| format!("auth.ldap.{k}");
    let url = match &l.url {
        None => {
            cx.problem(
                line,
                &key("url"),
                "is required: ldap://host or ldaps://host",
            );
            None
        }
        Some(u) => match url::Url::parse(u.get_ref()) {
            Ok(url) if matches!(url.scheme(), "ldap" | "ldaps") && url.has_host() => {
                Some(u.get_ref().clone())
            }
            _ => {
                cx.at(u, &key("url"), "is not an ldap:// or ldaps:// URL");
                None
            }
        },
    };
    let starttls =
        url.as_deref().is_some_and(|u| u.starts_with("ldap://")) && Ctx::flag(&l.starttls, true);
    let service = match (&l.bind_dn, &l.bind_password) {
        (Some(dn), password) => {
            let password = cx.secret(
                password,
                &key("bind_password"),
                cx.lines.of(dn),
                "is required with bind_dn (use env:NAME)",
            );
            Some((dn.get_ref().clone(), password))
        }
        (None, Some(p)) => {
            cx.at(p, &key("bind_password"), "is set without bind_dn");
            None
        }
        (None, None) => None,
    };
    let mut needs = |v: &S<String>, k: &str, placeholder: &str| -> Option<String> {
        let s = v.as_ref()?;
        if !s.get_ref().contains(placeholder) {
            cx.at(s, &key(k), format!("must contain {placeholder}"));
        }
        Some(s.get_ref().clone())
    };
    let user_dn = needs(&l.user_dn, "user_dn", "{user}");
    let filter = needs(&l.filter, "filter", "{user}");
    let group_filter = needs(&l.group_filter, "group_filter", "{dn}");
    let find = match (user_dn, filter, &l.base) {
        (Some(user_dn), None, None) => Some(LdapFind::Bind { user_dn }),
        (None, Some(filter), Some(base)) => {
            if service.is_none() {
                cx.problem(
                    line,
                    &key("bind_dn"),
                    "is required for a search (base and filter): the account the gateway searches as",
                );
            }
            Some(LdapFind::Search {
                base: base.get_ref().clone(),
                filter,
            })
        }
        (None, Some(_), None) => {
            cx.problem(line, &key("base"), "is required with filter");
            None
        }
        (None, None, _) => {
            cx.problem(
                line,
                &key("user_dn"),
                "is required, or base and filter: how a login name finds its entry",
            );
            None
        }
        (Some(_), _, _) => {
            cx.problem(
                line,
                &key("user_dn"),
                "and base/filter are two ways to find a user: give one",
            );
            None
        }
    };
    let group_base = match &l.group_base {
        Some(b) => b.get_ref().clone(),
        None => {
            cx.problem(
                line,
                &key("group_base"),
                "is required: where the groups that [[auth.templates]] map are searched",
            );
            String::new()
        }
    };
    Some(LdapConfig {
        url: url?,
        starttls,
        ca_file: cx.file(&l.ca_file, &key("ca_file")),
        find: find?,
        service,
        key_attribute: cx.text(&l.key_attribute, "sshPublicKey"),
        group_base,
        group_filter: group_filter.unwrap_or_else(|| "(member={dn})".into()),
        timeout: cx.duration_at_most(
            &l.timeout,
            &key("timeout"),
            Duration::from_secs(5),
            Duration::from_secs(60),
        ),
    })
}

fn validate_hook(cx: &mut Ctx<'_>, spanned: &Spanned<RawHook>) -> Option<HookConfig> {
    let line = cx.lines.of(spanned);
    let h = spanned.get_ref();
    let key = |k: &str| format!("auth.http.{k}");
    let url = cx.http_url(&h.url, &key("url"), line, "the hook's");
    if let (Some(u), Some(raw)) = (&url, &h.url)
        && u.scheme() == "http"
        && !is_loopback(u)
    {
        cx.at(
            raw,
            &key("url"),
            "must be https:// (passwords are sent to it); http:// is for a hook on loopback",
        );
    }
    let secret = cx.secret(
        &h.secret,
        &key("secret"),
        line,
        "is required: the hook checks it to know the gateway is asking (use env:NAME)",
    );
    Some(HookConfig {
        url: url?,
        secret,
        timeout: cx.duration_at_most(
            &h.timeout,
            &key("timeout"),
            Duration::from_secs(5),
            Duration::from_secs(60),
        ),
        ca_file: cx.file(&h.ca_file, &key("ca_file")),
    })
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

fn validate_template(
    cx: &mut Ctx<'_>,
    i: usize,
    spanned: &Spanned<RawTemplate>,
    remotes: &RemoteNames,
) -> Option<TemplateConfig> {
    let line = cx.lines.of(spanned);
    let t = spanned.get_ref();
    let table = format!("auth.templates[{i}]");
    let key = |k: &str| format!("{table}.{k}");
    let name = match &t.name {
        Some(n) if !n.get_ref().is_empty() => n.get_ref().clone(),
        Some(n) => {
            cx.at(n, &key("name"), "is empty");
            return None;
        }
        None => {
            cx.problem(line, &key("name"), "is required");
            return None;
        }
    };
    if t.ldap_groups.is_empty() {
        cx.problem(
            line,
            &key("ldap_groups"),
            "is required: the groups (DN or cn) whose members get this template",
        );
    }
    // The placeholders are checked, then the table is checked as a user
    // whose placeholders all hold a plain name.
    let mut sample = |v: &S<String>, k: &str| -> S<String> {
        let s = v.as_ref()?;
        match fill(s.get_ref(), &|_| Some(SAMPLE.to_string())) {
            Ok(text) => Some(Spanned::new(s.span(), text)),
            Err(e) => {
                cx.at(s, &key(k), e);
                None
            }
        }
    };
    let home = sample(&t.home, "home");
    let home_ok = home.is_some() || t.home.is_none();
    let mut mounts = Vec::new();
    for (m, mount) in t.mounts.iter().enumerate() {
        let target = sample(&mount.get_ref().target, &format!("mounts[{m}].target"));
        let mut raw = mount.get_ref().clone();
        raw.target = target.or(raw.target);
        mounts.push(Spanned::new(mount.span(), raw));
    }
    let as_user = RawUser {
        name: Some(Spanned::new(spanned.span(), SAMPLE.to_string())),
        home: home.or_else(|| t.home.clone()),
        permissions: t.permissions.clone(),
        max_sessions: t.max_sessions.clone(),
        allowed_ips: t.allowed_ips.clone(),
        mounts,
        filters: t.filters.clone(),
        max_file_size: t.max_file_size.clone(),
        quota: t.quota.clone(),
        quota_files: t.quota_files.clone(),
        bandwidth_up: t.bandwidth_up.clone(),
        bandwidth_down: t.bandwidth_down.clone(),
        ..RawUser::default()
    };
    let checked = validate_user(
        cx,
        &table,
        &Spanned::new(spanned.span(), as_user),
        remotes,
        Login::BySource,
    );
    if checked.is_none() || !home_ok {
        return None;
    }
    let text = |v: &S<String>| v.as_ref().map(|s| s.get_ref().clone());
    let texts = |v: &S<Vec<Spanned<String>>>| {
        v.as_ref()
            .map(|l| l.get_ref().iter().map(|s| s.get_ref().clone()).collect())
    };
    Some(TemplateConfig {
        name,
        ldap_groups: t.ldap_groups.iter().map(|g| g.get_ref().clone()).collect(),
        user: UserDefinition {
            home: text(&t.home).unwrap_or_default(),
            mounts: t
                .mounts
                .iter()
                .map(|m| MountDefinition {
                    path: text(&m.get_ref().path).unwrap_or_default(),
                    target: text(&m.get_ref().target).unwrap_or_default(),
                    read_only: Ctx::flag(&m.get_ref().read_only, false),
                    quota: text(&m.get_ref().quota),
                    quota_files: m.get_ref().quota_files.as_ref().map(|n| *n.get_ref()),
                })
                .collect(),
            permissions: texts(&t.permissions),
            max_sessions: t.max_sessions.as_ref().map(|n| *n.get_ref()),
            allowed_ips: texts(&t.allowed_ips),
            authorized_keys: Vec::new(),
            cert_principals: texts(&t.cert_principals).unwrap_or_default(),
            totp: text(&t.totp),
            auth_methods: texts(&t.auth_methods),
            filters: t
                .filters
                .iter()
                .map(|f| FilterDefinition {
                    path: text(&f.get_ref().path).unwrap_or_default(),
                    allow: texts(&f.get_ref().allow),
                    deny: texts(&f.get_ref().deny),
                })
                .collect(),
            max_file_size: text(&t.max_file_size),
            quota: text(&t.quota),
            quota_files: t.quota_files.as_ref().map(|n| *n.get_ref()),
            bandwidth_up: text(&t.bandwidth_up),
            bandwidth_down: text(&t.bandwidth_down),
        },
    })
}

impl UserDefinition {
    /// The user `name` this definition makes, checked as a `[[users]]`
    /// table is: every problem, by key, in one message.
    pub fn to_user(&self, name: &str, remotes: &RemoteNames) -> Result<UserConfig, String> {
        let s = |text: &str| Spanned::new(0..0, text.to_string());
        let list = |items: &[String]| Spanned::new(0..0, items.iter().map(|i| s(i)).collect());
        let raw = RawUser {
            name: Some(s(name)),
            password: None,
            authorized_keys: self.authorized_keys.iter().map(|k| s(k)).collect(),
            cert_principals: (!self.cert_principals.is_empty())
                .then(|| list(&self.cert_principals)),
            totp: self.totp.as_deref().map(s),
            auth_methods: self.auth_methods.as_deref().map(list),
            home: Some(s(&self.home)),
            permissions: self.permissions.as_deref().map(list),
            max_sessions: self.max_sessions.map(|n| Spanned::new(0..0, n)),
            allowed_ips: self.allowed_ips.as_deref().map(list),
            mounts: self
                .mounts
                .iter()
                .map(|m| {
                    Spanned::new(
                        0..0,
                        RawMount {
                            path: Some(s(&m.path)),
                            target: Some(s(&m.target)),
                            read_only: Some(Spanned::new(0..0, m.read_only)),
                            quota: m.quota.as_deref().map(s),
                            quota_files: m.quota_files.map(|n| Spanned::new(0..0, n)),
                        },
                    )
                })
                .collect(),
            filters: self
                .filters
                .iter()
                .map(|f| {
                    Spanned::new(
                        0..0,
                        RawFilter {
                            path: Some(s(&f.path)),
                            allow: f.allow.as_deref().map(list),
                            deny: f.deny.as_deref().map(list),
                        },
                    )
                })
                .collect(),
            max_file_size: self.max_file_size.as_deref().map(s),
            quota: self.quota.as_deref().map(s),
            quota_files: self.quota_files.map(|n| Spanned::new(0..0, n)),
            bandwidth_up: self.bandwidth_up.as_deref().map(s),
            bandwidth_down: self.bandwidth_down.as_deref().map(s),
        };
        let lines = LineIndex::new("");
        let mut problems = Vec::new();
        let mut cx = Ctx {
            lines: &lines,
            problems: &mut problems,
        };
        let user = validate_user(
            &mut cx,
            "",
            &Spanned::new(0..0, raw),
            remotes,
            Login::BySource,
        );
        match (user, problems.is_empty()) {
            (Some(user), true) => Ok(user),
            _ => Err(problems
                .iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }
}
