//! The registration use case, both ways. Queued: hash, then one transaction that inserts the user
//! and publishes `user_registered` (one job per consumer queue), then wake the workers. Inline:
//! hash, insert, then send the welcome mail inside the request, which is the coupling the product
//! demonstrates. The HTTP handlers and the bench call this; it knows neither HTTP nor which
//! consumers exist beyond their queue names.

use std::sync::Arc;

use sqlx::{SqliteConnection, SqlitePool};

use crate::{
    config::HashCost,
    consumers::welcome::{self, WELCOME_QUEUE},
    events::Envelope,
    mail::Mailer,
    queue::{self, Published, Wakeup},
    users::{DisplayName, Email, InsertUserError, NewUser, User, hash_password, insert_user},
};

/// What a registration needs; cheap to clone (one per process, shared by the handlers).
#[derive(Clone)]
pub struct Signup {
    pool: SqlitePool,
    /// The inline path's mailer.
    mailer: Mailer,
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
}

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("this email address is already registered")]
    Duplicate,
    /// Inline path: the user row was written, the mail was not sent.
    #[error("user {user_id} was registered, but the welcome mail could not be sent: {reason}")]
    MailFailed { user_id: i64, reason: String },
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
    pub fn new(
        pool: SqlitePool,
        mailer: Mailer,
        queues: Vec<&'static str>,
        wakeup: Wakeup,
        hash_cost: HashCost,
        max_attempts: u32,
    ) -> Signup {
        Signup {
            pool,
            mailer,
            queues: queues.into(),
            wakeup,
            hash_cost,
            max_attempts,
        }
    }

    /// Through the queue: answers once the user and its jobs are committed together.
    #[tracing::instrument(skip_all, fields(mode = "async", user_id, job_id))]
    pub async fn register_queued(
        &self,
        user: NewUser,
        request_id: Option<&str>,
    ) -> Result<Registered, SignupError> {
        let hash = hash_password(user.password.clone(), self.hash_cost).await?;
        let mut tx = self.pool.begin().await?;
        let (user_id, published) = self
            .insert_and_publish(&mut tx, &user.email, user.name.as_ref(), &hash, request_id)
            .await?;
        tx.commit().await?;
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
        Ok(Registered { user_id, job_id })
    }

    /// The queued path's writes, through the caller's transaction: the user row and one job per
    /// consumer queue commit together or not at all (no dual write). A failed enqueue rolls the
    /// user back with it.
    pub async fn insert_and_publish(
        &self,
        conn: &mut SqliteConnection,
        email: &Email,
        name: Option<&DisplayName>,
        password_hash: &str,
        request_id: Option<&str>,
    ) -> Result<(i64, Published), SignupError> {
        let user_id = insert_user(conn, email, name, password_hash).await?;
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
        .map_err(|e| anyhow::anyhow!("enqueue failed, registration rolled back: {e}"))?;
        Ok((user_id, published))
    }

    /// Inline: the request waits for the mail server, and fails when it does, although the user
    /// row stays written.
    #[tracing::instrument(skip_all, fields(mode = "sync", user_id))]
    pub async fn register_inline(&self, user: NewUser) -> Result<Registered, SignupError> {
        let hash = hash_password(user.password.clone(), self.hash_cost).await?;
        let mut conn = self.pool.acquire().await?;
        let user_id = insert_user(&mut conn, &user.email, user.name.as_ref(), &hash).await?;
        drop(conn);
        tracing::Span::current().record("user_id", user_id);
        let stored = User {
            id: user_id,
            email: user.email.as_str().to_owned(),
            name: user.name.as_ref().map(|n| n.as_str().to_owned()),
        };
        let message_id = welcome::send_welcome(&self.mailer, &stored)
            .await
            .map_err(|e| SignupError::MailFailed {
                user_id,
                reason: e.to_string(),
            })?;
        welcome::record_delivery(&self.pool, user_id, &message_id, "sync", None).await?;
        tracing::info!("user registered, welcome mail sent inline");
        Ok(Registered {
            user_id,
            job_id: None,
        })
    }
}
