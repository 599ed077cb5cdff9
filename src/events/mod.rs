//! One event, many consumers. Registration publishes a `user_registered` event; each consumer
//! has its own queue (named after it), worker, retries and failure state, so one failing or slow
//! consumer never delays another, nor the registration.
//!
//! Adding a consumer: a module implementing [`Consumer`], plus one line in [`consumers`].
//! The registration code only calls [`publish_user_registered`]; it never names a consumer.

pub mod audit;
pub mod coupon;

use std::sync::Arc;

use apalis::prelude::*;
use apalis_sqlite::{Config, SqliteStorage};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::{SqliteConnection, SqlitePool};

use crate::{
    jobs::{
        PoolSettings, RetrySchedule, Wakeup, schedule_retry,
        welcome_email::{SendWelcomeEmail, WelcomeEmail},
        worker_name,
    },
    mail::Mailer,
};

pub const USER_REGISTERED: &str = "user_registered";
/// The version this code writes and reads of `user_registered`.
pub const USER_REGISTERED_VERSION: u32 = 1;
/// Metadata key of the id of the HTTP request that published an event.
pub const REQUEST_ID: &str = "request_id";

/// Every message: what happened (`type`, `version`), when, a unique id, and the payload.
/// See docs/messages.md for the versioning rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<P> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    pub payload: P,
}

/// `user_registered` v1: ids only; consumers load what they need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: i64,
}

impl Envelope<UserRegistered> {
    pub fn user_registered(user_id: i64) -> Self {
        Envelope {
            id: ulid::Ulid::generate().to_string(),
            kind: USER_REGISTERED.into(),
            version: USER_REGISTERED_VERSION,
            occurred_at: Utc::now(),
            payload: UserRegistered { user_id },
        }
    }
}

/// What a consumer queue may hold: an envelope, or the job message of the welcome queue from
/// before events (`{"task": "send_welcome_email", "user_id": N}`), still accepted so that jobs
/// already queued, or pushed by scripts, keep working.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueuedMessage {
    Envelope(Envelope<serde_json::Value>),
    Legacy(SendWelcomeEmail),
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("unsupported event type {0:?} (this consumer reads {USER_REGISTERED:?})")]
    UnsupportedType(String),
    #[error(
        "unsupported version {version} of {kind:?}: this code reads version {USER_REGISTERED_VERSION}; deploy a consumer that knows it"
    )]
    UnsupportedVersion { kind: String, version: u32 },
    #[error("payload does not match {USER_REGISTERED:?} v{USER_REGISTERED_VERSION}: {0}")]
    BadPayload(serde_json::Error),
}

impl QueuedMessage {
    /// Checks type and version; never panics on what it finds in the queue.
    pub fn into_user_registered(self) -> Result<Envelope<UserRegistered>, EventError> {
        match self {
            QueuedMessage::Legacy(job) => Ok(Envelope {
                id: format!("legacy-welcome-{}", job.user_id),
                kind: USER_REGISTERED.into(),
                version: USER_REGISTERED_VERSION,
                occurred_at: Utc::now(),
                payload: UserRegistered {
                    user_id: job.user_id,
                },
            }),
            QueuedMessage::Envelope(envelope) => {
                if envelope.kind != USER_REGISTERED {
                    return Err(EventError::UnsupportedType(envelope.kind));
                }
                if envelope.version != USER_REGISTERED_VERSION {
                    return Err(EventError::UnsupportedVersion {
                        kind: envelope.kind,
                        version: envelope.version,
                    });
                }
                let payload =
                    serde_json::from_value(envelope.payload).map_err(EventError::BadPayload)?;
                Ok(Envelope {
                    id: envelope.id,
                    kind: envelope.kind,
                    version: envelope.version,
                    occurred_at: envelope.occurred_at,
                    payload,
                })
            }
        }
    }
}

/// How a consumer failed: `Retry` comes back with backoff; `Abort` fails the job for good
/// (retrying cannot help, e.g. the user is gone).
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("{0}")]
    Retry(BoxDynError),
    #[error("{0}")]
    Abort(BoxDynError),
}

/// The job a consumer is running, for logs and delivery records.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub id: String,
    pub attempt: usize,
}

/// A subscriber to `user_registered`.
pub trait Consumer: Send + Sync + 'static {
    /// Its queue's name in the job table. Never rename it while jobs are queued.
    fn name(&self) -> &'static str;
    /// Handles one event. Must be idempotent: a job can run again after a crash.
    fn handle<'a>(
        &'a self,
        event: &'a Envelope<UserRegistered>,
        job: &'a JobInfo,
    ) -> BoxFuture<'a, Result<(), ConsumerError>>;
}

