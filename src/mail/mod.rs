//! Outgoing mail: a [`Mailer`] composes a message from MAIL_FROM to a user and sends it over
//! SMTP through lettre (our pool of plain connections with TCP_NODELAY for `smtp://host:port`,
//! see `smtp_pool`; lettre's own pooled transport for TLS or credentials), within a timeout and
//! a cap on concurrent sessions. What a mail says belongs to the consumer that sends it.

mod limit;
mod probe;
mod smtp_pool;

pub use probe::MailServerProbe;

use std::time::Duration;

use anyhow::Context;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, header::MessageId},
    transport::smtp::PoolConfig,
};

use crate::users::User;

/// Sends mail over SMTP with a connection pool (one pool per process, at most `max_connections`).
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    timeout: Duration,
    /// When set, at most this many SMTP sessions at once through this mailer and its clones
    /// (or, with PostgreSQL, across every worker process; see `limit`).
    limit: Option<limit::SessionLimit>,
}

/// Why a send failed; the text goes to logs and to the job's `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("mail server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("mail server refused or failed: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("mail server unreachable: Connection error: {0}")]
    Connect(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("{0}")]
    Limit(String),
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
        let transport = match direct_address(smtp_url) {
            Some(address) => Transport::Direct(std::sync::Arc::new(smtp_pool::DirectSmtp::new(
                address,
                max_connections as usize,
            ))),
            None => Transport::Lettre(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
                    .with_context(|| format!("SMTP_URL {smtp_url:?} is not a valid SMTP URL"))?
                    .timeout(Some(timeout))
                    .pool_config(PoolConfig::new().max_size(max_connections.max(1)))
                    .build(),
            ),
        };
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
            limit: Some(limit::SessionLimit::local(n)),
            ..self.clone()
        }
    }

    /// A mailer sharing this one's transport whose sessions, together with those of every other
    /// process doing the same on this PostgreSQL database, never exceed `slots`; this process
    /// holds at most `per_process` of them. Each session carries one mail and is closed before
    /// its slot is given back, so no idle connection is held against the cap.
    pub fn limited_across_processes(
        &self,
        pool: &sqlx::PgPool,
        slots: usize,
        per_process: usize,
    ) -> Mailer {
        Mailer {
            limit: Some(limit::SessionLimit::global(pool, slots, per_process)),
            ..self.clone()
        }
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

    /// Sends one message within the timeout (and the concurrency limit, if any).
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        let permit = match &self.limit {
            Some(limit) => Some(
                limit
                    .acquire()
                    .await
                    .map_err(|e| SendError::Limit(e.to_string()))?,
            ),
            None => None,
        };
        let keep_open = !self
            .limit
            .as_ref()
            .is_some_and(limit::SessionLimit::is_global);
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(self.timeout, async {
            match &self.transport {
                Transport::Direct(direct) => direct.send(&message, keep_open).await,
                Transport::Lettre(lettre) => lettre
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(SendError::from),
            }
        })
        .await;
        if let Some(permit) = permit {
            permit.release().await;
        }
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
                Err(e)
            }
            Err(_) => {
                crate::metrics::smtp_error("timeout");
                Err(SendError::Timeout(self.timeout))
            }
        }
    }

    /// Opens a connection and says NOOP: is the mail server up?
    pub async fn is_reachable(&self) -> bool {
        matches!(
            tokio::time::timeout(self.timeout, async {
                match &self.transport {
                    Transport::Direct(direct) => direct.test_connection().await,
                    Transport::Lettre(lettre) => {
                        lettre.test_connection().await.map_err(SendError::from)
                    }
                }
            })
            .await,
            Ok(Ok(true))
        )
    }
}

#[derive(Clone)]
enum Transport {
    Direct(std::sync::Arc<smtp_pool::DirectSmtp>),
    Lettre(AsyncSmtpTransport<Tokio1Executor>),
}

/// `host:port` of a plain `smtp://host[:port]` URL without credentials or TLS options.
fn direct_address(smtp_url: &str) -> Option<String> {
    let rest = smtp_url.strip_prefix("smtp://")?;
    if rest.contains('@') || rest.contains('?') {
        return None;
    }
    let host_port = rest.trim_end_matches('/');
    if host_port.is_empty() || host_port.contains('/') {
        return None;
    }
    Some(
        if host_port
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host_port.to_owned()
        } else {
            format!("{host_port}:25")
        },
    )
}
