#[tokio::main]
async fn main() -> std::process::ExitCode {
    match signup_queue::cli::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signup-queue: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
