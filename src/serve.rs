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

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
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
    shutdown_signal().await;
    tracing::info!("stopping");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
