//! What only PostgreSQL has: a duplicate publish inside the request's transaction (apalis-postgres
//! inserts without `ON CONFLICT`), concurrent inserts of one address, a server that is not there
//! at start, connections the server drops while the app runs, and a `web` and a `worker` process
//! that meet only in the database. Each test gets a fresh database (`DATABASE_URL_PG`) and is
//! skipped, with one line, without it; the behaviour both databases share runs on both in the
//! other files (`on_both_databases!`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::join_all;
use signup_queue::{
    consumers::{audit::AUDIT_QUEUE, coupon::COUPON_QUEUE, welcome::WELCOME_QUEUE},
    db::Db,
    events::Envelope,
    queue::{self, inspect},
    users::{Email, insert_user},
    with_db,
};
use signup_queue_tools::{
    smtp_sink::{SinkConfig, SmtpSink},
    testkit::pg::pg_or_skip,
};
use sqlx::{Connection as _, PgConnection};

use crate::support::{child, *};

const QUEUES: [&str; 3] = [WELCOME_QUEUE, AUDIT_QUEUE, COUPON_QUEUE];

/// The `Message-ID` of a user's welcome mail.
fn welcome_id(user_id: i64) -> String {
    format!("<welcome-{user_id}@signup-queue.local>")
}

#[tokio::test]
async fn publishing_one_event_twice_in_one_transaction_commits_one_job_per_queue() {
    let Some(db) = pg_or_skip(
        "app::postgres::publishing_one_event_twice_in_one_transaction_commits_one_job_per_queue",
    )
    .await
    else {
        return;
    };
    let pool = signup_queue::db::connect_and_migrate(db.url())
        .await
        .expect("database");
    let email = Email::parse("twice@example.com").expect("an address");

    let mut tx = pool.begin().await.expect("begin");
    let user_id = insert_user(tx.conn(), &email, None, "hash")
        .await
        .expect("user row");
    let event = Envelope::user_registered(user_id);
    let key = user_id.to_string();
    let first = queue::publish(tx.conn(), &event, &key, &QUEUES, 3, None)
        .await
        .expect("first publish");
    let second = queue::publish(tx.conn(), &event, &key, &QUEUES, 3, None).await;
    assert!(
        second.is_ok(),
        "the same idempotency keys again are a no-op, not an error: {second:?}"
    );
    tx.commit()
        .await
        .expect("the duplicate did not abort the transaction");

    let users: i64 = with_db!(&pool, pool => sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await
        .expect("count"));
    assert_eq!(users, 1, "the user row committed");
    let mut stored: Vec<(String, String)> = inspect::list(&pool, None, 100)
        .await
        .expect("jobs")
        .into_iter()
        .map(|job| (job.queue, job.id))
        .collect();
    stored.sort();
    let mut published: Vec<(String, String)> = first
        .jobs
        .iter()
        .map(|(queue, id)| ((*queue).to_owned(), id.clone()))
        .collect();
    published.sort();
    assert_eq!(
        stored, published,
        "exactly one job per queue: the first publish's"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_address_give_one_201_and_409s_never_a_500() {
    let Some(db) = TestDb::postgres_or_skip(
        "app::postgres::concurrent_registrations_of_one_address_give_one_201_and_409s_never_a_500",
    )
    .await
    else {
        return;
    };
    let app = app_on(&db).spawn().await;

    // Both paths, the address in varying case: PostgreSQL makes the later inserts wait for the
    // first transaction, then refuses them with a unique violation.
    let requests = (0..16).map(|i| {
        let path = if i % 2 == 0 {
            "/register/async"
        } else {
            "/register/sync"
        };
        let email = if i % 3 == 0 {
            "Race@Example.com"
        } else {
            "race@example.com"
        };
        app.register(path, email)
    });
    let statuses: Vec<u16> = join_all(requests)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();

    let created = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!(
        (created, refused),
        (1, statuses.len() - 1),
        "one 201, the rest 409: {statuses:?}"
    );
    assert_eq!(app.user_count().await, 1);
    let jobs = app.job_count().await;
    assert!(
        jobs == 0 || jobs == CONSUMERS,
        "the winner's jobs only (none when the sync path won): {jobs}"
    );
    app.stop().await;
}

/// Runs `signup-queue <args>` with `DATABASE_URL` pointing where no server listens; returns its
/// exit status, stdout and stderr.
async fn run_against_nothing(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_signup-queue"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x")
        .env("SMTP_URL", "smtp://127.0.0.1:1")
        .env("BIND", "127.0.0.1:0")
        .env("ADMIN_BIND", "off")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`signup-queue {}` did not give up within 30 s",
                args.join(" ")
            )
        })
        .expect("the binary runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts one line on stderr naming the server and why it cannot be reached.
fn assert_one_line_naming_the_server_and_the_cause(what: &str, stderr: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line on stderr, got:\n{stderr}");
    assert!(
        lines[0].contains("127.0.0.1:1"),
        "{what}: names the server: {}",
        lines[0]
    );
    assert!(
        lines[0].contains("Connection refused"),
        "{what}: says why: {}",
        lines[0]
    );
}

/// Needs no server (nothing listens on port 1), so it always runs.
#[tokio::test]
async fn an_unreachable_server_at_start_is_one_line_naming_it_and_the_cause() {
    for command in ["serve", "web", "worker"] {
        let (status, stdout, stderr) = run_against_nothing(&[command]).await;

        assert!(!status.success(), "{command}: exits non-zero");
        assert!(stdout.is_empty(), "{command}: nothing on stdout: {stdout}");
        assert_one_line_naming_the_server_and_the_cause(command, &stderr);
    }
}

/// The operator commands open the database another way (`db::open_existing`, no create); they
/// too name the server and the real cause at once (not the pool's "pool timed out" after 3 s).
#[tokio::test]
async fn the_jobs_command_names_the_server_and_the_cause_too() {
    let (status, _, stderr) = run_against_nothing(&["jobs", "stats"]).await;

    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_one_line_naming_the_server_and_the_cause("jobs stats", &stderr);
}

/// What one registration attempt came to.
#[derive(Debug)]
struct Attempt {
    status: Option<u16>,
    body: serde_json::Value,
    took: Duration,
}

/// Registers users one after another through `base` until `stop` is set.
async fn register_until(
    client: reqwest::Client,
    base: String,
    prefix: String,
    stop: Arc<AtomicBool>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let body = serde_json::json!({"email": format!("{prefix}{i}@example.com"), "password": "correct horse"});
        let response = client
            .post(format!("{base}/register/async"))
            .json(&body)
            .send()
            .await;
        let (status, body) = match response {
            Ok(response) => {
                let status = response.status().as_u16();
                (Some(status), response.json().await.unwrap_or_default())
            }
            Err(e) => (None, serde_json::json!(e.to_string())),
        };
        attempts.push(Attempt {
            status,
            body,
            took: started.elapsed(),
        });
        i += 1;
    }
    attempts
}

