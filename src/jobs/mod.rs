//! Background jobs: the wake-up signal, what every consumer's worker shares (retry schedule,
//! pool settings, worker names), operator queries and job status for the API.

pub mod admin;
pub mod batch;
pub mod status;
pub mod welcome_email;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::channel::mpsc;
use rand::Rng;
use sqlx::SqlitePool;

pub use welcome_email::{SendWelcomeEmail, WELCOME_QUEUE};

/// Wakes this process's idle workers right after an enqueue commits, so they start within
/// milliseconds instead of waiting for the next poll. Jobs written by other processes are still
/// found by polling (`POLL_INTERVAL`).
#[derive(Clone, Default)]
pub struct Wakeup {
    subscribers: Arc<Mutex<Vec<mpsc::Sender<()>>>>,
}

impl Wakeup {
    /// A stream that yields once per wake-up (wake-ups that arrive while one is pending coalesce).
    pub fn subscribe(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push(tx);
        }
        rx
    }

    pub fn notify(&self) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            // A full channel already has a wake-up pending; a disconnected one is a stopped worker.
            subscribers.retain_mut(|tx| match tx.try_send(()) {
                Ok(()) => true,
                Err(e) => e.is_full(),
            });
        }
    }
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
