//! `signup-queue bench ...` (also `signup-queue-bench ...`): see `signup_queue_tools::bench`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = signup_queue_tools::bench::BenchArgs::parse();
    match signup_queue_tools::bench::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signup-queue bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
