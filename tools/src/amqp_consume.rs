//! `signup-queue amqp consume`: another service's side of the events the relay publishes to
//! RabbitMQ. Declares a durable queue bound to the exchange (with a dead-letter exchange for
//! messages it cannot read), consumes with manual acks and a prefetch window, prints each
//! message's body on one line to stdout (progress and diagnostics go to stderr), and acks it
//! after printing. A body that is not an envelope (a JSON object with `id`, `type`, `version`) is
//! rejected without requeue, so the broker moves it to `<queue>.dead`.
//!
//! Consumers on one queue share its messages (each goes to one of them); each queue gets every
//! message. A consumer that dies holding unacked messages (even `kill -9`) loses none: the broker
//! delivers them again, flagged `redelivered`, to the next consumer of the queue.

use std::{io::Write, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use lapin::{
    Channel, Connection, ConnectionProperties, ExchangeKind,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
        ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use serde_json::Value;
use signup_queue::consumers::amqp_relay::{DEFAULT_EXCHANGE, broker_address, check_url};

#[derive(Debug, Subcommand)]
pub enum AmqpCommand {
    /// Consume the events: declare and bind a queue, print each message's body (one line per
    /// message) and ack it. Stops cleanly on Ctrl-C or SIGTERM.
    Consume(ConsumeArgs),
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The RabbitMQ server.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    amqp_url: String,
    /// This service's queue (durable). Consumers with the same queue share its messages;
    /// every queue gets all of them.
    #[arg(long, default_value = "signup.events.consumer")]
    queue: String,
    /// The exchange the relay publishes to (EVENTS_AMQP_EXCHANGE of the app).
    #[arg(long, default_value = DEFAULT_EXCHANGE)]
    exchange: String,
    /// Binding key: which routing keys reach the queue (`*` one word, `#` any number).
    #[arg(long, default_value = "user_registered.*")]
    binding: String,
    /// Messages delivered to this consumer before it acks any (the broker's prefetch window).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    prefetch: u16,
    /// Exit after this many messages.
    #[arg(long)]
    max: Option<u64>,
    /// Exit when nothing arrived for --idle (drain, then stop).
    #[arg(long)]
    until_empty: bool,
    /// With --until-empty: how long without a message means empty.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Pretend handling a message takes this long (to demonstrate crashes mid-message).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration, hide = true)]
    handle_delay: Duration,
}

pub async fn run(command: AmqpCommand) -> anyhow::Result<()> {
    match command {
        AmqpCommand::Consume(args) => {
            let broker = broker_address(&args.amqp_url);
            check_url(&args.amqp_url).map_err(|e| anyhow::anyhow!("AMQP_URL {e}"))?;
            let connection = connect(
                &args.amqp_url,
                &format!("signup-queue amqp consume {}", args.queue),
            )
            .await
            .with_context(|| format!("cannot connect to the AMQP broker at {broker}"))?;
            let outcome = tokio::select! {
                result = consume(&args, &connection) => result,
                signal = shutdown_signal() => {
                    eprintln!("stopped ({signal})");
                    Ok(())
                }
            };
            // Unacked messages (one being handled when the signal came) go back to the queue.
            let _ = connection.close(200, "bye".into()).await;
            outcome
        }
    }
}

/// Opens a connection named `name` (shown by `rabbitmqctl list_connections name`). Errors carry
/// the cause and never the URL (it may hold a password).
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, properties),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "{}",
            e.to_string().replace(url, &broker_address(url))
        )),
        Err(_) => anyhow::bail!("no answer within 10s"),
    }
}

