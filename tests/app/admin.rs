//! The operator listener: the token, the dashboard, and its place off the public listener.

use std::net::SocketAddr;

use signup_queue::config::AdminBind;

use crate::support::*;

async fn admin_get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.admin_url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("an answer from the admin listener")
}

#[tokio::test]
async fn every_admin_route_needs_the_token_and_the_board_stays_off_the_public_listener() {
    let app = app().admin(Some(TOKEN)).spawn().await;

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
    assert_eq!(
        app.register("/register", "board@example.com")
            .await
            .status(),
        201
    );
    let queues = admin_get(&app, "/api/v1/queues", TOKEN).await;
    assert_eq!(queues.status(), 200);
    assert!(queues.text().await.expect("json").contains("welcome_email"));

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
