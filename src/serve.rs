//! `bucketgate serve`: builds the remotes and starts what the config
//! enables: the listeners and the sync jobs that have an interval.

use crate::auth::{SessionLimits, Users};
use crate::config::Config;
use crate::events::Events;
use crate::listen::Tasks;
use crate::metrics::Metrics;
use crate::remote::Remotes;
use crate::session::SessionContext;
use crate::vfs::{Budget, Storage};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything a running gateway shares between its listeners.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub config: Arc<Config>,
    pub remotes: Remotes,
    pub storage: Storage,
    pub users: Users,
    pub limits: SessionLimits,
    pub metrics: Arc<Metrics>,
    /// The transfers open (sessions' and sync runs'), which shutdown
    /// waits on.
    pub transfers: TaskTracker,
    /// The file the config came from: what SIGHUP and the console's
    /// reload read again.
    pub config_path: Option<std::path::PathBuf>,
    /// The fleet's shared state, with `[cluster]`.
    pub cluster: Option<crate::cluster::Cluster>,
    /// The listeners' TLS certificates, read again at a reload.
    pub certificates: crate::base::Certificates,
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
    /// Where the web client listens, likewise.
    pub web: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
    /// The sync schedulers: a run in progress outlives `stop`.
    jobs: Vec<tokio::task::JoinHandle<()>>,
    ending: CancellationToken,
    /// Makes /healthz answer 503 during `shutdown_drain`.
    draining: Arc<AtomicBool>,
    /// The webhooks, reloaded with the users.
    pub events: Arc<Events>,
    /// Quota usage, whose targets are tracked again at a reload.
    pub quotas: Arc<crate::quota::Quotas>,
    transfers: TaskTracker,
    /// The connections of the SFTP and FTP listeners.
    sessions: TaskTracker,
}

impl Gateway {
    /// Builds every remote; a remote that cannot be set up stops the start.
    pub fn build(config: Config) -> anyhow::Result<Gateway> {
        let metrics = Metrics::new();
        let remotes = Remotes::build(&config, &metrics)?;
        for r in remotes.iter() {
            tracing::info!(remote = r.name(), store = %r.store(), "remote ready");
        }
        let budget = Budget::new(config.server.memory_budget, metrics.buffered_bytes.clone());
        let cluster = config
            .cluster
            .as_ref()
            .map(|c| crate::cluster::Cluster::new(c, &metrics))
            .transpose()?;
        Ok(Gateway {
            cluster,
            storage: Storage::new(&remotes, &budget),
            transfers: budget.transfers().clone(),
            remotes,
            users: Users::new(&config)?,
            limits: SessionLimits::new(&config.server, &config.security, &metrics),
            metrics,
            config: Arc::new(config),
            config_path: None,
            certificates: Default::default(),
        })
    }

