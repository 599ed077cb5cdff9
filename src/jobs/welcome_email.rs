//! The welcome email: the first consumer of `user_registered`, plus the worker plumbing the
//! consumers share (retry schedule, pool settings, worker names).

use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::{
    events::{Consumer, ConsumerError, Deps, Envelope, JobInfo, UserRegistered},
    mail::Mailer,
    users::{User, find_user},
};

/// Queue name in the job table. Named explicitly: the default is the Rust type's path, and
/// renaming the struct would strand queued jobs.
pub const WELCOME_QUEUE: &str = "welcome_email";

/// The welcome job's message from before events, `{"task": "send_welcome_email", "user_id": 123}`;
/// still accepted on the welcome queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename = "send_welcome_email")]
pub struct SendWelcomeEmail {
    pub user_id: i64,
}

/// Sends the welcome mail unless it was already delivered, then records the delivery.
pub struct WelcomeEmail {
    pool: SqlitePool,
    mailer: Mailer,
}

impl WelcomeEmail {
    pub fn new(deps: &Deps) -> Self {
        WelcomeEmail {
            pool: deps.pool.clone(),
            mailer: deps.mailer.clone(),
        }
    }

    async fn deliver(&self, user_id: i64, job_id: &str) -> Result<bool, ConsumerError> {
        if is_delivered(&self.pool, user_id).await.map_err(retry)? {
            return Ok(false);
        }
        let user: User = find_user(&self.pool, user_id)
            .await
            .map_err(retry)?
            .ok_or_else(|| {
                ConsumerError::Abort(
                    format!("user {user_id} does not exist (deleted after registering?)").into(),
                )
            })?;
        let message_id = self.mailer.send_welcome(&user).await.map_err(retry)?;
        record_delivery(&self.pool, user_id, &message_id, "async", Some(job_id))
            .await
            .map_err(retry)?;
        Ok(true)
    }
}

fn retry(e: impl std::error::Error + Send + Sync + 'static) -> ConsumerError {
    ConsumerError::Retry(Box::new(e))
}

impl Consumer for WelcomeEmail {
    fn name(&self) -> &'static str {
        WELCOME_QUEUE
    }

    fn handle<'a>(
        &'a self,
        event: &'a Envelope<UserRegistered>,
        job: &'a JobInfo,
    ) -> BoxFuture<'a, Result<(), ConsumerError>> {
        Box::pin(async move {
            if self.deliver(event.payload.user_id, &job.id).await? {
                tracing::info!("welcome mail sent");
            } else {
                tracing::info!("welcome mail was already delivered; nothing sent");
            }
            Ok(())
        })
    }
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

/// The storage re-fetches a failed job as soon as its `run_at` has passed, and its acknowledgement
/// leaves `run_at` alone: moving `run_at` before returning the error is the backoff. It is
/// durable (a restart keeps the schedule) and visible in the job row.
pub async fn schedule_retry(
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

/// Settings of one worker process's pool (per consumer queue).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_message_has_the_documented_shape() {
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
