//! The reader of a raw config's values: each key parsed with its
//! default, every problem recorded with its line (`Ctx`), and the parsers
//! of the value kinds several tables share.

use super::*;

pub(super) struct Ctx<'a> {
    pub(super) lines: &'a LineIndex,
    pub(super) problems: &'a mut Vec<Problem>,
}

impl Ctx<'_> {
    pub(super) fn problem(&mut self, line: usize, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub(super) fn at<T>(&mut self, value: &Spanned<T>, key: &str, message: impl Into<String>) {
        let line = self.lines.of(value);
        self.problem(line, key, message);
    }

    pub(super) fn text(&mut self, v: &S<String>, default: &str) -> String {
        v.as_ref()
            .map_or_else(|| default.to_string(), |s| s.get_ref().clone())
    }

    pub(super) fn duration(&mut self, v: &S<String>, key: &str, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(s.get_ref()).unwrap_or_else(|e| {
                self.at(s, key, e);
                default
            }),
        }
    }

    /// A duration no longer than `most`.
    pub(super) fn duration_at_most(
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

    pub(super) fn size(&mut self, v: &S<String>, key: &str, default: u64) -> u64 {
        match v {
            None => default,
            Some(s) => parse_size(s.get_ref()).unwrap_or_else(|e| {
                self.at(s, key, e);
                default
            }),
        }
    }

    /// An optional rate (`"10MiB/s"`); `None` when unset or wrong (reported).
    pub(super) fn rate(&mut self, v: &S<String>, key: &str) -> Option<u64> {
        let s = v.as_ref()?;
        super::units::parse_rate(s.get_ref())
            .map_err(|e| self.at(s, key, e))
            .ok()
    }

    /// A quota's two keys: `quota` (a size) and `quota_files` (a count).
    pub(super) fn quota(
        &mut self,
        bytes: &S<String>,
        files: &S<i64>,
        key: &dyn Fn(&str) -> String,
    ) -> Quota {
        Quota {
            bytes: bytes
                .is_some()
                .then(|| self.size(bytes, &key("quota"), u64::MAX)),
            files: files
                .is_some()
                .then(|| self.count(files, &key("quota_files"), 0, 1..=i64::MAX) as u64),
        }
    }

    /// Reports `why` for `key` when its `value` (`v`'s, or a default if
    /// `v` is unset, then at the table's `line`) is outside `range`.
    pub(super) fn within(
        &mut self,
        (v, line): (&S<String>, usize),
        key: &str,
        value: u64,
        range: RangeInclusive<u64>,
        why: &str,
    ) {
        if !range.contains(&value) {
            let at = v.as_ref().map_or(line, |s| self.lines.of(s));
            self.problem(at, key, why);
        }
    }

    pub(super) fn count(
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

    pub(super) fn listen(&mut self, v: &S<String>, key: &str, default: &str) -> SocketAddr {
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
    pub(super) fn file(&mut self, v: &S<String>, key: &str) -> Option<PathBuf> {
        v.as_ref().map(|c| {
            let path = PathBuf::from(c.get_ref());
            if !path.is_file() {
                self.at(c, key, format!("{} is not a readable file", path.display()));
            }
            path
        })
    }

    /// `tls_cert` and `tls_key` of an HTTP listener (`table`): both or none.
    pub(super) fn tls_pair(
        &mut self,
        cert: &S<String>,
        key: &S<String>,
        table: &str,
        line: usize,
    ) -> Option<(PathBuf, PathBuf)> {
        match (cert, key) {
            (Some(_), Some(_)) => {
                let cert = self.file(cert, &format!("{table}.tls_cert"));
                let key = self.file(key, &format!("{table}.tls_key"));
                cert.zip(key)
            }
            (None, None) => None,
            _ => {
                let key = format!("{table}.tls_cert");
                self.problem(line, &key, "tls_cert and tls_key go together");
                None
            }
        }
    }

    /// A required secret: an `env:` variable set to nothing is refused.
    pub(super) fn secret(
        &mut self,
        v: &S<String>,
        key: &str,
        table_line: usize,
        required: &str,
    ) -> String {
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
    pub(super) fn http_url(
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

    pub(super) fn flag(v: &S<bool>, default: bool) -> bool {
        v.as_ref().map_or(default, |b| *b.get_ref())
    }

    pub(super) fn cidrs(&mut self, items: &[Spanned<String>], key: &str) -> Vec<IpNet> {
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
    pub(super) fn proxy_rules(
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

    pub(super) fn proxy(&mut self, v: &S<String>, key: &str) -> ProxyProtocol {
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
    pub(super) fn location(
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
pub(super) fn normalise_config_path(path: &str) -> Result<String, String> {
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

pub(super) fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
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

pub(super) fn is_password_hash(text: &str) -> Result<(), String> {
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
