//! gateway.toml as written, before validation: every value keeps its span so
//! that each problem can name its line.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub server: RawServer,
    pub security: RawSecurity,
    pub sftp: Option<Spanned<RawSftp>>,
    pub ftp: Option<Spanned<RawFtp>>,
    pub admin: Option<Spanned<RawAdmin>>,
    pub web: Option<Spanned<RawWeb>>,
    pub remotes: BTreeMap<String, Spanned<RawRemote>>,
    pub users: Vec<Spanned<RawUser>>,
    pub syncs: Vec<Spanned<RawSync>>,
    pub webhooks: Vec<Spanned<RawWebhook>>,
    pub auth: Option<Spanned<RawAuth>>,
    pub cluster: Option<Spanned<RawCluster>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawServer {
    pub keys_dir: S<String>,
    pub state_dir: S<String>,
    pub idle_timeout: S<String>,
    pub max_sessions: S<i64>,
    pub shutdown_grace: S<String>,
    pub shutdown_drain: S<String>,
    pub login_timeout: S<String>,
    pub max_unauthenticated: S<i64>,
    pub max_unauthenticated_per_source: S<i64>,
    pub memory_budget: S<String>,
    pub bandwidth_up: S<String>,
    pub bandwidth_down: S<String>,
    pub quota_scan: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCluster {
    pub database: S<String>,
    pub node: S<String>,
    pub heartbeat: S<String>,
    pub max_connections: S<i64>,
    pub ca_file: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSecurity {
    pub ban_threshold: S<i64>,
    pub ban_window: S<String>,
    pub ban_time: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSftp {
    pub listen: S<String>,
    pub max_channels: S<i64>,
    pub max_handles: S<i64>,
    pub proxy_protocol: S<String>,
    pub proxy_allowed: Vec<Spanned<String>>,
    pub trusted_user_ca_keys: Vec<Spanned<String>>,
    pub revoked_keys: S<String>,
    pub host_certificate: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawFtp {
    pub listen: S<String>,
    pub passive_ports: S<String>,
    pub passive_host: S<String>,
    pub tls_cert: S<String>,
    pub tls_key: S<String>,
    pub tls_required: S<bool>,
    pub implicit_listen: S<String>,
    pub proxy_protocol: S<String>,
    pub proxy_allowed: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAdmin {
    pub listen: S<String>,
    pub tls_cert: S<String>,
    pub tls_key: S<String>,
    pub protect_metrics: S<bool>,
    pub users: Vec<Spanned<RawAdminUser>>,
    pub tokens: Vec<Spanned<RawAdminUser>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawWeb {
    pub listen: S<String>,
    pub tls_cert: S<String>,
    pub tls_key: S<String>,
    pub public_url: S<String>,
    pub proxy_allowed: Vec<Spanned<String>>,
    pub session_time: S<String>,
    pub share_max_time: S<String>,
    pub upload_expiry: S<String>,
}

/// An `[[admin.users]]` (password) or `[[admin.tokens]]` (token hash) entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAdminUser {
    pub name: S<String>,
    pub password: S<String>,
    pub hash: S<String>,
    pub role: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRemote {
    pub kind: S<String>,
    // filesystem
    pub root: S<String>,
    pub case_insensitive: S<bool>,
    // s3
    pub endpoint: S<String>,
    pub bucket: S<String>,
    pub region: S<String>,
    pub access_key_id: S<String>,
    pub secret_access_key: S<String>,
    pub path_style: S<bool>,
    pub outbound_ips: Vec<Spanned<String>>,
    pub use_dedicated_ips: S<bool>,
    pub max_connections: S<i64>,
    pub connect_timeout: S<String>,
    pub request_timeout: S<String>,
    pub retries: S<i64>,
    pub wire_checksums: S<bool>,
    pub keep_digests_by_copy: S<bool>,
    pub multipart_copy_threshold: S<String>,
    pub assume_role_arn: S<String>,
    // every kind: the upload layer uses them
    pub part_size: S<String>,
    pub upload_concurrency: S<i64>,
    pub preserve_mtime: S<bool>,
    pub checksums: S<Vec<Spanned<String>>>,
    pub checksum_read_limit: S<String>,
    pub prefetch_window: S<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RawUser {
    pub name: S<String>,
    pub password: S<String>,
    pub authorized_keys: Vec<Spanned<String>>,
    pub cert_principals: S<Vec<Spanned<String>>>,
    pub totp: S<String>,
    pub auth_methods: S<Vec<Spanned<String>>>,
    pub home: S<String>,
    pub permissions: S<Vec<Spanned<String>>>,
    pub max_sessions: S<i64>,
    pub allowed_ips: S<Vec<Spanned<String>>>,
    pub mounts: Vec<Spanned<RawMount>>,
    pub filters: Vec<Spanned<RawFilter>>,
    pub max_file_size: S<String>,
    pub quota: S<String>,
    pub quota_files: S<i64>,
    pub bandwidth_up: S<String>,
    pub bandwidth_down: S<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RawFilter {
    pub path: S<String>,
    pub allow: S<Vec<Spanned<String>>>,
    pub deny: S<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RawMount {
    pub path: S<String>,
    pub target: S<String>,
    pub read_only: S<bool>,
    pub quota: S<String>,
    pub quota_files: S<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSync {
    pub name: S<String>,
    pub local: S<String>,
    pub remote: S<String>,
    pub direction: S<String>,
    pub after_copy: S<String>,
    pub interval: S<String>,
    pub transfers: S<i64>,
    pub max_delete: S<i64>,
    pub delete_empty_folders: S<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawWebhook {
    pub name: S<String>,
    pub url: S<String>,
    pub events: S<Vec<Spanned<String>>>,
    pub users: Vec<Spanned<String>>,
    pub paths: Vec<Spanned<String>>,
    pub secret: S<String>,
    pub timeout: S<String>,
    pub retry_for: S<String>,
    pub concurrency: S<i64>,
    pub spool_limit: S<String>,
    pub ca_file: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAuth {
    pub order: S<Vec<Spanned<String>>>,
    pub cache_time: S<String>,
    pub ldap: Option<Spanned<RawLdap>>,
    pub http: Option<Spanned<RawHook>>,
    pub templates: Vec<Spanned<RawTemplate>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawLdap {
    pub url: S<String>,
    pub starttls: S<bool>,
    pub ca_file: S<String>,
    pub user_dn: S<String>,
    pub bind_dn: S<String>,
    pub bind_password: S<String>,
    pub base: S<String>,
    pub filter: S<String>,
    pub key_attribute: S<String>,
    pub group_base: S<String>,
    pub group_filter: S<String>,
    pub timeout: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawHook {
    pub url: S<String>,
    pub secret: S<String>,
    pub timeout: S<String>,
    pub ca_file: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawTemplate {
    pub name: S<String>,
    pub ldap_groups: Vec<Spanned<String>>,
    pub home: S<String>,
    pub cert_principals: S<Vec<Spanned<String>>>,
    pub totp: S<String>,
    pub auth_methods: S<Vec<Spanned<String>>>,
    pub permissions: S<Vec<Spanned<String>>>,
    pub max_sessions: S<i64>,
    pub allowed_ips: S<Vec<Spanned<String>>>,
    pub mounts: Vec<Spanned<RawMount>>,
    pub filters: Vec<Spanned<RawFilter>>,
    pub max_file_size: S<String>,
    pub quota: S<String>,
    pub quota_files: S<i64>,
    pub bandwidth_up: S<String>,
    pub bandwidth_down: S<String>,
}
