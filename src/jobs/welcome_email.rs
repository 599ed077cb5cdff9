//! The welcome email: the first consumer of `user_registered`, plus the worker plumbing the
//! consumers share (retry schedule, pool settings, worker names).

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::{
    events::{Consumer, ConsumerError, Deps, Envelope, JobInfo, UserRegistered},
    jobs::batch::BatchWriter,
    mail::Mailer,
    users::User,
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
    deliveries: BatchWriter<Delivery>,
}

/// A `welcome_deliveries` row written by the worker.
#[derive(Clone)]
struct Delivery {
    user_id: i64,
    message_id: String,
    job_id: String,
}

impl WelcomeEmail {
    pub fn new(deps: &Deps) -> Self {
        WelcomeEmail {
            pool: deps.pool.clone(),
            mailer: deps.mailer.clone(),
            deliveries: BatchWriter::new(
                deps.pool.clone(),
                Arc::new(|pool, rows| Box::pin(record_deliveries(pool, rows))),
            ),
        }
    }

    async fn deliver(&self, user_id: i64, job_id: &str) -> Result<bool, ConsumerError> {
        // The user and whether the mail already went out, in one query.
        let row: Option<(i64, String, Option<String>, bool)> = sqlx::query_as(
            "SELECT u.id, u.email, u.name, d.user_id IS NOT NULL
             FROM users u LEFT JOIN welcome_deliveries d ON d.user_id = u.id WHERE u.id = ?1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(retry)?;
        let Some((id, email, name, delivered)) = row else {
            return Err(ConsumerError::Abort(
                format!("user {user_id} does not exist (deleted after registering?)").into(),
            ));
        };
        if delivered {
            return Ok(false);
        }
        let user = User { id, email, name };
        let message_id = self.mailer.send_welcome(&user).await.map_err(retry)?;
        self.deliveries
            .write(Delivery {
                user_id,
                message_id,
                job_id: job_id.to_owned(),
            })
            .await
            .map_err(retry)?;
        Ok(true)
    }
}

/// The workers' delivery records, many rows in one statement (see `jobs::batch`).
async fn record_deliveries(pool: SqlitePool, rows: Arc<[Delivery]>) -> Result<(), sqlx::Error> {
    let mut query = sqlx::QueryBuilder::new(
        "INSERT INTO welcome_deliveries (user_id, message_id, mode, job_id) ",
    );
    query.push_values(rows.iter(), |mut row, d| {
        row.push_bind(d.user_id)
            .push_bind(d.message_id.as_str())
            .push_bind("async")
            .push_bind(d.job_id.as_str());
    });
    query.push(" ON CONFLICT (user_id) DO NOTHING");
    query.build().execute(&pool).await?;
    Ok(())
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

/// The synchronous endpoint's delivery record (the workers batch theirs).
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
