//! gateway.toml: loading, `env:` values, and validation that reports every
//! problem at once with its key and line (DESIGN §2).
//!
//! Parsing goes in three steps: the TOML syntax tree (spans kept), typed raw
//! structs (`raw.rs`, unknown keys collected), then validation into the types
//! below (`validate.rs`), which the rest of the gateway uses.

mod auth;
mod filters;
mod limits;
mod memory;
mod permissions;
mod raw;
mod references;
mod revoked;
mod second_factor;
pub mod units;
mod user;
mod validate;
mod web;
mod webhooks;

pub use revoked::Revoked;
pub use second_factor::{AuthMethods, Method, Progress, TotpSecret};
pub use user::{Location, MountConfig, UserConfig};

pub use crate::base::Checksums;
pub use auth::{
    AuthConfig, HookConfig, LdapConfig, LdapFind, MountDefinition, SourceKind, TemplateConfig,
    UserDefinition, fill,
};
pub use filters::FilterConfig;
pub use limits::{Bandwidth, Limits, Quota};
pub use permissions::{Permission, Permissions};
pub use web::WebConfig;
pub use webhooks::{EventKind, WebhookConfig};

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub security: SecurityConfig,
    pub sftp: Option<SftpConfig>,
    pub ftp: Option<FtpConfig>,
    pub admin: Option<AdminConfig>,
    /// `[web]`: the web client, tus uploads and share links.
    pub web: Option<WebConfig>,
    pub remotes: BTreeMap<String, RemoteConfig>,
    pub users: Vec<UserConfig>,
    pub syncs: Vec<SyncConfig>,
    pub webhooks: Vec<WebhookConfig>,
    pub auth: AuthConfig,
    /// `[cluster]`: state shared with the other nodes of a fleet in
    /// PostgreSQL. Without it the gateway keeps everything in state_dir.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`, validated.
#[derive(Clone)]
pub struct ClusterConfig {
    /// A `postgres://` URL; it holds the password, so it is never logged
    /// (see the `Debug` impl).
    pub database: String,
    /// This gateway's name in the fleet, unique among its nodes.
    pub node: String,
    pub heartbeat: Duration,
    pub max_connections: usize,
    /// The CA that signs the database's certificate, instead of the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("database", &"<secret>")
            .field("node", &self.node)
            .field("heartbeat", &self.heartbeat)
            .field("max_connections", &self.max_connections)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub keys_dir: PathBuf,
    pub state_dir: PathBuf,
    pub idle_timeout: Duration,
    /// Logged-in sessions, whole gateway.
    pub max_sessions: usize,
    pub shutdown_grace: Duration,
    /// SIGTERM: /healthz answers 503 and the listeners keep accepting this
    /// long first, so a load balancer's check takes the gateway out.
    pub shutdown_drain: Duration,
    /// From accept to a successful login (SSH banner, key exchange and
    /// authentication; FTP up to PASS).
    pub login_timeout: Duration,
    /// Connections not logged in yet, whole gateway: past it the oldest is closed.
    pub max_unauthenticated: usize,
    /// Connections not logged in yet from one source (IPv4 address, IPv6 /64).
    pub max_unauthenticated_per_source: usize,
    /// Bytes of read-ahead and upload buffers the whole gateway may hold.
    pub memory_budget: u64,
    /// The whole gateway's rate each way.
    pub bandwidth: Bandwidth,
    /// How often each quota target's usage is listed again.
    pub quota_scan: Duration,
}

#[derive(Debug, Clone)]
pub struct SecurityConfig {
    pub ban_threshold: u32,
    pub ban_window: Duration,
    pub ban_time: Duration,
}

/// Whether a listener expects a PROXY protocol header from a load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    Off,
    Optional,
    Required,
}

