//! Prometheus metrics after real traffic, and one registration followed from HTTP to SMTP by
//! its request id. Alone in its test binary, not in `tests/app/`: the metrics recorder is one per
//! process, so every app a shared binary starts would count into it, and the exact deltas below
//! (two jobs, five mails, two 201s) would include other tests' traffic. It runs on SQLite and on
//! PostgreSQL, one after the other.

mod support;

use std::time::Duration;

use signup_queue::with_db;
use sqlx::AssertSqlSafe;
use support::{db, logs, *};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(app.admin_url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

/// The value of the first sample whose line starts with `series` (name plus labels).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics_count_requests_jobs_and_mails_and_the_request_id_follows_the_job(db: TestDb) {
    // Both variants count into the one recorder: one at a time.
    let _alone = ONE_AT_A_TIME.lock().await;
    let logs = logs::captured();
    let app = app_on(&db).admin(Some(TOKEN)).spawn().await;
    let inbox = app.inbox.clone().expect("inbox");
    let before = scrape(&app).await;

    let first = app.register("/register/async", "m1@example.com").await;
    let request_id = first.headers()["x-request-id"]
        .to_str()
        .expect("header")
        .to_owned();
    let job_id = first.json::<serde_json::Value>().await.expect("json")["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let second = app.register("/register/async", "m2@example.com").await;
    let second_job = second.json::<serde_json::Value>().await.expect("json")["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    assert_eq!(
        app.register("/register/sync", "m3@example.com")
            .await
            .status(),
        201
    );
    assert_eq!(
        app.register("/register/async", "m1@example.com")
            .await
            .status(),
        409
    );
    wait_for_mails(&inbox, 6, Duration::from_secs(10)).await;
    app.wait_for_job(&job_id, "done", Duration::from_secs(10))
        .await;
    app.wait_for_job(&second_job, "done", Duration::from_secs(10))
        .await;
    let after = scrape(&app).await;

    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(delta(r#"jobs_enqueued_total{queue="welcome_email"}"#), 2.0);
    assert_eq!(delta(r#"jobs_started_total{queue="welcome_email"}"#), 2.0);
    assert_eq!(delta(r#"jobs_succeeded_total{queue="welcome_email"}"#), 2.0);
    assert_eq!(
        delta("smtp_send_seconds_count"),
        6.0,
        "two welcome and two coupon mails by workers, one welcome and one coupon inline"
    );
    assert_eq!(
        delta(r#"http_requests_total{route="/register/async",method="POST",status="201"}"#),
        2.0
    );
    assert_eq!(
        delta(r#"http_requests_total{route="/register/async",method="POST",status="409"}"#),
        1.0
    );
    assert!(after.contains("job_queue_wait_seconds_bucket"));
    assert!(after.contains("job_run_seconds_bucket"));
    assert!(
        after.contains(r#"jobs_queue_depth{queue="welcome_email",status="done"} 2"#),
        "{after}"
    );

    let metadata = format!(
        "SELECT CAST(metadata AS TEXT) FROM {} WHERE id = $1",
        db::jobs_table(&app.pool)
    );
    let stored: String = with_db!(&app.pool, pool => {
        sqlx::query_scalar(AssertSqlSafe(metadata))
            .bind(&job_id)
            .fetch_one(pool)
            .await
            .expect("job row")
    });
    assert!(
        stored.contains(&request_id),
        "the job keeps the request id: {stored}"
    );
    let logs = logs::text(&logs);
    assert!(
        logs.lines().any(|l| l.contains("welcome mail sent")
            && l.contains(&request_id)
            && l.contains(&job_id)),
        "the worker's log line names the request and the job"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("user registered") && l.contains(&request_id))
    );
    app.stop().await;
}
on_both_databases!(metrics_count_requests_jobs_and_mails_and_the_request_id_follows_the_job);
