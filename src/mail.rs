//! Outgoing mail: the pooled lettre SMTP transport and the welcome mail rendered from
//! `templates/email/` (multipart: plain text and HTML).

use std::time::Duration;

use anyhow::Context;
use askama::Template;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, header::MessageId},
    transport::smtp::PoolConfig,
};

use crate::users::User;

#[derive(Template)]
#[template(path = "email/welcome.txt")]
struct WelcomeText<'a> {
    greeting_name: &'a str,
    email: &'a str,
}

#[derive(Template)]
#[template(path = "email/welcome.html")]
struct WelcomeHtml<'a> {
    greeting_name: &'a str,
    email: &'a str,
}

pub const WELCOME_SUBJECT: &str = "Welcome to Signup Queue";

/// Sends mail over SMTP with a connection pool (one pool per process, at most `max_connections`).
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
    /// When set, at most this many sends at once through this mailer and its clones.
    limit: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

/// Why a send failed; the text goes to logs and to the job's `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("mail server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("mail server refused or failed: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("cannot build the message: {0}")]
    Build(String),
}

impl Mailer {
    pub fn new(
        smtp_url: &str,
        from: &str,
        timeout: Duration,
        max_connections: u32,
    ) -> anyhow::Result<Mailer> {
        let from: Mailbox = from
            .parse()
            .with_context(|| format!("MAIL_FROM {from:?} is not a mailbox"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .with_context(|| format!("SMTP_URL {smtp_url:?} is not a valid SMTP URL"))?
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(max_connections.max(1)))
            .build();
        Ok(Mailer {
            transport,
            from,
            timeout,
            limit: None,
        })
    }

    /// A mailer sharing this one's connection pool that sends at most `n` mails at once: the
    /// workers' ceiling on SMTP sessions, whatever the number of consumers.
    pub fn limited(&self, n: usize) -> Mailer {
        Mailer {
            limit: Some(std::sync::Arc::new(tokio::sync::Semaphore::new(n.max(1)))),
            ..self.clone()
        }
    }

    /// The stable Message-ID of a user's welcome mail: a receiver that deduplicates on it sees a
    /// re-sent welcome as the same message.
    pub fn welcome_message_id(&self, user_id: i64) -> String {
        self.message_id("welcome", user_id)
    }

    /// A stable Message-ID for the mail of `kind` to a user, in the sender's domain.
    pub fn message_id(&self, kind: &str, user_id: i64) -> String {
        format!("<{kind}-{user_id}@{}>", self.from.email.domain())
    }

    /// A message from MAIL_FROM to `user` with a text and an HTML part.
    pub fn compose(
        &self,
        user: &User,
        subject: &str,
        message_id: &str,
        text: String,
        html: String,
    ) -> Result<Message, SendError> {
        let to: Mailbox = match &user.name {
            Some(name) => format!("{name} <{}>", user.email).parse(),
            None => user.email.parse(),
        }
        .or_else(|_| user.email.parse())
        .map_err(|e: lettre::address::AddressError| SendError::Build(e.to_string()))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(MessageId::from(message_id.to_owned()))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| SendError::Build(e.to_string()))
    }

    /// Renders and sends the welcome mail; returns the Message-ID it carried.
    #[tracing::instrument(skip_all, fields(user_id = user.id))]
    pub async fn send_welcome(&self, user: &User) -> Result<String, SendError> {
        let message_id = self.welcome_message_id(user.id);
        let message = self.render_welcome(user, &message_id)?;
        self.send(message).await?;
        Ok(message_id)
    }

    /// Sends one message within the timeout (and the concurrency limit, if any).
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        let _permit = match &self.limit {
            Some(limit) => Some(
                limit
                    .acquire()
                    .await
                    .map_err(|e| SendError::Build(e.to_string()))?,
            ),
            None => None,
        };
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(self.timeout, self.transport.send(message)).await;
        match sent {
            Ok(Ok(_)) => {
                crate::metrics::smtp_sent(started.elapsed());
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "SMTP server accepted the mail"
                );
                Ok(())
            }
            Ok(Err(e)) => {
                crate::metrics::smtp_error("smtp");
                Err(SendError::Smtp(e))
            }
            Err(_) => {
                crate::metrics::smtp_error("timeout");
                Err(SendError::Timeout(self.timeout))
            }
        }
    }

    pub fn render_welcome(&self, user: &User, message_id: &str) -> Result<Message, SendError> {
        let greeting_name = user.name.as_deref().unwrap_or(&user.email);
        let text = WelcomeText {
            greeting_name,
            email: &user.email,
        }
        .render()
        .map_err(|e| SendError::Build(e.to_string()))?;
        let html = WelcomeHtml {
            greeting_name,
            email: &user.email,
        }
        .render()
        .map_err(|e| SendError::Build(e.to_string()))?;
        self.compose(user, WELCOME_SUBJECT, message_id, text, html)
    }

    /// Opens a connection and says NOOP: is the mail server up?
    pub async fn is_reachable(&self) -> bool {
        matches!(
            tokio::time::timeout(self.timeout, self.transport.test_connection()).await,
            Ok(Ok(true))
        )
    }
}
