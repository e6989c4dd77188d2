//! `[web]`, validated: the web client's listener and how long its logins,
//! share links and unfinished uploads last.

use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[web]`, validated.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    /// Certificate and key PEM files: the web client over HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The address people use (behind a proxy), for the links the gateway
    /// hands out; without it, the listener's own.
    pub public_url: Option<url::Url>,
    /// The proxies whose `X-Forwarded-For` names the client.
    pub proxy_allowed: Vec<IpNet>,
    /// How long a login lasts.
    pub session_time: Duration,
    /// The longest expiry a share link may have.
    pub share_max_time: Duration,
    /// An unfinished resumable upload is aborted after this.
    pub upload_expiry: Duration,
}
