//! The "send welcome email" job: its message, the transactional enqueue, and the handler.

use std::time::Duration;

use apalis::prelude::*;
use apalis_sqlite::{Config, SqliteStorage};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::{SqliteConnection, SqlitePool};

use crate::{
    jobs::Wakeup,
    mail::Mailer,
    users::{User, find_user},
};

/// Queue name in the job table. Named explicitly: the default is the Rust type's path, and
/// renaming the struct would strand queued jobs.
pub const WELCOME_QUEUE: &str = "welcome_email";

/// The job message: `{"task": "send_welcome_email", "user_id": 123}`. It carries the id only;
/// the worker loads the user, so no personal data sits in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename = "send_welcome_email")]
pub struct SendWelcomeEmail {
    pub user_id: i64,
}

/// Writes the job row through the caller's transaction, so the user and the job commit together
/// (or neither does). The idempotency key makes a second enqueue for the same user a no-op.
/// Returns the job id.
#[tracing::instrument(skip(conn))]
pub async fn enqueue_welcome_email(
    conn: &mut SqliteConnection,
    user_id: i64,
    max_attempts: u32,
    request_id: Option<&str>,
) -> Result<String, apalis_sqlite::Error> {
    let job_id = ulid::Ulid::generate().to_string();
    let message = SendWelcomeEmail { user_id };
    let args = serde_json::to_vec(&message)
        .map_err(|e| apalis_sqlite::Error::from(sqlx::Error::Encode(Box::new(e))))?;
    // The request id travels with the job, so the worker's log lines name the request that
    // enqueued it: one registration can be followed from HTTP to SMTP.
    let mut metadata = MetadataStore::new();
    if let Some(request_id) = request_id {
        let _ = metadata.insert(REQUEST_ID, request_id);
    }
    let task = TaskBuilder::new(args)
        .with_metadata(metadata)
        .task_id(TaskId::from_string(job_id.clone()))
        .max_attempts(max_attempts as usize)
        .idempotency_key(format!("welcome:{user_id}"))
        .build();
    apalis_sqlite::queries::push_tasks(conn, WELCOME_QUEUE, &[task]).await?;
    Ok(job_id)
}

/// Metadata key of the id of the HTTP request that enqueued a job.
pub const REQUEST_ID: &str = "request_id";

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, capped, then scaled by 50-100 %.
#[derive(Debug, Clone, Copy)]
pub struct RetrySchedule {
    pub base: Duration,
    pub cap: Duration,
}

impl RetrySchedule {
    pub fn delay_after(&self, attempt: usize) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30) as u32;
        let full = self
            .base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.cap);
        full.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

/// What the handler needs, shared by all jobs of a worker.
#[derive(Clone)]
pub struct WelcomeContext {
    pub pool: SqlitePool,
    pub mailer: Mailer,
    pub retry: RetrySchedule,
    /// The configured attempt budget, to tell a retried failure from a final one in logs/metrics.
    pub max_attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum WelcomeError {
    #[error("user {0} does not exist (deleted after registering?)")]
    UnknownUser(i64),
    #[error(transparent)]
    Send(#[from] crate::mail::SendError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The handler: send unless already delivered, record the delivery, or schedule the retry.
#[tracing::instrument(
    skip_all,
    fields(
        job_id = %task_id,
        user_id = job.user_id,
        attempt = attempt.current(),
        request_id = metadata.get(REQUEST_ID).unwrap_or("-"),
    )
)]
pub async fn send_welcome_email(
    job: SendWelcomeEmail,
    task_id: TaskId,
    attempt: Attempt,
    metadata: MetadataStore,
    ctx: Data<WelcomeContext>,
) -> Result<(), BoxDynError> {
    let job_id = task_id.to_string();
    let started = std::time::Instant::now();
    // The job id is a ULID: it carries the enqueue time. Only the first attempt's wait is the
    // queue's; later ones include the backoff.
    let waited = (attempt.current() <= 1)
        .then(|| ulid::Ulid::from_string(&job_id).ok())
        .flatten()
        .and_then(|ulid| {
            std::time::SystemTime::now()
                .duration_since(ulid.datetime())
                .ok()
        });
    crate::metrics::job_started(WELCOME_QUEUE, waited);
    let result = match deliver(&ctx, job.user_id, &job_id).await {
        Ok(Outcome::Sent) => {
            tracing::info!("welcome mail sent");
            Ok(())
        }
        Ok(Outcome::AlreadyDelivered) => {
            tracing::info!("welcome mail was already delivered; nothing sent");
            Ok(())
        }
        Err(WelcomeError::UnknownUser(id)) => {
            tracing::warn!("user is gone; job aborted");
            Err(AbortError::new(WelcomeError::UnknownUser(id)).into())
        }
        Err(e) => {
            let delay = ctx.retry.delay_after(attempt.current());
            if let Err(db) = schedule_retry(&ctx.pool, &job_id, delay).await {
                tracing::error!(error = %db, "cannot schedule the retry; it runs without delay");
            }
            let last = attempt.current() >= ctx.max_attempts as usize;
            if last {
                tracing::error!(error = %e, "welcome mail failed for good: attempts exhausted");
            } else {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "welcome mail failed; will retry");
            }
            Err(e.into())
        }
    };
    let outcome = match &result {
        Ok(()) => "succeeded",
        Err(_) if attempt.current() < ctx.max_attempts as usize => "retried",
        Err(_) => "failed",
    };
    crate::metrics::job_finished(WELCOME_QUEUE, outcome, started.elapsed());
    result
}

