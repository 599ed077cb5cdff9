//! Test harness: the real application on 127.0.0.1 port 0, a temporary SQLite file, and a real
//! SMTP server (the embedded development inbox, or one the test starts and stops itself).
#![allow(dead_code)]

pub mod child;
pub mod logs;

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;
use signup_queue::{Application, Role, Settings, dev_inbox::DevInbox};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub addr: SocketAddr,
    /// The admin listener, when the settings enable it.
    pub admin_addr: Option<SocketAddr>,
    pub pool: SqlitePool,
    pub inbox: Option<DevInbox>,
    pub client: reqwest::Client,
    pub database_url: String,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

/// A temporary database URL (the folder lives as long as the returned guard).
pub fn temp_database() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    (dir, url)
}

/// A loopback port nothing listens on (yet).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The all-in-one app with its embedded development inbox.
pub async fn spawn_app() -> TestApp {
    let (dir, url) = temp_database();
    spawn_with(Settings::for_tests(url, None), Role::All, Some(dir)).await
}

/// The all-in-one app sending to `smtp_url` (a server the test controls, maybe not running yet).
pub async fn spawn_app_with_smtp(smtp_url: String) -> TestApp {
    let (dir, url) = temp_database();
    spawn_with(
        Settings::for_tests(url, Some(smtp_url)),
        Role::All,
        Some(dir),
    )
    .await
}

pub async fn spawn_with(settings: Settings, role: Role, dir: Option<tempfile::TempDir>) -> TestApp {
    spawn_with_consumers(settings, role, dir, Vec::new()).await
}

/// Like [`spawn_with`], with extra consumers of `user_registered`.
pub async fn spawn_with_consumers(
    settings: Settings,
    role: Role,
    dir: Option<tempfile::TempDir>,
    consumers: Vec<std::sync::Arc<dyn signup_queue::events::Consumer>>,
) -> TestApp {
    logs::captured();
    let database_url = settings.database_url.clone();
    let app = Application::build_with_consumers(settings, role, consumers)
        .await
        .expect("app builds");
    let addr = app
        .local_addr()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let pool = app.pool().clone();
    let admin_addr = app.admin_addr();
    let inbox = app.inbox().cloned();
    let shutdown = app.shutdown_token();
    let handle = tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        addr,
        admin_addr,
        pool,
        inbox,
        client: reqwest::Client::new(),
        database_url,
        shutdown,
        handle: Some(handle),
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn register(&self, path: &str, email: &str) -> reqwest::Response {
        self.post_json(path, serde_json::json!({"email": email, "password": "correct horse", "name": "Ada Lovelace"}))
            .await
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count query")
    }

    pub async fn user_count(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM users").await
    }

    pub async fn job_count(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM Jobs").await
    }

    /// Waits until a job reaches `status` (as `GET /api/jobs/{id}` reports it).
    pub async fn wait_for_job(&self, job_id: &str, status: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (_, job) = self.get_json(&format!("/api/jobs/{job_id}")).await;
            if job["status"] == status {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {job_id} did not reach {status} within {within:?}; last seen {job}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
        }
    }
}

/// Consumers of `user_registered` (welcome email, audit log, signup coupon): jobs per async
/// registration.
pub const CONSUMERS: i64 = 3;

/// Waits until `inbox` holds at least `n` welcome mails; returns them (newest first).
pub async fn wait_for_welcome_mails(
    inbox: &DevInbox,
    n: usize,
    within: Duration,
) -> Vec<signup_queue::dev_inbox::CaughtMail> {
    wait_for_mails_where(inbox, n, within, |m| m.subject == "Welcome to Signup Queue").await
}

/// Waits until `inbox` holds at least `n` mails; returns them (newest first).
pub async fn wait_for_mails(
    inbox: &DevInbox,
    n: usize,
    within: Duration,
) -> Vec<signup_queue::dev_inbox::CaughtMail> {
    wait_for_mails_where(inbox, n, within, |_| true).await
}

/// Waits until `inbox` holds at least `n` mails that pass `keep`; returns those (newest first).
pub async fn wait_for_mails_where(
    inbox: &DevInbox,
    n: usize,
    within: Duration,
    keep: impl Fn(&signup_queue::dev_inbox::CaughtMail) -> bool,
) -> Vec<signup_queue::dev_inbox::CaughtMail> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mails: Vec<_> = inbox.messages().into_iter().filter(|m| keep(m)).collect();
        if mails.len() >= n {
            return mails;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} mail(s) within {within:?}, got {}",
            mails.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The admin bearer token the admin tests use.
pub const TOKEN: &str = "s3cret-operator-token";

/// The all-in-one app with its admin listener on 127.0.0.1 port 0 and `token`.
pub async fn spawn_with_admin(token: Option<&str>) -> TestApp {
    let (dir, database_url) = temp_database();
    let mut settings = Settings::for_tests(database_url, None);
    settings.admin_bind = signup_queue::admin::AdminBind::At(SocketAddr::from(([127, 0, 0, 1], 0)));
    settings.admin_token = token.map(str::to_owned);
    spawn_with(settings, Role::All, Some(dir)).await
}

pub fn admin_url(app: &TestApp, path: &str) -> String {
    format!("http://{}{}", app.admin_addr.expect("admin listener"), path)
}
