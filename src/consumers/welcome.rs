//! The welcome mail: the first consumer of `user_registered`. Sends the mail unless it was already
//! delivered, then records the delivery in `welcome_deliveries` (`mode` `async` with its job, or
//! `sync` when the synchronous registration ran it inside its request). The mail says which path
//! sent it.

use std::sync::Arc;

use askama::Template;

use crate::{
    consumers::{Consumer, ConsumerError, Deps, JobInfo},
    db::Db,
    db::batch::BatchWriter,
    events::{Envelope, UserRegistered},
    mail::{Mailer, SendError},
    users::User,
};

/// Queue name in the job table. Named explicitly: the default is the Rust type's path, and
/// renaming the struct would strand queued jobs.
pub const WELCOME_QUEUE: &str = "welcome_email";

pub const WELCOME_SUBJECT: &str = "Welcome to Signup Queue";

#[derive(Template)]
#[template(path = "email/welcome.txt")]
struct WelcomeText<'a> {
    greeting_name: &'a str,
    email: &'a str,
    /// Sent inside the registration request (synchronous) rather than by a worker.
    inline: bool,
}

#[derive(Template)]
#[template(path = "email/welcome.html")]
struct WelcomeHtml<'a> {
    greeting_name: &'a str,
    email: &'a str,
    /// Sent inside the registration request (synchronous) rather than by a worker.
    inline: bool,
}

/// The stable Message-ID of a user's welcome mail: a receiver that deduplicates on it sees a
/// re-sent welcome as the same message.
pub fn welcome_message_id(mailer: &Mailer, user_id: i64) -> String {
    mailer.message_id("welcome", user_id)
}

/// The welcome mail to `user`, multipart (plain text and HTML), rendered from `templates/email/`;
/// `inline`: sent inside the registration request rather than by a worker.
pub fn render_welcome(
    mailer: &Mailer,
    user: &User,
    message_id: &str,
    inline: bool,
) -> Result<lettre::Message, SendError> {
    let greeting_name = user.name.as_deref().unwrap_or(&user.email);
    let build = |e: askama::Error| SendError::Build(e.to_string());
    let text = WelcomeText {
        greeting_name,
        email: &user.email,
        inline,
    }
    .render()
    .map_err(build)?;
    let html = WelcomeHtml {
        greeting_name,
        email: &user.email,
        inline,
    }
    .render()
    .map_err(build)?;
    mailer.compose(user, WELCOME_SUBJECT, message_id, text, html)
}

/// Renders and sends the welcome mail as a worker does; returns the Message-ID it carried.
pub async fn send_welcome(mailer: &Mailer, user: &User) -> Result<String, SendError> {
    send_welcome_from(mailer, user, false).await
}

/// Renders and sends the welcome mail, saying whether it was sent `inline` (inside the
/// registration request) or by a worker; returns the Message-ID it carried.
#[tracing::instrument(skip_all, fields(user_id = user.id))]
pub async fn send_welcome_from(
    mailer: &Mailer,
    user: &User,
    inline: bool,
) -> Result<String, SendError> {
    let message_id = welcome_message_id(mailer, user.id);
    mailer
        .send(render_welcome(mailer, user, &message_id, inline)?)
        .await?;
    Ok(message_id)
}

/// Sends the welcome mail unless it was already delivered, then records the delivery.
pub struct WelcomeEmail {
    pool: Db,
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

    /// `true` when it sent the mail, `false` when an earlier run already had.
    async fn deliver(&self, user_id: i64, job: &JobInfo) -> Result<bool, ConsumerError> {
        // The user and whether the mail already went out, in one query.
        let row: Option<(i64, String, Option<String>, bool)> =
            crate::with_db!(&self.pool, pool => sqlx::query_as(
                "SELECT u.id, u.email, u.name, d.user_id IS NOT NULL
                 FROM users u LEFT JOIN welcome_deliveries d ON d.user_id = u.id WHERE u.id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await)
            .map_err(ConsumerError::retry)?;
        let Some((id, email, name, delivered)) = row else {
            return Err(ConsumerError::abort(format!(
                "user {user_id} does not exist (deleted after registering?)"
            )));
        };
        if delivered {
            return Ok(false);
        }
        let user = User { id, email, name };
        let message_id = send_welcome_from(&self.mailer, &user, job.inline)
            .await
            .map_err(ConsumerError::retry)?;
        if job.inline {
            record_delivery(&self.pool, user_id, &message_id, "sync", None)
                .await
                .map_err(ConsumerError::retry)?;
            return Ok(true);
        }
        self.deliveries
            .write(Delivery {
                user_id,
                message_id,
                job_id: job.id.clone(),
            })
            .await
            .map_err(ConsumerError::retry)?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl Consumer for WelcomeEmail {
    fn name(&self) -> &'static str {
        WELCOME_QUEUE
    }

    async fn handle(
        &self,
        event: &Envelope<UserRegistered>,
        job: &JobInfo,
    ) -> Result<(), ConsumerError> {
        if self.deliver(event.payload.user_id, job).await? {
            tracing::info!("welcome mail sent");
        } else {
            tracing::info!("welcome mail was already delivered; nothing sent");
        }
        Ok(())
    }
}

/// The workers' delivery records, many rows in one statement (see `db::batch`).
async fn record_deliveries(db: Db, rows: Arc<[Delivery]>) -> Result<(), sqlx::Error> {
    crate::with_db!(&db, pool => {
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
        query.build().execute(pool).await?;
    });
    Ok(())
}

/// The synchronous endpoint's delivery record (the workers batch theirs).
#[tracing::instrument(skip(pool))]
pub async fn record_delivery(
    pool: &Db,
    user_id: i64,
    message_id: &str,
    mode: &str,
    job_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    crate::with_db!(pool, pool => sqlx::query(
        "INSERT INTO welcome_deliveries (user_id, message_id, mode, job_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(message_id)
    .bind(mode)
    .bind(job_id)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}
