//! `bucketgate serve`: builds the remotes and starts what the config enables.

use crate::config::Config;
use crate::remote::Remotes;
use crate::vfs::Storage;

/// Everything a running gateway shares between its listeners.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub config: std::sync::Arc<Config>,
    pub storage: Storage,
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
            config: std::sync::Arc::new(config),
        })
    }
}

/// Runs until SIGINT (Ctrl-C) or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives right after the start is still a clean stop.
    let stop = shutdown_signal()?;
    let gateway = Gateway::build(config)?;
    let c = &gateway.config;
    if let Some(sftp) = &c.sftp {
        tracing::warn!(listen = %sftp.listen, "[sftp] is configured, but this build has no SFTP frontend yet");
    }
    if let Some(ftp) = &c.ftp {
        tracing::warn!(listen = %ftp.listen, "[ftp] is configured, but this build has no FTP frontend yet");
    }
    tracing::info!(
        users = c.users.len(),
        remotes = c.remotes.len(),
        "bucketgate is running; Ctrl-C stops it"
    );
    stop.await;
    tracing::info!("stopping");
    Ok(())
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
