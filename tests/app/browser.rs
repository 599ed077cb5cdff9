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

/// A headless Chromium session through a chromedriver of our own (killed on drop), and its profile
/// folder.
async fn browser(chrome: &str) -> (fantoccini::Client, tokio::process::Child, tempfile::TempDir) {
    // Two TLS crypto backends are linked in; the WebDriver client needs one chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chromedriver =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let port = unused_port();
    let driver = tokio::process::Command::new(&chromedriver)
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
    (client, driver, profile)
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
    let (client, mut driver, _profile) = browser(&chrome).await;
    let app = app().admin(None).spawn().await;
    let inbox = app.inbox.clone().expect("inbox");

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

/// Clears the side's fields, fills them and submits.
async fn register_in_page(client: &fantoccini::Client, mode: &str, email: &str) {
    for name in ["email", "password", "name"] {
        client
            .find(Locator::Css(&format!("#{mode}-{name}")))
            .await
            .expect("field")
            .clear()
            .await
            .expect("clear");
    }
    fill_and_submit(client, mode, email).await;
}

/// The server time a side shows, in ms, once its outcome mentions `outcome`.
async fn server_ms(client: &fantoccini::Client, mode: &str, outcome: &str) -> f64 {
    wait_text(
        client,
        &format!("[data-result={mode}] [data-outcome]"),
        "outcome",
        |t| t.contains(outcome),
    )
    .await;
    let text = wait_text(
        client,
        &format!("[data-result={mode}] [data-value=server]"),
        "server time",
        |t| t.ends_with(" ms"),
    )
    .await;
    text.trim_end_matches(" ms")
        .parse()
        .unwrap_or_else(|_| panic!("a number: {text:?}"))
}

/// Sets the page's mail server form and applies it; waits until the page shows the new state.
async fn drive_mail_server(client: &fantoccini::Client, latency_ms: u64, down: bool) {
    let latency = client
        .find(Locator::Css("#latency"))
        .await
        .expect("latency field");
    latency.clear().await.expect("clear");
    latency
        .send_keys(&latency_ms.to_string())
        .await
        .expect("type");
    let checkbox = client.find(Locator::Css("#down")).await.expect("down box");
    let checked = checkbox.prop("checked").await.ok().flatten().as_deref() == Some("true");
    if checked != down {
        checkbox.click().await.expect("toggle");
    }
    client
        .find(Locator::Css("form[data-mail-server] button"))
        .await
        .expect("apply")
        .click()
        .await
        .expect("click");
    let expected = format!(
        "{}, {latency_ms} ms per mail",
        if down { "down" } else { "up" }
    );
    wait_text(client, "[data-mail-state]", "mail server state", |t| {
        t.starts_with(&expected)
    })
    .await;
}

/// `peak depth N` in the chart's caption.
fn peak_of(caption: &str) -> u64 {
    caption
        .split("peak depth ")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches(')').parse().ok())
        .unwrap_or(0)
}

/// Clicks the fail/work toggle of a consumer.
async fn click_switch(client: &fantoccini::Client, queue: &str) {
    client
        .find(Locator::XPath(&format!(
            "//form[@data-consumer-switch][.//input[@value='{queue}']]//button"
        )))
        .await
        .expect("switch")
        .click()
        .await
        .expect("click");
}

/// Scrolls `css` to the top of the window and saves a screenshot.
async fn screenshot_at(client: &fantoccini::Client, css: &str, name: &str) {
    let _ = client
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView()",
            vec![serde_json::json!(css)],
        )
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    save_screenshot(client.screenshot().await.expect("screenshot"), name);
}

/// Scrolls to the top and saves a screenshot of the window.
async fn screenshot_top(client: &fantoccini::Client, name: &str) {
    let _ = client.execute("window.scrollTo(0, 0)", Vec::new()).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    save_screenshot(client.screenshot().await.expect("screenshot"), name);
}

fn save_screenshot(png: Vec<u8>, name: &str) {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-test");
    std::fs::create_dir_all(&out).expect("screenshot folder");
    std::fs::write(out.join(name), png).expect("screenshot written");
}

