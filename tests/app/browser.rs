//! The page in a real headless Chromium (WebDriver via chromedriver): submit both forms, see
//! both timings, watch the async job reach `done`, and find the mail in the SMTP server.
//! Needs `CHROME` (the browser) and chromedriver (`CHROMEDRIVER`, default /usr/bin/chromedriver);
//! skipped with one line when `CHROME` is unset. Saves a screenshot to
//! target/browser-test/page.png (docs/screenshot.png is a copy). Then opens the job dashboard on
//! the admin listener, waits for its live status and the queues, and saves
//! target/browser-test/dashboard.png (docs/dashboard.png is a copy).

use std::{process::Stdio, time::Duration};

use fantoccini::{ClientBuilder, Locator};

use crate::support::*;

async fn text_of(client: &fantoccini::Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_text(
    client: &fantoccini::Client,
    css: &str,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = text_of(client, css).await;
        if ok(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {css} shows {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill_and_submit(client: &fantoccini::Client, mode: &str, email: &str) {
    let field = |name: &str| format!("#{mode}-{name}");
    client
        .find(Locator::Css(&field("email")))
        .await
        .expect("email field")
        .send_keys(email)
        .await
        .expect("type");
    client
        .find(Locator::Css(&field("password")))
        .await
        .expect("password field")
        .send_keys("correct horse")
        .await
        .expect("type");
    client
        .find(Locator::Css(&field("name")))
        .await
        .expect("name field")
        .send_keys("Ada Browser")
        .await
        .expect("type");
    client
        .find(Locator::Css(&format!("form[data-mode={mode}] button")))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_forms_in_a_real_browser() {
    let Ok(chrome) = std::env::var("CHROME") else {
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: set CHROME (path to chromium) to run the browser test"
        );
        return;
    };
    // Two TLS crypto backends are linked in; the WebDriver client needs one chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chromedriver =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let app = app().admin(None).spawn().await;
    let inbox = app.inbox.clone().expect("inbox");
    let port = unused_port();
    let mut driver = tokio::process::Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().expect("profile dir");
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chrome,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let capabilities = match capabilities {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    };
    let webdriver = format!("http://127.0.0.1:{port}");
    let mut client = None;
    for _ in 0..50 {
        match ClientBuilder::rustls()
            .expect("tls")
            .capabilities(capabilities.clone())
            .connect(&webdriver)
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let client = client.expect("a browser session");

    client.goto(&app.url("/")).await.expect("open the page");
    fill_and_submit(&client, "sync", "sync-browser@example.com").await;
    wait_text(
        &client,
        "[data-result=sync] [data-outcome]",
        "sync outcome",
        |t| t.contains("Created user"),
    )
    .await;
    fill_and_submit(&client, "async", "async-browser@example.com").await;
    wait_text(
        &client,
        "[data-result=async] [data-outcome]",
        "async outcome",
        |t| t.contains("Created user"),
    )
    .await;

    for mode in ["sync", "async"] {
        for kind in ["server", "rtt"] {
            wait_text(
                &client,
                &format!("[data-result={mode}] [data-value={kind}]"),
                "timing shown",
                |t| t.ends_with(" ms"),
            )
            .await;
        }
    }
    wait_text(
        &client,
        "[data-result=async] [data-job-status]",
        "async job status",
        |t| t == "done",
    )
    .await;
    wait_text(&client, "[data-queue-done]", "queue panel", |t| t == "1").await;
    wait_text(
        &client,
        "[data-queue-mail]",
        "mail server reachability",
        |t| t == "up",
    )
    .await;

    let mails = wait_for_mails(&inbox, 2, Duration::from_secs(10)).await;
    let recipients: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    assert!(
        recipients
            .iter()
            .any(|r| r.contains("sync-browser@example.com"))
    );
    assert!(
        recipients
            .iter()
            .any(|r| r.contains("async-browser@example.com"))
    );

    let png = client.screenshot().await.expect("screenshot");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-test");
    std::fs::create_dir_all(&out).expect("screenshot folder");
    std::fs::write(out.join("page.png"), png).expect("screenshot written");

    // The dashboard: its "System Status" comes from its live event stream (/api/v1/events).
    client
        .goto(&app.admin_url("/"))
        .await
        .expect("open the dashboard");
    wait_text(&client, "body", "dashboard status and queues", |t| {
        t.contains("Healthy") && !t.contains("Unhealthy") && t.contains("welcome_email")
    })
    .await;
    let png = client.screenshot().await.expect("dashboard screenshot");
    std::fs::write(out.join("dashboard.png"), png).expect("dashboard screenshot written");

    client.close().await.expect("close the browser");
    let _ = driver.kill().await;
    app.stop().await;
}
