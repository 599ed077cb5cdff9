//! The reactions to `user_registered`, one file each: the welcome mail, the audit log, the
//! signup coupon, and (with `EVENTS_AMQP_URL`) the relay to other services through RabbitMQ. Each consumer owns its queue name, its templates, its subject and Message-ID,
//! and its own table writes; it knows the event, never the registration code nor the job storage.
//!
//! Adding a consumer: a file here implementing [`Consumer`] and one line in [`built_in`]. The
//! queue (`crate::queue`) gives each consumer its own jobs, worker, retries and failure state, so
//! one failing or slow consumer never delays another, nor the registration.

pub mod amqp_relay;
pub mod audit;
pub mod coupon;
pub mod fault;
pub mod welcome;

use std::{sync::Arc, time::Duration};

use crate::{
    db::Db,
    events::{Envelope, UserRegistered},
    mail::Mailer,
};

/// A subscriber to `user_registered`.
#[async_trait::async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// Its queue's name in the job table. Never rename it while jobs are queued.
    fn name(&self) -> &'static str;
    /// Handles one event. Must be idempotent: a job can run again after a crash.
    async fn handle(
        &self,
        event: &Envelope<UserRegistered>,
        job: &JobInfo,
    ) -> Result<(), ConsumerError>;
}

/// How a consumer failed: `Retry` comes back with backoff; `Abort` fails the job for good
/// (retrying cannot help, e.g. the user is gone).
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("{0}")]
    Retry(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Abort(Box<dyn std::error::Error + Send + Sync>),
}

impl ConsumerError {
    /// A transient failure (database busy, mail server down): the job is tried again later.
    /// Shaped for `.map_err(ConsumerError::retry)`.
    pub fn retry(e: impl std::error::Error + Send + Sync + 'static) -> ConsumerError {
        ConsumerError::Retry(Box::new(e))
    }

    /// A failure no retry can mend: the job ends `failed` with this message.
    pub fn abort(message: impl Into<String>) -> ConsumerError {
        ConsumerError::Abort(message.into().into())
    }
}

/// The job a consumer is running, for logs and delivery records.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub id: String,
    pub attempt: usize,
    /// `true` when the synchronous registration runs the consumer inside its request (no job,
    /// no retry); `false` for a worker's job. Mails say which path sent them.
    pub inline: bool,
}

impl JobInfo {
    /// The synchronous registration's "job": no queue, one attempt.
    pub fn inline() -> JobInfo {
        JobInfo {
            id: format!("inline-{}", ulid::Ulid::generate()),
            attempt: 1,
            inline: true,
        }
    }

    /// How long the job waited in the queue before this first attempt started: job ids are
    /// ULIDs and carry their enqueue time. `None` on later attempts, whose wait includes the
    /// backoff, and for ids that are not ULIDs.
    pub fn queue_wait(&self) -> Option<Duration> {
        if self.attempt > 1 || self.inline {
            return None;
        }
        let enqueued = ulid::Ulid::from_string(&self.id).ok()?.datetime();
        std::time::SystemTime::now().duration_since(enqueued).ok()
    }
}

/// What consumers are built from.
#[derive(Clone)]
pub struct Deps {
    pub pool: Db,
    pub mailer: Mailer,
}

/// Every built-in consumer of `user_registered`. One line per consumer. The AMQP relay is not
/// among them: it exists only when configured ([`amqp_relay::AmqpRelay::new`]).
pub fn built_in(deps: &Deps) -> Vec<Arc<dyn Consumer>> {
    vec![
        Arc::new(welcome::WelcomeEmail::new(deps)),
        Arc::new(audit::AuditLog::new(deps)),
        Arc::new(coupon::SignupCoupon::new(deps)),
    ]
}
