//! The relay to other services: publishes each `user_registered` envelope to a RabbitMQ topic
//! exchange (`EVENTS_AMQP_URL`, `EVENTS_AMQP_EXCHANGE`). Registration wrote the relay's job in its
//! own transaction (the transactional outbox); this consumer empties that outbox into the broker.
//!
//! A job is done only once the broker confirmed the message (publisher confirms): a nack, a lost
//! connection or a timeout is a retry with the usual backoff, so an outage of the broker delays
//! the events and never the registration. Delivery is at-least-once: a job that published but
//! died before it was marked done publishes again, with the same `message_id` (the envelope id)
//! for receivers to drop the duplicate.
//!
//! One connection and one channel serve all the relay's jobs; they are opened at the first job and
//! reopened at the first job after a failure, not per job. The password never appears in a log or
//! an error: they name the broker by `host:port` ([`broker_address`]).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions},
    types::FieldTable,
};
use tokio::sync::Mutex;

use crate::{
    consumers::{Consumer, ConsumerError, JobInfo},
    events::{Envelope, UserRegistered},
};

pub const AMQP_RELAY_QUEUE: &str = "amqp_relay";
/// The routing key of `user_registered` v1: `<type>.v<version>`, so a binding of
/// `user_registered.*` receives every version and `*.v1` every v1 event.
pub const USER_REGISTERED_ROUTING_KEY: &str = "user_registered.v1";
/// The exchange's default name.
pub const DEFAULT_EXCHANGE: &str = "signup.events";

/// Connecting, or publishing and waiting for the confirm, gives up after this long (a broker
/// that accepts TCP and then says nothing must not hold a job forever).
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed connect, jobs fail at once with the same cause for this long instead of each
/// trying to connect again: a broker outage costs one connection attempt a second, not one per
/// job.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Why the relay could not publish; the messages name the broker's `host:port`, never the URL.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("EVENTS_AMQP_URL {0}")]
    BadUrl(String),
    #[error("cannot connect to the AMQP broker at {broker}: {cause}")]
    Connect { broker: String, cause: String },
    #[error("cannot publish to exchange {exchange:?} at {broker}: {cause}")]
    Publish {
        broker: String,
        exchange: String,
        cause: String,
    },
}

/// `host:port` of an AMQP URL, for logs and errors (no user, no password, no vhost). Also used by
/// the `signup-queue amqp` tool.
pub fn broker_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let default_port = if url.starts_with("amqps://") {
        5671
    } else {
        5672
    };
    if host_port.is_empty() {
        format!("localhost:{default_port}")
    } else if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    }
}

/// Checks that `url` parses as an AMQP URL. The error says why, never repeating the URL (it may
/// hold a password): "is not an AMQP URL like amqp://user:pass@host:5672/%2f (host:port): ...".
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<lapin::uri::AMQPUri>().map(drop).map_err(|e| {
        format!(
            "is not an AMQP URL like amqp://user:pass@host:5672/%2f ({}): {}",
            broker_address(url),
            e.replace(url, "the URL")
        )
    })
}

/// A connection's error as text without the URL in it, whatever the library put in.
fn redacted(url: &str, error: impl std::fmt::Display) -> String {
    error.to_string().replace(url, &broker_address(url))
}

/// The open connection and its confirm-mode channel, numbered so that a job whose publish failed
/// drops only the link it used, never a newer one another job opened meanwhile.
#[derive(Clone)]
struct Link {
    generation: u64,
    connection: Arc<Connection>,
    channel: Channel,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

#[derive(Default)]
struct LinkState {
    link: Option<Link>,
    generation: u64,
    /// When the last connect failed, and why: jobs within [`RECONNECT_PAUSE`] get that cause.
    last_failure: Option<(Instant, String)>,
}

pub struct AmqpRelay {
    url: String,
    broker: String,
    exchange: String,
    state: Mutex<LinkState>,
}

impl AmqpRelay {
    /// Checks the URL; connects lazily, at the first job.
    pub fn new(url: &str, exchange: &str) -> Result<Self, RelayError> {
        check_url(url).map_err(RelayError::BadUrl)?;
        Ok(AmqpRelay {
            url: url.to_owned(),
            broker: broker_address(url),
            exchange: exchange.to_owned(),
            state: Mutex::new(LinkState::default()),
        })
    }

    /// The broker's `host:port` (for logs).
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// The live link, or a new one. Concurrent jobs wait here while one of them connects.
    async fn link(&self) -> Result<Link, RelayError> {
        let mut state = self.state.lock().await;
        if let Some(link) = &state.link {
            if link.usable() {
                return Ok(link.clone());
            }
            tracing::warn!(broker = %self.broker, "AMQP connection lost; reconnecting");
            state.link = None;
        }
        if let Some((at, cause)) = &state.last_failure
            && at.elapsed() < RECONNECT_PAUSE
        {
            return Err(RelayError::Connect {
                broker: self.broker.clone(),
                cause: cause.clone(),
            });
        }
        match self.connect().await {
            Ok((connection, channel)) => {
                state.generation += 1;
                state.last_failure = None;
                let link = Link {
                    generation: state.generation,
                    connection: Arc::new(connection),
                    channel,
                };
                state.link = Some(link.clone());
                tracing::info!(broker = %self.broker, exchange = %self.exchange, "connected to the AMQP broker");
                Ok(link)
            }
            Err(cause) => {
                state.last_failure = Some((Instant::now(), cause.clone()));
                Err(RelayError::Connect {
                    broker: self.broker.clone(),
                    cause,
                })
            }
        }
    }

