//! The message-queue chapter's Redis exercise, for real: a producer that `LPUSH`es lines to a
//! list and a consumer that waits on it with `BRPOP`; a reliable variant (`BLMOVE` into a
//! processing list, removed only after handling, recovered on restart); and a Stream variant with
//! a consumer group (`XADD`, `XREADGROUP`, `XACK`, `XAUTOCLAIM` for entries stuck with a dead
//! consumer). Messages are printed to stdout, one per line; progress goes to stderr.

use std::{
    io::{BufRead, Write},
    time::Duration,
};

use anyhow::Context;
use clap::{Args, Subcommand};
use redis::{
    AsyncCommands, Direction,
    aio::MultiplexedConnection,
    streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply},
};

#[derive(Debug, Subcommand)]
pub enum RedisCommand {
    /// Push messages: LPUSH onto a list (or XADD to a stream with --stream). Reads lines from
    /// stdin when no MESSAGE is given.
    Produce(ProduceArgs),
    /// Wait for messages and print each (BRPOP; --reliable: BLMOVE + processing list; --stream:
    /// consumer group). Stops cleanly on Ctrl-C.
    Consume(ConsumeArgs),
}

#[derive(Debug, Args)]
pub struct Common {
    /// Redis server.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    redis_url: String,
    /// The list (or stream) name.
    #[arg(long, default_value = "log_queue")]
    queue: String,
    /// Use a Redis Stream with a consumer group instead of a list.
    #[arg(long)]
    stream: bool,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    /// The messages; none: one message per line of stdin.
    messages: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    common: Common,
    /// Move each message to a processing list while it is handled, remove it afterwards, and on
    /// start put back what a crashed run of the same --consumer left there.
    #[arg(long, conflicts_with = "stream")]
    reliable: bool,
    /// This consumer's name (processing list / consumer group member). Keep it stable across
    /// restarts so unfinished work is recovered. Default: the host name.
    #[arg(long)]
    consumer: Option<String>,
    /// Consumer group (with --stream).
    #[arg(long, default_value = "log_consumers")]
    group: String,
    /// With --stream: claim entries another consumer has held unacknowledged this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    claim_idle: Duration,
    /// How long one blocking wait lasts before it is renewed.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Exit after this many messages.
    #[arg(long)]
    max: Option<u64>,
    /// Exit when a wait times out with nothing to do (drain, then stop).
    #[arg(long)]
    until_empty: bool,
    /// Pretend handling a message takes this long (to demonstrate crashes mid-message).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration, hide = true)]
    handle_delay: Duration,
}

pub async fn run(command: RedisCommand) -> anyhow::Result<()> {
    match command {
        RedisCommand::Produce(args) => produce(args).await,
        RedisCommand::Consume(args) => {
            tokio::select! {
                result = consume(&args) => result,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("stopped (Ctrl-C)");
                    Ok(())
                }
            }
        }
    }
}

/// `wait`: the longest blocking command this connection will send; replies may take that long.
async fn connect(common: &Common, wait: Duration) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(common.redis_url.as_str())
        .with_context(|| format!("REDIS_URL {:?} is not a Redis URL", common.redis_url))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(wait + Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| format!("cannot connect to Redis at {}", common.redis_url))
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let mut conn = connect(&args.common, Duration::ZERO).await?;
    let messages = if args.messages.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<Vec<_>, _>>()
            .context("cannot read stdin")?
    } else {
        args.messages
    };
    let key = args.common.queue.as_str();
    for message in &messages {
        if args.common.stream {
            let _: String = conn
                .xadd(key, "*", &[("message", message.as_str())])
                .await?;
        } else {
            let _: usize = conn.lpush(key, message).await?;
        }
    }
    let kind = if args.common.stream { "stream" } else { "list" };
    eprintln!("pushed {} message(s) to {kind} {key}", messages.len());
    Ok(())
}

fn emit(message: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{message}")?;
    out.flush()?;
    Ok(())
}

async fn handle(args: &ConsumeArgs, message: &str) -> anyhow::Result<()> {
    if !args.handle_delay.is_zero() {
        tokio::time::sleep(args.handle_delay).await;
    }
    emit(message)
}