/// Probes `/health` every 100 ms until `stop` is set: (status or none, how long it took).
async fn probe_health_until(
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
) -> Vec<(Option<u16>, Duration)> {
    let mut probes = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let status = client
            .get(&url)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        probes.push((status, started.elapsed()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    probes
}

async fn all_jobs_done(pool: &Db) -> (bool, Vec<inspect::QueueStats>) {
    let stats = inspect::stats(pool).await.expect("stats");
    let done = stats
        .iter()
        .all(|q| q.pending + q.running + q.retrying + q.failed == 0);
    (done, stats)
}

/// The server drops every connection of the app (as a restart does) several times while
/// registrations flow: a request succeeds or fails fast with 503, `/health` keeps answering, and
/// afterwards every registered user has its mail and every job is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_by_the_server_give_fast_503s_at_worst_and_lose_no_job() {
    const FAST: Duration = Duration::from_secs(5);
    let Some(db) = pg_or_skip(
        "app::postgres::connections_dropped_by_the_server_give_fast_503s_at_worst_and_lose_no_job",
    )
    .await
    else {
        return;
    };
    let sink = SmtpSink::start(SinkConfig {
        latency: Duration::from_millis(10),
        max_sessions: None,
    })
    .await
    .expect("sink");
    let env = [
        ("DATABASE_URL", db.url().to_owned()),
        ("SMTP_URL", sink.smtp_url()),
    ];
    let mut serve = child::start("serve", &env).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|c| {
            tokio::spawn(register_until(
                client.clone(),
                serve.url(""),
                format!("flow{c}-"),
                Arc::clone(&stop),
            ))
        })
        .collect();
    let health = tokio::spawn(probe_health_until(
        client.clone(),
        serve.url("/health"),
        Arc::clone(&stop),
    ));

    let mut admin = PgConnection::connect(db.url()).await.expect("admin");
    let mut terminated = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(db.name())
        .fetch_all(&mut admin)
        .await
        .expect("terminate the app's connections");
        terminated += killed.len();
    }
    // Registrations go on after the last blow.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let attempts: Vec<Attempt> = join_all(load)
        .await
        .into_iter()
        .flat_map(|task| task.expect("load task"))
        .collect();
    let probes = health.await.expect("health task");

    assert!(terminated > 0, "the blows landed");
    let wrong: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| {
            let fast_503 =
                a.status == Some(503) && a.body["error"]["code"] == "database_unavailable";
            !(a.status == Some(201) || fast_503) || a.took > FAST
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "every registration is a 201 or a fast 503 database_unavailable (never a 500, never \
         past {FAST:?}); {} of {} were not: {wrong:#?}\nserver log:\n{}",
        wrong.len(),
        attempts.len(),
        serve.log_text()
    );
    let registered: Vec<i64> = attempts
        .iter()
        .filter(|a| a.status == Some(201))
        .filter_map(|a| a.body["user_id"].as_i64())
        .collect();
    let unavailable = attempts.iter().filter(|a| a.status == Some(503)).count();
    println!(
        "{terminated} connections terminated; {} registered, {unavailable} answered 503",
        registered.len()
    );
    assert!(
        attempts.iter().rev().take(4).any(|a| a.status == Some(201)),
        "registrations succeed again once the connections are back"
    );
    let slow_or_silent: Vec<_> = probes
        .iter()
        .filter(|(status, took)| !matches!(status, Some(200 | 503)) || *took > FAST)
        .collect();
    assert!(
        slow_or_silent.is_empty(),
        "/health answers 200 or 503 within {FAST:?}: {slow_or_silent:?}"
    );

    wait_until(
        "every registered user's welcome mail",
        Duration::from_secs(60),
        || {
            let sent = deliveries(&sink);
            registered
                .iter()
                .all(|id| sent.contains_key(&welcome_id(*id)))
        },
    )
    .await;
    let pool = signup_queue::db::open_existing(db.url())
        .await
        .expect("database");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut done, mut stats) = all_jobs_done(&pool).await;
    while !done && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (done, stats) = all_jobs_done(&pool).await;
    }
    assert!(
        done,
        "no job left pending, running, retrying or failed: {stats:#?}\nserver log:\n{}",
        serve.log_text()
    );
    let orphans: i64 = with_db!(&pool, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM users u WHERE NOT EXISTS \
         (SELECT 1 FROM apalis.jobs j WHERE j.idempotency_key = 'welcome_email:' || u.id)",
    )
    .fetch_one(pool)
    .await
    .expect("count"));
    assert_eq!(
        orphans, 0,
        "every stored user has its jobs (one transaction)"
    );
    pool.close().await;
    serve.sigterm();
    assert!(serve.wait_exit(Duration::from_secs(30)).await.success());
}

