//! The command line: `serve` (default), `web`, `worker`.

use clap::{Parser, Subcommand};

use crate::{Application, Role, Settings, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "signup-queue",
    version,
    about = "Registration with a welcome mail, synchronous beside asynchronous: what a message queue buys a web app.",
    long_about = None,
    after_help = "Every option can also be set by the environment variable shown in brackets.\n\
                  Without SMTP_URL, `serve` runs an embedded development inbox (for development only) at /dev/mailbox."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP server and worker pool in one process (the default).
    Serve,
    /// Only the HTTP server; workers run elsewhere on the same database. Needs SMTP_URL.
    Web,
    /// Only the worker pool, on the same database as `web`. Needs SMTP_URL.
    Worker,
    /// The Redis List/Stream exercise: a log producer and consumer (LPUSH/BRPOP and variants).
    Redis {
        #[command(subcommand)]
        command: crate::redis_queue::RedisCommand,
    },
    /// Measure sync vs async, peak shaving and the limits of this machine (starts all it needs on
    /// 127.0.0.1). Uses WORKERS; password hashing is `test` unless --hash-cost is given.
    Bench(crate::bench::BenchArgs),
    /// Inspect and repair the job queue (works on DATABASE_URL directly; no server needed).
    Jobs {
        #[command(subcommand)]
        command: crate::jobs_cli::JobsCommand,
    },
}

pub async fn run() -> anyhow::Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    telemetry::init(cli.settings.log_format);
    let role = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Role::All,
        Command::Web => Role::Web,
        Command::Worker => Role::Worker,
        Command::Redis { command } => return crate::redis_queue::run(command).await,
        Command::Bench(args) => {
            // The bench hashes cheaply unless asked otherwise: it measures the queue, and says so.
            let explicit = matches!(
                matches.value_source("hash_cost"),
                Some(
                    clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable
                )
            );
            let cost = if explicit {
                cli.settings.hash_cost
            } else {
                crate::config::HashCost::Test
            };
            return crate::bench::run(args, cli.settings.workers, cost).await;
        }
        Command::Jobs { command } => {
            return crate::jobs_cli::run(&cli.settings.database_url, command).await;
        }
    };
    let app = Application::build(cli.settings, role).await?;
    app.run_until_stopped(shutdown_signal()).await
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