fn consumer_name(args: &ConsumeArgs) -> String {
    args.consumer.clone().unwrap_or_else(|| {
        hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "consumer".into())
    })
}

async fn consume(args: &ConsumeArgs) -> anyhow::Result<()> {
    let mut conn = connect(&args.common, args.timeout).await?;
    let timeout = args.timeout.as_secs_f64().max(0.01);
    let key = args.common.queue.clone();
    let mut handled = 0u64;
    let done = |handled: u64| args.max.is_some_and(|max| handled >= max);

    if args.common.stream {
        return consume_stream(args, &mut conn).await;
    }
    let processing = format!("{key}:processing:{}", consumer_name(args));
    if args.reliable {
        let mut recovered = 0;
        // Put unfinished messages back at the consuming end: they are handled first.
        while let Some(_message) = conn
            .lmove::<_, _, Option<String>>(&processing, &key, Direction::Right, Direction::Right)
            .await?
        {
            recovered += 1;
        }
        if recovered > 0 {
            eprintln!("recovered {recovered} unfinished message(s) from {processing}");
        }
    }
    eprintln!(
        "waiting for messages on {key}{}",
        if args.reliable { " (reliable)" } else { "" }
    );
    while !done(handled) {
        let message = if args.reliable {
            conn.blmove::<_, _, Option<String>>(
                &key,
                &processing,
                Direction::Right,
                Direction::Left,
                timeout,
            )
            .await?
        } else {
            conn.brpop::<_, Option<[String; 2]>>(&key, timeout)
                .await?
                .map(|[_, message]| message)
        };
        let Some(message) = message else {
            if args.until_empty {
                break;
            }
            continue;
        };
        handle(args, &message).await?;
        if args.reliable {
            let _: usize = conn.lrem(&processing, 1, &message).await?;
        }
        handled += 1;
    }
    eprintln!("handled {handled} message(s)");
    Ok(())
}

fn field(entry: &redis::streams::StreamId) -> String {
    entry
        .map
        .get("message")
        .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
        .unwrap_or_default()
}

async fn consume_stream(
    args: &ConsumeArgs,
    conn: &mut MultiplexedConnection,
) -> anyhow::Result<()> {
    let key = args.common.queue.as_str();
    let group = args.group.as_str();
    let consumer = consumer_name(args);
    // From the start of the stream, so messages produced before the group existed are read too.
    let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(key, group, "0").await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(e).context("cannot create the consumer group");
    }
    eprintln!("reading stream {key} as {consumer} in group {group}");
    let block = usize::try_from(args.timeout.as_millis())
        .unwrap_or(usize::MAX)
        .max(1);
    let mut handled = 0u64;
    let mut own_backlog = true;
    loop {
        if args.max.is_some_and(|max| handled >= max) {
            break;
        }
        // Entries a dead or stuck consumer holds for too long are taken over first.
        let claimed: StreamAutoClaimReply = conn
            .xautoclaim_options(
                key,
                group,
                &consumer,
                args.claim_idle.as_millis() as u64,
                "0-0",
                StreamAutoClaimOptions::default().count(10),
            )
            .await?;
        let mut entries = claimed.claimed;
        if !entries.is_empty() {
            eprintln!(
                "claimed {} entr(y/ies) left unacknowledged by another consumer",
                entries.len()
            );
        } else {
            // First this consumer's own unacknowledged entries (a previous run died holding
            // them), then new ones.
            let (id, options) = if own_backlog {
                (
                    "0",
                    StreamReadOptions::default()
                        .group(group, &consumer)
                        .count(10),
                )
            } else {
                (
                    ">",
                    StreamReadOptions::default()
                        .group(group, &consumer)
                        .count(1)
                        .block(block),
                )
            };
            let reply: Option<StreamReadReply> =
                conn.xread_options(&[key], &[id], &options).await?;
            entries = reply
                .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                .unwrap_or_default();
            if own_backlog && entries.is_empty() {
                own_backlog = false;
                continue;
            }
        }
        if entries.is_empty() {
            if args.until_empty {
                break;
            }
            continue;
        }
        for entry in entries {
            handle(args, &field(&entry)).await?;
            let _: usize = conn.xack(key, group, &[&entry.id]).await?;
            handled += 1;
        }
    }
    eprintln!("handled {handled} message(s)");
    Ok(())
}
