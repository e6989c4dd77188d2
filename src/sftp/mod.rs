//! The SFTP frontend: russh for SSH, russh-sftp's protocol types, and the
//! VFS underneath.
//!
//! * [`ssh`]: login and channels of one connection;
//! * [`pump`]: the request loop of one SFTP channel;
//! * [`handler`]: each SFTP operation, mapped to the VFS;
//! * [`attrs`]: attributes, long names and status codes on the wire;
//! * [`host_keys`]: the server's keys in `keys_dir`.

mod attrs;
mod commands;
mod extended;
mod handler;
pub mod host_keys;
mod pump;
mod scp;
mod ssh;

use crate::config::ServerConfig;
use crate::config::SftpConfig;
use crate::proxy::ProxyRules;
use crate::session::SessionContext;
use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet, SshId};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// russh tuned for bulk transfer: a 16 MiB window, 64 KiB packets, and a
/// channel buffer deep enough that pipelined requests never stall a
/// download (the default 100 does).
fn ssh_config(
    server: &ServerConfig,
    keys: Vec<PrivateKey>,
    certificates: Vec<russh::keys::Certificate>,
) -> russh::server::Config {
    russh::server::Config {
        server_id: SshId::Standard(
            format!("SSH-2.0-bucketgate_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(
            &[
                MethodKind::PublicKey,
                MethodKind::Password,
                MethodKind::KeyboardInteractive,
            ][..],
        ),
        auth_rejection_time: Duration::from_secs(1),
        // OpenSSH opens with a `none` probe; answering it late slows every login.
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        keys,
        certificates,
        window_size: 16 << 20,
        maximum_packet_size: 65535,
        channel_buffer_size: 32,
        inactivity_timeout: Some(server.idle_timeout),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        nodelay: true,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The ciphers offered, AES-256-GCM first: with AES-NI it costs the
/// gateway less than ChaCha20-Poly1305 (bench/README.md, "CPU per GiB":
/// 4.4 against 5.0 CPU-seconds per GiB put, 1.6 against 2.2 got). SSH
/// takes the client's first choice that the server offers, so this says
/// what the gateway prefers without deciding: OpenSSH's `sftp` still takes
/// ChaCha20 unless told `-c aes256-gcm@openssh.com`.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

/// Serves SFTP on one channel's stream for `vfs`, as a logged-in session
/// does (64 handles): what the fuzz target drives.
#[doc(hidden)]
pub async fn serve_stream<S>(stream: S, vfs: crate::vfs::UserVfs)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let handles = Arc::new(tokio::sync::Semaphore::new(64));
    let origin = crate::events::Origin {
        share: None,
        protocol: "sftp",
        user: vfs.user().to_string(),
        ip: std::net::Ipv4Addr::LOCALHOST.into(),
    };
    let live = crate::live::Live::new();
    let session = live.register(
        &origin.user,
        "sftp",
        (origin.ip, 22).into(),
        Default::default(),
    );
    let metrics = crate::metrics::Metrics::new();
    let events = crate::events::Events::none();
    let vfs = crate::policy::SessionVfs::new(
        vfs,
        crate::policy::Governance {
            filters: &[],
            max_file_size: None,
            quotas: crate::quota::Quotas::none(),
            rates: Default::default(),
        },
        events,
        origin,
        session.0.clone(),
        &metrics,
    );
    pump::run(stream, handler::SftpHandler::new(vfs, handles, 64)).await;
}

/// The bound SFTP listener with its host keys loaded.
pub struct SftpListener {
    listener: TcpListener,
    sftp: SftpConfig,
    config: Arc<russh::server::Config>,
    shared: Arc<SessionContext>,
    proxy: ProxyRules,
}

impl SftpListener {
    /// Loads or creates the host keys and binds `addr`; both fail the start.
    pub async fn bind(
        sftp: &SftpConfig,
        server: &ServerConfig,
        shared: Arc<SessionContext>,
    ) -> anyhow::Result<Self> {
        let addr = sftp.listen;
        let keys = host_keys::load_or_create(&server.keys_dir)?;
        let certificates = match &sftp.host_certificate {
            Some(path) => vec![host_keys::certificate_of(path, &keys, &server.keys_dir)?],
            None => Vec::new(),
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("[sftp] listen = {addr}: {e}"))?;
        tracing::info!(listen = %listener.local_addr()?, "SFTP listening");
        Ok(SftpListener {
            listener,
            sftp: sftp.clone(),
            config: Arc::new(ssh_config(server, keys, certificates)),
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
            sftp,
            config,
            shared,
            proxy,
        } = self;
        let tasks = shared.tasks.clone();
        crate::listen::accept_until(&listener, "sftp", &tasks, stop, |socket, peer| {
            let (config, shared, proxy) = (config.clone(), shared.clone(), proxy.clone());
            let caps = ssh::ConnectionCaps::new(&sftp);
            async move {
                let mut socket = socket;
                let Some((connection, pending)) =
                    shared.screen(&proxy, &mut socket, peer, "sftp").await
                else {
                    return;
                };
                let _ = socket.set_nodelay(true);
                serve_connection(config, socket, connection, pending, shared, caps).await;
            }
        })
        .await;
    }
}

/// One SSH connection, from its banner to its end. russh runs the session
/// in a task of its own once the client's banner is in, and reads no
/// message of ours during a key exchange (a client can stall one), so an
/// end decided here (login deadline, shutdown) is a disconnect message
/// and, if the session has not ended a second later, the socket closed
/// under it. At shutdown the SFTP handlers end too and drop (abort) their
/// open uploads.
async fn serve_connection(
    config: Arc<russh::server::Config>,
    socket: tokio::net::TcpStream,
    connection: crate::session::Connection,
    pending: crate::auth::PreLogin,
    shared: Arc<SessionContext>,
    caps: ssh::ConnectionCaps,
) {
    let peer = connection.peer;
    let close = shared.close_signal(&connection, &pending);
    tokio::pin!(close);
    let kill = tokio_util::sync::CancellationToken::new();
    let socket = Closable::new(socket, kill.clone());
    let handler = ssh::SshSession::new(shared, connection, pending, caps);
    let running = tokio::select! {
        running = russh::server::run_stream(config, socket, handler) => running,
        _ = &mut close => return,
    };
    let mut session = match running {
        Ok(session) => session,
        Err(e) => return tracing::debug!(%peer, error = %e, "SSH handshake failed"),
    };
    let handle = session.handle();
    let ended = tokio::select! {
        ended = &mut session => ended,
        why = &mut close => {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, why.to_string(), "en".into())
                .await;
            match tokio::time::timeout(Duration::from_secs(1), &mut session).await {
                Ok(ended) => ended,
                Err(_) => {
                    kill.cancel();
                    session.await
                }
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "SSH session ended with an error");
    }
}

/// A stream that ends (reads see EOF, writes fail) once `closed` is
/// cancelled, whatever its reader is waiting for.
struct Closable<S> {
    inner: S,
    closed: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl<S> Closable<S> {
    fn new(inner: S, closed: tokio_util::sync::CancellationToken) -> Self {
        Closable {
            inner,
            closed: Box::pin(closed.cancelled_owned()),
        }
    }

    fn is_closed(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.closed.as_mut().poll(cx).is_ready()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Closable<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.is_closed(cx) {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Closable<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.is_closed(cx) {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
