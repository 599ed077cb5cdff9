//! Prometheus metrics (`GET /metrics` on the admin listener). One recorder per process, installed
//! on first use; the names are listed in README ("Operating"). A leaf: the web, queue and mail
//! modules record here, and nothing here reads the rest of the crate.

use std::{sync::OnceLock, time::Duration};

use axum::{extract::MatchedPath, http::Request, middleware::Next, response::Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Seconds, from 1 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide recorder (installed once; a process can hold only one).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will stay empty");
        }
        handle
    })
}

/// Sets the `jobs_queue_depth` gauge of one queue and state (read from the job table at each
/// scrape by the admin listener).
pub fn queue_depth(queue: &str, state: &'static str, n: i64) {
    // The recorder first: a gauge set before it exists is lost (the first scrape was empty).
    let _ = handle();
    metrics::gauge!("jobs_queue_depth", "queue" => queue.to_owned(), "status" => state)
        .set(n as f64);
}

/// The Prometheus text format of everything recorded so far.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

/// Axum middleware: `http_requests_total` and `http_request_duration_seconds` by route and status.
pub async fn track_http(request: Request<axum::body::Body>, next: Next) -> Response {
    let _ = handle();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

pub fn job_enqueued(queue: &str) {
    let queue = queue.to_owned();
    metrics::counter!("jobs_enqueued_total", "queue" => queue).increment(1);
}

pub fn job_started(queue: &'static str, waited: Option<Duration>) {
    metrics::counter!("jobs_started_total", "queue" => queue).increment(1);
    if let Some(waited) = waited {
        metrics::histogram!("job_queue_wait_seconds", "queue" => queue)
            .record(waited.as_secs_f64());
    }
}

/// `outcome`: `succeeded`, `retried` (failed with attempts left) or `failed` (for good).
pub fn job_finished(queue: &'static str, outcome: &'static str, ran: Duration) {
    let name = match outcome {
        "succeeded" => "jobs_succeeded_total",
        "retried" => "jobs_retried_total",
        _ => "jobs_failed_total",
    };
    metrics::counter!(name, "queue" => queue).increment(1);
    metrics::histogram!("job_run_seconds", "queue" => queue, "outcome" => outcome)
        .record(ran.as_secs_f64());
}

pub fn smtp_sent(took: Duration) {
    metrics::histogram!("smtp_send_seconds").record(took.as_secs_f64());
}

pub fn smtp_error(kind: &'static str) {
    metrics::counter!("smtp_send_errors_total", "kind" => kind).increment(1);
}
