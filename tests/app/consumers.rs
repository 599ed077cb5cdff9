//! One event, many consumers: each runs once per registration, a failing one holds up no other,
//! a new one needs no change elsewhere, and messages are checked for type and version; on SQLite
//! and on PostgreSQL.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use signup_queue::{
    consumers::{Consumer, ConsumerError, JobInfo},
    db::Db,
    events::{Envelope, UserRegistered},
    with_db,
};
use sqlx::AssertSqlSafe;

use crate::support::{
    db::{self, jobs_table, redeliver, refuse_inserts},
    *,
};

const WAIT: Duration = Duration::from_secs(15);

/// `(queue, job id)` of every job published for `user_id`, by queue.
async fn job_ids(app: &TestApp, user_id: i64) -> Vec<(String, String)> {
    let sql = format!(
        "SELECT job_type, id FROM {} WHERE idempotency_key LIKE '%:' || $1 ORDER BY job_type",
        jobs_table(&app.pool)
    );
    with_db!(&app.pool, pool => sqlx::query_as(AssertSqlSafe(sql))
        .bind(user_id.to_string())
        .fetch_all(pool)
        .await
        .expect("jobs"))
}

async fn every_consumer_runs_once_per_registration(db: TestDb) {
    let app = app_on(&db).spawn().await;
    let inbox = app.inbox.clone().expect("inbox");
    let body: serde_json::Value = app
        .register("/register", "many@example.com")
        .await
        .json()
        .await
        .expect("json");
    let user_id = body["user_id"].as_i64().expect("user id");

    let jobs = job_ids(&app, user_id).await;
    let queues: Vec<&str> = jobs.iter().map(|(q, _)| q.as_str()).collect();
    assert_eq!(queues, vec!["audit_log", "signup_coupon", "welcome_email"]);
    for (_, id) in &jobs {
        app.wait_for_job(id, "done", WAIT).await;
    }
    let mails = wait_for_mails(&inbox, 2, WAIT).await;
    let coupon_mail = mails
        .iter()
        .find(|m| m.subject == "Your signup coupon")
        .expect("coupon mail");
    let code: String = with_db!(&app.pool, pool => {
        sqlx::query_scalar("SELECT code FROM coupons WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await
            .expect("coupon row")
    });
    assert!(
        code.starts_with("WELCOME-") && coupon_mail.text.contains(&code),
        "the mail carries the stored code"
    );
    assert!(mails.iter().any(|m| m.subject == "Welcome to Signup Queue"));
    let audit: (String, i64) = with_db!(&app.pool, pool => {
        sqlx::query_as("SELECT event_type, user_id FROM audit_events")
            .fetch_one(pool)
            .await
            .expect("audit row")
    });
    assert_eq!(audit, ("user_registered".to_owned(), user_id));

    // Every job runs again, as after a crash: nothing is sent or written twice.
    redeliver(&app, None).await;
    for (_, id) in &jobs {
        let job = app.wait_for_job(id, "done", WAIT).await;
        assert_eq!(job["attempts"], 2);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        inbox.messages().len(),
        2,
        "no second welcome or coupon mail"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM coupons").await, 1);
    app.stop().await;
}
on_both_databases!(every_consumer_runs_once_per_registration);

async fn a_failing_consumer_holds_up_neither_the_others_nor_the_registration(db: TestDb) {
    let app = app_on(&db).spawn().await;
    let inbox = app.inbox.clone().expect("inbox");
    refuse_inserts(&app, "coupons", "coupon service down").await;

    let response = app.register("/register", "resilient@example.com").await;

    assert_eq!(response.status(), 201);
    let user_id = response.json::<serde_json::Value>().await.expect("json")["user_id"]
        .as_i64()
        .expect("user id");
    let jobs = job_ids(&app, user_id).await;
    let job = |queue: &str| {
        jobs.iter()
            .find(|(q, _)| q == queue)
            .map(|(_, id)| id.clone())
            .expect("job")
    };
    let coupon = app
        .wait_for_job(&job("signup_coupon"), "retrying", WAIT)
        .await;
    assert!(
        coupon["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("coupon service down"),
        "{coupon}"
    );
    app.wait_for_job(&job("welcome_email"), "done", WAIT).await;
    app.wait_for_job(&job("audit_log"), "done", WAIT).await;
    wait_for_welcome_mails(&inbox, 1, WAIT).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events").await, 1);
    app.stop().await;
}
on_both_databases!(a_failing_consumer_holds_up_neither_the_others_nor_the_registration);

/// A consumer defined here, outside the application: it only records what it sees.
struct Recorder(Arc<Mutex<Vec<(String, u32, i64)>>>);

#[async_trait::async_trait]
impl Consumer for Recorder {
    fn name(&self) -> &'static str {
        "test_recorder"
    }
    async fn handle(
        &self,
        event: &Envelope<UserRegistered>,
        _job: &JobInfo,
    ) -> Result<(), ConsumerError> {
        if let Ok(mut seen) = self.0.lock() {
            seen.push((event.kind.clone(), event.version, event.payload.user_id));
        }
        Ok(())
    }
}

async fn a_new_consumer_receives_events_without_changes_elsewhere(db: TestDb) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = app_on(&db)
        .consumer(Arc::new(Recorder(Arc::clone(&seen))))
        .spawn()
        .await;

    let body: serde_json::Value = app
        .register("/register", "new@example.com")
        .await
        .json()
        .await
        .expect("json");
    let user_id = body["user_id"].as_i64().expect("user id");

    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.lock().map(|s| s.is_empty()).unwrap_or(true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new consumer got nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen.lock().expect("seen").clone(),
        vec![("user_registered".to_owned(), 1, user_id)]
    );
    assert_eq!(app.job_count().await, CONSUMERS + 1);
    app.stop().await;
}
on_both_databases!(a_new_consumer_receives_events_without_changes_elsewhere);

/// A job written straight into the storage, past the application's publishing (as an older or
/// newer producer would write it).
async fn push_raw(app: &TestApp, queue: &str, message: serde_json::Value) -> String {
    let id = ulid::Ulid::generate().to_string();
    let task = apalis::prelude::TaskBuilder::new(serde_json::to_vec(&message).expect("bytes"))
        .task_id(apalis::prelude::TaskId::from_string(id.clone()))
        .max_attempts(3)
        .build();
    match &app.pool {
        Db::Sqlite(pool) => {
            let mut conn = pool.acquire().await.expect("connection");
            apalis_sqlite::queries::push_tasks(&mut *conn, queue, &[task])
                .await
                .expect("push");
        }
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await.expect("connection");
            apalis_postgres::queries::push_tasks(&mut *conn, queue, vec![task])
                .await
                .expect("push");
        }
    }
    id
}

