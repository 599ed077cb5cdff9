//! Hardening against hostile clients and bad configuration (issue 13): each test shows one
//! probe that misbehaved before and now gets a bounded, documented answer.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use serde_json::json;
use signup_queue::Role;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

use crate::support::{self, child, *};

/// A minimal SMTP server that answers greetings, EHLO/NOOP/RSET and QUIT, and counts sessions:
/// enough for the "is the mail server up?" probe.
async fn counting_smtp() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sessions = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&sessions);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let _ = write.write_all(b"220 counting ESMTP\r\n").await;
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if line.to_ascii_uppercase().starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    if write.write_all(reply).await.is_err() || reply.starts_with(b"221") {
                        break;
                    }
                }
            });
        }
    });
    (format!("smtp://{addr}"), sessions)
}

#[tokio::test]
async fn status_pages_share_one_probe_of_the_mail_server() {
    let (smtp_url, sessions) = counting_smtp().await;
    let app = support::app().smtp(smtp_url).spawn().await;
    let polls = (0..40).map(|_| app.get_json("/api/queue"));
    for (status, body) in futures::future::join_all(polls).await {
        assert_eq!(status, 200);
        assert_eq!(body["mail_server"], "up");
    }
    let mut streams = Vec::new();
    for _ in 0..6 {
        let response = app.get("/api/queue/events").await;
        assert_eq!(response.status(), 200);
        streams.push(response.bytes_stream());
    }
    for stream in &mut streams {
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        assert!(
            matches!(first, Ok(Some(Ok(_)))),
            "each stream gets the snapshot"
        );
    }
    // Before: one SMTP session per request (40) plus one per stream every 5 s.
    let opened = sessions.load(Ordering::SeqCst);
    assert!(
        opened <= 2,
        "{opened} SMTP sessions for 40 polls and 6 streams"
    );
    drop(streams);
    app.stop().await;
}

#[tokio::test]
async fn a_mail_server_that_never_answers_does_not_hold_the_status_page() {
    // Accepts and then says nothing, as a wedged mail server does.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let app = support::app()
        .smtp(format!("smtp://{addr}"))
        .settings(|s| s.smtp_timeout = Duration::from_secs(60))
        .spawn()
        .await;
    let answered = tokio::time::timeout(Duration::from_secs(15), app.get_json("/api/queue"))
        .await
        .expect("answered without waiting for SMTP_TIMEOUT (60 s)");
    assert_eq!(answered.0, 200);
    assert_eq!(answered.1["mail_server"], "down");
    app.stop().await;
}

