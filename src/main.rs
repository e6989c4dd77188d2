//! The command line only: each subcommand calls into the library.

use anyhow::Context;
use bucketgate::config::Config;
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::CheckConfig { config } => check_config(&config),
        Command::HashPassword => hash_password(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,libunftp=error".into());
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
    runtime.block_on(bucketgate::serve::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    match Config::load(path) {
        Ok(c) => {
            // The files the config names are read at start; read them now too.
            if let Some((cert, key)) = c.ftp.as_ref().and_then(|f| f.tls.as_ref())
                && let Err(e) = bucketgate::ftp::tls::server_config(cert, key)
            {
                eprintln!("{}: {e}", path.display());
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "{}: ok ({} remote(s), {} user(s), {} sync job(s))",
                path.display(),
                c.remotes.len(),
                c.users.len(),
                c.syncs.len()
            );
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