async fn an_unknown_version_fails_its_job_with_a_clear_error_and_the_legacy_shape_still_works(
    db: TestDb,
) {
    let app = app_on(&db).spawn().await;
    let inbox = app.inbox.clone().expect("inbox");
    db::execute(
        &app,
        "INSERT INTO users (id, email, email_key, password_hash) VALUES (42, 'old@example.com', 'old@example.com', 'x')",
        None,
    )
    .await;

    let future = push_raw(
        &app,
        "audit_log",
        serde_json::json!({"id": "01FUTURE", "type": "user_registered", "version": 2,
                           "occurred_at": "2026-11-25T00:00:00Z", "payload": {"user_id": 42, "plan": "pro"}}),
    )
    .await;
    let legacy = push_raw(
        &app,
        "welcome_email",
        serde_json::json!({"task": "send_welcome_email", "user_id": 42}),
    )
    .await;
    app.client
        .get(app.url("/health"))
        .send()
        .await
        .expect("poke");

    let failed = app.wait_for_job(&future, "failed", WAIT).await;
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("unsupported version 2"),
        "{failed}"
    );
    assert_eq!(
        failed["attempts"], 1,
        "retrying cannot help: no second attempt"
    );
    app.wait_for_job(&legacy, "done", WAIT).await;
    let mails = wait_for_welcome_mails(&inbox, 1, WAIT).await;
    assert_eq!(mails[0].to, vec!["old@example.com".to_owned()]);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events").await, 0);
    app.stop().await;
}
on_both_databases!(
    an_unknown_version_fails_its_job_with_a_clear_error_and_the_legacy_shape_still_works
);
