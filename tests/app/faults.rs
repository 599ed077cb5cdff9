//! Faults on real processes and sockets: a worker killed with kill -9, a mail server that stays
//! down, SIGTERM during a burst, and a burst of concurrent registrations; each on SQLite (one
//! file) and on PostgreSQL.

use std::time::Duration;

use futures::future::join_all;
use signup_queue::{Role, db::Db, queue::inspect, with_db};
use signup_queue_tools::smtp_sink::{SinkConfig, SmtpSink};

use crate::support::{child, db, *};

/// Registers `n` users through `url_of(path)`, `concurrency` at a time; returns (status, body).
async fn register_many(
    client: &reqwest::Client,
    base: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Vec<(u16, serde_json::Value)> {
    let mut results = Vec::with_capacity(n);
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(concurrency) {
        let requests = chunk.iter().map(|i| {
            let body = serde_json::json!({"email": format!("{prefix}{i}@example.com"), "password": "correct horse"});
            let request = client.post(format!("{base}/register/async")).json(&body).send();
            async move {
                match request.await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        (status, response.json().await.unwrap_or(serde_json::Value::Null))
                    }
                    // Refused connection: the server was already shutting down.
                    Err(_) => (0, serde_json::Value::Null),
                }
            }
        });
        results.extend(join_all(requests).await);
    }
    results
}

async fn welcome_jobs_done(pool: &Db) -> i64 {
    inspect::stats(pool)
        .await
        .expect("stats")
        .iter()
        .filter(|q| q.queue == "welcome_email")
        .map(|q| q.done)
        .sum()
}

async fn a_worker_killed_with_sigkill_loses_no_job(db: TestDb) {
    const USERS: usize = 200;
    const WORKERS: usize = 8;
    let sink = SmtpSink::start(SinkConfig {
        latency: Duration::from_millis(50),
        max_sessions: None,
    })
    .await
    .expect("sink");
    let database_url = db.url().to_owned();
    let web = app_on(&db)
        .smtp(sink.smtp_url())
        .role(Role::Web)
        .spawn()
        .await;
    let results = register_many(&web.client, &web.url(""), "crash", USERS, 16).await;
    assert!(
        results.iter().all(|(status, _)| *status == 201),
        "all registrations accepted"
    );

    let env = [
        ("DATABASE_URL", database_url.clone()),
        ("SMTP_URL", sink.smtp_url()),
        ("WORKERS", WORKERS.to_string()),
        ("WORKER_HEARTBEAT", "1s".to_owned()),
    ];
    let mut first = child::start("worker", &env).await;
    wait_until("first mails", Duration::from_secs(30), || {
        sink.accepted_count() >= 40
    })
    .await;
    first.sigkill().await;
    let sent_before_kill = sink.accepted_count();
    assert!(
        sent_before_kill < USERS,
        "the kill landed while jobs were left"
    );

    let recovery_started = std::time::Instant::now();
    let mut second = child::start("worker", &env).await;
    wait_until("every user mailed", Duration::from_secs(60), || {
        deliveries(&sink).len() >= USERS
    })
    .await;
    println!(
        "killed after {sent_before_kill} mails; all {USERS} delivered {:?} after the restart",
        recovery_started.elapsed()
    );

    let counts = deliveries(&sink);
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    assert_eq!(counts.len(), USERS, "one distinct welcome mail per user");
    assert!(
        duplicates <= WORKERS,
        "duplicates ({duplicates}) are bounded by the jobs in flight at the kill ({WORKERS})"
    );
    let mut done = welcome_jobs_done(&web.pool).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while done < USERS as i64 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        done = welcome_jobs_done(&web.pool).await;
    }
    assert_eq!(done, USERS as i64, "every job ends done");
    second.sigterm();
    assert!(second.wait_exit(Duration::from_secs(30)).await.success());
    web.stop().await;
}
on_both_databases!(a_worker_killed_with_sigkill_loses_no_job, multi_thread);

async fn a_job_that_exhausts_its_attempts_ends_failed_with_its_last_error(db: TestDb) {
    let app = app_on(&db)
        .smtp(format!("smtp://127.0.0.1:{}", unused_port()))
        .settings(|s| s.job_max_attempts = 2)
        .spawn()
        .await;

    let body: serde_json::Value = app
        .register("/register", "lost@example.com")
        .await
        .json()
        .await
        .expect("json");
    let job_id = body["job_id"].as_str().expect("job id");

    let job = app
        .wait_for_job(job_id, "failed", Duration::from_secs(20))
        .await;
    assert_eq!(job["attempts"], 2);
    let last_error = job["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("Connection refused") || last_error.contains("mail server"),
        "{job}"
    );
    assert_eq!(app.user_count().await, 1, "the user stays registered");
    app.stop().await;
}
on_both_databases!(a_job_that_exhausts_its_attempts_ends_failed_with_its_last_error);