/// The queue, its binding, and its dead-letter exchange and queue (all durable).
async fn declare(channel: &Channel, args: &ConsumeArgs) -> anyhow::Result<()> {
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let dlx = format!("{}.dlx", args.exchange);
    let dead = format!("{}.dead", args.queue);
    channel
        .exchange_declare(
            args.exchange.as_str().into(),
            ExchangeKind::Topic,
            durable_exchange,
            FieldTable::default(),
        )
        .await
        .with_context(|| {
            format!(
                "cannot declare exchange {} (a durable topic exchange)",
                args.exchange
            )
        })?;
    channel
        .exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Fanout,
            durable_exchange,
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot declare the dead-letter exchange {dlx}"))?;
    channel
        .queue_declare(dead.as_str().into(), durable_queue, FieldTable::default())
        .await
        .with_context(|| format!("cannot declare the dead-letter queue {dead}"))?;
    channel
        .queue_bind(
            dead.as_str().into(),
            dlx.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot bind {dead} to {dlx}"))?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.as_str().into()),
    );
    channel
        .queue_declare(args.queue.as_str().into(), durable_queue, arguments)
        .await
        .with_context(|| {
            format!(
                "cannot declare queue {} (durable, x-dead-letter-exchange={dlx}); a queue of that \
                 name declared with other settings must be deleted first",
                args.queue
            )
        })?;
    channel
        .queue_bind(
            args.queue.as_str().into(),
            args.exchange.as_str().into(),
            args.binding.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot bind {} to {}", args.queue, args.exchange))?;
    Ok(())
}

async fn consume(args: &ConsumeArgs, connection: &Connection) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    declare(&channel, args).await?;
    channel
        .basic_qos(args.prefetch, BasicQosOptions::default())
        .await
        .context("cannot set the prefetch window")?;
    let mut deliveries = channel
        .basic_consume(
            args.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot consume queue {}", args.queue))?;
    eprintln!(
        "consuming {} (exchange {}, binding {}, prefetch {}; unreadable messages go to {}.dead)",
        args.queue, args.exchange, args.binding, args.prefetch, args.queue
    );
    let (mut handled, mut rejected) = (0u64, 0u64);
    while args.max.is_none_or(|max| handled + rejected < max) {
        let next = if args.until_empty {
            match tokio::time::timeout(args.idle, deliveries.next()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        } else {
            deliveries.next().await
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => return Err(e).context("the broker connection failed"),
            None => anyhow::bail!("the broker cancelled the consumer"),
        };
        if !args.handle_delay.is_zero() {
            tokio::time::sleep(args.handle_delay).await;
        }
        match envelope_line(&delivery.data) {
            Ok(line) => {
                emit(&line)?;
                if delivery.redelivered {
                    eprintln!("(redelivered) {}", message_id(&delivery));
                }
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .context("cannot ack")?;
                handled += 1;
            }
            Err(why) => {
                eprintln!(
                    "rejected message {} to {}.dead: {why}",
                    message_id(&delivery),
                    args.queue
                );
                delivery
                    .reject(BasicRejectOptions { requeue: false })
                    .await
                    .context("cannot reject")?;
                rejected += 1;
            }
        }
    }
    eprintln!("handled {handled} message(s), rejected {rejected}");
    Ok(())
}

fn message_id(delivery: &Delivery) -> String {
    delivery
        .properties
        .message_id()
        .as_ref()
        .map_or_else(|| "(no message_id)".into(), |id| id.to_string())
}

/// The body as one line when it is an envelope: a JSON object with a string `id`, a string
/// `type` and an integer `version`. A body that spans lines is printed re-serialized.
pub fn envelope_line(body: &[u8]) -> Result<String, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("the body is not a JSON object".into());
    };
    for (field, ok) in [
        ("id", object.get("id").is_some_and(Value::is_string)),
        ("type", object.get("type").is_some_and(Value::is_string)),
        ("version", object.get("version").is_some_and(Value::is_u64)),
    ] {
        if !ok {
            return Err(format!("not an envelope: no valid {field:?}"));
        }
    }
    match std::str::from_utf8(body) {
        Ok(text) if !text.contains(['\n', '\r']) => Ok(text.to_owned()),
        _ => Ok(value.to_string()),
    }
}

fn emit(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM with the signal's name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "Ctrl-C",
                _ = terminate.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "Ctrl-C"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(test)]
mod tests {
    use super::envelope_line;

    #[test]
    fn only_envelopes_are_printed() {
        let envelope = br#"{"id":"01J","type":"user_registered","version":1,"payload":{}}"#;
        assert_eq!(
            envelope_line(envelope).as_deref(),
            Ok(std::str::from_utf8(envelope).unwrap_or_default())
        );
        let spread = b"{\n \"id\": \"a\",\n \"type\": \"t\",\n \"version\": 2\n}";
        assert!(!envelope_line(spread).unwrap_or_default().contains('\n'));
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"{\"id\":\"a\",\"type\":\"t\"}",
            b"{\"id\":1,\"type\":\"t\",\"version\":1}",
        ] {
            assert!(
                envelope_line(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
