//! Registration end to end: real app, real sockets, real SMTP server, on a temporary SQLite file
//! and on a fresh PostgreSQL database (see `support::db`).

use std::time::Duration;

use serde_json::json;
use signup_queue::dev_inbox::DevInbox;

use crate::support::{
    db::{redeliver, refuse_inserts},
    *,
};

const MAIL_WAIT: Duration = Duration::from_secs(10);

async fn async_register_answers_at_once_then_the_welcome_mail_arrives(db: TestDb) {
    let app = app_on(&db).spawn().await;
    let inbox = app.inbox.clone().expect("embedded inbox");

    let response = app.register("/register", "ada@example.com").await;

    assert_eq!(response.status(), 201);
    let timing = response
        .headers()
        .get("server-timing")
        .expect("Server-Timing header");
    let timing = timing.to_str().unwrap_or_default().to_owned();
    assert!(
        timing.starts_with("hash;dur=")
            && timing.contains(", db;dur=")
            && timing.contains("app;dur="),
        "the phases, then the total: {timing}"
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["mode"], "async");
    assert!(body["user_id"].as_i64().is_some());
    assert!(body["elapsed_ms"].as_f64().is_some());
    let job_id = body["job_id"].as_str().expect("job id").to_owned();

    let user_id = body["user_id"].as_i64().expect("user id");
    let mails = wait_for_welcome_mails(&inbox, 1, MAIL_WAIT).await;
    assert_eq!(
        mails[0].to,
        vec!["Ada Lovelace <ada@example.com>".to_owned()]
    );
    assert_eq!(
        mails[0].message_id.as_deref(),
        Some(format!("<welcome-{user_id}@signup-queue.local>").as_str()),
        "a stable Message-ID derived from the user"
    );
    assert_eq!(mails[0].subject, "Welcome to Signup Queue");
    assert!(mails[0].text.contains("Hello Ada Lovelace"));
    assert!(mails[0].html.contains("Hello Ada Lovelace"));
    let job = app.wait_for_job(&job_id, "done", MAIL_WAIT).await;
    assert_eq!(job["attempts"], 1);

    let (status, messages) = app.get_json("/dev/mailbox/api/messages").await;
    assert_eq!(status, 200);
    let subjects: Vec<&str> = messages
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|m| m["subject"].as_str())
        .collect();
    assert!(
        subjects.contains(&"Welcome to Signup Queue"),
        "{subjects:?}"
    );
    app.stop().await;
}
on_both_databases!(async_register_answers_at_once_then_the_welcome_mail_arrives);

async fn sync_register_answers_after_the_mail_was_handed_over(db: TestDb) {
    let app = app_on(&db).spawn().await;
    let inbox = app.inbox.clone().expect("embedded inbox");

    let response = app.register("/register/sync", "bob@example.com").await;

    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["mode"], "sync");
    assert!(body["job_id"].is_null());
    // The SMTP server accepted the mail before the response was written; its parser may lag a
    // few milliseconds behind the acceptance.
    let mails = wait_for_mails(&inbox, 1, Duration::from_secs(2)).await;
    assert_eq!(
        mails[0].to,
        vec!["Ada Lovelace <bob@example.com>".to_owned()]
    );
    assert_eq!(
        app.job_count().await,
        0,
        "sync registration enqueues nothing"
    );
    app.stop().await;
}
on_both_databases!(sync_register_answers_after_the_mail_was_handed_over);

async fn sync_register_fails_with_502_when_the_mail_server_is_down_but_the_user_row_stays(
    db: TestDb,
) {
    let port = unused_port();
    let app = app_on(&db)
        .smtp(format!("smtp://127.0.0.1:{port}"))
        .spawn()
        .await;

    let response = app.register("/register/sync", "carol@example.com").await;

    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "mail_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("was registered")
    );
    assert_eq!(
        app.user_count().await,
        1,
        "the coupling problem: the row is written, the mail is not"
    );
    app.stop().await;
}
on_both_databases!(
    sync_register_fails_with_502_when_the_mail_server_is_down_but_the_user_row_stays
);

async fn async_register_succeeds_while_the_mail_server_is_down_and_mail_goes_out_when_it_is_back(
    db: TestDb,
) {
    let port = unused_port();
    let app = app_on(&db)
        .smtp(format!("smtp://127.0.0.1:{port}"))
        .spawn()
        .await;
    let first_attempt_at = unix_now();

    let response = app.register("/register/async", "dave@example.com").await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("json");
    let job_id = body["job_id"].as_str().expect("job id").to_owned();

    let retrying = app.wait_for_job(&job_id, "retrying", MAIL_WAIT).await;
    assert!(
        retrying["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{retrying}"
    );
    let row = signup_queue::queue::find_job(&app.pool, &job_id)
        .await
        .expect("job query")
        .expect("job row");
    assert!(
        row.run_at > first_attempt_at,
        "the backoff is kept in the job row: run_at {} is later than the first attempt ({first_attempt_at})",
        row.run_at
    );

    let inbox = DevInbox::start_on(port, std::time::Duration::ZERO)
        .await
        .expect("SMTP server comes up");
    let mails = wait_for_welcome_mails(&inbox, 1, Duration::from_secs(20)).await;
    assert_eq!(
        mails[0].to,
        vec!["Ada Lovelace <dave@example.com>".to_owned()]
    );
    let done = app.wait_for_job(&job_id, "done", MAIL_WAIT).await;
    assert!(done["attempts"].as_i64().unwrap_or_default() >= 2, "{done}");
    inbox.stop();
    app.stop().await;
}
on_both_databases!(
    async_register_succeeds_while_the_mail_server_is_down_and_mail_goes_out_when_it_is_back
);

async fn the_same_address_in_another_case_is_a_duplicate(db: TestDb) {
    let app = app_on(&db).spawn().await;
    assert_eq!(
        app.register("/register", "erin@example.com").await.status(),
        201
    );

    let response = app.register("/register", "  ERIN@Example.com ").await;

    assert_eq!(response.status(), 409);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "email_taken");
    assert_eq!(body["error"]["field"], "email");
    assert_eq!(app.user_count().await, 1);
    assert_eq!(app.job_count().await, CONSUMERS, "one job per consumer");
    app.stop().await;
}
on_both_databases!(the_same_address_in_another_case_is_a_duplicate);

