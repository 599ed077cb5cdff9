//! The relay to other services: with EVENTS_AMQP_URL, every `user_registered` reaches a RabbitMQ
//! topic exchange, persistent and confirmed, through the job row registration wrote (the
//! transactional outbox); a broker outage delays events and never registration.
//!
//! The tests against a real broker read `AMQP_URL` (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)
//! and are skipped with one line without it. Each uses its own exchange (`test.<ulid>`) and
//! deletes what it declared.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::{StreamExt, stream};
use lapin::{
    Channel, Connection, ConnectionProperties, ExchangeKind,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, ExchangeDeclareOptions,
        ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::FieldTable,
};
use serde_json::Value;
use signup_queue_tools::testkit::{TestApp, unused_port};

const WAIT: Duration = Duration::from_secs(30);

fn amqp_url() -> Option<String> {
    signup_queue_tools::testkit::service_or_skip(
        "AMQP_URL",
        "(e.g. amqp://guest:guest@127.0.0.1:5672/%2f) to run the RabbitMQ tests",
    )
}

/// A test's own exchange and the queue it reads from, deleted by [`Broker::cleanup`].
struct Broker {
    connection: Connection,
    channel: Channel,
    exchange: String,
    queue: String,
}

impl Broker {
    /// Declares a fresh exchange (as the relay does) and a queue bound to `user_registered.*`.
    async fn new(url: &str) -> Broker {
        let exchange = format!("test.{}", ulid::Ulid::generate());
        let queue = format!("{exchange}.q");
        let connection = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("signup-queue tests".into()),
        )
        .await
        .expect("the test connects to RabbitMQ");
        let channel = connection.create_channel().await.expect("channel");
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
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue");
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "user_registered.*".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("binding");
        Broker {
            connection,
            channel,
            exchange,
            queue,
        }
    }

    async fn spawn_app(&self, url: &str) -> TestApp {
        let (url, exchange) = (url.to_owned(), self.exchange.clone());
        TestApp::builder()
            .settings(|s| {
                s.events_amqp_url = Some(url);
                s.events_amqp_exchange = exchange;
            })
            .spawn()
            .await
    }

    /// Reads the queue until `distinct` different envelope ids arrived (all deliveries kept,
    /// duplicates included), acking each.
    async fn receive(&self, distinct: usize) -> Vec<Delivery> {
        let mut consumer = self
            .channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut deliveries = Vec::new();
        let mut ids = HashSet::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while ids.len() < distinct {
            let delivery = tokio::time::timeout_at(deadline, consumer.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("{} of {distinct} events arrived within {WAIT:?}", ids.len())
                })
                .expect("consumer open")
                .expect("delivery");
            delivery.ack(BasicAckOptions::default()).await.expect("ack");
            ids.insert(envelope(&delivery)["id"].as_str().map(str::to_owned));
            deliveries.push(delivery);
        }
        let _ = self
            .channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await;
        deliveries
    }

    async fn cleanup(self) {
        let _ = self
            .channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = self
            .channel
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

fn envelope(delivery: &Delivery) -> Value {
    serde_json::from_slice(&delivery.data).expect("the body is JSON")
}

fn validator() -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schemas/user_registered.v1.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("a valid JSON Schema")
}