    /// Connection, channel in confirm mode, the exchange declared (durable topic).
    async fn connect(&self) -> Result<(Connection, Channel), String> {
        let properties = ConnectionProperties::default().with_connection_name(
            format!(
                "signup-queue {AMQP_RELAY_QUEUE} {} pid {}",
                self.exchange,
                std::process::id()
            )
            .into(),
        );
        let open = async {
            let connection = Connection::connect(&self.url, properties).await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            channel
                .exchange_declare(
                    self.exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((connection, channel))
        };
        match tokio::time::timeout(BROKER_TIMEOUT, open).await {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(e)) => Err(redacted(&self.url, e)),
            Err(_) => Err(format!("no answer within {BROKER_TIMEOUT:?}")),
        }
    }

    /// Forgets `link` after a failure on it, unless another job already replaced it.
    async fn drop_link(&self, link: &Link) {
        let mut state = self.state.lock().await;
        if state
            .link
            .as_ref()
            .is_some_and(|l| l.generation == link.generation)
        {
            state.link = None;
            let connection = Arc::clone(&link.connection);
            // Closing a broken connection may wait for the broker: not on the job's time.
            tokio::spawn(async move {
                let _ = connection
                    .close(200, "signup-queue relay: reconnecting".into())
                    .await;
            });
        }
    }

    /// Publishes one envelope and waits for the broker's confirm.
    pub async fn publish(&self, event: &Envelope<UserRegistered>) -> Result<(), RelayError> {
        let body = serde_json::to_vec(event).map_err(|e| self.publish_error(e))?;
        let link = self.link().await?;
        let properties = BasicProperties::default()
            .with_message_id(event.id.as_str().into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_type(event.kind.as_str().into())
            .with_timestamp(event.occurred_at.timestamp().max(0) as u64)
            .with_app_id("signup-queue".into());
        let publish = async {
            link.channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    USER_REGISTERED_ROUTING_KEY.into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?
                .await
        };
        // A nack leaves the link usable; anything else may have broken it: start afresh.
        let (cause, link_broken) = match tokio::time::timeout(BROKER_TIMEOUT, publish).await {
            Ok(Ok(Confirmation::Ack(_))) => return Ok(()),
            Ok(Ok(Confirmation::Nack(_))) => {
                ("the broker refused the message (nack)".to_owned(), false)
            }
            Ok(Ok(Confirmation::NotRequested)) => {
                ("the channel is not in confirm mode".to_owned(), true)
            }
            Ok(Err(e)) => (redacted(&self.url, e), true),
            Err(_) => (format!("no confirm within {BROKER_TIMEOUT:?}"), true),
        };
        if link_broken {
            self.drop_link(&link).await;
        }
        Err(self.publish_error(cause))
    }

    fn publish_error(&self, cause: impl std::fmt::Display) -> RelayError {
        RelayError::Publish {
            broker: self.broker.clone(),
            exchange: self.exchange.clone(),
            cause: cause.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl Consumer for AmqpRelay {
    fn name(&self) -> &'static str {
        AMQP_RELAY_QUEUE
    }

    async fn handle(
        &self,
        event: &Envelope<UserRegistered>,
        _job: &JobInfo,
    ) -> Result<(), ConsumerError> {
        self.publish(event).await.map_err(ConsumerError::retry)?;
        tracing::info!(exchange = %self.exchange, routing_key = USER_REGISTERED_ROUTING_KEY, "event published");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_address_never_carries_the_password() {
        for (url, expected) in [
            ("amqp://guest:secret@127.0.0.1:5672/%2f", "127.0.0.1:5672"),
            (
                "amqp://user:p%40ss@rabbit.internal/vhost",
                "rabbit.internal:5672",
            ),
            ("amqps://u:pw@mq.example.com", "mq.example.com:5671"),
            ("amqp://[::1]:5673/%2f", "[::1]:5673"),
            ("amqp://[::1]/%2f", "[::1]:5672"),
            ("amqp://", "localhost:5672"),
        ] {
            assert_eq!(broker_address(url), expected, "{url}");
        }
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        let error = AmqpRelay::new("http://guest:secret@host:5672", "x")
            .err()
            .expect("refused");
        assert!(!error.to_string().contains("secret"), "{error}");
        assert!(AmqpRelay::new("amqp://guest:secret@127.0.0.1:5672/%2f", "x").is_ok());
    }
}