async fn rejected_requests_answer_the_documented_status_and_write_nothing(db: TestDb) {
    let app = app_on(&db).spawn().await;
    // (what, content type, body, expected status, field named in the error)
    type Case = (
        &'static str,
        &'static str,
        Vec<u8>,
        u16,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "invalid email",
            "application/json",
            br#"{"email":"not-an-address","password":"correct horse"}"#.to_vec(),
            422,
            Some("email"),
        ),
        (
            "short password",
            "application/json",
            br#"{"email":"f@example.com","password":"short"}"#.to_vec(),
            422,
            Some("password"),
        ),
        (
            "missing email",
            "application/json",
            br#"{"password":"correct horse"}"#.to_vec(),
            422,
            Some("email"),
        ),
        (
            "malformed JSON",
            "application/json",
            br#"{"email": "f@example.com","#.to_vec(),
            400,
            None,
        ),
        (
            "wrong content type",
            "text/plain",
            b"email=f@example.com".to_vec(),
            415,
            None,
        ),
        (
            "body too large",
            "application/json",
            vec![b' '; 20 * 1024],
            413,
            None,
        ),
    ];
    for (what, content_type, body, status, field) in cases {
        for path in ["/register/async", "/register/sync"] {
            let response = app.post_raw(path, content_type, body.clone()).await;
            assert_eq!(response.status().as_u16(), status, "{what} on {path}");
            let body: serde_json::Value = response.json().await.expect("json error body");
            assert!(body["error"]["code"].is_string(), "{what}: {body}");
            assert!(body["error"]["message"].is_string(), "{what}: {body}");
            if let Some(field) = field {
                assert_eq!(body["error"]["field"], field, "{what}");
            }
        }
    }
    assert_eq!(app.user_count().await, 0);
    assert_eq!(app.job_count().await, 0);
    app.stop().await;
}
on_both_databases!(rejected_requests_answer_the_documented_status_and_write_nothing);

async fn a_delivered_job_run_again_sends_nothing(db: TestDb) {
    let app = app_on(&db).spawn().await;
    let inbox = app.inbox.clone().expect("embedded inbox");
    let body: serde_json::Value = app
        .register("/register", "gina@example.com")
        .await
        .json()
        .await
        .expect("json");
    let job_id = body["job_id"].as_str().expect("job id").to_owned();
    app.wait_for_job(&job_id, "done", MAIL_WAIT).await;
    wait_for_welcome_mails(&inbox, 1, MAIL_WAIT).await;

    // Put the finished job back in the queue, as a re-delivery after a crash would.
    redeliver(&app, Some(&job_id)).await;
    let rerun = app.wait_for_job(&job_id, "done", MAIL_WAIT).await;

    assert_eq!(rerun["attempts"], 2, "the job ran a second time");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let welcome = inbox
        .messages()
        .into_iter()
        .filter(|m| m.subject == "Welcome to Signup Queue")
        .count();
    assert_eq!(welcome, 1, "but no second welcome mail was sent");
    app.stop().await;
}
on_both_databases!(a_delivered_job_run_again_sends_nothing);

async fn when_the_enqueue_fails_the_user_row_is_rolled_back(db: TestDb) {
    let app = app_on(&db).spawn().await;
    refuse_inserts(&app, "{jobs}", "queue unavailable").await;

    let response = app.register("/register/async", "hank@example.com").await;

    assert_eq!(response.status(), 500);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "internal");
    assert_eq!(
        app.user_count().await,
        0,
        "user and job commit together or not at all"
    );
    app.stop().await;
}
on_both_databases!(when_the_enqueue_fails_the_user_row_is_rolled_back);

async fn a_browser_form_gets_an_html_page(db: TestDb) {
    let app = app_on(&db).spawn().await;

    let response = app
        .post_raw(
            "/register/async",
            "application/x-www-form-urlencoded",
            "email=ivy%40example.com&password=correct+horse&name=",
        )
        .await;

    assert_eq!(response.status(), 201);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let page = response.text().await.expect("html");
    assert!(page.contains("Registered"));

    let response = app
        .post_raw(
            "/register/sync",
            "application/x-www-form-urlencoded",
            "email=ivy%40example.com&password=correct+horse",
        )
        .await;
    assert_eq!(response.status(), 409);
    assert!(
        response
            .text()
            .await
            .expect("html")
            .contains("already registered")
    );
    app.stop().await;
}
on_both_databases!(a_browser_form_gets_an_html_page);

async fn health_and_unknown_routes(db: TestDb) {
    let app = app_on(&db).spawn().await;
    assert_eq!(
        app.get_json("/health").await,
        (200, json!({"status": "ok"}))
    );
    let (status, body) = app.get_json("/api/jobs/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = app.get_json("/no/such/page").await;
    assert_eq!(status, 404);
    let response = app
        .client
        .get(app.url("/register"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 405);
    app.stop().await;
}
on_both_databases!(health_and_unknown_routes);

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
