//! The registration page and its live updates: HTML answers for browser forms, escaping,
//! security headers, and the job status stream over Server-Sent Events. What reads the job table
//! (the result page, `/api/jobs`, `/api/queue` and both streams) runs on SQLite and PostgreSQL;
//! the page itself reads no database.

use std::time::Duration;

use futures::StreamExt;
use signup_queue::dev_inbox::DevInbox;

use crate::support::*;

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn the_page_has_both_forms_the_queue_panel_and_security_headers() {
    let app = app().spawn().await;

    let response = app.client.get(app.url("/")).send().await.expect("page");

    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(response.headers().contains_key("referrer-policy"));
    let html = response.text().await.expect("html");
    assert!(
        html.contains(r#"action="/register/sync""#) && html.contains(r#"action="/register/async""#)
    );
    assert!(html.contains("Synchronous: waits for the mail server"));
    assert!(html.contains("Asynchronous: enqueues and returns"));
    assert!(html.contains("data-queue") && html.contains("/static/app.js"));
    assert!(html.contains(r#"for="async-email""#), "labelled fields");
    assert!(
        !html.contains("<script>"),
        "no inline script (the CSP forbids it)"
    );
    let js = app
        .client
        .get(app.url("/static/app.js"))
        .send()
        .await
        .expect("js");
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["cache-control"]
            .to_str()
            .unwrap_or_default()
            .contains("max-age")
    );
    app.stop().await;
}

async fn a_form_post_answers_with_a_result_page_and_escapes_what_the_visitor_typed(db: TestDb) {
    let app = app_on(&db).spawn().await;
    let inbox = app.inbox.clone().expect("inbox");

    let created = app
        .post_raw(
            "/register/async",
            FORM,
            "email=x%40example.com&password=correct+horse&name=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        )
        .await;
    assert_eq!(created.status(), 201);
    let page = created.text().await.expect("html");
    assert!(page.contains("Registered") && page.contains("/api/jobs/"));

    let refused = app
        .post_raw(
            "/register/sync",
            FORM,
            "email=%3Cb%3Ebad&password=correct+horse",
        )
        .await;
    assert_eq!(refused.status(), 422);
    let page = refused.text().await.expect("html");
    assert!(
        page.contains("email") && page.contains("is not a valid email address"),
        "the field and its message"
    );

    wait_for_mails(&inbox, 1, Duration::from_secs(10)).await;
    let mailbox = app
        .client
        .get(app.url("/dev/mailbox"))
        .send()
        .await
        .expect("mailbox")
        .text()
        .await
        .expect("html");
    assert!(mailbox.contains("alert(1)"), "the name is shown");
    assert!(!mailbox.contains("<script>alert(1)"), "but escaped");
    let filtered = app
        .client
        .get(app.url("/dev/mailbox?to=nobody"))
        .send()
        .await
        .expect("mailbox")
        .text()
        .await
        .expect("html");
    assert!(filtered.contains("<span data-count>0</span> mail(s)"));
    app.stop().await;
}
on_both_databases!(a_form_post_answers_with_a_result_page_and_escapes_what_the_visitor_typed);

/// Reads `event:`/`data:` pairs from an SSE response until the stream ends.
async fn statuses(response: reqwest::Response, on_event: impl Fn(&str)) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: status")
                && let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: "))
            {
                let job: serde_json::Value = serde_json::from_str(data).expect("json event");
                on_event(job["status"].as_str().unwrap_or_default());
                events.push(job);
            }
        }
    }
    events
}

async fn the_job_stream_pushes_each_transition_in_order_until_done(db: TestDb) {
    let port = unused_port();
    let app = app_on(&db)
        .smtp(format!("smtp://127.0.0.1:{port}"))
        .spawn()
        .await;
    let body: serde_json::Value = app
        .register("/register/async", "sse@example.com")
        .await
        .json()
        .await
        .expect("json");
    let job_id = body["job_id"].as_str().expect("job id").to_owned();

    let stream = app
        .client
        .get(app.url(&format!("/api/jobs/{job_id}/events")))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    // Bring the mail server up once the stream has shown a failed attempt.
    let (seen_retrying, mut wait_retrying) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        let _ = wait_retrying.wait_for(|seen| *seen).await;
        DevInbox::start_on(port, std::time::Duration::ZERO)
            .await
            .expect("mail server comes up")
    });
    let events = tokio::time::timeout(
        Duration::from_secs(30),
        statuses(stream, |status| {
            if status == "retrying" {
                let _ = seen_retrying.send(true);
            }
        }),
    )
    .await
    .expect("the stream ends after done");

    let order: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(order.last(), Some(&"done"), "{order:?}");
    assert!(order.contains(&"retrying"), "{order:?}");
    let retrying_at = order
        .iter()
        .position(|s| *s == "retrying")
        .expect("retrying");
    assert!(
        order[..retrying_at]
            .iter()
            .all(|s| *s == "pending" || *s == "running"),
        "{order:?}"
    );
    let retry = &events[retrying_at];
    assert!(
        retry["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{retry}"
    );
    assert!(
        events
            .windows(2)
            .all(|w| (&w[0]["status"], &w[0]["attempts"]) != (&w[1]["status"], &w[1]["attempts"])),
        "only changes are pushed: {events:?}"
    );
    let inbox = server.await.expect("server task");
    wait_for_mails(&inbox, 1, Duration::from_secs(10)).await;
    inbox.stop();
    app.stop().await;
}
on_both_databases!(the_job_stream_pushes_each_transition_in_order_until_done);

async fn the_queue_stream_reports_counts_and_an_unknown_job_is_404(db: TestDb) {
    let app = app_on(&db).spawn().await;
    assert_eq!(
        app.register("/register/async", "q@example.com")
            .await
            .status(),
        201
    );

    let (status, snapshot) = app.get_json("/api/queue").await;
    assert_eq!(status, 200);
    assert_eq!(snapshot["mail_server"], "up");
    let total: i64 = ["pending", "running", "retrying", "done", "failed"]
        .iter()
        .map(|k| snapshot[k].as_i64().expect("count"))
        .sum();
    assert_eq!(total, 1);

    let response = app
        .client
        .get(app.url("/api/queue/events"))
        .send()
        .await
        .expect("stream");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("an event")
        .expect("chunk")
        .expect("bytes");
    let text = String::from_utf8_lossy(&first).into_owned();
    assert!(
        text.contains("event: queue") && text.contains("\"mail_server\""),
        "{text}"
    );
    drop(body);

    let (status, _) = app.get_json("/api/jobs/01NOSUCHJOB/events").await;
    assert_eq!(status, 404);
    // An open stream must not hold up shutdown.
    let _open = app
        .client
        .get(app.url("/api/queue/events"))
        .send()
        .await
        .expect("stream");
    tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("stops promptly with a stream open");
}
on_both_databases!(the_queue_stream_reports_counts_and_an_unknown_job_is_404);