#[tokio::test]
async fn the_embedded_inbox_comes_back_after_running_out_of_file_descriptors() {
    let (_dir, database_url) = temp_database();
    let mut app = child::start_with("serve", &[("DATABASE_URL", database_url)], Some(96)).await;
    let smtp = app
        .wait_for_log(
            "development inbox (SMTP) listening",
            Duration::from_secs(10),
        )
        .await;
    let smtp_addr: SocketAddr = smtp
        .split("addr=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("the inbox address in the log");
    let http_addr: SocketAddr = app
        .addr
        .as_deref()
        .and_then(|a| a.parse().ok())
        .expect("http address");
    // Use up the process's descriptors with idle HTTP connections, then knock at the inbox:
    // its accept fails with "Too many open files".
    let mut hogs = Vec::new();
    for _ in 0..200 {
        match TcpStream::connect(http_addr).await {
            Ok(stream) => hogs.push(stream),
            Err(_) => break,
        }
    }
    let mut knocks = Vec::new();
    for _ in 0..20 {
        if let Ok(stream) = TcpStream::connect(smtp_addr).await {
            knocks.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(knocks);
    drop(hogs);
    app.wait_for_log("Too many open files", Duration::from_secs(10))
        .await;
    // Load gone: a registration's mail must arrive again (before: "Connection refused" for good).
    let client = reqwest::Client::new();
    let mut delivered = false;
    for attempt in 0..40 {
        let email = format!("after-{attempt}@example.com");
        let response = client
            .post(app.url("/register/sync"))
            .json(&json!({"email": email, "password": "correct horse"}))
            .send()
            .await
            .expect("request");
        if response.status() == 201 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        delivered,
        "the inbox never accepted mail again; log:\n{}",
        app.log_text()
    );
    app.sigterm();
    app.wait_exit(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn the_dashboard_log_stream_carries_job_lines() {
    let (_dir, database_url) = temp_database();
    let admin_port = unused_port();
    let mut app = child::start(
        "serve",
        &[
            ("DATABASE_URL", database_url),
            ("ADMIN_BIND", format!("127.0.0.1:{admin_port}")),
        ],
    )
    .await;
    app.wait_for_log("admin: job dashboard", Duration::from_secs(10))
        .await;
    let client = reqwest::Client::new();
    let events = client
        .get(format!("http://127.0.0.1:{admin_port}/api/v1/events"))
        .send()
        .await
        .expect("events");
    assert_eq!(events.status(), 200);
    let mut events = events.bytes_stream();
    let registered = client
        .post(app.url("/register"))
        .json(&json!({"email": "logs@example.com", "password": "correct horse"}))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201);
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(Ok(chunk)) = events.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen
                .lines()
                .any(|l| l.starts_with("data:") && l.contains("\"task_id\""))
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no job log line; stream so far:\n{seen}");
    app.sigterm();
    app.wait_exit(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn closed_dashboard_streams_are_let_go() {
    let app = support::app().admin(None).spawn().await;
    let lines = signup_queue::telemetry::job_log_lines();
    let mut streams = Vec::new();
    for _ in 0..30 {
        let response = app
            .client
            .get(app.admin_url("/api/v1/events"))
            .send()
            .await
            .expect("events");
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    assert!(lines.receiver_count() >= 30);
    drop(streams);
    // Each server-side stream notices its client left at the next keep-alive (1 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while lines.receiver_count() >= 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} dashboard clients still held after their connections closed",
            lines.receiver_count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_json_field_given_twice_is_refused() {
    let app = support::app().spawn().await;
    let response = app
        .post_raw(
            "/register",
            "application/json",
            r#"{"email":"d@example.com","password":"x","password":"correct horse"}"#,
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "malformed_body");
    assert_eq!(app.user_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn slow_silent_and_idle_connections_are_closed_and_the_count_is_capped() {
    let app = support::app()
        .settings(|s| s.max_connections = 4)
        .spawn()
        .await;
    // One that sends a header line every 2 s (slowloris), one that sends nothing, one idle
    // keep-alive: all closed by the header-read timeout (10 s), none kept past 20 s.
    let mut slow = TcpStream::connect(app.addr).await.expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\n")
        .await
        .expect("write");
    let silent = TcpStream::connect(app.addr).await.expect("connect");
    let mut idle = TcpStream::connect(app.addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 512];
    let n = idle.read(&mut answer).await.expect("answer");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));

    // A fourth is served; a fifth gets a 503 and is closed.
    let mut fourth = TcpStream::connect(app.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = TcpStream::connect(app.addr).await.expect("connect");
    let mut refused = String::new();
    tokio::time::timeout(Duration::from_secs(5), fifth.read_to_string(&mut refused))
        .await
        .expect("answered at once")
        .expect("read");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("server_busy"));
    drop(fourth.shutdown().await);

    let closed = |mut stream: TcpStream, feed: bool| async move {
        let mut buf = [0u8; 256];
        loop {
            if feed && stream.write_all(b"x-slow: 1\r\n").await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(
            closed(slow, true),
            closed(silent, false),
            closed(idle, false)
        )
    })
    .await
    .expect("slow, silent and idle connections closed by the server");
    app.stop().await;
}

#[tokio::test]
async fn one_client_cannot_hold_every_stream() {
    let app = support::app().spawn().await;
    let mut held = Vec::new();
    for _ in 0..signup_queue::web::feed::STREAMS_PER_CLIENT {
        let response = app.get("/api/queue/events").await;
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    let (status, body) = app.get_json("/api/queue/events").await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "too_many_streams");
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn an_unsafe_request_id_is_replaced() {
    let app = support::app().spawn().await;
    let long = "a".repeat(60_000);
    let response = app
        .client
        .post(app.url("/register"))
        .header("x-request-id", &long)
        .json(&json!({"email": "rid@example.com", "password": "correct horse"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 26, "a fresh ULID, not the client's value");
    let stored: i64 = app
        .count("SELECT COALESCE(MAX(LENGTH(metadata)), 0) FROM Jobs")
        .await;
    assert!(stored < 1000, "job metadata of {stored} bytes");

    let kept = app
        .client
        .post(app.url("/register"))
        .header("x-request-id", "trace-42.a_b")
        .json(&json!({"email": "rid2@example.com", "password": "correct horse"}))
        .send()
        .await
        .expect("request");
    assert_eq!(kept.headers()["x-request-id"], "trace-42.a_b");
    app.stop().await;
}

#[tokio::test]
async fn a_failed_sync_mail_does_not_reveal_the_mail_server() {
    let port = unused_port();
    let app = support::app()
        .smtp(format!("smtp://127.0.0.1:{port}"))
        .spawn()
        .await;
    let response = app.register("/register/sync", "sync@example.com").await;
    assert_eq!(response.status(), 502);
    let text = response.text().await.expect("body");
    assert!(text.contains("mail_failed"));
    assert!(
        !text.contains("127.0.0.1") && !text.contains(&port.to_string()),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_international_domain_and_its_punycode_are_one_account() {
    let app = support::app().spawn().await;
    assert_eq!(
        app.register("/register", "ida@exämple.com").await.status(),
        201
    );
    let second = app.register("/register", "ida@xn--exmple-cua.com").await;
    assert_eq!(second.status(), 409);
    let stored: String = sqlx::query_scalar("SELECT email FROM users")
        .fetch_one(app.sqlite())
        .await
        .expect("row");
    assert_eq!(stored, "ida@xn--exmple-cua.com");
    app.stop().await;
}

#[tokio::test]
async fn unsafe_or_impossible_configuration_is_refused() {
    // The embedded inbox on every interface.
    let error = support::app()
        .settings(|s| s.bind = SocketAddr::from(([0, 0, 0, 0], 0)))
        .try_spawn()
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("ALLOW_PUBLIC_DEV_INBOX"),
        "{error}"
    );

    // A scheme that is not SQLite never becomes a file.
    let dir = tempfile::tempdir().expect("dir");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_signup-queue"));
        command
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("NO_COLOR", "1")
            .env("BIND", "127.0.0.1:0")
            .env("ADMIN_BIND", "off");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("runs")
    };
    let mysql = run(&["serve"], &[("DATABASE_URL", "mysql://x/y")]);
    assert!(!mysql.status.success());
    assert!(String::from_utf8_lossy(&mysql.stderr).contains("not a SQLite or PostgreSQL URL"));
    // PostgreSQL that does not answer: one line naming where and why, a non-zero exit.
    let postgres = run(
        &["serve"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing")],
    );
    assert!(!postgres.status.success());
    let stderr = String::from_utf8_lossy(&postgres.stderr);
    assert!(
        stderr.contains("cannot connect to PostgreSQL at 127.0.0.1:1 (database nothing)"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "nothing created"
    );

    // The operator commands open an existing database only.
    let stats = run(
        &["jobs", "stats"],
        &[("DATABASE_URL", "sqlite://no/such/signup-queue.db")],
    );
    assert_eq!(stats.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stats.stderr).contains("no database at"));
    assert!(!dir.path().join("no").exists());

    // Durations that cannot work, with the allowed range in the message.
    for (name, value) in [
        ("SMTP_TIMEOUT", "0s"),
        ("POLL_INTERVAL", "0s"),
        ("WORKER_HEARTBEAT", "0s"),
    ] {
        let refused = run(&["serve"], &[(name, value)]);
        assert_eq!(refused.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("must be between"), "{name}: {stderr}");
    }
}

#[tokio::test]
async fn health_notices_that_the_database_file_was_deleted() {
    let (dir, database_url) = temp_database();
    let app = support::app()
        .database(database_url)
        .role(Role::All)
        .spawn()
        .await;
    assert_eq!(app.get_json("/health").await.0, 200);
    std::fs::remove_file(dir.path().join("test.db")).expect("deleted");
    let (status, body) = app.get_json("/health").await;
    assert_eq!(status, 503);
    // Deleted, or already replaced by a new empty file that another pooled connection created:
    // either way the writes would be lost, and /health says so.
    assert!(
        body["database"]
            .as_str()
            .is_some_and(|d| d.contains("deleted") || d.contains("replaced")),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_description_is_served() {
    let app = support::app().spawn().await;
    let (status, doc) = app.get_json("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    assert!(doc["paths"]["/register/async"]["post"].is_object());
    app.stop().await;
}