async fn sigterm_during_a_burst_exits_cleanly_and_loses_nothing(db: TestDb) {
    let sink = SmtpSink::start(SinkConfig {
        latency: Duration::from_millis(100),
        max_sessions: None,
    })
    .await
    .expect("sink");
    let database_url = db.url().to_owned();
    let env = [
        ("DATABASE_URL", database_url.clone()),
        ("SMTP_URL", sink.smtp_url()),
        ("WORKERS", "2".to_owned()),
    ];
    let mut serve = child::start("serve", &env).await;
    let base = serve.url("");
    let client = reqwest::Client::new();

    let burst = tokio::spawn({
        let client = client.clone();
        let base = base.clone();
        async move { register_many(&client, &base, "term", 120, 8).await }
    });
    wait_until("some mails sent", Duration::from_secs(30), || {
        sink.accepted_count() >= 5
    })
    .await;
    serve.sigterm();
    let status = serve.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "exit 0 after SIGTERM; log:\n{}",
        serve.log_text()
    );
    let results = burst.await.expect("burst task");
    let accepted: Vec<i64> = results
        .iter()
        .filter(|(status, _)| *status == 201)
        .filter_map(|(_, body)| body["user_id"].as_i64())
        .collect();
    assert!(!accepted.is_empty());
    assert!(
        results
            .iter()
            .all(|(status, _)| *status == 201 || *status == 0),
        "a request either completed or was never accepted: {:?}\nserver log:\n{}",
        results.iter().map(|r| r.0).collect::<Vec<_>>(),
        serve.log_text()
    );

    // Every accepted registration has its row and its job; a second process drains the rest.
    let pool = signup_queue::db::open_existing(&database_url)
        .await
        .expect("db");
    let users: i64 = with_db!(&pool, pool => sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await
        .expect("count"));
    let jobs: i64 = inspect::stats(&pool)
        .await
        .expect("stats")
        .iter()
        .map(|q| q.pending + q.running + q.retrying + q.done + q.failed)
        .sum();
    assert_eq!(users, accepted.len() as i64);
    assert_eq!(
        jobs,
        CONSUMERS * accepted.len() as i64,
        "one job per consumer"
    );
    pool.close().await;

    let mut worker = child::start("worker", &env).await;
    wait_until("the rest drained", Duration::from_secs(60), || {
        deliveries(&sink).len() >= accepted.len()
    })
    .await;
    for user_id in &accepted {
        let id = format!("<welcome-{user_id}@signup-queue.local>");
        assert!(
            deliveries(&sink).contains_key(&id),
            "user {user_id} got no mail"
        );
    }
    worker.sigterm();
    assert!(worker.wait_exit(Duration::from_secs(30)).await.success());
}
on_both_databases!(
    sigterm_during_a_burst_exits_cleanly_and_loses_nothing,
    multi_thread
);

async fn three_hundred_concurrent_registrations(db: TestDb) {
    let app = app_on(&db).spawn().await;
    let requests = (0..300).map(|i| {
        app.post_json(
            "/register/async",
            serde_json::json!({"email": format!("load{i}@example.com"), "password": "correct horse"}),
        )
    });

    let statuses: Vec<u16> = join_all(requests)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();

    assert!(
        statuses.iter().all(|s| *s == 201),
        "every registration accepted (on SQLite: no 500 'database is locked'): {statuses:?}"
    );
    assert_eq!(app.user_count().await, 300);
    assert_eq!(
        app.job_count().await,
        CONSUMERS * 300,
        "one job per consumer"
    );
    let orphans = db::count(
        &app,
        "SELECT COUNT(*) FROM users u WHERE NOT EXISTS \
         (SELECT 1 FROM {jobs} j WHERE j.idempotency_key = 'welcome_email:' || u.id)",
    )
    .await;
    assert_eq!(orphans, 0, "every user has its job");
    app.stop().await;
}
on_both_databases!(three_hundred_concurrent_registrations, multi_thread);
