//! The command line: `serve` (the default), `web`, `worker` run the application; `jobs` inspects
//! and repairs the queue; `bench`, `redis` and `amqp` hand over to the tools built beside this
//! binary (`signup-queue-bench`, `signup-queue-redis`, `signup-queue-amqp`, package
//! `signup-queue-tools`), which keep their dependencies out of the product.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum, parser::ValueSource};

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
    /// Inspect and repair the job queue (works on DATABASE_URL directly; no server needed).
    Jobs {
        #[command(subcommand)]
        command: crate::ops::jobs_cli::JobsCommand,
    },
    /// Measure sync vs async, peak shaving and the limits of this machine (starts all it needs on
    /// 127.0.0.1). Runs the `signup-queue-bench` tool: `signup-queue bench --help` for its options.
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The Redis List/Stream exercise: a log producer and consumer (LPUSH/BRPOP and variants).
    /// Runs the `signup-queue-redis` tool: `signup-queue redis --help` for its commands.
    #[command(disable_help_flag = true)]
    Redis {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// What another service sees of the events relayed to RabbitMQ (EVENTS_AMQP_URL): a consumer
    /// of the exchange. Runs the `signup-queue-amqp` tool: `signup-queue amqp --help`.
    #[command(disable_help_flag = true)]
    Amqp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

pub async fn run() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    telemetry::init(cli.settings.log_format);
    let role = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Role::All,
        Command::Web => Role::Web,
        Command::Worker => Role::Worker,
        Command::Jobs { command } => {
            return crate::ops::jobs_cli::run(&cli.settings.database_url, command).await;
        }
        Command::Bench { args } => {
            // `--workers` and `--hash-cost` are global flags, so clap takes them before the tool
            // sees them: they travel as the environment variables of the same meaning.
            let mut env = vec![("WORKERS", cli.settings.workers.to_string())];
            if matches.value_source("hash_cost") == Some(ValueSource::CommandLine)
                && let Some(cost) = cli.settings.hash_cost.to_possible_value()
            {
                env.push(("HASH_COST", cost.get_name().to_owned()));
            }
            return run_tool("signup-queue-bench", &args, &env);
        }
        Command::Redis { args } => return run_tool("signup-queue-redis", &args, &[]),
        Command::Amqp { args } => return run_tool("signup-queue-amqp", &args, &[]),
    };
    let app = Application::build(cli.settings, role).await?;
    app.run_until_stopped(shutdown_signal()).await
}

/// Hands over to a tool installed beside this binary (or on PATH), git-style: same arguments,
/// same environment, its exit status. The tools are separate binaries so the product carries
/// none of their dependencies; `cargo build --release` builds them with it.
fn run_tool(name: &str, args: &[OsString], env: &[(&str, String)]) -> anyhow::Result<()> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|path| path.is_file());
    let program = beside.map_or_else(|| OsString::from(name), OsString::from);
    let mut command = std::process::Command::new(&program);
    command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replaces this process: signals (Ctrl-C) and the exit status are the tool's own.
        let error = command.exec();
        tool_missing(name, error)
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .map_err(|e| tool_missing(name, e).unwrap_err())?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

fn tool_missing(name: &str, error: std::io::Error) -> anyhow::Result<()> {
    anyhow::bail!(
        "cannot run {name} ({error}): it is built beside signup-queue by `cargo build --release` \
         (package signup-queue-tools), or run it with `cargo run --release -p signup-queue-tools --bin {name} -- ...`"
    )
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