/// The experiments on the page, in a real browser: the latency control slows the synchronous
/// side and not the asynchronous one; "down" makes the synchronous side answer 502 and the
/// asynchronous jobs retry, "up" delivers their mails; the open inbox shows a new mail without a
/// reload. Saves target/browser-test/experiment-{latency,down,inbox}.png (copies in docs/).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_experiments_in_a_real_browser() {
    let Ok(chrome) = std::env::var("CHROME") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: set CHROME (path to chromium) to run the browser test"
        );
        return;
    };
    let (client, mut driver, _profile) = browser(&chrome).await;
    let app = app().spawn().await;
    let inbox = app.inbox.clone().expect("inbox");
    // Tall enough for the mail server's switches and both results in one screenshot.
    client
        .set_window_size(1280, 1560)
        .await
        .expect("window size");
    client.goto(&app.url("/")).await.expect("open the page");

    // Asynchronous: with no latency both sides are quick; with 700 ms a mail the synchronous
    // side takes two mails' time, the asynchronous side none.
    drive_mail_server(&client, 0, false).await;
    register_in_page(&client, "sync", "fast-sync@example.com").await;
    let quick_sync = server_ms(&client, "sync", "Created user").await;
    drive_mail_server(&client, 700, false).await;
    register_in_page(&client, "sync", "slow-sync@example.com").await;
    let slow_sync = server_ms(&client, "sync", "#2").await;
    register_in_page(&client, "async", "slow-async@example.com").await;
    let slow_async = server_ms(&client, "async", "Created user").await;
    assert!(
        slow_sync >= 1400.0 && slow_sync > quick_sync + 1000.0,
        "sync grows with the latency: {quick_sync} -> {slow_sync}"
    );
    assert!(slow_async < 700.0, "async does not wait: {slow_async}");
    wait_text(
        &client,
        "[data-result=sync] [data-phases]",
        "phases legend",
        |t| t.contains("welcome_email") && t.contains("signup_coupon") && t.contains("hash"),
    )
    .await;
    for queue in ["welcome_email", "audit_log", "signup_coupon"] {
        wait_text(
            &client,
            &format!("[data-result=async] [data-job-status={queue}]"),
            "every consumer's job",
            |t| t == "done",
        )
        .await;
    }
    screenshot_top(&client, "experiment-latency.png").await;

    // Resilient: down -> sync 502 (the user row stays), async 201 with its mail jobs retrying.
    drive_mail_server(&client, 0, true).await;
    register_in_page(&client, "sync", "down-sync@example.com").await;
    wait_text(
        &client,
        "[data-result=sync] [data-outcome]",
        "sync 502",
        |t| t.contains("Mail server failed"),
    )
    .await;
    register_in_page(&client, "async", "down-async@example.com").await;
    wait_text(
        &client,
        "[data-result=async] [data-job-status=welcome_email]",
        "welcome job retrying",
        |t| t == "retrying",
    )
    .await;
    wait_text(
        &client,
        "[data-result=async] [data-job-status=audit_log]",
        "the audit job does not need the mail server",
        |t| t == "done",
    )
    .await;
    wait_text(&client, "[data-queue-mail]", "queue panel", |t| t == "down").await;
    screenshot_top(&client, "experiment-down.png").await;

    // Up again: the retries deliver.
    drive_mail_server(&client, 0, false).await;
    wait_text(
        &client,
        "[data-result=async] [data-job-status=welcome_email]",
        "welcome job delivered after the outage",
        |t| t == "done",
    )
    .await;
    wait_for_mails_where(&inbox, 1, Duration::from_secs(10), |m| {
        m.to.iter().any(|t| t.contains("down-async@")) && m.subject == WELCOME_SUBJECT
    })
    .await;

    // Decoupled: one consumer switched to fail retries; the others finish.
    click_switch(&client, "signup_coupon").await;
    wait_text(
        &client,
        "[data-consumer-state=signup_coupon]",
        "switched",
        |t| t == "failing",
    )
    .await;
    register_in_page(&client, "async", "decoupled@example.com").await;
    server_ms(&client, "async", "#").await;
    for (queue, status) in [
        ("signup_coupon", "retrying"),
        ("welcome_email", "done"),
        ("audit_log", "done"),
    ] {
        wait_text(
            &client,
            &format!("[data-result=async] [data-job-status={queue}]"),
            "decoupled consumers",
            |t| t == status,
        )
        .await;
    }
    screenshot_at(&client, "#async", "experiment-decoupled.png").await;
    click_switch(&client, "signup_coupon").await;
    wait_text(
        &client,
        "[data-result=async] [data-job-status=signup_coupon]",
        "the coupon job recovers",
        |t| t == "done",
    )
    .await;

    // Peak shaving: a burst fills the queue, the workers drain it; the chart shows both.
    drive_mail_server(&client, 250, false).await;
    let count = client
        .find(Locator::Css("#burst-count"))
        .await
        .expect("count");
    count.clear().await.expect("clear");
    count.send_keys("40").await.expect("type");
    client
        .find(Locator::Css("form[data-burst] button"))
        .await
        .expect("burst button")
        .click()
        .await
        .expect("click");
    wait_text(&client, "[data-burst-result]", "burst answered", |t| {
        t.starts_with("40 of 40 registered")
    })
    .await;
    // The workers take 4 mails at a time at 250 ms each: the queue holds the peak for seconds.
    let peak = wait_text(&client, "[data-chart-now]", "the queue fills", |t| {
        peak_of(t) >= 10
    })
    .await;
    let drained = wait_text(&client, "[data-chart-now]", "the queue drains", |t| {
        t.starts_with("depth 0,") && peak_of(t) >= 10
    })
    .await;
    assert!(peak_of(&drained) >= peak_of(&peak), "{peak} / {drained}");
    screenshot_at(&client, "#burst", "experiment-burst.png").await;

    // The inbox, filtered to one recipient: open, then a new mail appears without a reload.
    drive_mail_server(&client, 0, false).await;
    client
        .goto(&app.url("/dev/mailbox?to=watch-me"))
        .await
        .expect("open the inbox");
    wait_text(&client, "[data-live]", "live inbox", |t| {
        t.starts_with("Live")
    })
    .await;
    let response = app
        .register("/register/async", "watch-me@example.com")
        .await;
    assert_eq!(response.status(), 201);
    wait_text(
        &client,
        "[data-mails] article",
        "the new mail on top",
        |t| t.contains("watch-me@example.com"),
    )
    .await;
    screenshot_top(&client, "experiment-inbox.png").await;

    client.close().await.expect("close the browser");
    let _ = driver.kill().await;
    app.stop().await;
}