/// A `web` and a `worker` process share nothing but the database. Polling is slowed to 30 s, so a
/// mail within seconds can only come from the insert's notification (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_mails_what_a_separate_web_process_registered() {
    let Some(db) =
        pg_or_skip("app::postgres::a_worker_process_mails_what_a_separate_web_process_registered")
            .await
    else {
        return;
    };
    let sink = SmtpSink::start(SinkConfig {
        latency: Duration::ZERO,
        max_sessions: None,
    })
    .await
    .expect("sink");
    let env = [
        ("DATABASE_URL", db.url().to_owned()),
        ("SMTP_URL", sink.smtp_url()),
        ("POLL_INTERVAL", "30s".to_owned()),
    ];
    let mut web = child::start("web", &env).await;
    let mut worker = child::start("worker", &env).await;
    let client = reqwest::Client::new();
    let register = |email: &'static str| {
        let request = client
            .post(web.url("/register/async"))
            .json(&serde_json::json!({"email": email, "password": "correct horse"}))
            .send();
        async move {
            let response = request.await.expect("web answers");
            assert_eq!(response.status(), 201);
            let body: serde_json::Value = response.json().await.expect("json");
            body["user_id"].as_i64().expect("user id")
        }
    };

    // The first may be committed before the worker listens: the poll finds it at the latest.
    let first = register("first@example.com").await;
    wait_until("the first welcome mail", Duration::from_secs(45), || {
        deliveries(&sink).contains_key(&welcome_id(first))
    })
    .await;
    let second = register("second@example.com").await;
    let registered_at = Instant::now();
    wait_until(
        "the second welcome mail, woken by the notification",
        Duration::from_secs(5),
        || deliveries(&sink).contains_key(&welcome_id(second)),
    )
    .await;
    println!(
        "second mail {:?} after its registration",
        registered_at.elapsed()
    );

    worker.sigterm();
    web.sigterm();
    assert!(worker.wait_exit(Duration::from_secs(30)).await.success());
    assert!(web.wait_exit(Duration::from_secs(30)).await.success());
}
