//! The command line only: each subcommand calls into the library.

use anyhow::Context;
use bucketgate::config::{Config, RemoteKind};
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc gives memory back to the system after a burst (its background
/// thread purges pages unused for a second); glibc's per-thread arenas kept
/// what a load had taken. See docs/operations.md, "Limits and hardening".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// SFTP and FTP/FTPS gateway whose files live in S3-compatible object storage.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway.
    Serve {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Validate a config file: exit 0, or list every problem and exit 1.
    CheckConfig {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Read a password (one line on stdin, or prompted twice on a terminal) and print its argon2id hash.
    HashPassword,
    /// Make an API token for the admin console: prints the token (give it to
    /// the script) and the hash line for [[admin.tokens]] (put it in the config).
    AdminToken,
    /// Sync jobs: run one now, list them, show a job's recent runs.
    Sync {
        #[command(subcommand)]
        command: SyncCommand,
    },
    /// The fleet of `[cluster]`: its nodes and the database's schema.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// A second factor for a user.
    Totp {
        #[command(subcommand)]
        command: TotpCommand,
    },
}

#[derive(Subcommand)]
enum TotpCommand {
    /// A fresh TOTP secret for user NAME: the secret (for `totp`), its
    /// otpauth:// URI and a QR code of it for an authenticator app.
    New { name: String },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The nodes with their version and last heartbeat, and the schema version.
    Status {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum SyncCommand {
    /// Run a job once now; exits non-zero if any file failed or the run stopped.
    Run {
        name: String,
        /// Print each action the run would take, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go past the max_delete and empty-side stops.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// The jobs, with the last run of each.
    List {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// A job's recent run reports, oldest first.
    Status {
        name: String,
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A sync run on a terminal shows a progress bar; log lines would break it.
    let bar = matches!(
        cli.command,
        Command::Sync {
            command: SyncCommand::Run { dry_run: false, .. }
        }
    ) && std::io::stderr().is_terminal();
    init_logs(
        cli.log_format,
        if bar { "warn" } else { "info,libunftp=error" },
    );
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::CheckConfig { config } => check_config(&config),
        Command::HashPassword => hash_password(),
        Command::AdminToken => {
            let (token, hash) = bucketgate::admin::access::new_token();
            println!("token: {token}");
            println!("hash = \"{hash}\"");
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { command } => match command {
            SyncCommand::Run {
                name,
                dry_run,
                force,
                config,
            } => sync_run(&config, &name, dry_run, force, bar),
            SyncCommand::List { config } => sync_list(&config),
            SyncCommand::Status { name, config } => sync_status(&config, &name),
        },
        Command::Cluster {
            command: ClusterCommand::Status { config },
        } => cluster_status(&config),
        Command::Totp {
            command: TotpCommand::New { name },
        } => {
            print!("{}", bucketgate::auth::totp_enrolment(&name));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What clients do that is normal, but the libraries log as warnings: kept
/// out of the operator's log at any `RUST_LOG` that does not name the
/// target. rustls's SNI complaint (lftp and Python send an IP as host
/// name), russh's unknown channel requests (PuTTY's
/// `simple@putty.projects.tartarus.org`).
const QUIET: [&str; 2] = [
    "rustls::msgs::handshake=error",
    "russh::server::encrypted=error",
];

fn init_logs(format: LogFormat, default: &str) {
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    for quiet in QUIET {
        let target = quiet.split('=').next().unwrap_or(quiet);
        if !asked.contains(target) {
            filter = filter.add_directive(quiet.parse().expect("a valid directive"));
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(bucketgate::serve::run(config, path))?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    match Config::load(path) {
        Ok(c) => {
            // The files the config names are read at start; read them now too.
            for table in bucketgate::serve::TLS_TABLES {
                if let Some((cert, key)) = bucketgate::serve::tls_named(&c, table)
                    && let Err(e) = bucketgate::base::read_pair(table, &cert, &key)
                {
                    eprintln!("{}: {e}", path.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
            println!(
                "{}: ok ({} remote(s), {} user(s), {} sync job(s))",
                path.display(),
                c.remotes.len(),
                c.users.len(),
                c.syncs.len()
            );
            for remote in c.remotes.values() {
                if let RemoteKind::S3(s3) = &remote.kind {
                    let source = match &s3.keys {
                        Some(_) => "its keys in the config",
                        None => bucketgate::remote::chain_source(&|name| std::env::var(name).ok()),
                    };
                    println!("remote {}: credentials from {source}", remote.name);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn hash_password() -> anyhow::Result<ExitCode> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == second, "the two passwords differ");
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    println!("{}", bucketgate::auth::hash_password(&password));
    Ok(ExitCode::SUCCESS)
}

/// Builds the remotes and finds job `name`.
fn sync_job(config: &Config, name: &str) -> anyhow::Result<bucketgate::sync::Job> {
    let metrics = bucketgate::metrics::Metrics::new();
    let remotes = bucketgate::remote::Remotes::build(config, &metrics)?;
    let held = metrics.buffered_bytes.clone();
    let budget = bucketgate::vfs::Budget::new(config.server.memory_budget, held);
    let storage = bucketgate::vfs::Storage::new(&remotes, &budget);
    let fleet = config
        .cluster
        .as_ref()
        .map(|c| bucketgate::cluster::Cluster::new(c, &metrics))
        .transpose()?;
    Ok(
        bucketgate::sync::Job::named(name, &config.syncs, &storage, &config.server.state_dir)?
            .in_fleet(fleet),
    )
}

/// A job's run reports, oldest first: the fleet's with `[cluster]` (this
/// gateway's own, said on stderr, when its database cannot be read).
fn reports_of(
    config: &Config,
    job: &bucketgate::config::SyncConfig,
) -> anyhow::Result<Vec<bucketgate::sync::Report>> {
    use bucketgate::sync::state::{JobFiles, KEEP_REPORTS};
    if let Some(c) = &config.cluster {
        let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
        let fleet = bucketgate::cluster::Cluster::new(c, &bucketgate::metrics::Metrics::new())?;
        match runtime.block_on(bucketgate::sync::fleet::reports(
            &fleet,
            &job.name,
            KEEP_REPORTS,
        )) {
            Ok(mut reports) => {
                reports.reverse();
                return Ok(reports);
            }
            Err(e) => eprintln!(
                "{}: the cluster's reports cannot be read ({e}); this gateway's own:",
                job.name
            ),
        }
    }
    Ok(JobFiles::of(&config.server.state_dir, job).reports()?)
}

fn sync_run(
    path: &std::path::Path,
    name: &str,
    dry_run: bool,
    force: bool,
    bar: bool,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let job = sync_job(&config, name)?;
        if let Some(fleet) = &job.fleet {
            bucketgate::cluster::schema::migrate(fleet).await?;
        }
        if dry_run {
            let plan = match job.dry_run(force).await {
                Ok(p) => p,
                Err(reason) => {
                    eprintln!("{name}: the run would stop: {reason}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            for a in &plan.actions {
                println!("{a}");
            }
            for s in &plan.skipped {
                println!("skip {s}");
            }
            let acting = plan.actions.len();
            println!("{name}: dry run, {acting} action(s); nothing was changed");
            return Ok(ExitCode::SUCCESS);
        }
        let progress = Bar(bar.then(|| {
            indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .expect("a valid template"),
            )
        }));
        let report = job.run(force, &progress).await?;
        if let Some(b) = &progress.0 {
            b.finish_and_clear();
        }
        println!("{name}: {report}");
        Ok(if report.outcome == bucketgate::sync::Outcome::Done {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// The progress bar of `sync run` on a terminal.
struct Bar(Option<indicatif::ProgressBar>);

impl bucketgate::sync::RunProgress for Bar {
    fn planned(&self, _actions: usize, bytes: u64) {
        if let Some(b) = &self.0 {
            b.set_length(bytes);
        }
    }
    fn copied(&self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }
    fn finished(&self, action: &str) {
        if let Some(b) = &self.0 {
            b.set_message(action.to_string());
        }
    }
}

fn cluster_status(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    use bucketgate::cluster::{Cluster, nodes, schema};
    let config = Config::load(path)?;
    let Some(c) = &config.cluster else {
        anyhow::bail!(
            "{} has no [cluster]: this gateway is not part of a fleet",
            path.display()
        );
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let cluster = Cluster::new(c, &bucketgate::metrics::Metrics::new())?;
        let version = schema::version(&cluster).await?;
        println!("schema {version} (this binary's: {})", schema::latest());
        println!(
            "{:<24} {:<10} {:<26} {:<16} state",
            "node", "version", "started", "last heartbeat"
        );
        for n in nodes::list(&cluster).await? {
            println!(
                "{:<24} {:<10} {:<26} {:<16} {}",
                n.name,
                n.version,
                n.started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                format!("{:.1} s ago", n.silent_for.as_secs_f64()),
                if n.gone { "gone" } else { "up" }
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn sync_list(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    if config.syncs.is_empty() {
        println!("no sync jobs in {}", path.display());
    }
    for s in &config.syncs {
        let every = s.interval.map_or("on demand".to_string(), |i| {
            format!("every {}", humantime::format_duration(i))
        });
        println!(
            "{}: {:?} {} <-> {}, {every}",
            s.name, s.direction, s.local, s.remote
        );
        match reports_of(&config, s)?.last() {
            Some(last) => println!("  last run {last}"),
            None => println!("  never run"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sync_status(path: &std::path::Path, name: &str) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let s = bucketgate::sync::run::find(name, &config.syncs)?;
    let reports = reports_of(&config, s)?;
    if reports.is_empty() {
        println!("{name}: never run");
    }
    for r in reports {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}
