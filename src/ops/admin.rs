//! The operator listener (`ADMIN_BIND`, never the public one): the apalis-board job dashboard at
//! its root with its API at `/api/v1`, Prometheus `/metrics`, and `POST /ops/jobs/{id}/retry`.
//! The board has no authentication of its own and its API can enqueue jobs, so every route here
//! sits behind `ADMIN_TOKEN` (a bearer token), which is mandatory off loopback.

use std::{convert::Infallible, time::Duration};

use crate::db::Db;
use apalis_board::axum::ui::ServeUI;
use axum::{
    Json, Router,
    extract::{Path, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures::{Stream, StreamExt};
use subtle::ConstantTimeEq;

use crate::queue::{
    JobState,
    inspect::{self, RetryError},
};

#[derive(Clone)]
struct AdminState {
    pool: Db,
    token: Option<String>,
}

pub fn router(pool: Db, token: Option<String>, queues: &[&'static str]) -> Router {
    let board_api = crate::queue::dashboard::board_api(&pool, queues);
    let state = AdminState {
        pool,
        token: token.filter(|t| !t.is_empty()),
    };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/ops/jobs/{id}/retry", post(retry))
        .with_state(state.clone())
        .nest("/api/v1", board_api)
        .fallback_service(ServeUI::new())
        // The board's live event stream (its Logs page) is ours, see `telemetry`: apalis-board
        // registers its own `/api/v1/events` (its `sse` feature is on by default in its API
        // crate) and a router cannot drop a route, so this layer answers that path first.
        .layer(middleware::from_fn(serve_job_log_events))
        .layer(middleware::from_fn_with_state(state, require_token))
}

async fn serve_job_log_events(request: Request, next: Next) -> Response {
    if request.uri().path() == "/api/v1/events" && request.method() == axum::http::Method::GET {
        return job_log_events().into_response();
    }
    next.run(request).await
}

/// `GET /api/v1/events`: the log lines of jobs as they happen, one `data:` line each, in the
/// JSON shape apalis-board's Logs page reads.
fn job_log_events() -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let lines =
        tokio_stream::wrappers::BroadcastStream::new(crate::telemetry::job_log_lines().subscribe());
    let events = lines.filter_map(|line| async move {
        // A lagging client skips what it missed.
        line.ok()
            .map(|line| Ok(Event::default().data(line.as_ref())))
    });
    Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(1))
            .text("keep-alive-text"),
    )
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            tracing::warn!(path = %request.uri().path(), "admin request without a valid token");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(serde_json::json!({"error": {"code": "unauthorized", "message": "a valid ADMIN_TOKEN bearer token is required", "field": null}})),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Prometheus text format, with the queue depth gauges refreshed from the job table first.
async fn metrics(State(state): State<AdminState>) -> Response {
    match inspect::stats(&state.pool).await {
        Ok(stats) => {
            for s in stats {
                for job_state in JobState::ALL {
                    crate::metrics::queue_depth(&s.queue, job_state.as_str(), s.count(job_state));
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read queue depth for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
        .into_response()
}

async fn retry(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let (status, code, message) = match inspect::retry(&state.pool, &id).await {
        Ok(()) => {
            tracing::info!(job_id = %id, "failed job put back in the queue from the admin listener");
            return Json(serde_json::json!({"id": id, "status": "pending"})).into_response();
        }
        Err(e @ RetryError::Unknown(_)) => (StatusCode::NOT_FOUND, "not_found", e.to_string()),
        Err(e @ RetryError::NotFailed { .. }) => {
            (StatusCode::CONFLICT, "not_failed", e.to_string())
        }
        Err(RetryError::Database(e)) if crate::db::is_unavailable(&e) => {
            tracing::error!(error = %e, "retry failed: the database is not answering");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is not answering; try again in a moment".to_owned(),
            )
        }
        Err(RetryError::Database(e)) => {
            tracing::error!(error = %e, "retry failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".to_owned(),
            )
        }
    };
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message, "field": null}})),
    )
        .into_response()
}
