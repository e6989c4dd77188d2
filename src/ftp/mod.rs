//! The FTP and FTPS frontend: libunftp speaks the protocol, the VFS does
//! the files.
//!
//! * [`backend`]: libunftp's storage back end, one VFS call per command;
//! * [`login`]: USER/PASS with the gateway's users, slots and spans;
//! * [`tls`]: the certificate and the rustls config shared by control and
//!   data connections.
//!
//! The gateway accepts connections itself and hands each to libunftp:
//! that is where the server-wide session limit and the session span begin.

mod backend;
mod login;
pub mod tls;

use crate::auth::{SessionLimits, Users};
use crate::config::{FtpConfig, PassiveHost, ServerConfig};
use crate::vfs::Storage;
use backend::VfsBackend;
use libunftp::options::FtpsRequired;
use login::{FtpUser, Login};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument;

/// What every FTP session of the gateway shares.
pub struct Shared {
    pub users: Users,
    pub storage: Storage,
    pub limits: SessionLimits,
}

/// The bound FTP listener with its TLS config loaded.
pub struct FtpListener {
    listener: TcpListener,
    config: FtpConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    idle_timeout: Duration,
    shared: Arc<Shared>,
}

impl FtpListener {
    /// Loads the certificate and binds `[ftp].listen`; either failing fails the start.
    pub async fn bind(
        config: &FtpConfig,
        server: &ServerConfig,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Self> {
        let tls = match &config.tls {
            Some((cert, key)) => Some(tls::server_config(cert, key)?),
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("[ftp] listen = {}: {e}", config.listen))?;
        tracing::info!(
            listen = %listener.local_addr()?,
            ftps = tls.is_some(),
            tls_required = config.tls_required,
            passive_ports = ?config.passive_ports,
            "FTP listening"
        );
        Ok(FtpListener {
            listener,
            config: config.clone(),
            tls,
            idle_timeout: server.idle_timeout,
            shared,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// One libunftp server per connection: its authenticator holds that
    /// connection's slot and span.
    fn server_for(
        &self,
        login: Arc<Login>,
    ) -> Result<libunftp::Server<VfsBackend, FtpUser>, libunftp::ServerError> {
        let passive_host = match &self.config.passive_host {
            PassiveHost::Auto => libunftp::options::PassiveHost::FromConnection,
            PassiveHost::Given(host) => host.as_str().into(),
        };
        let mut builder =
            libunftp::ServerBuilder::<VfsBackend, FtpUser>::with_user_detail_provider(
                Box::new(|| VfsBackend),
                login.clone(),
            )
            .authenticator(login)
            .greeting("bucketgate FTP ready")
            .passive_ports(self.config.passive_ports.clone())
            .passive_host(passive_host)
            .idle_session_timeout(self.idle_timeout.as_secs().max(1));
        if let Some(tls) = &self.tls {
            let required = if self.config.tls_required {
                FtpsRequired::All
            } else {
                FtpsRequired::None
            };
            builder = builder
                .ftps_manual::<std::path::PathBuf>(tls.clone())
                .ftps_required(required, required);
        }
        builder.build()
    }

    /// Accepts FTP connections until `stop` completes.
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let (socket, peer) = tokio::select! {
                _ = &mut stop => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting an FTP connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let slot = match self.shared.limits.connection() {
                Ok(slot) => slot,
                Err(e) => {
                    tracing::warn!(%peer, reason = %e, "FTP connection refused");
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let span = tracing::info_span!(
                "session",
                protocol = "ftp",
                %peer,
                user = tracing::field::Empty
            );
            let login = Arc::new(Login::new(self.shared.clone(), peer, span.clone(), slot));
            let server = match self.server_for(login) {
                Ok(server) => server,
                Err(e) => {
                    tracing::error!(%peer, error = %e, "the FTP session could not be set up");
                    continue;
                }
            };
            tokio::spawn(
                async move {
                    tracing::debug!("FTP connection accepted");
                    if let Err(e) = server.service(socket).await {
                        tracing::debug!(error = %e, "FTP session ended with an error");
                    }
                    tracing::info!("session ended");
                }
                .instrument(span),
            );
        }
    }
}
