//! The FTP and FTPS frontend: libunftp speaks the protocol, the VFS does
//! the files.
//!
//! * [`backend`]: libunftp's storage back end, one VFS call per command;
//! * [`login`]: USER/PASS with the gateway's users, slots and spans;
//! * the certificate and its rustls config, shared by control and data
//!   connections, come from [`crate::base::server_config`].
//!
//! The gateway accepts connections itself and hands each to libunftp:
//! that is where the server-wide session limit and the session span begin.

mod backend;
mod login;

use crate::config::{FtpConfig, PassiveHost, ServerConfig};
use crate::proxy::ProxyRules;
use crate::session::SessionContext;
use backend::VfsBackend;
use libunftp::options::FtpsRequired;
use login::{FtpUser, Login};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument;

/// The bound FTP listeners (explicit, and implicit FTPS when configured)
/// with the TLS config loaded.
pub struct FtpListener {
    listener: TcpListener,
    implicit: Option<TcpListener>,
    setup: Arc<ConnectionSetup>,
}

/// How every connection of either listener is set up.
struct ConnectionSetup {
    config: FtpConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    idle_timeout: Duration,
    shared: Arc<SessionContext>,
}

impl FtpListener {
    /// Loads the certificate and binds `[ftp].listen`; either failing fails the start.
    pub async fn bind(
        config: &FtpConfig,
        server: &ServerConfig,
        certificates: &crate::base::Certificates,
        shared: Arc<SessionContext>,
    ) -> anyhow::Result<Self> {
        let tls = match &config.tls {
            Some((cert, key)) => Some(certificates.server_config("ftp", cert, key)?),
            None => None,
        };
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("[ftp] listening on {addr}: {e}"))
        };
        let listener = bind(config.listen).await?;
        let implicit = match config.implicit_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        tracing::info!(
            listen = %listener.local_addr()?,
            implicit_listen = ?implicit.as_ref().map(|l| l.local_addr()).transpose()?,
            ftps = tls.is_some(),
            tls_required = config.tls_required,
            passive_ports = ?config.passive_ports,
            "FTP listening"
        );
        Ok(FtpListener {
            listener,
            implicit,
            setup: Arc::new(ConnectionSetup {
                config: config.clone(),
                tls,
                idle_timeout: server.idle_timeout,
                shared,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where implicit FTPS listens, when configured.
    pub fn implicit_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.implicit
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
    }

    /// Accepts FTP connections on both listeners until `stop` completes.
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        let FtpListener {
            listener,
            implicit,
            setup,
        } = self;
        let explicit = setup.clone().accept(listener, false);
        let implicit = async {
            match implicit {
                Some(l) => setup.clone().accept(l, true).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop => {}
            _ = explicit => {}
            _ = implicit => {}
        }
    }
}

impl ConnectionSetup {
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

    /// Accepts connections on `listener`, for ever; `implicit` ones begin
    /// with the TLS handshake.
    async fn accept(self: Arc<Self>, listener: TcpListener, implicit: bool) {
        let protocol = if implicit { "ftps-implicit" } else { "ftp" };
        let tasks = self.shared.tasks.clone();
        let forever = std::future::pending();
        crate::listen::accept_until(&listener, protocol, &tasks, forever, |socket, peer| {
            let setup = self.clone();
            async move {
                let mut socket = socket;
                let proxy = ProxyRules {
                    mode: setup.config.proxy_protocol,
                    allowed: setup.config.proxy_allowed.clone(),
                };
                let Some((connection, pending)) = setup
                    .shared
                    .screen(&proxy, &mut socket, peer, protocol)
                    .await
                else {
                    return;
                };
                let peer = connection.peer;
                let close = setup.shared.close_signal(&connection, &pending);
                let close = async move { format!("Closing control connection: {}", close.await) };
                let _ = socket.set_nodelay(true);
                let span = crate::session::span(protocol, peer);
                let login = Arc::new(Login::new(
                    setup.shared.clone(),
                    connection,
                    protocol,
                    span.clone(),
                    pending,
                ));
                let server = match setup.server_for(login) {
                    Ok(server) => server,
                    Err(e) => {
                        tracing::error!(%peer, error = %e, "the FTP session could not be set up");
                        return;
                    }
                };
                // libunftp runs the session in tasks of its own, which
                // dropping this future would not end: `close` ends it (and
                // at shutdown the backend ends a transfer, see
                // `FtpUser::ending`).
                async move {
                    tracing::debug!("FTP connection accepted");
                    let served = server.service_until(socket, implicit, close).await;
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "FTP session ended with an error");
                    }
                    tracing::info!("session ended");
                }
                .instrument(span)
                .await;
            }
        })
        .await;
    }
}
