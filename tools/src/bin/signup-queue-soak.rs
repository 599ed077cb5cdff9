//! `signup-queue-soak ...`: the soak run of issue 13, see `signup_queue_tools::soak` and
//! RELIABILITY.md. Exit status: 0 every invariant held, 1 one failed (or the run could not be
//! done), 2 usage.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = signup_queue_tools::soak::SoakArgs::parse();
    match signup_queue_tools::soak::run(args).await {
        Ok(report) if report.ok => std::process::ExitCode::SUCCESS,
        Ok(report) => {
            for check in report.checks.iter().filter(|c| !c.ok) {
                eprintln!("signup-queue soak: FAILED {}: {}", check.name, check.detail);
            }
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("signup-queue soak: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
