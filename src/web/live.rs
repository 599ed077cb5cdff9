//! Live status for the page, pushed over Server-Sent Events (the browser never polls):
//! `GET /api/jobs/{id}/events` (one job until it is done or failed), `GET /api/queue/events`
//! (queue counts and the mail server's reachability), and `GET /api/queue` (the same, once).
//! Streams end when the server shuts down, so they never hold up a graceful shutdown.

use std::{convert::Infallible, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, State},
    response::sse::{Event, KeepAlive, Sse},
    routing::get,
};
use futures::Stream;
use serde::Serialize;

use crate::{
    consumers::welcome::WELCOME_QUEUE,
    queue::{JobStatus, find_job, inspect},
    web::{AppState, error::AppError},
};

async fn job_status(state: &AppState, id: &str) -> Result<Option<JobStatus>, sqlx::Error> {
    Ok(find_job(&state.pool, id).await?.map(JobStatus::from))
}

/// How often the server looks at the job table for a subscribed job.
const JOB_TICK: Duration = Duration::from_millis(100);
/// How often the queue panel is refreshed, and how often the mail server is probed.
const QUEUE_TICK: Duration = Duration::from_secs(1);
const MAIL_PROBE_EVERY: u32 = 5;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/api/queue", get(queue_snapshot))
        .route("/api/queue/events", get(queue_events))
}

async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let first = job_status(&state, &id)
        .await?
        .ok_or(AppError::NotFound("job"))?;
    let stream = async_stream::stream! {
        let mut last = None;
        let mut current = Some(first);
        loop {
            if let Some(job) = current.take() {
                let key = (job.status, job.attempts);
                if last != Some(key) {
                    last = Some(key);
                    let terminal = job.status.is_final();
                    yield Ok(Event::default().event("status").json_data(&job).unwrap_or_default());
                    if terminal {
                        break;
                    }
                }
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tokio::time::sleep(JOB_TICK) => {}
            }
            match job_status(&state, &id).await {
                Ok(job) => current = job,
                Err(e) => {
                    tracing::warn!(error = %e, job_id = %id, "job status stream: database error");
                    break;
                }
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The queue panel's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueSnapshot {
    pub pending: i64,
    pub running: i64,
    pub retrying: i64,
    pub done: i64,
    pub failed: i64,
    /// `up` or `down`: does the mail server answer a NOOP?
    pub mail_server: &'static str,
}

async fn counts(state: &AppState) -> Result<inspect::QueueStats, sqlx::Error> {
    Ok(inspect::stats(&state.pool)
        .await?
        .into_iter()
        .find(|s| s.queue == WELCOME_QUEUE)
        .unwrap_or_default())
}

fn snapshot(stats: inspect::QueueStats, mail_up: bool) -> QueueSnapshot {
    QueueSnapshot {
        pending: stats.pending,
        running: stats.running,
        retrying: stats.retrying,
        done: stats.done,
        failed: stats.failed,
        mail_server: if mail_up { "up" } else { "down" },
    }
}

async fn queue_snapshot(State(state): State<AppState>) -> Result<Json<QueueSnapshot>, AppError> {
    let stats = counts(&state).await?;
    Ok(Json(snapshot(stats, state.mailer.is_reachable().await)))
}

async fn queue_events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = async_stream::stream! {
        let mut last = None;
        let mut mail_up = false;
        for tick in 0u32.. {
            if tick % MAIL_PROBE_EVERY == 0 {
                mail_up = state.mailer.is_reachable().await;
            }
            match counts(&state).await {
                Ok(stats) => {
                    let now = snapshot(stats, mail_up);
                    if last.as_ref() != Some(&now) {
                        yield Ok(Event::default().event("queue").json_data(&now).unwrap_or_default());
                        last = Some(now);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "queue stream: database error");
                    break;
                }
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tokio::time::sleep(QUEUE_TICK) => {}
            }
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::default())
}