enum Outcome {
    Sent,
    AlreadyDelivered,
}

async fn deliver(
    ctx: &WelcomeContext,
    user_id: i64,
    job_id: &str,
) -> Result<Outcome, WelcomeError> {
    if is_delivered(&ctx.pool, user_id).await? {
        return Ok(Outcome::AlreadyDelivered);
    }
    let user: User = find_user(&ctx.pool, user_id)
        .await?
        .ok_or(WelcomeError::UnknownUser(user_id))?;
    let message_id = ctx.mailer.send_welcome(&user).await?;
    record_delivery(&ctx.pool, user_id, &message_id, "async", Some(job_id)).await?;
    Ok(Outcome::Sent)
}

pub async fn is_delivered(pool: &SqlitePool, user_id: i64) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT user_id FROM welcome_deliveries WHERE user_id = ?1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.is_some())
}

#[tracing::instrument(skip(pool))]
pub async fn record_delivery(
    pool: &SqlitePool,
    user_id: i64,
    message_id: &str,
    mode: &str,
    job_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO welcome_deliveries (user_id, message_id, mode, job_id) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(message_id)
    .bind(mode)
    .bind(job_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The storage re-fetches a failed job as soon as its `run_at` has passed, and its acknowledgement
/// leaves `run_at` alone: moving `run_at` before returning the error is the backoff. It is
/// durable (a restart keeps the schedule) and visible in the job row.
async fn schedule_retry(
    pool: &SqlitePool,
    job_id: &str,
    delay: Duration,
) -> Result<(), sqlx::Error> {
    let delay_secs = delay.as_secs_f64().ceil() as i64;
    sqlx::query("UPDATE Jobs SET run_at = strftime('%s', 'now') + ?1 WHERE id = ?2")
        .bind(delay_secs)
        .bind(job_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Settings of one worker process's pool.
#[derive(Clone)]
pub struct PoolSettings {
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub heartbeat: Duration,
}

/// A unique worker name per process and start: a restarted worker must never collide with the
/// name of one still inside the heartbeat window.
pub fn worker_name(queue: &str) -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    let suffix = ulid::Ulid::generate().to_string();
    format!(
        "{queue}-{host}-{}-{}",
        std::process::id(),
        &suffix[suffix.len() - 6..]
    )
}

/// Registers the welcome-mail worker on the monitor.
pub fn register_worker(
    monitor: Monitor,
    ctx: WelcomeContext,
    wakeup: Wakeup,
    settings: PoolSettings,
) -> Monitor {
    monitor.register(move |_| {
        let config = Config::default()
            .queue(WELCOME_QUEUE)
            .batch_size(settings.concurrency)
            .heartbeat_interval(settings.heartbeat);
        let strategy = Strategy::new()
            .stream(wakeup.subscribe())
            .interval(settings.poll_interval);
        let backend = SqliteStorage::<SendWelcomeEmail>::new(&ctx.pool)
            .with_config(config)
            .poll_with_strategy(strategy);
        WorkerBuilder::new(worker_name(WELCOME_QUEUE))
            .backend(backend)
            .data(ctx.clone())
            .catch_panic()
            .concurrency(settings.concurrency)
            .build(send_welcome_email)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_the_documented_shape() {
        let json = serde_json::to_value(SendWelcomeEmail { user_id: 123 }).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"task": "send_welcome_email", "user_id": 123})
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let schedule = RetrySchedule {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
        };
        for _ in 0..50 {
            let first = schedule.delay_after(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let fourth = schedule.delay_after(4);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            assert!(schedule.delay_after(40) <= Duration::from_secs(10));
        }
    }
}
