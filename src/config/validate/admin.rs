//! `[admin]` → [`AdminConfig`]: the listener, console users and API tokens.

use super::*;

pub(super) fn validate_admin(cx: &mut Ctx<'_>, spanned: &Spanned<RawAdmin>) -> AdminConfig {
    let t = spanned.get_ref();
    let line = cx.lines.of(spanned);
    let tls = cx.tls_pair(&t.tls_cert, &t.tls_key, "admin", line);
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
