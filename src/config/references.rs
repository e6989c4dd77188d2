//! Values that name where they are: `"env:NAME"` (any string, from the
//! environment) and `"file:PATH"` (a secret key's value, from a file, as
//! Kubernetes and Docker hand secrets out). Both are read each time the
//! config is, so a reload picks up a rotated secret.

use super::{LineIndex, Problem, join_key};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The keys whose value may be `file:PATH`: secrets. Elsewhere `file:` is
/// an ordinary value (a remote may well be called `file`).
const SECRET_KEYS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "password",
    "bind_password",
    "secret",
    "database",
    "totp",
];

/// Replaces every `env:` value, and `file:` value of a secret key, with
/// what it names, in place; what cannot be read is a problem of its key.
pub(super) fn resolve(
    table: &mut DeTable<'_>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    lines: &LineIndex,
    problems: &mut Vec<Problem>,
) {
    for (key, value) in table.iter_mut() {
        let secret = SECRET_KEYS.contains(&key.get_ref().as_ref());
        let key_path = join_key(path, key.get_ref());
        resolve_value(value, &key_path, secret, env, lines, problems);
    }
}

fn resolve_value(
    value: &mut Spanned<DeValue<'_>>,
    key_path: &str,
    secret: bool,
    env: &dyn Fn(&str) -> Option<String>,
    lines: &LineIndex,
    problems: &mut Vec<Problem>,
) {
    let line = lines.of(value);
    let mut problem = |message: String| {
        problems.push(Problem {
            line,
            key: key_path.to_string(),
            message,
        })
    };
    match value.get_mut() {
        DeValue::String(s) => {
            if let Some(name) = s.strip_prefix("env:") {
                match env(name) {
                    Some(v) => *s = v.into(),
                    None => problem(format!("environment variable {name} is not set")),
                }
            } else if let Some(path) = s.strip_prefix("file:").filter(|_| secret) {
                match std::fs::read_to_string(path) {
                    Ok(text) => *s = text.trim_end_matches(['\n', '\r']).to_string().into(),
                    Err(e) => problem(format!("cannot read the secret file {path}: {e}")),
                }
            }
        }
        DeValue::Table(t) => resolve(t, key_path, env, lines, problems),
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let item_path = format!("{key_path}[{i}]");
                resolve_value(item, &item_path, secret, env, lines, problems);
            }
        }
        _ => {}
    }
}
