//! `signup-queue amqp ...` (also `signup-queue-amqp ...`): a consumer of the events the app relays
//! to RabbitMQ (EVENTS_AMQP_URL), as another service would run it.

use clap::Parser;

/// Consume the `user_registered` events the app publishes to RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "signup-queue amqp", version)]
struct Cli {
    #[command(subcommand)]
    command: signup_queue_tools::amqp_consume::AmqpCommand,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match signup_queue_tools::amqp_consume::run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signup-queue amqp: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