async fn register_many(app: &TestApp, prefix: &str, n: usize) -> Vec<u16> {
    stream::iter(0..n)
        .map(|i| async move {
            app.register("/register/async", &format!("{prefix}{i}@example.com"))
                .await
                .status()
                .as_u16()
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Waits until every relay job is done (the confirm came back for each).
async fn wait_for_relay_jobs_done(app: &TestApp, n: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let done = app
            .count("SELECT COUNT(*) FROM Jobs WHERE job_type = 'amqp_relay' AND status = 'Done'")
            .await;
        if done == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {n} relay jobs done within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_hundred_registrations_reach_the_exchange_as_valid_persistent_envelopes() {
    let Some(url) = amqp_url() else { return };
    let broker = Broker::new(&url).await;
    let app = broker.spawn_app(&url).await;

    let statuses = register_many(&app, "hundred", 100).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");

    let deliveries = broker.receive(100).await;
    let validator = validator();
    let mut ids = HashSet::new();
    for delivery in &deliveries {
        let body = envelope(delivery);
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{body}: {errors:?}");
        let id = body["id"].as_str().expect("id").to_owned();
        let properties = &delivery.properties;
        assert_eq!(
            properties.message_id().as_ref().map(|m| m.to_string()),
            Some(id.clone())
        );
        assert_eq!(
            properties.content_type().as_ref().map(|c| c.to_string()),
            Some("application/json".to_owned())
        );
        assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
        assert_eq!(
            properties.kind().as_ref().map(|k| k.to_string()),
            Some("user_registered".to_owned())
        );
        assert_eq!(delivery.routing_key.as_str(), "user_registered.v1");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 100, "100 distinct envelopes");
    wait_for_relay_jobs_done(&app, 100).await;
    // The audit log holds the same ids: the relay published the event registration wrote.
    let audited: Vec<String> = sqlx::query_scalar("SELECT event_id FROM audit_events")
        .fetch_all(app.sqlite())
        .await
        .expect("audit rows");
    assert_eq!(audited.into_iter().collect::<HashSet<_>>(), ids);
    // One connection carried them all: the relay connects once, not per job.
    let exchange = broker.exchange.clone();
    let connections = tokio::task::spawn_blocking(move || relay_connections(&exchange))
        .await
        .expect("rabbitmqctl task");
    assert_eq!(connections.len(), 1, "{connections:?}");

    app.stop().await;
    broker.cleanup().await;
}

/// The broker's ids (`pid`) of the relay's connections to `exchange` (the relay names its
/// connection after its exchange), from `rabbitmqctl list_connections`.
fn relay_connections(exchange: &str) -> Vec<String> {
    let listed = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "--no-table-headers",
            "list_connections",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs (it is needed for this test)");
    let needle = format!("{{\"connection_name\",\"signup-queue amqp_relay {exchange} ");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Closes the relay's connections from the broker's side; returns how many it closed.
fn close_relay_connections(exchange: &str) -> usize {
    relay_connections(exchange)
        .iter()
        .filter(|pid| {
            std::process::Command::new("rabbitmqctl")
                .args(["-q", "close_connection", pid, "test: broker-side close"])
                .status()
                .is_ok_and(|s| s.success())
        })
        .count()
}

#[tokio::test]
async fn connections_closed_by_the_broker_during_registrations_lose_no_event() {
    let Some(url) = amqp_url() else { return };
    let broker = Broker::new(&url).await;
    let app = broker.spawn_app(&url).await;
    // One event first, so the relay holds a connection to lose.
    assert_eq!(register_many(&app, "before", 1).await, vec![201]);
    let mut deliveries = broker.receive(1).await;

    let mut statuses = Vec::new();
    let mut closed = 0;
    for round in 0..3 {
        let needle = broker.exchange.clone();
        let closing = tokio::task::spawn_blocking(move || close_relay_connections(&needle));
        // Spread over the ~1 s rabbitmqctl takes, so registrations land before, during and after
        // the close.
        for i in 0..10 {
            let email = format!("outage{round}-{i}@example.com");
            statuses.push(
                app.register("/register/async", &email)
                    .await
                    .status()
                    .as_u16(),
            );
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        closed += closing.await.expect("closing task");
    }
    assert!(closed >= 1, "no relay connection was found to close");
    assert_eq!(statuses.len(), 30);
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");

    // Every event arrives; a duplicate (published, confirm lost with the connection, published
    // again) carries the same message_id.
    deliveries.extend(broker.receive(30).await);
    wait_for_relay_jobs_done(&app, 31).await;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for delivery in &deliveries {
        let id = envelope(delivery)["id"].as_str().expect("id").to_owned();
        assert_eq!(
            delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.to_string()),
            Some(id.clone())
        );
        *by_id.entry(id).or_default() += 1;
    }
    assert_eq!(by_id.len(), 31);
    let jobs: i64 = app
        .count("SELECT COUNT(*) FROM Jobs WHERE job_type = 'amqp_relay'")
        .await;
    assert_eq!(jobs, 31, "one relay job per registration");

    app.stop().await;
    broker.cleanup().await;
}

/// Needs no broker: nothing listens on the port, which is the point.
#[tokio::test]
async fn an_unreachable_broker_delays_the_relay_and_never_the_registration() {
    let port = unused_port();
    let url = format!("amqp://guest:s3cret-pw@127.0.0.1:{port}/%2f");
    let app = TestApp::builder()
        .settings(|s| s.events_amqp_url = Some(url))
        .spawn()
        .await;

    let response = app.register("/register/async", "outage@example.com").await;
    assert_eq!(response.status(), 201);
    let relay_job: String = sqlx::query_scalar("SELECT id FROM Jobs WHERE job_type = 'amqp_relay'")
        .fetch_one(app.sqlite())
        .await
        .expect("a relay job was written with the user");
    let job = app
        .wait_for_job(&relay_job, "retrying", Duration::from_secs(10))
        .await;
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("127.0.0.1:{port}")),
        "the error names the broker: {error}"
    );
    assert!(!error.contains("s3cret-pw"), "the password leaked: {error}");
    // The other consumers do not wait for the broker.
    let welcome: String =
        sqlx::query_scalar("SELECT id FROM Jobs WHERE job_type = 'welcome_email'")
            .fetch_one(app.sqlite())
            .await
            .expect("welcome job");
    app.wait_for_job(&welcome, "done", Duration::from_secs(10))
        .await;
    app.stop().await;
}

#[tokio::test]
async fn without_an_amqp_url_there_is_no_relay() {
    let app = TestApp::builder().spawn().await;
    assert_eq!(
        app.register("/register/async", "plain@example.com")
            .await
            .status(),
        201
    );
    let queues: Vec<String> = sqlx::query_scalar("SELECT job_type FROM Jobs ORDER BY job_type")
        .fetch_all(app.sqlite())
        .await
        .expect("jobs");
    assert_eq!(queues, ["audit_log", "signup_coupon", "welcome_email"]);
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_url_stops_the_start_without_showing_the_password() {
    let error = TestApp::builder()
        .settings(|s| s.events_amqp_url = Some("http://guest:s3cret-pw@127.0.0.1:5672".into()))
        .try_spawn()
        .await
        .err()
        .expect("refused");
    let text = format!("{error:#}");
    assert!(text.contains("EVENTS_AMQP_URL"), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
}

/// A TCP relay from a loopback port to the broker that the test can cut (every connection dropped,
/// new ones refused) and restore on the same port: the broker going away and coming back, as the
/// app sees it, without touching the shared server.
struct Cable {
    port: u16,
    broker: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cable {
    async fn new(broker_url: &str) -> Cable {
        let authority = signup_queue::consumers::amqp_relay::broker_address(broker_url);
        let broker = tokio::net::lookup_host(authority.as_str())
            .await
            .expect("broker address")
            .next()
            .expect("one address");
        let mut cable = Cable {
            port: unused_port(),
            broker,
            task: None,
        };
        cable.restore();
        cable
    }

    /// The broker URL through this cable (same credentials and vhost).
    fn url(&self, broker_url: &str) -> String {
        let authority = signup_queue::consumers::amqp_relay::broker_address(broker_url);
        broker_url.replacen(&authority, &format!("127.0.0.1:{}", self.port), 1)
    }

    fn restore(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))
            .expect("the cable's port is free again");
        let listener = socket.listen(64).expect("listen");
        let broker = self.broker;
        self.task = Some(tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                links.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(broker).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// Drops the listener and every forwarded connection (the JoinSet aborts them).
    async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

#[tokio::test]
async fn events_written_while_the_broker_is_unreachable_arrive_once_it_is_back() {
    let Some(url) = amqp_url() else { return };
    let broker = Broker::new(&url).await;
    let mut cable = Cable::new(&url).await;
    let app = broker.spawn_app(&cable.url(&url)).await;
    assert_eq!(register_many(&app, "connected", 1).await, vec![201]);
    let mut deliveries = broker.receive(1).await;

    cable.cut().await;
    let statuses = register_many(&app, "unreachable", 30).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    // The relay jobs fail and wait for their retry; registration did not notice.
    let deadline = tokio::time::Instant::now() + WAIT;
    while app
        .count("SELECT COUNT(*) FROM Jobs WHERE job_type = 'amqp_relay' AND attempts >= 1 AND status != 'Done'")
        .await
        < 30
    {
        assert!(tokio::time::Instant::now() < deadline, "the relay jobs did not fail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error: String = sqlx::query_scalar(
        "SELECT last_result FROM Jobs WHERE job_type = 'amqp_relay' AND status != 'Done' LIMIT 1",
    )
    .fetch_one(app.sqlite())
    .await
    .expect("a failed relay job");
    assert!(
        error.contains(&format!("127.0.0.1:{}", cable.port)),
        "{error}"
    );
    assert!(!error.contains("guest:guest"), "{error}");

    cable.restore();
    deliveries.extend(broker.receive(30).await);
    wait_for_relay_jobs_done(&app, 31).await;
    let ids: HashSet<String> = deliveries
        .iter()
        .map(|d| envelope(d)["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 31);

    app.stop().await;
    broker.cleanup().await;
}
