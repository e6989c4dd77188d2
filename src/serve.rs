//! `bucketgate serve`: builds the remotes and starts what the config
//! enables: the listeners and the sync jobs that have an interval.

use crate::auth::{SessionLimits, Users};
use crate::config::Config;
use crate::remote::Remotes;
use crate::vfs::Storage;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Everything a running gateway shares between its listeners.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub config: Arc<Config>,
    pub remotes: Remotes,
    pub storage: Storage,
    pub users: Users,
    pub limits: SessionLimits,
}

/// What every session of every frontend shares: the users, the storage
/// and the session slots.
pub struct Shared {
    pub users: Users,
    pub storage: Storage,
    pub limits: SessionLimits,
}

/// The listeners of a started gateway, with the addresses they got.
pub struct Running {
    /// Where SFTP listens: the configured address, with the port filled in
    /// when the config asked for port 0.
    pub sftp: Option<SocketAddr>,
    /// Where FTP listens, likewise.
    pub ftp: Option<SocketAddr>,
    /// Where implicit FTPS listens, likewise.
    pub ftps_implicit: Option<SocketAddr>,
    /// Where the admin endpoint listens, likewise.
    pub admin: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Gateway {
    /// Builds every remote; a remote that cannot be set up stops the start.
    pub fn build(config: Config) -> anyhow::Result<Gateway> {
        let remotes = Remotes::build(&config)?;
        for r in remotes.iter() {
            tracing::info!(remote = r.name(), store = %r.store, "remote ready");
        }
        Ok(Gateway {
            storage: Storage::new(&remotes),
            remotes,
            users: Users::new(&config.users),
            limits: SessionLimits::new(config.server.max_sessions, &config.security),
            config: Arc::new(config),
        })
    }

    /// Binds every configured listener, then serves in the background.
    pub async fn start(self) -> anyhow::Result<Running> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let shared = Arc::new(Shared {
            users: self.users.clone(),
            storage: self.storage.clone(),
            limits: self.limits.clone(),
        });
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let mut sftp_addr = None;
        if let Some(sftp) = &self.config.sftp {
            refuse_proxy_protocol("sftp", sftp.proxy_protocol)?;
            let listener =
                crate::sftp::SftpListener::bind(sftp.listen, &self.config.server, shared.clone())
                    .await?;
            sftp_addr = Some(listener.local_addr()?);
            let stop = until_stopped(stopped.clone());
            tasks.spawn(async move {
                listener.serve(stop).await;
                Ok(())
            });
        }
        let (mut ftp_addr, mut ftps_implicit) = (None, None);
        if let Some(ftp) = &self.config.ftp {
            refuse_proxy_protocol("ftp", ftp.proxy_protocol)?;
            let listener =
                crate::ftp::FtpListener::bind(ftp, &self.config.server, shared.clone()).await?;
            ftp_addr = Some(listener.local_addr()?);
            ftps_implicit = listener.implicit_addr()?;
            let stop = until_stopped(stopped.clone());
            tasks.spawn(async move {
                listener.serve(stop).await;
                Ok(())
            });
        }
        let mut admin_addr = None;
        if let Some(admin) = &self.config.admin {
            let health = crate::admin::Health::start(&self.remotes, until_stopped(stopped.clone()));
            let listener = crate::admin::AdminListener::bind(admin.listen, health).await?;
            admin_addr = Some(listener.local_addr()?);
            let stop = until_stopped(stopped.clone());
            tasks.spawn(async move {
                listener.serve(stop).await;
                Ok(())
            });
        }
        for job in crate::sync::schedule::start(&self.config, &self.storage, &stopped) {
            tasks.spawn(async move {
                // A job's failures are its own: logged by the job, never the gateway's.
                let _ = job.await;
                Ok(())
            });
        }
        Ok(Running {
            sftp: sftp_addr,
            ftp: ftp_addr,
            ftps_implicit,
            admin: admin_addr,
            stop,
            tasks,
        })
    }
}

impl Running {
    /// Stops accepting connections; sessions in progress end with the process.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        while let Some(done) = self.tasks.join_next().await {
            done??;
        }
        Ok(())
    }
}

/// PROXY protocol support comes with production readiness; until then a
/// listener that expects it must not start as if it had it.
fn refuse_proxy_protocol(table: &str, mode: crate::config::ProxyProtocol) -> anyhow::Result<()> {
    anyhow::ensure!(
        mode == crate::config::ProxyProtocol::Off,
        "[{table}] proxy_protocol: the PROXY protocol is not supported by this build yet; \
         remove the key or set it to \"off\""
    );
    Ok(())
}

/// Runs until SIGINT (Ctrl-C) or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives right after the start is still a clean stop.
    let stop = shutdown_signal()?;
    let gateway = Gateway::build(config)?;
    let (users, remotes) = (gateway.config.users.len(), gateway.config.remotes.len());
    let running = gateway.start().await?;
    tracing::info!(users, remotes, "bucketgate is running; Ctrl-C stops it");
    stop.await;
    tracing::info!("stopping");
    running.stop().await
}

/// Registers the stop signals now and returns the wait for the first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
