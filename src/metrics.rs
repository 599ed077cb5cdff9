//! Prometheus metrics (`GET /metrics` on the admin listener). One recorder per process, installed
//! on first use; the names are listed in README ("Operating").

use std::{sync::OnceLock, time::Duration};

use axum::{extract::MatchedPath, http::Request, middleware::Next, response::Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::SqlitePool;

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

/// Renders the text format, refreshing the queue depth gauges from the job table first.
pub async fn render(pool: &SqlitePool) -> String {
    let handle = handle();
    match crate::jobs::admin::stats(pool).await {
        Ok(stats) => {
            for s in stats {
                for (status, n) in [
                    ("pending", s.pending),
                    ("running", s.running),
                    ("retrying", s.retrying),
                    ("done", s.done),
                    ("failed", s.failed),
                ] {
                    metrics::gauge!("jobs_queue_depth", "queue" => s.queue.clone(), "status" => status).set(n as f64);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read queue depth for /metrics"),
    }
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
