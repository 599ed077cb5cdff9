//! `signup-queue amqp consume` against a real RabbitMQ: the real binary as the consumer, the test
//! publishing to the exchange as the relay does. Needs `AMQP_URL` (e.g.
//! amqp://guest:guest@127.0.0.1:5672/%2f); skipped with one line when unset. Each test uses its
//! own exchange and queues (`test.<ulid>`) and deletes them.

use std::{
    collections::HashSet,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
        ExchangeDeleteOptions, QueueDeleteOptions,
    },
    types::FieldTable,
};
use tokio::io::{AsyncBufReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(20);

fn amqp_url() -> Option<String> {
    signup_queue_tools::testkit::service_or_skip(
        "AMQP_URL",
        "(e.g. amqp://guest:guest@127.0.0.1:5672/%2f) to run the RabbitMQ tests",
    )
}

/// A test's exchange and the queues its consumers declare, all deleted by [`Broker::cleanup`].
struct Broker {
    url: String,
    connection: Connection,
    channel: Channel,
    exchange: String,
    queues: Mutex<Vec<String>>,
}

impl Broker {
    async fn new(url: &str) -> Broker {
        let connection = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("signup-queue tool tests".into()),
        )
        .await
        .expect("the test connects to RabbitMQ");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let exchange = format!("test.{}", ulid::Ulid::generate());
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("exchange");
        Broker {
            url: url.to_owned(),
            connection,
            channel,
            exchange,
            queues: Mutex::new(Vec::new()),
        }
    }

    /// A queue name for this test (deleted with its `.dead` queue at the end).
    fn queue(&self, name: &str) -> String {
        let queue = format!("{}.{name}", self.exchange);
        if let Ok(mut queues) = self.queues.lock() {
            queues.push(queue.clone());
        }
        queue
    }

    /// Publishes as the relay does (routing key `user_registered.v1`), waiting for the confirm.
    async fn publish(&self, body: &[u8], message_id: &str) {
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                "user_registered.v1".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_message_id(message_id.into())
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack());
    }

    /// Publishes `n` envelopes; returns their ids.
    async fn publish_envelopes(&self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for user_id in 0..n {
            let id = ulid::Ulid::generate().to_string();
            let body = serde_json::json!({"id": id, "type": "user_registered", "version": 1,
                "occurred_at": "2026-11-25T05:10:16.743Z", "payload": {"user_id": user_id}});
            self.publish(body.to_string().as_bytes(), &id).await;
            ids.push(id);
        }
        ids
    }

    fn consumer(&self, queue: &str, extra: &[&str]) -> Consumer {
        Consumer::start(&self.url, &self.exchange, queue, extra)
    }

    async fn cleanup(self) {
        let queues = self.queues.lock().map(|q| q.clone()).unwrap_or_default();
        for queue in queues {
            for name in [queue.clone(), format!("{queue}.dead")] {
                let _ = self
                    .channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for exchange in [self.exchange.clone(), format!("{}.dlx", self.exchange)] {
            let _ = self
                .channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// A running `signup-queue-amqp consume`, its stdout and stderr collected line by line.
struct Consumer {
    child: tokio::process::Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

fn collect(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut all) = into.lock() {
                all.push(line);
            }
        }
    })
}

impl Consumer {
    fn command(url: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_signup-queue-amqp"));
        command.env_clear().env("AMQP_URL", url);
        command
    }

    fn start(url: &str, exchange: &str, queue: &str, extra: &[&str]) -> Consumer {
        let mut child = Consumer::command(url)
            .args(["consume", "--exchange", exchange, "--queue", queue])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the consumer starts");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), Arc::clone(&stdout)),
            collect(child.stderr.take().expect("stderr"), Arc::clone(&stderr)),
        ];
        Consumer {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until its queue is declared and bound (it says so on stderr).
    async fn ready(self) -> Consumer {
        self.wait_for_stderr("consuming").await;
        self
    }

    async fn wait_for_stderr(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.stderr().iter().any(|l| l.contains(needle)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {needle:?} on stderr within {WAIT:?}: {:?}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit; returns its status, stdout and stderr lines.
    async fn finish(mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the consumer exits in time")
            .expect("wait");
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        (status, self.stdout(), self.stderr())
    }
}

fn ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            value["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_consumer_killed_mid_message_loses_it_to_the_next_one() {
    let Some(url) = amqp_url() else { return };
    let broker = Broker::new(&url).await;
    let queue = broker.queue("crash");
    let mut doomed = broker
        .consumer(&queue, &["--prefetch", "1", "--handle-delay", "3s"])
        .ready()
        .await;
    let published = broker.publish_envelopes(3).await;
    // It holds the first message (prefetch 1, 3 s to handle it), unacked, when it dies.
    tokio::time::sleep(Duration::from_secs(1)).await;
    doomed.child.start_kill().expect("SIGKILL");
    let (_, printed_before_death, _) = doomed.finish().await;
    assert!(printed_before_death.is_empty(), "{printed_before_death:?}");

    let (status, stdout, stderr) = broker
        .consumer(&queue, &["--until-empty", "--idle", "2s"])
        .finish()
        .await;
    assert!(status.success(), "{stderr:?}");
    assert_eq!(ids(&stdout), published, "all three, in order, none lost");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("(redelivered)") && l.contains(&published[0])),
        "the killed consumer's message comes back flagged redelivered: {stderr:?}"
    );
    broker.cleanup().await;
}

#[tokio::test]
async fn two_consumers_of_one_queue_share_its_messages() {
    let Some(url) = amqp_url() else { return };
    let broker = Broker::new(&url).await;
    let queue = broker.queue("shared");
    let args = ["--until-empty", "--idle", "3s", "--prefetch", "1"];
    let first = broker.consumer(&queue, &args).ready().await;
    let second = broker.consumer(&queue, &args).ready().await;
    let published = broker.publish_envelopes(20).await;

    let (status_a, out_a, err_a) = first.finish().await;
    let (status_b, out_b, err_b) = second.finish().await;
    assert!(
        status_a.success() && status_b.success(),
        "{err_a:?} {err_b:?}"
    );
    assert!(
        !out_a.is_empty() && !out_b.is_empty(),
        "both took a share: {} and {}",
        out_a.len(),
        out_b.len()
    );
    let all: Vec<String> = ids(&out_a).into_iter().chain(ids(&out_b)).collect();
    assert_eq!(all.len(), 20, "each message printed once in total");
    assert_eq!(
        all.into_iter().collect::<HashSet<_>>(),
        published.into_iter().collect::<HashSet<_>>()
    );
    broker.cleanup().await;
}

#[tokio::test]
async fn two_queues_each_get_every_message() {
    let Some(url) = amqp_url() else { return };
    let broker = Broker::new(&url).await;
    let (billing, analytics) = (broker.queue("billing"), broker.queue("analytics"));
    let args = ["--until-empty", "--idle", "2s"];
    let first = broker.consumer(&billing, &args).ready().await;
    let second = broker.consumer(&analytics, &args).ready().await;
    let published = broker.publish_envelopes(10).await;

    let (_, out_a, _) = first.finish().await;
    let (_, out_b, _) = second.finish().await;
    assert_eq!(ids(&out_a), published);
    assert_eq!(ids(&out_b), published);
    broker.cleanup().await;
}

#[tokio::test]
async fn a_message_that_is_not_an_envelope_goes_to_the_dead_letter_queue() {
    let Some(url) = amqp_url() else { return };
    let broker = Broker::new(&url).await;
    let queue = broker.queue("strict");
    let consumer = broker
        .consumer(&queue, &["--until-empty", "--idle", "2s"])
        .ready()
        .await;
    broker.publish(b"not json at all", "bad-1").await;
    broker
        .publish(br#"{"id":"x","type":"user_registered"}"#, "bad-2")
        .await;
    let good = broker.publish_envelopes(1).await;

    let (status, stdout, stderr) = consumer.finish().await;
    assert!(status.success(), "{stderr:?}");
    assert_eq!(ids(&stdout), good, "only the envelope is printed");
    assert_eq!(
        stderr
            .iter()
            .filter(|l| l.starts_with("rejected message"))
            .count(),
        2,
        "{stderr:?}"
    );

    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while dead.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "dead: {dead:?}");
        match broker
            .channel
            .basic_get(
                format!("{queue}.dead").as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic_get on the dead-letter queue")
        {
            Some(message) => {
                dead.push(String::from_utf8_lossy(&message.delivery.data).into_owned())
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        dead,
        ["not json at all", r#"{"id":"x","type":"user_registered"}"#]
    );
    broker.cleanup().await;
}

#[tokio::test]
async fn max_stops_after_n_messages_and_sigterm_stops_cleanly() {
    let Some(url) = amqp_url() else { return };
    let broker = Broker::new(&url).await;
    let queue = broker.queue("bounded");
    let bounded = broker.consumer(&queue, &["--max", "3"]).ready().await;
    let published = broker.publish_envelopes(5).await;
    let (status, stdout, stderr) = bounded.finish().await;
    assert!(status.success(), "{stderr:?}");
    assert_eq!(ids(&stdout), published[..3]);

    let waiting = broker.consumer(&queue, &[]).ready().await;
    // The two left are printed, then it waits for more until SIGTERM.
    let deadline = tokio::time::Instant::now() + WAIT;
    while waiting.stdout().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = waiting.child.id().expect("pid").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let (status, stdout, stderr) = waiting.finish().await;
    assert!(status.success(), "exit 0 on SIGTERM: {status:?} {stderr:?}");
    assert_eq!(ids(&stdout), published[3..]);
    assert!(stderr.iter().any(|l| l.contains("SIGTERM")), "{stderr:?}");
    broker.cleanup().await;
}

#[tokio::test]
async fn a_refused_login_is_one_line_naming_the_host_without_the_password() {
    let Some(url) = amqp_url() else { return };
    let host = signup_queue::consumers::amqp_relay::broker_address(&url);
    let bad = format!("amqp://guest:wrong-s3cret@{host}/%2f");
    let output = Consumer::command(&bad)
        .args(["consume", "--until-empty"])
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&host), "{stderr}");
    assert!(stderr.contains("ACCESS_REFUSED"), "{stderr}");
    assert!(!stderr.contains("wrong-s3cret"), "{stderr}");

    let output = Consumer::command("amqp://guest:s3cret@127.0.0.1:1/%2f")
        .args(["consume"])
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
