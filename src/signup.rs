//! The registration use case, both ways. Queued: hash, then one transaction that inserts the user
//! and publishes `user_registered` (one job per consumer queue), then wake the workers. Inline:
//! hash, insert, then run every consumer of `user_registered` in order inside the request (the
//! welcome mail, the audit row, the coupon and its mail, the relay when configured), which is the
//! coupling the product demonstrates: both paths do the same work and differ only in *when*.
//! Both record how long each phase took ([`Phases`]). The HTTP handlers and the bench call this;
//! it knows neither HTTP nor which consumers exist beyond the [`Consumer`] trait.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    config::HashCost,
    consumers::{Consumer, JobInfo, welcome::WELCOME_QUEUE},
    db::{Db, DbConn},
    events::Envelope,
    queue::{self, Published, Wakeup},
    users::{DisplayName, Email, InsertUserError, NewUser, hash_password, insert_user},
};

/// How long each phase of one registration took, in order: `hash`, `db`, then (inline) one per
/// consumer, named by its queue. The HTTP layer reports them in `Server-Timing`.
#[derive(Debug, Clone, Default)]
pub struct Phases(Vec<(&'static str, Duration)>);

impl Phases {
    pub fn new() -> Phases {
        Phases::default()
    }

    fn record(&mut self, name: &'static str, since: Instant) {
        self.0.push((name, since.elapsed()));
    }

    /// `(name, duration)` in the order they ran.
    pub fn iter(&self) -> impl Iterator<Item = &(&'static str, Duration)> {
        self.0.iter()
    }
}

/// What a registration needs; cheap to clone (one per process, shared by the handlers).
#[derive(Clone)]
pub struct Signup {
    pool: Db,
    /// The consumers the inline path runs inside the request, in order.
    inline: Arc<[Arc<dyn Consumer>]>,
    /// The consumer queues `user_registered` is published to.
    queues: Arc<[&'static str]>,
    wakeup: Wakeup,
    hash_cost: HashCost,
    max_attempts: u32,
}

/// A stored registration.
#[derive(Debug, Clone)]
pub struct Registered {
    pub user_id: i64,
    /// The welcome mail's job (queued path only).
    pub job_id: Option<String>,
    /// Every job the registration published, `(queue, job id)` (queued path only).
    pub jobs: Vec<(&'static str, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("this email address is already registered")]
    Duplicate,
    /// Inline path: the user row was written, but a consumer (`step`, its queue name) failed, so
    /// it and the consumers after it did not do their work.
    #[error("user {user_id} was registered, but {step} failed inline: {reason}")]
    MailFailed {
        user_id: i64,
        step: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SignupError {
    fn from(e: sqlx::Error) -> Self {
        SignupError::Internal(e.into())
    }
}

impl From<InsertUserError> for SignupError {
    fn from(e: InsertUserError) -> Self {
        match e {
            InsertUserError::Duplicate => SignupError::Duplicate,
            InsertUserError::Database(e) => e.into(),
        }
    }
}

impl Signup {
    /// `inline`: the consumers the synchronous path runs, in order (the same kinds as the ones
    /// the workers run for `queues`).
    pub fn new(
        pool: Db,
        inline: Vec<Arc<dyn Consumer>>,
        queues: Vec<&'static str>,
        wakeup: Wakeup,
        hash_cost: HashCost,
        max_attempts: u32,
    ) -> Signup {
        Signup {
            pool,
            inline: inline.into(),
            queues: queues.into(),
            wakeup,
            hash_cost,
            max_attempts,
        }
    }

    /// The consumer queues `user_registered` is published to, in order.
    pub fn queues(&self) -> &[&'static str] {
        &self.queues
    }

    /// The password's argon2id hash, off the async runtime, timed as the `hash` phase.
    async fn hash(&self, user: &NewUser, phases: &mut Phases) -> Result<String, SignupError> {
        let started = Instant::now();
        let hash = hash_password(user.password.clone(), self.hash_cost).await?;
        phases.record("hash", started);
        Ok(hash)
    }

    /// Through the queue: answers once the user and its jobs are committed together.
    #[tracing::instrument(skip_all, fields(mode = "async", user_id, job_id))]
    pub async fn register_queued(
        &self,
        user: NewUser,
        request_id: Option<&str>,
        phases: &mut Phases,
    ) -> Result<Registered, SignupError> {
        let hash = self.hash(&user, phases).await?;
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let (user_id, published) = self
            .insert_and_publish(
                tx.conn(),
                &user.email,
                user.name.as_ref(),
                &hash,
                request_id,
            )
            .await?;
        tx.commit().await?;
        phases.record("db", started);
        self.wakeup.notify();
        for (queue, _) in &published.jobs {
            crate::metrics::job_enqueued(queue);
        }
        let job_id = published.job_for(WELCOME_QUEUE).map(str::to_owned);
        tracing::Span::current()
            .record("user_id", user_id)
            .record("job_id", job_id.as_deref().unwrap_or("-"));
        tracing::info!(
            event_id = %published.event_id,
            consumers = published.jobs.len(),
            "user registered, user_registered published"
        );
        Ok(Registered {
            user_id,
            job_id,
            jobs: published.jobs,
        })
    }

    /// The queued path's writes, through the caller's transaction: the user row and one job per
    /// consumer queue commit together or not at all (no dual write). A failed enqueue rolls the
    /// user back with it.
    pub async fn insert_and_publish(
        &self,
        mut conn: DbConn<'_>,
        email: &Email,
        name: Option<&DisplayName>,
        password_hash: &str,
        request_id: Option<&str>,
    ) -> Result<(i64, Published), SignupError> {
        let user_id = insert_user(conn.reborrow(), email, name, password_hash).await?;
        let event = Envelope::user_registered(user_id);
        let published = queue::publish(
            conn,
            &event,
            &user_id.to_string(),
            &self.queues,
            self.max_attempts,
            request_id,
        )
        .await
        .map_err(|e| anyhow::Error::new(e).context("enqueue failed, registration rolled back"))?;
        Ok((user_id, published))
    }

    /// Inline: every consumer's work, in order, inside the request. The request waits for the
    /// mail server (twice: welcome and coupon), and fails when it does, although the user row
    /// stays written; the consumers after the failing one do nothing.
    #[tracing::instrument(skip_all, fields(mode = "sync", user_id))]
    pub async fn register_inline(
        &self,
        user: NewUser,
        phases: &mut Phases,
    ) -> Result<Registered, SignupError> {
        let hash = self.hash(&user, phases).await?;
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let user_id = insert_user(tx.conn(), &user.email, user.name.as_ref(), &hash).await?;
        tx.commit().await?;
        phases.record("db", started);
        tracing::Span::current().record("user_id", user_id);
        let event = Envelope::user_registered(user_id);
        let job = JobInfo::inline();
        for consumer in self.inline.iter() {
            let started = Instant::now();
            let outcome = consumer.handle(&event, &job).await;
            phases.record(consumer.name(), started);
            if let Err(e) = outcome {
                return Err(SignupError::MailFailed {
                    user_id,
                    step: consumer.name(),
                    reason: e.to_string(),
                });
            }
        }
        tracing::info!(
            consumers = self.inline.len(),
            "user registered, its consumers ran inline"
        );
        Ok(Registered {
            user_id,
            job_id: None,
            jobs: Vec::new(),
        })
    }
}