    /// Binds every configured listener, then serves in the background.
    pub async fn start(self) -> anyhow::Result<Running> {
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let mut tasks = JoinSet::new();
        let ending = CancellationToken::new();
        let draining = Arc::new(AtomicBool::new(false));
        let events = Events::start(
            &self.config.webhooks,
            &self.config.server.state_dir,
            self.metrics.clone(),
            self.cluster.as_ref(),
        )?;
        let sessions = TaskTracker::new();
        let quotas = crate::quota::Quotas::new(
            self.storage.clone(),
            self.cluster.clone(),
            &self.config.server.state_dir,
            self.config.server.quota_scan,
            self.metrics.clone(),
        );
        for user in &self.config.users {
            quotas.track_user(user, true);
        }
        {
            let stop = until_stopped(stopped.clone());
            let quotas = quotas.clone();
            tasks.spawn(async move {
                quotas.run(stop).await;
                Ok(())
            });
        }
        let shared = Arc::new(SessionContext {
            quotas: quotas.clone(),
            bandwidth: crate::policy::bandwidth::Bandwidths::new(self.config.server.bandwidth),
            users: self.users.clone(),
            storage: self.storage.clone(),
            limits: self.limits.clone(),
            events: events.clone(),
            ending: ending.clone(),
            live: crate::live::Live::new(),
            metrics: self.metrics.clone(),
            tasks: Tasks {
                tracker: sessions.clone(),
                accept_errors: self.metrics.accept_errors.clone(),
            },
        });
        let mut sftp_addr = None;
        if let Some(sftp) = &self.config.sftp {
            let listener =
                crate::sftp::SftpListener::bind(sftp, &self.config.server, shared.clone()).await?;
            sftp_addr = Some(listener.local_addr()?);
            let stop = until_stopped(stopped.clone());
            tasks.spawn(async move {
                listener.serve(stop).await;
                Ok(())
            });
        }
        let (mut ftp_addr, mut ftps_implicit) = (None, None);
        if let Some(ftp) = &self.config.ftp {
            let listener = crate::ftp::FtpListener::bind(
                ftp,
                &self.config.server,
                &self.certificates,
                shared.clone(),
            )
            .await?;
            ftp_addr = Some(listener.local_addr()?);
            ftps_implicit = listener.implicit_addr()?;
            let stop = until_stopped(stopped.clone());
            tasks.spawn(async move {
                listener.serve(stop).await;
                Ok(())
            });
        }
        if let (Some(cluster), Some(c)) = (&self.cluster, &self.config.cluster) {
            let (cluster, every) = (cluster.clone(), c.heartbeat);
            let (limits, live) = (self.limits.clone(), shared.live.clone());
            let stop = until_stopped(stopped.clone());
            tasks.spawn(async move {
                // Leaving the fleet is part of stopping: the token lets
                // the heartbeat delete this node's row before it ends.
                let leave = CancellationToken::new();
                let member = tokio::spawn(crate::cluster::join(
                    cluster,
                    every,
                    limits,
                    live,
                    leave.clone(),
                ));
                stop.await;
                leave.cancel();
                let _ = member.await;
                Ok(())
            });
        }
        // A job's failures are its own: logged by the job, never the gateway's.
        let (sync_jobs, jobs) = crate::sync::schedule::Jobs::start(
            &self.config,
            &self.storage,
            &events,
            self.cluster.as_ref(),
            &quotas,
            &stopped,
            &ending,
        );
        let (mut web_addr, mut web_state) = (None, None);
        if let Some(web) = &self.config.web {
            let listener = crate::web::WebListener::bind(
                web,
                &self.certificates,
                shared.clone(),
                shared.tasks.clone(),
                self.config.server.state_dir.clone(),
                self.cluster.clone(),
            )
            .await?;
            web_addr = Some(listener.local_addr()?);
            web_state = Some(listener.web());
            let stop = until_stopped(stopped.clone());
            tasks.spawn(async move {
                listener.serve(stop).await;
                Ok(())
            });
        }
        let mut admin_addr = None;
        if let Some(admin) = &self.config.admin {
            let health = crate::admin::Health::start(
                &self.remotes,
                events.clone(),
                self.cluster.clone(),
                draining.clone(),
                until_stopped(stopped.clone()),
            );
            let tls = admin
                .tls
                .as_ref()
                .map(|(cert, key)| self.certificates.server_config("admin", cert, key))
                .transpose()?;
            let access = crate::admin::access::Access::new(
                admin,
                self.limits.bans().clone(),
                self.cluster.clone(),
            );
            let path = self.config_path.clone();
            let live = Live {
                users: self.users.clone(),
                events: events.clone(),
                quotas: quotas.clone(),
                remotes: self.remotes.clone(),
                certificates: self.certificates.clone(),
            };
            let reload: crate::admin::Reload = Arc::new(move || match &path {
                Some(path) => live.reload(path),
                None => Err("this gateway was not started from a config file".into()),
            });
            let console = access.map(|access| crate::admin::Console {
                access,
                shared: shared.clone(),
                jobs: sync_jobs.clone(),
                remotes: self.remotes.clone(),
                health: health.clone(),
                reload,
                cluster: self.cluster.clone(),
                web: web_state.clone(),
            });
            let answers = crate::admin::Admin {
                health,
                console,
                protect_metrics: admin.protect_metrics,
                tls,
                metrics: self.metrics.clone(),
            };
            let listener = crate::admin::AdminListener::bind(
                admin.listen,
                answers,
                // Shutdown does not wait on an operator's page.
                Tasks {
                    tracker: TaskTracker::new(),
                    accept_errors: self.metrics.accept_errors.clone(),
                },
            )
            .await?;
            admin_addr = Some(listener.local_addr()?);
            let stop = until_stopped(stopped.clone());
            tasks.spawn(async move {
                listener.serve(stop).await;
                Ok(())
            });
        }
        Ok(Running {
            sftp: sftp_addr,
            ftp: ftp_addr,
            ftps_implicit,
            admin: admin_addr,
            web: web_addr,
            stop,
            jobs,
            ending,
            draining,
            events,
            quotas,
            tasks,
            transfers: self.transfers.clone(),
            sessions,
        })
    }
}

impl Running {
    /// Stops accepting connections and starting sync runs; sessions in
    /// progress go on (see [`Running::shutdown`]).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        while let Some(done) = self.tasks.join_next().await {
            done??;
        }
        Ok(())
    }

    /// Graceful shutdown: for `drain`, /healthz answers 503 while the
    /// listeners still accept, so a load balancer stops sending
    /// connections here before they are refused; then stops accepting,
    /// gives open transfers `grace` to finish, then ends every session —
    /// their unfinished uploads are aborted, never completed — and waits
    /// for those aborts.
    pub async fn shutdown(mut self, drain: Duration, grace: Duration) -> anyhow::Result<()> {
        if !drain.is_zero() {
            self.draining.store(true, Ordering::Relaxed);
            tracing::info!(drain = %humantime::format_duration(drain), "draining: /healthz answers 503, the listeners close after shutdown_drain");
            tokio::time::sleep(drain).await;
        }
        self.stop().await?;
        tracing::info!("listeners closed: no new connections");
        // Closed: waiting ends when the last transfer does (new ones may still open).
        self.transfers.close();
        self.sessions.close();
        let open = self.transfers.len();
        if open > 0 {
            tracing::info!(transfers = open, grace = %humantime::format_duration(grace), "waiting for open transfers to finish");
        }
        if tokio::time::timeout(grace, self.transfers.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                transfers = self.transfers.len(),
                "shutdown grace period over: ending the sessions still open; their unfinished uploads are aborted"
            );
        }
        self.ending.cancel();
        for job in self.jobs.drain(..) {
            let _ = job.await;
        }
        let ended = async {
            self.sessions.wait().await;
            self.transfers.wait().await;
        };
        if tokio::time::timeout(ABORT_WAIT, ended).await.is_err() {
            tracing::warn!(
                transfers = self.transfers.len(),
                "uploads still aborting after {}s; the bucket's lifecycle rules must clean them",
                ABORT_WAIT.as_secs()
            );
        }
        Ok(())
    }
}

