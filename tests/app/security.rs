//! Secrets and abuse: argon2id storage (on SQLite and PostgreSQL), no secret in any response or
//! log line, rate limiting.
//! The log capture is one per process, shared with the other tests of this binary: the leak
//! checks read every test's log lines (a secret logged by any of them fails), and the capture is
//! checked to hold this test's own registration, so the checks still say something about it.

use argon2::{PasswordHash, PasswordVerifier};
use signup_queue::{config::HashCost, with_db};

use crate::support::{logs, *};

const PASSWORD: &str = "correct horse battery staple";

async fn passwords_are_stored_only_as_argon2id_and_never_appear_in_responses_or_logs(db: TestDb) {
    let logs = logs::captured();
    let app = app_on(&db)
        .settings(|s| s.hash_cost = HashCost::Production)
        .spawn()
        .await;
    let body = serde_json::json!({"email": "sec@example.com", "password": PASSWORD, "name": "Sec"});

    let mut seen = String::new();
    let mut request_id = None;
    for path in ["/register/async", "/register/sync", "/register"] {
        let response = app.post_json(path, body.clone()).await;
        request_id.get_or_insert_with(|| {
            response.headers()["x-request-id"]
                .to_str()
                .expect("header")
                .to_owned()
        });
        seen.push_str(&format!("{:?}", response.headers()));
        seen.push_str(&response.text().await.expect("body"));
    }
    let form = format!(
        "email=sec2%40example.com&password={}",
        PASSWORD.replace(' ', "+")
    );
    let response = app
        .post_raw("/register/sync", "application/x-www-form-urlencoded", form)
        .await;
    seen.push_str(&response.text().await.expect("body"));
    let inbox = app.inbox.clone().expect("inbox");
    wait_for_mails(&inbox, 2, std::time::Duration::from_secs(10)).await;

    let hash: String = with_db!(&app.pool, pool => sqlx::query_scalar(
        "SELECT password_hash FROM users WHERE email_key = 'sec@example.com'",
    )
    .fetch_one(pool)
    .await
    .expect("row"));
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "OWASP argon2id parameters: {hash}"
    );
    let parsed = PasswordHash::new(&hash).expect("PHC string");
    assert!(
        argon2::Argon2::default()
            .verify_password(PASSWORD.as_bytes(), &parsed)
            .is_ok()
    );
    let salt = parsed.salt.expect("salt").to_string();
    app.stop().await;

    let logs = logs::text(&logs);
    assert!(logs.contains("user registered"), "the capture works");
    // The capture is shared by every test of this binary: make sure it holds this test's lines,
    // so that the absence of the secrets below says something about this test's requests.
    let request_id = request_id.expect("a request id");
    assert!(
        logs.lines()
            .any(|l| l.contains("user registered") && l.contains(&request_id)),
        "this test's registration is in the capture"
    );
    for secret in [PASSWORD, "correct+horse", hash.as_str(), salt.as_str()] {
        assert!(!seen.contains(secret), "{secret:?} leaked into a response");
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
    for mail in inbox.messages() {
        assert!(
            !mail.text.contains(PASSWORD) && !mail.html.contains(PASSWORD),
            "password in a mail"
        );
    }
}
on_both_databases!(passwords_are_stored_only_as_argon2id_and_never_appear_in_responses_or_logs);

#[tokio::test]
async fn register_routes_are_rate_limited_per_client_with_retry_after() {
    // Whichever test runs first installs the capturing subscriber (`app()` does it too).
    let _logs = logs::captured();
    let app = app()
        .settings(|s| s.rate_limit_per_minute = 3)
        .spawn()
        .await;

    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(
            app.register("/register", &format!("rl{i}@example.com"))
                .await
                .status()
                .as_u16(),
        );
    }
    let limited = app.register("/register/sync", "rl9@example.com").await;

    assert_eq!(statuses, vec![201, 201, 201]);
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after));
    let body: serde_json::Value = limited.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        app.user_count().await,
        3,
        "the limited request wrote nothing"
    );
    assert_eq!(
        app.get_json("/health").await.0,
        200,
        "other routes are not limited"
    );
    app.stop().await;
}