#[derive(Debug, Clone)]
pub struct SftpConfig {
    pub listen: SocketAddr,
    /// Channels open at once on one SSH connection.
    pub max_channels: usize,
    /// Open files and folders on one SSH connection, all its channels together.
    pub max_handles: usize,
    pub proxy_protocol: ProxyProtocol,
    pub proxy_allowed: Vec<IpNet>,
    /// CA keys whose user certificates log users in.
    pub trusted_user_ca_keys: Vec<russh::keys::PublicKey>,
    /// Keys no login may use, as a key or inside a certificate, nor sign
    /// one as a CA, and certificates revoked by serial or key id
    /// (`revoked_keys`, read at start and at each reload).
    pub revoked_keys: Revoked,
    /// A certificate of the host key, for clients that trust its CA.
    pub host_certificate: Option<PathBuf>,
}

/// The address announced in PASV replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassiveHost {
    /// The local address of the control connection.
    Auto,
    /// An IP or DNS name, announced as given.
    Given(String),
}

#[derive(Debug, Clone)]
pub struct FtpConfig {
    pub listen: SocketAddr,
    pub passive_ports: RangeInclusive<u16>,
    pub passive_host: PassiveHost,
    /// Certificate and key PEM files; FTPS is offered when set.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub tls_required: bool,
    pub implicit_listen: Option<SocketAddr>,
    pub proxy_protocol: ProxyProtocol,
    pub proxy_allowed: Vec<IpNet>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Certificate and key PEM files: the console and API over HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `/metrics` asks for a token or a console login too.
    pub protect_metrics: bool,
    /// Console logins; with none and no token, the console and API are off.
    pub users: Vec<AdminUser>,
    /// API tokens: `hash` is `sha256:` and the hex digest of the token.
    pub tokens: Vec<AdminUser>,
}

/// What an admin may do: read everything, or also change things (end a
/// session, lift a ban, run a job, reload the users, retry a webhook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminRole {
    Admin,
    ReadOnly,
}

#[derive(Clone)]
pub struct AdminUser {
    pub name: String,
    /// An argon2/bcrypt PHC string (users) or `sha256:<hex>` (tokens).
    pub hash: String,
    pub role: AdminRole,
}

impl fmt::Debug for AdminUser {
    /// Hand-written so no hash reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub name: String,
    pub kind: RemoteKind,
    /// Multipart part size; also the read-ahead chunk.
    pub part_size: u64,
    pub upload_concurrency: usize,
    pub preserve_mtime: bool,
    /// The digests every upload to this remote computes and stores.
    pub checksums: Checksums,
    /// The largest file whose digest is computed by reading it, when none
    /// was kept.
    pub checksum_read_limit: u64,
    /// How long a small file fetched ahead of a client that walks a
    /// listing may be served to it; zero turns the prefetch off.
    pub prefetch_window: Duration,
}

#[derive(Debug, Clone)]
pub enum RemoteKind {
    Filesystem {
        root: PathBuf,
        /// `None`: probe the filesystem.
        case_insensitive: Option<bool>,
    },
    S3(Box<S3Config>),
    Memory,
}

/// A remote's own key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for S3Keys {
    /// The id only: the secret never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Keys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// `None`: the credential chain of the AWS SDKs (environment, web
    /// identity, container endpoint, instance metadata).
    pub keys: Option<S3Keys>,
    pub path_style: bool,
    pub outbound_ips: Vec<std::net::IpAddr>,
    pub use_dedicated_ips: bool,
    pub max_connections: usize,
    pub connect_timeout: Duration,
    /// Time without progress on a request, not a cap on a whole stream.
    pub request_timeout: Duration,
    pub retries: usize,
    /// Each PUT and part carries `x-amz-checksum-sha256`, and each part's
    /// ETag is checked against the MD5 of what was sent.
    pub wire_checksums: bool,
    /// A multipart upload's digests are written into its metadata by a
    /// copy of the object onto itself before the client is answered.
    pub keep_digests_by_copy: bool,
    /// A file this large or larger is renamed by a multipart copy
    /// (UploadPartCopy), not one CopyObject, which AWS caps at 5 GiB.
    pub multipart_copy_threshold: u64,
    /// A role assumed (STS AssumeRole) with the base credentials: the
    /// remote signs with the role's.
    pub assume_role_arn: Option<String>,
}