/// How long shutdown waits for the aborts of uploads it ended.
const ABORT_WAIT: Duration = Duration::from_secs(30);

/// Runs until SIGINT (Ctrl-C) or SIGTERM, then shuts down gracefully
/// (`[server].shutdown_grace`). SIGHUP reloads the users from `path`.
pub async fn run(config: Config, path: &std::path::Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a signal that arrives right after the start is still handled.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    crate::listen::raise_open_files_limit();
    let (drain, grace) = (config.server.shutdown_drain, config.server.shutdown_grace);
    let mut gateway = Gateway::build(config)?;
    gateway.config_path = Some(path.to_path_buf());
    let (users, remotes) = (gateway.config.users.len(), gateway.config.remotes.len());
    let identity = sources_shown(&gateway.config);
    let (live_users, live_remotes) = (gateway.users.clone(), gateway.remotes.clone());
    let certificates = gateway.certificates.clone();
    let running = gateway.start().await?;
    let live = Live {
        users: live_users,
        events: running.events.clone(),
        quotas: running.quotas.clone(),
        remotes: live_remotes,
        certificates,
    };
    tracing::info!(
        users,
        remotes,
        identity,
        "bucketgate is running; Ctrl-C stops it, SIGHUP reloads the users"
    );
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => {
                let _ = live.reload(path);
            }
        }
    }
    tracing::info!("stopping");
    running.shutdown(drain, grace).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The identity sources in the order they are asked: `file, ldap`.
fn sources_shown(config: &Config) -> String {
    let names: Vec<&str> = config.auth.order.iter().map(|s| s.name()).collect();
    names.join(", ")
}

/// What a reload replaces in a running gateway.
struct Live {
    users: Users,
    events: Arc<Events>,
    quotas: Arc<crate::quota::Quotas>,
    remotes: Remotes,
    certificates: crate::base::Certificates,
}

impl Live {
    /// SIGHUP: the users, webhooks and remote credentials of the config
    /// file replace the running ones (its `env:` and `file:` values read
    /// anew); sessions already logged in and transfers in flight go on. A
    /// config with problems, or that needs a restart, changes nothing.
    fn reload(&self, path: &std::path::Path) -> Result<String, String> {
        let refused = |e: String| {
            tracing::error!("reload refused, nothing changed: {e}");
            Err(format!("reload refused, nothing changed: {e}"))
        };
        let config = match Config::load(path) {
            Ok(config) => config,
            Err(e) => return refused(e.to_string()),
        };
        if let Err(e) = self.remotes.reloadable(&config) {
            return refused(e);
        }
        let renewal = match self
            .certificates
            .read_again(|table| tls_named(&config, table))
        {
            Ok(renewal) => renewal,
            Err(e) => return refused(e),
        };
        if let Err(e) = self.users.replace(&config) {
            return refused(e.to_string());
        }
        for user in &config.users {
            self.quotas.track_user(user, true);
        }
        if let Err(e) = self.events.reload(&config.webhooks) {
            tracing::error!("webhooks not reloaded: {e}");
        }
        let credentials = self.remotes.take_credentials(&config);
        let certificates = renewal.apply();
        tracing::info!(users = config.users.len(), webhooks = config.webhooks.len(), identity = sources_shown(&config), new_credentials = credentials.join(", "), new_certificates = certificates.join(", "), file = %path.display(), "users reloaded (and webhooks, identity sources, remote credentials, TLS certificates)");
        Ok(format!(
            "{} user(s), {} webhook(s), identity sources {}, new credentials for remotes [{}], new certificates for [{}] from {}",
            config.users.len(),
            config.webhooks.len(),
            sources_shown(&config),
            credentials.join(", "),
            certificates.join(", "),
            path.display()
        ))
    }
}

/// The listeners that may serve TLS, by table.
pub const TLS_TABLES: [&str; 3] = ["ftp", "web", "admin"];

/// The certificate and key `config` names for listener `table` (one of
/// [`TLS_TABLES`]).
pub fn tls_named(config: &Config, table: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    match table {
        "ftp" => config.ftp.as_ref()?.tls.clone(),
        "web" => config.web.as_ref()?.tls.clone(),
        "admin" => config.admin.as_ref()?.tls.clone(),
        _ => None,
    }
}