/// What consumers are built from.
#[derive(Clone)]
pub struct Deps {
    pub pool: SqlitePool,
    pub mailer: Mailer,
}

/// Every consumer of `user_registered`. One line per consumer.
pub fn consumers(deps: &Deps) -> Vec<Arc<dyn Consumer>> {
    vec![
        Arc::new(WelcomeEmail::new(deps)),
        Arc::new(audit::AuditLog::new(deps)),
        Arc::new(coupon::SignupCoupon::new(deps)),
    ]
}

/// The jobs written for one event.
#[derive(Debug, Clone)]
pub struct Published {
    pub event_id: String,
    /// (consumer name, job id)
    pub jobs: Vec<(&'static str, String)>,
}

impl Published {
    pub fn job_for(&self, consumer: &str) -> Option<&str> {
        self.jobs
            .iter()
            .find(|(name, _)| *name == consumer)
            .map(|(_, id)| id.as_str())
    }
}

/// Writes one job per consumer through the caller's transaction: the user row and every
/// consumer's job commit together, or none does. Idempotency keys `{consumer}:{user_id}` make a
/// second publish for the same user a no-op.
#[tracing::instrument(skip(conn, consumers))]
pub async fn publish_user_registered(
    conn: &mut SqliteConnection,
    consumers: &[Arc<dyn Consumer>],
    user_id: i64,
    max_attempts: u32,
    request_id: Option<&str>,
) -> Result<Published, apalis_sqlite::Error> {
    let event = Envelope::user_registered(user_id);
    let args = serde_json::to_vec(&event)
        .map_err(|e| apalis_sqlite::Error::from(sqlx::Error::Encode(Box::new(e))))?;
    let mut jobs = Vec::with_capacity(consumers.len());
    for consumer in consumers {
        let job_id = ulid::Ulid::generate().to_string();
        // The request id travels with the job, so the worker's log lines name the request that
        // caused it: one registration can be followed from HTTP to SMTP.
        let mut metadata = MetadataStore::new();
        if let Some(request_id) = request_id {
            let _ = metadata.insert(REQUEST_ID, request_id);
        }
        let task = TaskBuilder::new(args.clone())
            .with_metadata(metadata)
            .task_id(TaskId::from_string(job_id.clone()))
            .max_attempts(max_attempts as usize)
            .idempotency_key(format!("{}:{user_id}", consumer.name()))
            .build();
        apalis_sqlite::queries::push_tasks(&mut *conn, consumer.name(), &[task]).await?;
        jobs.push((consumer.name(), job_id));
    }
    Ok(Published {
        event_id: event.id,
        jobs,
    })
}

/// What a consumer's worker shares across its jobs.
#[derive(Clone)]
struct Runtime {
    consumer: Arc<dyn Consumer>,
    pool: SqlitePool,
    retry: RetrySchedule,
    max_attempts: u32,
}

#[tracing::instrument(
    skip_all,
    fields(
        consumer = ctx.consumer.name(),
        job_id = %task_id,
        attempt = attempt.current(),
        request_id = metadata.get(REQUEST_ID).unwrap_or("-"),
        user_id,
    )
)]
async fn run_consumer(
    message: QueuedMessage,
    task_id: TaskId,
    attempt: Attempt,
    metadata: MetadataStore,
    ctx: Data<Runtime>,
) -> Result<(), BoxDynError> {
    let queue = ctx.consumer.name();
    let job = JobInfo {
        id: task_id.to_string(),
        attempt: attempt.current(),
    };
    let started = std::time::Instant::now();
    // Job ids are ULIDs: they carry the enqueue time. Only the first attempt's wait is the
    // queue's; later ones include the backoff.
    let waited = (job.attempt <= 1)
        .then(|| ulid::Ulid::from_string(&job.id).ok())
        .flatten()
        .and_then(|ulid| {
            std::time::SystemTime::now()
                .duration_since(ulid.datetime())
                .ok()
        });
    crate::metrics::job_started(queue, waited);
    let outcome = match message.into_user_registered() {
        Err(e) => {
            tracing::error!(error = %e, "message refused; job failed");
            Err(ConsumerError::Abort(e.into()))
        }
        Ok(event) => {
            tracing::Span::current().record("user_id", event.payload.user_id);
            ctx.consumer.handle(&event, &job).await
        }
    };
    let last_attempt = job.attempt >= ctx.max_attempts as usize;
    let (result, label) = match outcome {
        Ok(()) => (Ok(()), "succeeded"),
        Err(ConsumerError::Abort(e)) => {
            tracing::warn!(error = %e, "job aborted: retrying cannot help");
            (Err(AbortError::new(e).into()), "failed")
        }
        Err(ConsumerError::Retry(e)) => {
            let delay = ctx.retry.delay_after(job.attempt);
            if let Err(db) = schedule_retry(&ctx.pool, &job.id, delay).await {
                tracing::error!(error = %db, "cannot schedule the retry; it runs without delay");
            }
            if last_attempt {
                tracing::error!(error = %e, "job failed for good: attempts exhausted");
            } else {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
            }
            (Err(e), if last_attempt { "failed" } else { "retried" })
        }
    };
    crate::metrics::job_finished(queue, label, started.elapsed());
    result
}

