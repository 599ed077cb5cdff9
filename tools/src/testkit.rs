//! The real application on 127.0.0.1 port 0 with a temporary SQLite file and a real SMTP server
//! (the embedded development inbox unless told otherwise): one builder for the integration tests
//! and the bench, so both start the app the same way. [`pg`]: a fresh PostgreSQL database per
//! test (`DATABASE_URL_PG`), for the tests that run on Postgres.
//!
//! ```no_run
//! # async fn demo() {
//! use signup_queue_tools::testkit::TestApp;
//! let app = TestApp::builder().spawn().await;
//! let response = app.register("/register", "ada@example.com").await;
//! assert_eq!(response.status(), 201);
//! app.stop().await;
//! # }
//! ```

pub mod pg;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::Value;
use signup_queue::db::Db;
use signup_queue::{
    Application, Role, Settings,
    config::AdminBind,
    consumers::Consumer,
    dev_inbox::{CaughtMail, DevInbox},
};
use tokio_util::sync::CancellationToken;

/// Consumers of `user_registered` (welcome email, audit log, signup coupon): jobs per queued
/// registration.
pub const CONSUMERS: i64 = 3;

/// Subject of the welcome mail.
pub const WELCOME_SUBJECT: &str = signup_queue::consumers::welcome::WELCOME_SUBJECT;

/// A running application and what a test or the bench needs to talk to it.
pub struct TestApp {
    /// The public listener (`127.0.0.1:0` when the role serves no HTTP).
    pub addr: SocketAddr,
    /// The admin listener, when enabled.
    pub admin_addr: Option<SocketAddr>,
    pub pool: Db,
    /// The embedded development inbox, when no SMTP URL was given.
    pub inbox: Option<DevInbox>,
    pub client: reqwest::Client,
    pub database_url: String,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

/// How to start a [`TestApp`]: by default the all-in-one role on a fresh temporary database with
/// the embedded inbox, cheap hashing, no rate limit and no admin listener
/// ([`Settings::for_tests`]).
pub struct TestAppBuilder {
    settings: Settings,
    role: Role,
    consumers: Vec<Arc<dyn Consumer>>,
    dir: Option<tempfile::TempDir>,
}

/// A temporary database URL (the folder lives as long as the returned guard).
pub fn temp_database() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    (dir, url)
}

/// The value of `var` (a service's URL, a program's path) when it is set. Otherwise says, straight
/// to stderr past the test harness's capture, that the tests needing it are skipped: `what` names
/// them and an example value.
pub fn service_or_skip(var: &str, what: &str) -> Option<String> {
    let value = std::env::var(var).ok().filter(|v| !v.is_empty());
    if value.is_none() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipped: set {var} {what}");
    }
    value
}

/// The product binary `signup-queue` beside a tool binary of this package (a workspace build puts
/// them in one folder), for the tools' tests that drive both; `None`, after one skip line on
/// stderr, when it is not there.
pub fn product_beside(tool: &std::path::Path) -> Option<std::path::PathBuf> {
    let dir = tool.parent()?;
    let product = dir.join(format!("signup-queue{}", std::env::consts::EXE_SUFFIX));
    if product.is_file() {
        return Some(product);
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped: no {} beside the tools (build the workspace: cargo test --workspace)",
        product.display()
    );
    None
}

/// A loopback port nothing listens on (yet).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        let (dir, url) = temp_database();
        TestAppBuilder {
            settings: Settings::for_tests(url, None),
            role: Role::All,
            consumers: Vec::new(),
            dir: Some(dir),
        }
    }
}

impl TestAppBuilder {
    /// Send mail to this SMTP server (maybe not running yet) instead of the embedded inbox.
    pub fn smtp(mut self, smtp_url: impl Into<String>) -> Self {
        self.settings.smtp_url = Some(smtp_url.into());
        self
    }

    /// Use this database (e.g. one shared with another process) instead of a fresh one.
    pub fn database(mut self, database_url: impl Into<String>) -> Self {
        self.settings.database_url = database_url.into();
        self.dir = None;
        self
    }

    /// Run only the HTTP half (`web`) or only the workers (`worker`).
    pub fn role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// Start the admin listener on port 0, with this bearer token (or none).
    pub fn admin(mut self, token: Option<&str>) -> Self {
        self.settings.admin_bind = AdminBind::At(SocketAddr::from(([127, 0, 0, 1], 0)));
        self.settings.admin_token = token.map(str::to_owned);
        self
    }

