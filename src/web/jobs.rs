//! `GET /api/jobs/{id}` and `GET /health`.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    queue::{JobStatus, find_job},
    web::{AppState, error::AppError},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/jobs/{id}", get(show_job))
        .route("/health", get(health))
}

async fn show_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobStatus>, AppError> {
    find_job(&state.pool, &id)
        .await?
        .map(|job| Json(JobStatus::from(job)))
        .ok_or(AppError::NotFound("job"))
}

async fn health(State(state): State<AppState>) -> Response {
    if let Some(Err(problem)) = state.db_file.as_ref().map(crate::db::DbFile::check) {
        tracing::error!(%problem, "health check: database file");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "database": problem})),
        )
            .into_response();
    }
    match state.pool.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "unavailable", "database": e.to_string()})),
            )
                .into_response()
        }
    }
}
