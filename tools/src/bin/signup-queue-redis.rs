//! `signup-queue redis ...` (also `signup-queue-redis ...`): the Redis List/Stream exercise.

use clap::Parser;

/// The Redis List/Stream exercise: a log producer and consumer (LPUSH/BRPOP and variants).
#[derive(Debug, Parser)]
#[command(name = "signup-queue redis", version)]
struct Cli {
    #[command(subcommand)]
    command: signup_queue_tools::redis_queue::RedisCommand,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match signup_queue_tools::redis_queue::run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signup-queue redis: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
