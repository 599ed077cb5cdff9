//! The operator listener (`ADMIN_BIND`, never the public one): the apalis-board job dashboard at
//! its root with its API at `/api/v1`, Prometheus `/metrics`, and `POST /ops/jobs/{id}/retry`.
//! The board has no authentication of its own and its API can enqueue jobs, so every route here
//! sits behind `ADMIN_TOKEN` (a bearer token), which is mandatory off loopback.

use apalis_board::axum::ui::ServeUI;
use axum::{
    Json, Router,
    extract::{Path, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use sqlx::SqlitePool;
use subtle::ConstantTimeEq;

use crate::queue::{
    JobState,
    inspect::{self, RetryError},
};

#[derive(Clone)]
struct AdminState {
    pool: SqlitePool,
    token: Option<String>,
}

pub fn router(pool: SqlitePool, token: Option<String>, queues: &[&'static str]) -> Router {
    // The board's live event stream (`/api/v1/events`) reads the process's log lines.
    let board_api = crate::queue::dashboard::board_api(&pool, queues)
        .layer(axum::Extension(crate::telemetry::board_events()));
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
        .layer(middleware::from_fn_with_state(state, require_token))
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
