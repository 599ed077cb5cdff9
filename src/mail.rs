//! Outgoing mail: SMTP through lettre (a pool of plain connections with TCP_NODELAY for
//! `smtp://host:port`, lettre's own pooled transport for TLS or credentials) and the welcome mail
//! rendered from
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
    transport: Transport,
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
    #[error("mail server unreachable: Connection error: {0}")]
    Connect(String),
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
        let transport = match direct_address(smtp_url) {
            Some(address) => Transport::Direct(std::sync::Arc::new(DirectSmtp::new(
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
        let sent = tokio::time::timeout(self.timeout, async {
            match &self.transport {
                Transport::Direct(direct) => direct.send(&message).await,
                Transport::Lettre(lettre) => lettre
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(SendError::from),
            }
        })
        .await;
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
    Direct(std::sync::Arc<DirectSmtp>),
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

/// Plain SMTP connections kept open between sends, with TCP_NODELAY. lettre writes the message
/// and its final `.` in two writes; with Nagle's algorithm on, the second waits for the server's
/// delayed ACK (about 40 ms a mail on Linux). lettre's pooled transport cannot set the option,
/// and it returns connections to its pool from a spawned task, so a send that follows at once
/// opens one more connection than the concurrency limit allows. This pool does neither.
struct DirectSmtp {
    address: String,
    idle: tokio::sync::Mutex<Vec<lettre::transport::smtp::client::AsyncSmtpConnection>>,
    max_idle: usize,
    hello: lettre::transport::smtp::extension::ClientId,
}

impl DirectSmtp {
    fn new(address: String, max_idle: usize) -> Self {
        DirectSmtp {
            address,
            idle: tokio::sync::Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
            hello: lettre::transport::smtp::extension::ClientId::default(),
        }
    }

    async fn connect(
        &self,
    ) -> Result<lettre::transport::smtp::client::AsyncSmtpConnection, SendError> {
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| SendError::Connect(format!("{}: {e}", self.address)))?;
        let _ = stream.set_nodelay(true);
        Ok(
            lettre::transport::smtp::client::AsyncSmtpConnection::connect_with_transport(
                Box::new(stream),
                &self.hello,
            )
            .await?,
        )
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let bytes = message.formatted();
        let reused = self.idle.lock().await.pop();
        let was_reused = reused.is_some();
        let mut conn = match reused {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let mut result = conn.send(message.envelope(), &bytes).await;
        if result.is_err() && was_reused {
            // The server may have closed an idle connection: one more try on a fresh one.
            conn.abort().await;
            conn = self.connect().await?;
            result = conn.send(message.envelope(), &bytes).await;
        }
        match result {
            Ok(_) => {
                let mut idle = self.idle.lock().await;
                if idle.len() < self.max_idle {
                    idle.push(conn);
                } else {
                    drop(idle);
                    let _ = conn.quit().await;
                }
                Ok(())
            }
            Err(e) => {
                conn.abort().await;
                Err(e.into())
            }
        }
    }

    async fn test_connection(&self) -> Result<bool, SendError> {
        let mut conn = self.connect().await?;
        let _ = conn.quit().await;
        Ok(true)
    }
}
