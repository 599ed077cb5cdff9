//! The retry schedule: exponential backoff with jitter, kept in the job row's `run_at`.

use std::time::Duration;

use crate::{db::Db, queue::state::JobTable};
use rand::Rng;

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
pub async fn schedule_retry(pool: &Db, job_id: &str, delay: Duration) -> Result<(), sqlx::Error> {
    let delay_secs = delay.as_secs_f64().ceil() as i64;
    let jobs = JobTable::of(pool.backend());
    let sql = format!(
        "UPDATE {} SET run_at = {} WHERE id = $2",
        jobs.table,
        (jobs.in_seconds)("$1")
    );
    crate::with_db!(pool, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(delay_secs)
            .bind(job_id)
            .execute(pool)
            .await?;
    });
    Ok(())
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
