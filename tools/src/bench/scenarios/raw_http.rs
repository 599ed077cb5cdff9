//! A limit: a trivial axum route's request rate with the same client and concurrency as the
//! latency scenario, so registration rates read against what HTTP alone allows here.

use serde::Serialize;

use crate::bench::{
    Plan,
    harness::{Summary, bar, load},
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct RawHttp {
    #[serde(flatten)]
    pub summary: Summary,
    pub errors: usize,
}

pub async fn run(plan: &Plan, concurrency: usize) -> anyhow::Result<RawHttp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new().route(
        "/",
        axum::routing::post(|| async { (axum::http::StatusCode::CREATED, "ok") }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();
    let n = plan.requests * 5;
    let progress = bar(n, "limit: trivial axum route");
    let (h, errors, elapsed) = load(
        &client,
        &format!("http://{addr}/"),
        "raw",
        n,
        concurrency,
        &progress,
    )
    .await;
    progress.finish_and_clear();
    server.abort();
    Ok(RawHttp {
        summary: Summary::of(&h, elapsed),
        errors,
    })
}
