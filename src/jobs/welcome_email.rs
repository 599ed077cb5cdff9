//! The welcome email: the first consumer of `user_registered`, plus the worker plumbing the
//! consumers share (retry schedule, pool settings, worker names).

use futures::future::BoxFuture;
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
}
