//! Audit log consumer: appends every `user_registered` event to `audit_events`, once (the event
//! id is unique, so a re-run of the job adds nothing).

use futures::future::BoxFuture;
use sqlx::SqlitePool;

use crate::events::{Consumer, ConsumerError, Deps, Envelope, JobInfo, UserRegistered};

pub const AUDIT_QUEUE: &str = "audit_log";

pub struct AuditLog {
    pool: SqlitePool,
}

impl AuditLog {
    pub fn new(deps: &Deps) -> Self {
        AuditLog {
            pool: deps.pool.clone(),
        }
    }
}

impl Consumer for AuditLog {
    fn name(&self) -> &'static str {
        AUDIT_QUEUE
    }

    fn handle<'a>(
        &'a self,
        event: &'a Envelope<UserRegistered>,
        _job: &'a JobInfo,
    ) -> BoxFuture<'a, Result<(), ConsumerError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO audit_events (event_id, event_type, event_version, user_id, occurred_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(&event.id)
            .bind(&event.kind)
            .bind(event.version)
            .bind(event.payload.user_id)
            .bind(event.occurred_at.to_rfc3339())
            .execute(&self.pool)
            .await
            .map_err(|e| ConsumerError::Retry(Box::new(e)))?;
            tracing::info!("audit event recorded");
            Ok(())
        })
    }
}
