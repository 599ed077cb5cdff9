//! The operator listener: the token, the dashboard, retrying a failed job, and its place off the
//! public listener; what reads the job table runs on SQLite and PostgreSQL.

use std::{net::SocketAddr, time::Duration};

use serde_json::json;
use signup_queue::{config::AdminBind, dev_inbox::DevInbox};

use crate::support::*;

async fn admin_get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.admin_url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("an answer from the admin listener")
}

async fn every_admin_route_needs_the_token_and_the_board_stays_off_the_public_listener(db: TestDb) {
    let app = app_on(&db).admin(Some(TOKEN)).spawn().await;

    for path in [
        "/",
        "/metrics",
        "/api/v1/queues",
        "/api/v1/events",
        "/ops/jobs/x/retry",
    ] {
        let response = app
            .client
            .get(app.admin_url(path))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 401, "{path} without a token");
        let wrong = admin_get(&app, path, "nope").await;
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
    }
    let board = admin_get(&app, "/", TOKEN).await;
    assert_eq!(board.status(), 200);
    assert!(
        board
            .text()
            .await
            .expect("html")
            .to_lowercase()
            .contains("<html")
    );
    let registered: serde_json::Value = app
        .register("/register", "board@example.com")
        .await
        .json()
        .await
        .expect("json");
    let job_id = registered["job_id"].as_str().expect("job id");
    let queues = admin_get(&app, "/api/v1/queues", TOKEN).await;
    assert_eq!(queues.status(), 200);
    assert!(queues.text().await.expect("json").contains("welcome_email"));
    let job = admin_get(
        &app,
        &format!("/api/v1/queues/welcome_email/tasks/{job_id}"),
        TOKEN,
    )
    .await;
    assert_eq!(job.status(), 200, "the board reads this database's job");
    assert!(job.text().await.expect("json").contains(job_id));

    // The board's live stream (its "System Status") is served: an event stream that stays open.
    let events = admin_get(&app, "/api/v1/events", TOKEN).await;
    assert_eq!(events.status(), 200);
    assert!(
        events
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "{:?}",
        events.headers()
    );
    drop(events);

    let (status, _) = app.get_json("/api/v1/queues").await;
    assert_eq!(
        status, 404,
        "the board is not on the public listener; its 404s stay 404s"
    );
    app.stop().await;
}
on_both_databases!(every_admin_route_needs_the_token_and_the_board_stays_off_the_public_listener);

async fn admin_retry(app: &TestApp, job_id: &str) -> (u16, serde_json::Value) {
    let response = app
        .client
        .post(app.admin_url(&format!("/ops/jobs/{job_id}/retry")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("an answer from the admin listener");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn a_failed_job_is_retried_from_the_admin_listener(db: TestDb) {
    let port = unused_port();
    let app = app_on(&db)
        .admin(Some(TOKEN))
        .smtp(format!("smtp://127.0.0.1:{port}"))
        .settings(|s| s.job_max_attempts = 1)
        .spawn()
        .await;
    let body: serde_json::Value = app
        .register("/register", "retry@example.com")
        .await
        .json()
        .await
        .expect("json");
    let job_id = body["job_id"].as_str().expect("job id");
    app.wait_for_job(job_id, "failed", Duration::from_secs(10))
        .await;
    let inbox = DevInbox::start_on(port, Duration::ZERO)
        .await
        .expect("mail server comes up");

    let (status, retried) = admin_retry(&app, job_id).await;

    assert_eq!((status, &retried["status"]), (200, &json!("pending")));
    app.wait_for_job(job_id, "done", Duration::from_secs(10))
        .await;
    wait_for_welcome_mails(&inbox, 1, Duration::from_secs(10)).await;
    let (status, again) = admin_retry(&app, job_id).await;
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("not_failed"))
    );
    let (status, unknown) = admin_retry(&app, "01NOSUCHJOB").await;
    assert_eq!(
        (status, &unknown["error"]["code"]),
        (404, &json!("not_found"))
    );
    inbox.stop();
    app.stop().await;
}
on_both_databases!(a_failed_job_is_retried_from_the_admin_listener);

#[tokio::test]
async fn a_public_admin_listener_without_a_token_refuses_to_start() {
    let error = app()
        .settings(|s| s.admin_bind = AdminBind::At(SocketAddr::from(([0, 0, 0, 0], 0))))
        .try_spawn()
        .await
        .err()
        .expect("refused");

    assert!(error.to_string().contains("ADMIN_TOKEN"), "{error}");
}