/// A worker that stops with an error (e.g. a job row it cannot decode) is restarted, so one bad
/// row cannot silence a queue for good; more than 10 restarts a minute means something is
/// broken for real, and the worker stays down (the logs say why).
fn restart_unless_looping(worker: &WorkerContext, error: &WorkerError) -> bool {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static RESTARTS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
    let Ok(mut restarts) = RESTARTS.lock() else {
        return false;
    };
    restarts.retain(|t| t.elapsed() < Duration::from_secs(60));
    if restarts.len() >= 10 {
        tracing::error!(worker = worker.name(), %error, "worker stopped with an error; too many restarts, leaving it down");
        return false;
    }
    restarts.push(Instant::now());
    tracing::error!(worker = worker.name(), %error, "worker stopped with an error; restarting it");
    true
}

/// Registers one worker per consumer on the monitor, all woken by the same enqueue signal.
pub fn register_workers(
    mut monitor: Monitor,
    consumers: &[Arc<dyn Consumer>],
    pool: &SqlitePool,
    wakeup: &Wakeup,
    settings: &PoolSettings,
    retry: RetrySchedule,
    max_attempts: u32,
) -> Monitor {
    monitor = monitor.should_restart(restart_unless_looping);
    for consumer in consumers {
        let runtime = Runtime {
            consumer: Arc::clone(consumer),
            pool: pool.clone(),
            retry,
            max_attempts,
        };
        let wakeup = wakeup.clone();
        let settings = settings.clone();
        monitor = monitor.register(move |_| {
            let queue = runtime.consumer.name();
            let config = Config::default()
                .queue(queue)
                // Fetch ahead of the concurrency limit so a freed slot finds its next job waiting.
                .batch_size(settings.concurrency * 4)
                .heartbeat_interval(settings.heartbeat);
            let strategy = Strategy::new()
                .stream(wakeup.subscribe())
                .interval(settings.poll_interval);
            let backend = SqliteStorage::<QueuedMessage>::new(&runtime.pool)
                .with_config(config)
                .poll_with_strategy(strategy);
            WorkerBuilder::new(worker_name(queue))
                .backend(backend)
                .data(runtime.clone())
                .catch_panic()
                .concurrency(settings.concurrency)
                .build(run_consumer)
        });
    }
    monitor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_version_is_refused_with_a_clear_error() {
        let raw = serde_json::json!({"id": "x", "type": "user_registered", "version": 2,
            "occurred_at": "2026-11-25T00:00:00Z", "payload": {"user_id": 1}});
        let message: QueuedMessage = serde_json::from_value(raw).expect("parses as a message");
        let error = message.into_user_registered().expect_err("refused");
        assert!(
            error.to_string().contains("unsupported version 2"),
            "{error}"
        );
    }

    #[test]
    fn the_legacy_welcome_job_is_still_understood() {
        let raw = serde_json::json!({"task": "send_welcome_email", "user_id": 7});
        let message: QueuedMessage = serde_json::from_value(raw).expect("parses");
        assert_eq!(
            message
                .into_user_registered()
                .expect("accepted")
                .payload
                .user_id,
            7
        );
    }

    #[test]
    fn the_envelope_has_the_documented_fields() {
        let json = serde_json::to_value(Envelope::user_registered(5)).expect("serializes");
        for field in ["id", "type", "version", "occurred_at", "payload"] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert_eq!(json["payload"]["user_id"], 5);
    }
}
