//! Live status for the page, pushed over Server-Sent Events (the browser never polls):
//! `GET /api/jobs/{id}/events` (one job until it is done or failed), `GET /api/queue/events`
//! (queue counts and the mail server's reachability, from the one shared feed), and
//! `GET /api/queue` (the same, once). Every stream takes a slot of the stream limits, lives at
//! most `STREAM_LIFETIME`, and ends when the server shuts down, so none holds up a graceful
//! shutdown.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    extract::{ConnectInfo, Path, State},
    response::sse::{Event, KeepAlive, Sse},
    routing::get,
};
use futures::Stream;

use crate::{
    queue::{JobStatus, find_job},
    web::{
        AppState,
        error::AppError,
        feed::{QueueSnapshot, RECONNECT, STREAM_LIFETIME, queue_snapshot},
    },
};

/// How often the server looks at the job table for a subscribed job.
const JOB_TICK: Duration = Duration::from_millis(100);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/api/queue", get(queue_once))
        .route("/api/queue/events", get(queue_events))
}

async fn job_status(state: &AppState, id: &str) -> Result<Option<JobStatus>, sqlx::Error> {
    Ok(find_job(&state.pool, id).await?.map(JobStatus::from))
}

async fn job_events(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let slot = state.streams.open(client.ip())?;
    let first = job_status(&state, &id)
        .await?
        .ok_or(AppError::NotFound("job"))?;
    let stream = async_stream::stream! {
        let _slot = slot;
        let ends = tokio::time::Instant::now() + STREAM_LIFETIME;
        let mut last = None;
        let mut current = Some(first);
        loop {
            if let Some(job) = current.take() {
                let key = (job.status, job.attempts);
                if last != Some(key) {
                    last = Some(key);
                    let terminal = job.status.is_final();
                    yield Ok(status_event("status", &job));
                    if terminal {
                        break;
                    }
                }
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(ends) => break,
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

async fn queue_once(State(state): State<AppState>) -> Result<Json<QueueSnapshot>, AppError> {
    Ok(Json(queue_snapshot(&state.pool, &state.mail_probe).await?))
}

async fn queue_events(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let slot = state.streams.open(client.ip())?;
    let mut feed = state.queue_feed.subscribe();
    let stream = async_stream::stream! {
        let _slot = slot;
        let ends = tokio::time::Instant::now() + STREAM_LIFETIME;
        loop {
            let now = feed.borrow_and_update().clone();
            if let Some(now) = now {
                yield Ok(status_event("queue", &now));
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(ends) => break,
                changed = feed.changed() => if changed.is_err() { break },
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One event, with the reconnection delay browsers use after the stream's lifetime ends.
fn status_event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .retry(RECONNECT)
        .json_data(data)
        .unwrap_or_default()
}
