//! The SFTP frontend: russh for SSH, russh-sftp's protocol types, and the
//! VFS underneath.
//!
//! * [`ssh`]: login and channels of one connection;
//! * [`pump`]: the request loop of one SFTP channel;
//! * [`handler`]: each SFTP operation, mapped to the VFS;
//! * [`attrs`]: attributes, long names and status codes on the wire;
//! * [`host_keys`]: the server's keys in `keys_dir`.

mod attrs;
mod handler;
pub mod host_keys;
mod pump;
mod ssh;

use crate::config::ServerConfig;
use crate::config::SftpConfig;
use crate::proxy::ProxyRules;
use crate::serve::Shared;
use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet, SshId};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// russh tuned for bulk transfer: a 16 MiB window, 64 KiB packets, and a
/// channel buffer deep enough that pipelined requests never stall a
/// download (the default 100 does).
fn ssh_config(server: &ServerConfig, keys: Vec<PrivateKey>) -> russh::server::Config {
    russh::server::Config {
        server_id: SshId::Standard(
            format!("SSH-2.0-bucketgate_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
        auth_rejection_time: Duration::from_secs(1),
        // OpenSSH opens with a `none` probe; answering it late slows every login.
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        keys,
        window_size: 16 << 20,
        maximum_packet_size: 65535,
        channel_buffer_size: 4096,
        inactivity_timeout: Some(server.idle_timeout),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        nodelay: true,
        ..Default::default()
    }
}

/// The bound SFTP listener with its host keys loaded.
pub struct SftpListener {
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    proxy: ProxyRules,
}

impl SftpListener {
    /// Loads or creates the host keys and binds `addr`; both fail the start.
    pub async fn bind(
        sftp: &SftpConfig,
        server: &ServerConfig,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Self> {
        let addr = sftp.listen;
        let keys = host_keys::load_or_create(&server.keys_dir)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("[sftp] listen = {addr}: {e}"))?;
        tracing::info!(listen = %listener.local_addr()?, "SFTP listening");
        Ok(SftpListener {
            listener,
            config: Arc::new(ssh_config(server, keys)),
            shared,
            proxy: ProxyRules {
                mode: sftp.proxy_protocol,
                allowed: sftp.proxy_allowed.clone(),
            },
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts SSH connections until `stop` completes.
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        let SftpListener {
            listener,
            config,
            shared,
            proxy,
        } = self;
        tokio::pin!(stop);
        loop {
            let (socket, peer) = tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!(error = %e, "accepting an SFTP connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (config, shared, proxy) = (config.clone(), shared.clone(), proxy.clone());
            let ending = shared.ending.clone();
            tokio::spawn(async move {
                let mut socket = socket;
                let Some((peer, slot)) = shared.admit(&proxy, &mut socket, peer, "sftp").await
                else {
                    return;
                };
                let _ = socket.set_nodelay(true);
                let handler = ssh::SshSession::new(shared.clone(), peer, slot);
                let session = async {
                    match russh::server::run_stream(config, socket, handler).await {
                        Ok(session) => {
                            if let Err(e) = session.await {
                                tracing::debug!(%peer, error = %e, "SSH session ended with an error");
                            }
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "SSH handshake failed"),
                    }
                };
                // At shutdown, past the grace period: dropping the session
                // closes its channels, and the SFTP handler drops (aborts)
                // its open uploads.
                tokio::select! {
                    _ = session => {}
                    _ = ending.cancelled() => tracing::info!(%peer, "session ended by shutdown"),
                }
            });
        }
    }
}