impl fmt::Debug for S3Config {
    /// Hand-written so the secret never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self.keys.as_ref().map(|k| &k.access_key_id),
            )
            .field("path_style", &self.path_style)
            .field("outbound_ips", &self.outbound_ips)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Push,
    Pull,
    TwoWay,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Direction::Push, Direction::Pull, Direction::TwoWay];

    /// The name in `[[syncs]] direction`, and in the console's API.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Pull => "pull",
            Direction::TwoWay => "two-way",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub name: String,
    pub local: Location,
    pub remote: Location,
    pub direction: Direction,
    pub delete_after_copy: bool,
    pub interval: Option<Duration>,
    pub transfers: usize,
    pub max_delete: u8,
    pub delete_empty_folders: bool,
}

/// One thing wrong with the config: where, which key, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "line {}: {}: {}", self.line, self.key, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} has {} problem(s):", self.file, self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  {}:{p}", self.file)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file, resolving `env:` values from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            problems: vec![Problem {
                line: 0,
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::parse(&text, &|name| std::env::var(name).ok())
            .map_err(|problems| ConfigError { file, problems })
    }

    /// Parses config text; `env` resolves `env:NAME` values (tests pass their own).
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<Problem>> {
        let lines = LineIndex::new(text);
        let (mut root, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            return Err(syntax
                .iter()
                .map(|e| Problem {
                    line: e.span().map_or(0, |s| lines.line(s.start)),
                    key: String::new(),
                    message: e.message().to_string(),
                })
                .collect());
        }
        root.get_mut().make_owned();
        let mut problems = Vec::new();
        references::resolve(root.get_mut(), "", env, &lines, &mut problems);
        let keep = root.clone();

        let mut unknown = Vec::new();
        let typed: Result<raw::RawConfig, toml::de::Error> =
            serde_ignored::deserialize(toml::de::Deserializer::from(root), |path| {
                unknown.push(path_segments(&path))
            });
        for segments in unknown {
            let line = span_of(&keep, &segments).map_or(0, |s| lines.line(s.start));
            // Array indexes as the other problems show them: `users[0].colour`.
            let key = segments.iter().fold(String::new(), |key, s| {
                match (s.parse::<usize>(), key.is_empty()) {
                    (Ok(i), false) => format!("{key}[{i}]"),
                    (_, true) => s.clone(),
                    _ => format!("{key}.{s}"),
                }
            });
            problems.push(Problem {
                line,
                key,
                message: "unknown key".into(),
            });
        }
        let raw = match typed {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(Problem {
                    line: e.span().map_or(0, |s| lines.line(s.start)),
                    key: String::new(),
                    message: e.message().to_string(),
                });
                return Err(sorted(problems));
            }
        };
        let config = validate::validate(raw, &lines, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(sorted(problems))
        }
    }
}

fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by_key(|p| p.line);
    problems
}

/// Byte offset → 1-based line number.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }

    pub(crate) fn of<T>(&self, spanned: &Spanned<T>) -> usize {
        self.line(spanned.span().start)
    }
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// serde_ignored's path as segments: keys, and array indexes as numbers.
fn path_segments(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path as P;
    match path {
        P::Root => Vec::new(),
        P::Seq { parent, index } => {
            let mut v = path_segments(parent);
            v.push(index.to_string());
            v
        }
        P::Map { parent, key } => {
            let mut v = path_segments(parent);
            // Spanned<T> goes through serde as a wrapper struct; not a key of ours.
            if !key.starts_with("$__serde_spanned") {
                v.push(key.clone());
            }
            v
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            path_segments(parent)
        }
    }
}

/// Finds the span of the key at `segments` in the syntax tree.
fn span_of(root: &Spanned<DeTable<'_>>, segments: &[String]) -> Option<std::ops::Range<usize>> {
    let mut table = root.get_ref();
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    let mut span = None;
    for seg in segments {
        if let Some(items) = array.take() {
            let item = items.get(seg.parse::<usize>().ok()?)?;
            span = Some(item.span());
            match item.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return span,
            }
            continue;
        }
        let (key, value) = table.iter().find(|(k, _)| k.get_ref() == seg)?;
        span = Some(key.span());
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            DeValue::Array(items) => array = Some(items),
            _ => {}
        }
    }
    span
}

#[cfg(test)]
mod tests;
