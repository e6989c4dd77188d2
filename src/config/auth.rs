//! `[auth]`: the identity sources beside the users file (an LDAP
//! directory, an HTTP hook), the order they are asked in, and the
//! templates that turn a directory's user into a user of the gateway.

use crate::base::check_segment;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    File,
    Ldap,
    Http,
}

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [SourceKind::File, SourceKind::Ldap, SourceKind::Http];

    /// The name in `order`, and in the log line of a login.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Ldap => "ldap",
            SourceKind::Http => "http",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The configured sources, in the order they are asked.
    pub order: Vec<SourceKind>,
    /// How long a login accepted by LDAP or the hook is remembered; zero:
    /// every login asks.
    pub cache_time: Duration,
    pub ldap: Option<LdapConfig>,
    pub http: Option<HookConfig>,
    pub templates: Vec<TemplateConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            order: vec![SourceKind::File],
            cache_time: Duration::from_secs(300),
            ldap: None,
            http: None,
            templates: Vec::new(),
        }
    }
}

/// How the directory entry of a login name is found.
#[derive(Debug, Clone)]
pub enum LdapFind {
    /// `user_dn`: the name put into a DN (RDN-escaped), bound to directly.
    Bind { user_dn: String },
    /// `base` + `filter`: a subtree search as the service account, with
    /// the name filter-escaped (RFC 4515).
    Search { base: String, filter: String },
}

#[derive(Clone)]
pub struct LdapConfig {
    /// `ldap://` or `ldaps://`.
    pub url: String,
    /// `ldap://` upgraded by StartTLS before anything is sent.
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub find: LdapFind,
    /// The service account (DN, password) that looks entries up: needed by
    /// search mode, and in bind mode for public-key login.
    pub service: Option<(String, String)>,
    pub key_attribute: String,
    pub group_base: String,
    /// `{dn}`: the user's DN, filter-escaped.
    pub group_filter: String,
    /// One login's whole exchange with the directory.
    pub timeout: Duration,
}

impl fmt::Debug for LdapConfig {
    /// Hand-written so the service password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("find", &self.find)
            .field("service", &self.service.as_ref().map(|(dn, _)| dn))
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct HookConfig {
    pub url: url::Url,
    /// Sent as the `Bucketgate-Secret` header.
    pub secret: String,
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for HookConfig {
    /// Hand-written so the secret never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookConfig")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// `[[auth.templates]]`: what an LDAP user in one of `ldap_groups` gets.
#[derive(Debug, Clone)]
pub struct TemplateConfig {
    pub name: String,
    /// Group DNs or `cn`s, compared without regard to case.
    pub ldap_groups: Vec<String>,
    /// With `{user}` and `{attribute}` placeholders still in.
    pub user: UserDefinition,
}

/// A user as a template or the HTTP hook defines it: the fields of a
/// `[[users]]` table but the name and password, which the source owns.
/// It becomes a [`super::UserConfig`] through the same checks as a table
/// of the users file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDefinition {
    pub home: String,
    #[serde(default)]
    pub mounts: Vec<MountDefinition>,
    pub permissions: Option<Vec<String>>,
    pub max_sessions: Option<i64>,
    pub allowed_ips: Option<Vec<String>>,
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// Names a certificate may carry to log in as this user.
    #[serde(default)]
    pub cert_principals: Vec<String>,
    /// The second factor's secret (base32).
    pub totp: Option<String>,
    pub auth_methods: Option<Vec<String>>,
    #[serde(default)]
    pub filters: Vec<FilterDefinition>,
    pub max_file_size: Option<String>,
    pub quota: Option<String>,
    pub quota_files: Option<i64>,
    pub bandwidth_up: Option<String>,
    pub bandwidth_down: Option<String>,
}

/// A `[[users.filters]]` table as a template or the hook gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterDefinition {
    pub path: String,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountDefinition {
    pub path: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    pub quota: Option<String>,
    pub quota_files: Option<i64>,
}

impl UserDefinition {
    /// The definition with every placeholder of its home, mount targets
    /// and certificate principals replaced by `value(name)`.
    pub fn filled(&self, value: &dyn Fn(&str) -> Option<String>) -> Result<UserDefinition, String> {
        let mut filled = self.clone();
        filled.home = fill(&self.home, value)?;
        for m in &mut filled.mounts {
            m.target = fill(&m.target, value)?;
        }
        for p in &mut filled.cert_principals {
            *p = fill(p, value)?;
        }
        if let Some(t) = &mut filled.totp {
            *t = fill(t, value)?;
        }
        Ok(filled)
    }
}

/// `text` with each `{name}` replaced by `value(name)`. A value must be one
/// plain path segment: no `/`, `\`, `..` or control character, so that a
/// user name or an attribute cannot reach outside the prefix it is put in.
pub fn fill(text: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("{text:?} has a '}}' that closes no placeholder"));
        }
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{text:?} has a '{{' that is never closed"));
        };
        let name = &rest[open + 1..open + close];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(format!(
                "{{{name}}} is not a placeholder like {{user}} or {{attribute}}"
            ));
        }
        let v = value(name).ok_or_else(|| format!("{{{name}}} has no value for this user"))?;
        plain_segment(&v).map_err(|e| format!("{{{name}}} is {v:?}: {e}"))?;
        out.push_str(&v);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A name object storage can hold as one segment ([`check_segment`]),
/// and stricter: no `..` anywhere, no `\\`, at most 255 bytes.
fn plain_segment(v: &str) -> Result<(), String> {
    if v.contains("..") {
        return Err("it contains '..'".into());
    }
    if v.contains('\\') {
        return Err("it contains a '\\'".into());
    }
    if v.len() > 255 {
        return Err("it is longer than 255 bytes".into());
    }
    check_segment(v)
}

#[cfg(test)]
mod tests {
    use super::fill;

    fn of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn placeholders_are_filled_with_plain_segments_only() {
        let v = of(&[("user", "alice"), ("ou", "sales")]);
        assert_eq!(fill("p:/{ou}/{user}", &v).unwrap(), "p:/sales/alice");
        assert_eq!(fill("p:/fixed", &v).unwrap(), "p:/fixed");
        for bad in ["..", "a/b", "a\\b", "x\ny", "", "a..b"] {
            let v = of(&[("user", bad)]);
            assert!(fill("p:/{user}", &v).is_err(), "{bad:?} was accepted");
        }
        assert!(fill("p:/{missing}", &v).is_err());
        assert!(fill("p:/{user", &v).is_err());
        assert!(fill("p:/user}", &v).is_err());
        assert!(fill("p:/{a b}", &v).is_err());
    }
}
