//! The lesson's tools: the development mail server's switches (latency, down, flaky) through the
//! gate in front of the embedded inbox, the fair comparison (the synchronous path runs every
//! consumer inline, so both paths do the same work), and the live inbox. What writes or reads the
//! database (the comparison, a failing consumer, a burst) runs on SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use signup_queue::with_db;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

async fn set_mail_server(app: &TestApp, change: Value) -> Value {
    let response = app.post_json("/dev/mail-server", change).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

fn server_timing(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Waits until `queue`'s job of a queued registration (`body`, its 201 JSON) is `retrying`, and
/// checks its last error names `cause`.
async fn wait_retrying(app: &TestApp, body: &Value, queue: &str, cause: &str) {
    let job = body["jobs"][queue].as_str().expect("the queue's job");
    let retrying = app.wait_for_job(job, "retrying", WAIT).await;
    assert!(
        retrying["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(cause)),
        "{retrying}"
    );
}

async fn jobs_done(app: &TestApp, body: &Value) {
    for (_, id) in body["jobs"].as_object().expect("jobs by queue") {
        app.wait_for_job(id.as_str().expect("job id"), "done", WAIT)
            .await;
    }
}

async fn the_sync_path_does_the_same_work_as_the_async_path_only_earlier(db: TestDb) {
    let app = app_on(&db).spawn().await;
    let inbox = app.inbox().clone();

    let queued = app.register("/register/async", "queued@example.com").await;
    assert_eq!(queued.status(), 201);
    let queued: Value = queued.json().await.expect("json");
    let jobs = queued["jobs"].as_object().expect("jobs");
    assert_eq!(
        jobs.len() as i64,
        CONSUMERS,
        "one job per consumer: {queued}"
    );
    assert_eq!(queued["jobs"]["welcome_email"], queued["job_id"]);
    jobs_done(&app, &queued).await;

    let inline = app.register("/register/sync", "inline@example.com").await;
    assert_eq!(inline.status(), 201);
    let timing = server_timing(&inline);
    for phase in [
        "hash;dur=",
        "db;dur=",
        "welcome_email;dur=",
        "audit_log;dur=",
        "signup_coupon;dur=",
        "app;dur=",
    ] {
        assert!(timing.contains(phase), "{phase} in {timing}");
    }
    let inline: Value = inline.json().await.expect("json");
    assert_eq!(inline["jobs"], json!({}), "no jobs: the work is done");

    for (body, path) in [(&queued, "async"), (&inline, "sync")] {
        let user_id = body["user_id"].as_i64().expect("user id");
        let audit: i64 = with_db!(&app.pool, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_events WHERE user_id = $1 AND event_type = 'user_registered'",
        )
        .bind(user_id)
        .fetch_one(pool)
        .await
        .expect("audit"));
        assert_eq!(audit, 1, "{path}: one audit row");
        let coupon: (String, bool) = with_db!(&app.pool, pool => sqlx::query_as(
            "SELECT code, mailed_at IS NOT NULL FROM coupons WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_one(pool)
        .await
        .expect("a coupon"));
        assert!(
            coupon.0.starts_with("WELCOME-") && coupon.1,
            "{path}: coupon issued and mailed"
        );
        let mode: String = with_db!(&app.pool, pool => sqlx::query_scalar(
            "SELECT mode FROM welcome_deliveries WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_one(pool)
        .await
        .expect("delivery"));
        assert_eq!(mode, path);
    }
    assert_eq!(
        app.job_count().await,
        CONSUMERS,
        "the sync path enqueued nothing"
    );

    let mails = wait_for_mails(&inbox, 4, WAIT).await;
    let to = |who: &str, subject: &str| {
        mails
            .iter()
            .find(|m| m.to.iter().any(|t| t.contains(who)) && m.subject == subject)
            .unwrap_or_else(|| panic!("{subject} to {who}"))
            .clone()
    };
    for subject in [WELCOME_SUBJECT, "Your signup coupon"] {
        let queued_mail = to("queued@", subject);
        let inline_mail = to("inline@", subject);
        assert!(
            queued_mail.text.contains("background worker"),
            "{}",
            queued_mail.text
        );
        assert!(
            inline_mail
                .text
                .contains("inside your registration request"),
            "{}",
            inline_mail.text
        );
        assert!(
            inline_mail
                .html
                .contains("inside your registration request")
        );
        assert!(!inline_mail.text.contains("background worker"));
    }
    app.stop().await;
}
on_both_databases!(the_sync_path_does_the_same_work_as_the_async_path_only_earlier);

#[tokio::test]
async fn the_latency_slows_the_sync_path_and_not_the_async_one() {
    let app = app()
        .settings(|s| s.dev_mail_latency = Duration::from_millis(400))
        .spawn()
        .await;
    let (status, state) = app.get_json("/dev/mail-server").await;
    assert_eq!(status, 200);
    assert_eq!(
        state,
        json!({"latency_ms": 400, "down": false, "flaky_share": 0.0})
    );

    let started = Instant::now();
    let inline = app.register("/register/sync", "slow@example.com").await;
    let took = started.elapsed();
    assert_eq!(inline.status(), 201);
    assert!(
        took >= Duration::from_millis(800),
        "two mails, 400 ms each: {took:?}"
    );
    let timing = server_timing(&inline);
    let phase = |name: &str| -> f64 {
        timing
            .split(", ")
            .find_map(|e| e.strip_prefix(&format!("{name};dur=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {timing}"))
    };
    assert!(
        phase("welcome_email") >= 400.0 && phase("signup_coupon") >= 400.0,
        "{timing}"
    );

    let started = Instant::now();
    let queued = app.register("/register/async", "fast@example.com").await;
    assert_eq!(queued.status(), 201);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    set_mail_server(&app, json!({"latency_ms": 0})).await;
    let started = Instant::now();
    assert_eq!(
        app.register("/register/sync", "quick@example.com")
            .await
            .status(),
        201
    );
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

#[tokio::test]
async fn down_fails_the_sync_path_and_delays_the_async_one_until_it_is_up() {
    let app = app().spawn().await;
    let inbox = app.inbox().clone();
    let state = set_mail_server(&app, json!({"down": true})).await;
    assert_eq!(state["down"], true);
    let (_, queue) = app.get_json("/api/queue").await;
    assert_eq!(
        queue["mail_server"], "down",
        "the probe is asked again at once"
    );

    let inline = app
        .register("/register/sync", "down-sync@example.com")
        .await;
    assert_eq!(inline.status(), 502);
    let error: Value = inline.json().await.expect("json");
    assert_eq!(error["error"]["code"], "mail_failed");
    assert_eq!(app.user_count().await, 1, "the user row stays");

    let queued = app
        .register("/register/async", "down-async@example.com")
        .await;
    assert_eq!(queued.status(), 201);
    let queued: Value = queued.json().await.expect("json");
    wait_retrying(&app, &queued, "welcome_email", "421").await;
    let audit = queued["jobs"]["audit_log"].as_str().expect("audit job");
    app.wait_for_job(audit, "done", WAIT).await;

    set_mail_server(&app, json!({"down": false})).await;
    jobs_done(&app, &queued).await;
    let mails = wait_for_mails_where(&inbox, 2, WAIT, |m| {
        m.to.iter().any(|t| t.contains("down-async@"))
    })
    .await;
    assert_eq!(mails.len(), 2, "welcome and coupon");
    app.stop().await;
}

#[tokio::test]
async fn flaky_mode_answers_451_to_its_share_of_mails() {
    let app = app().spawn().await;
    let inbox = app.inbox().clone();
    set_mail_server(&app, json!({"flaky_share": 1.0})).await;

    assert_eq!(
        app.register("/register/sync", "flaky-sync@example.com")
            .await
            .status(),
        502
    );
    let queued: Value = app
        .register("/register/async", "flaky-async@example.com")
        .await
        .json()
        .await
        .expect("json");
    wait_retrying(&app, &queued, "welcome_email", "451").await;
    assert!(inbox.messages().is_empty(), "a 451 delivers nothing");

    set_mail_server(&app, json!({"flaky_share": 0.0})).await;
    jobs_done(&app, &queued).await;
    wait_for_mails(&inbox, 2, WAIT).await;
    app.stop().await;
}

#[tokio::test]
async fn the_switches_check_their_ranges_and_take_the_page_form() {
    let app = app().spawn().await;
    for (change, field) in [
        (json!({"latency_ms": 30_001}), "latency_ms"),
        (json!({"flaky_share": 1.5}), "flaky_share"),
        (json!({"flaky_share": -0.1}), "flaky_share"),
    ] {
        let response = app.post_json("/dev/mail-server", change).await;
        assert_eq!(response.status(), 422);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["field"], field);
    }
    assert_eq!(
        app.post_json("/dev/mail-server", json!({"speed": 1}))
            .await
            .status(),
        400
    );

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_redirects
        .post(app.url("/dev/mail-server"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("latency_ms=250&flaky_share=0.25&down=on")
        .send()
        .await
        .expect("form");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/#mail-server");
    let (_, state) = app.get_json("/dev/mail-server").await;
    assert_eq!(
        state,
        json!({"latency_ms": 250, "down": true, "flaky_share": 0.25})
    );
    app.stop().await;
}

#[tokio::test]
async fn with_smtp_url_there_is_no_mail_server_to_drive() {
    let app = app()
        .smtp(format!("smtp://127.0.0.1:{}", unused_port()))
        .spawn()
        .await;
    for path in [
        "/dev/mail-server",
        "/dev/mailbox/events",
        "/dev/mailbox/api/v2/messages",
        "/api/v2/messages",
        "/dev/consumers",
        "/dev/openapi.json",
    ] {
        let (status, _) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}");
    }
    for (path, body) in [
        ("/dev/mail-server", json!({"down": true})),
        ("/dev/burst", json!({"count": 1, "mode": "async"})),
        (
            "/dev/consumers",
            json!({"queue": "audit_log", "fail": true}),
        ),
    ] {
        assert_eq!(app.post_json(path, body).await.status(), 404, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_inbox_streams_new_mail_shows_html_in_a_sandbox_and_can_be_cleared() {
    let app = app().spawn().await;
    let inbox = app.inbox().clone();
    let mut events = app
        .client
        .get(app.url("/dev/mailbox/events"))
        .send()
        .await
        .expect("stream");
    assert_eq!(events.status(), 200);

    app.register("/register/async", "live@example.com").await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(seen.contains("event: mail") && seen.contains("live@example.com")) {
        let chunk = tokio::time::timeout_at(deadline, events.chunk())
            .await
            .expect("a mail event in time")
            .expect("stream open")
            .expect("a chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.contains("\"html_url\":\"/dev/mailbox/messages/"),
        "{seen}"
    );
    drop(events);

    let mails = wait_for_mails(&inbox, 2, WAIT).await;
    let html = app
        .client
        .get(app.url(&format!("/dev/mailbox/messages/{}/html", mails[0].id)))
        .send()
        .await
        .expect("html part");
    assert_eq!(html.status(), 200);
    let csp = html.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );
    assert!(
        html.text()
            .await
            .expect("body")
            .contains("Hello Ada Lovelace")
    );
    let page = app
        .client
        .get(app.url("/dev/mailbox"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("<iframe sandbox=\"\" src=\"/dev/mailbox/messages/"),
        "the HTML part in a sandbox"
    );
    assert!(
        page.contains("Message-ID") || page.contains("Message-Id"),
        "the headers"
    );

    let (status, mailhog) = app.get_json("/api/v2/messages").await;
    assert_eq!(status, 200);
    assert_eq!(mailhog["total"], 2);
    assert_eq!(mailhog["items"][0]["To"][0]["Domain"], "example.com");
    assert!(mailhog["items"][0]["Content"]["Headers"]["Subject"].is_array());

    let response = app
        .client
        .delete(app.url("/dev/mailbox/api/messages"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 204);
    let (_, messages) = app.get_json("/dev/mailbox/api/messages").await;
    assert_eq!(messages, json!([]));
    app.stop().await;
}

async fn a_consumer_switched_to_fail_leaves_the_others_untouched(db: TestDb) {
    let app = app_on(&db).spawn().await;
    let (status, switches) = app.get_json("/dev/consumers").await;
    assert_eq!(status, 200);
    assert_eq!(switches["failing"], json!([]));
    let (status, doc) = app.get_json("/dev/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["paths"]["/dev/consumers"].is_object(),
        "described apart"
    );
    let response = app
        .post_json(
            "/dev/consumers",
            json!({"queue": "signup_coupon", "fail": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["failing"], json!(["signup_coupon"]));
    assert_eq!(
        app.post_json("/dev/consumers", json!({"queue": "nope", "fail": true}))
            .await
            .status(),
        422
    );

    let queued: Value = app
        .register("/register/async", "decoupled@example.com")
        .await
        .json()
        .await
        .expect("json");
    wait_retrying(&app, &queued, "signup_coupon", "switched to fail").await;
    for queue in ["welcome_email", "audit_log"] {
        app.wait_for_job(queued["jobs"][queue].as_str().expect("job"), "done", WAIT)
            .await;
    }
    assert_eq!(
        app.register("/register/sync", "coupled@example.com")
            .await
            .status(),
        502,
        "inline, the same failure fails the request"
    );

    app.post_json(
        "/dev/consumers",
        json!({"queue": "signup_coupon", "fail": false}),
    )
    .await;
    let coupon = queued["jobs"]["signup_coupon"]
        .as_str()
        .expect("coupon job");
    app.wait_for_job(coupon, "done", WAIT).await;
    app.stop().await;
}
on_both_databases!(a_consumer_switched_to_fail_leaves_the_others_untouched);

async fn a_burst_through_the_queue_is_answered_before_its_mails_go_out(db: TestDb) {
    let app = app_on(&db)
        .settings(|s| s.dev_mail_latency = Duration::from_millis(200))
        .spawn()
        .await;
    let response = app
        .post_json("/dev/burst", json!({"count": 12, "mode": "async"}))
        .await;
    assert_eq!(response.status(), 200);
    let result: Value = response.json().await.expect("json");
    assert_eq!(result["created"], 12);
    assert!(
        result["took_ms"].as_f64().is_some_and(|t| t < 1000.0),
        "{result}"
    );
    let (_, queue) = app.get_json("/api/queue").await;
    assert!(
        queue["pending"].as_i64().unwrap_or_default()
            + queue["running"].as_i64().unwrap_or_default()
            > 0,
        "the queue holds the peak: {queue}"
    );
    wait_for_welcome_mails(app.inbox(), 12, Duration::from_secs(30)).await;

    let response = app
        .post_json("/dev/burst", json!({"count": 4, "mode": "sync"}))
        .await;
    let result: Value = response.json().await.expect("json");
    assert_eq!(result["created"], 4);
    assert!(
        result["slowest_ms"].as_f64().is_some_and(|t| t >= 400.0),
        "two mails inline: {result}"
    );
    for bad in [
        json!({"count": 0, "mode": "async"}),
        json!({"count": 101, "mode": "async"}),
    ] {
        assert_eq!(app.post_json("/dev/burst", bad).await.status(), 422);
    }
    let unknown_mode = app
        .post_json("/dev/burst", json!({"count": 1, "mode": "later"}))
        .await;
    assert_eq!(unknown_mode.status(), 400);
    app.stop().await;
}
on_both_databases!(a_burst_through_the_queue_is_answered_before_its_mails_go_out);

#[tokio::test]
async fn without_javascript_the_controls_post_forms_and_come_back_to_the_page() {
    let app = app().spawn().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let form = |path: &str, body: &'static str| {
        no_redirects
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let response = form("/dev/consumers", "queue=audit_log&fail=on")
        .await
        .expect("form");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/#consumers");
    let (_, switches) = app.get_json("/dev/consumers").await;
    assert_eq!(switches["failing"], json!(["audit_log"]));
    let page = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Let it work"), "the page shows the switch");
    form("/dev/consumers", "queue=audit_log&fail=off")
        .await
        .expect("form");

    let response = form("/dev/burst", "count=3&mode=async")
        .await
        .expect("form");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/#burst");
    assert_eq!(app.user_count().await, 3);

    let response = form("/dev/mailbox/clear", "").await.expect("form");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/dev/mailbox");
    app.stop().await;
}