    /// One more consumer of `user_registered` beside the built-in ones.
    pub fn consumer(mut self, consumer: Arc<dyn Consumer>) -> Self {
        self.consumers.push(consumer);
        self
    }

    /// Any other setting.
    pub fn settings(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(&mut self.settings);
        self
    }

    pub async fn try_spawn(self) -> anyhow::Result<TestApp> {
        let database_url = self.settings.database_url.clone();
        let app =
            Application::build_with_consumers(self.settings, self.role, self.consumers).await?;
        let addr = app
            .local_addr()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let pool = app.pool().clone();
        let admin_addr = app.admin_addr();
        let inbox = app.inbox().cloned();
        let shutdown = app.shutdown_token();
        let handle = tokio::spawn(app.run_until_stopped(std::future::pending()));
        Ok(TestApp {
            addr,
            admin_addr,
            pool,
            inbox,
            client: reqwest::Client::new(),
            database_url,
            shutdown,
            handle: Some(handle),
            _dir: self.dir,
        })
    }

    /// Like [`TestAppBuilder::try_spawn`], for tests: panics when the app does not start.
    pub async fn spawn(self) -> TestApp {
        self.try_spawn().await.expect("app builds")
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.admin_addr.expect("admin listener"),
            path
        )
    }

    /// The embedded inbox (panics when the app sends elsewhere).
    pub fn inbox(&self) -> &DevInbox {
        self.inbox.as_ref().expect("embedded inbox")
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
        self.post_json(
            path,
            serde_json::json!({"email": email, "password": "correct horse", "name": "Ada Lovelace"}),
        )
        .await
    }

    /// A GET whose response the caller reads (a stream, headers).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
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

    /// The SQLite pool, for a test that only runs on SQLite (panics on PostgreSQL).
    pub fn sqlite(&self) -> &sqlx::SqlitePool {
        self.pool
            .sqlite()
            .expect("this test step runs on SQLite only")
    }

    /// A `SELECT COUNT(*) ...` that both databases accept (`$1`-style placeholders, if any).
    pub async fn count(&self, sql: &'static str) -> i64 {
        signup_queue::with_db!(&self.pool, pool => sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .expect("count query"))
    }

    pub async fn user_count(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM users").await
    }

    pub async fn job_count(&self) -> i64 {
        match self.pool.backend() {
            signup_queue::db::Backend::Sqlite => self.count("SELECT COUNT(*) FROM Jobs").await,
            signup_queue::db::Backend::Postgres => {
                self.count("SELECT COUNT(*) FROM apalis.jobs").await
            }
        }
    }

    /// Jobs not `done` (any other state, `failed` included), of one queue or all.
    pub async fn jobs_not_done(&self, queue: Option<&str>) -> Result<i64, sqlx::Error> {
        Ok(signup_queue::queue::inspect::stats(&self.pool)
            .await?
            .iter()
            .filter(|q| queue.is_none_or(|name| q.queue == name))
            .map(|q| q.pending + q.running + q.retrying + q.failed)
            .sum())
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

    /// Graceful shutdown, as SIGTERM does it; waits for it (at most 30 s).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
        }
    }
}

/// Waits until `inbox` holds at least `n` welcome mails; returns them (newest first).
pub async fn wait_for_welcome_mails(
    inbox: &DevInbox,
    n: usize,
    within: Duration,
) -> Vec<CaughtMail> {
    wait_for_mails_where(inbox, n, within, |m| m.subject == WELCOME_SUBJECT).await
}

/// Waits until `inbox` holds at least `n` mails; returns them (newest first).
pub async fn wait_for_mails(inbox: &DevInbox, n: usize, within: Duration) -> Vec<CaughtMail> {
    wait_for_mails_where(inbox, n, within, |_| true).await
}

/// Waits until `inbox` holds at least `n` mails that pass `keep`; returns those (newest first).
pub async fn wait_for_mails_where(
    inbox: &DevInbox,
    n: usize,
    within: Duration,
    keep: impl Fn(&CaughtMail) -> bool,
) -> Vec<CaughtMail> {
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
