//! Test-only helpers around the one app builder (`signup_queue_tools::testkit`, shared with the
//! bench): log capture, the real binary as a child process, one test body on both databases
//! (`db`), and the admin token.
#![allow(dead_code)]

pub mod child;
pub mod db;
pub mod logs;

pub(crate) use db::{TestDb, app_on, on_both_databases};

use std::{collections::HashMap, time::Duration};

use signup_queue_tools::smtp_sink::SmtpSink;

pub use signup_queue_tools::testkit::*;

/// The admin bearer token the admin tests use.
pub const TOKEN: &str = "s3cret-operator-token";

/// The one way tests start the app: the testkit builder, with the log capture installed first
/// so every line the app logs is captured.
pub fn app() -> TestAppBuilder {
    logs::captured();
    TestApp::builder()
}

/// Welcome mail Message-ID -> how many times the sink accepted it.
pub fn deliveries(sink: &SmtpSink) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for mail in sink.accepted() {
        let id = mail.message_id.unwrap_or_default();
        if id.starts_with("<welcome-") {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

/// Waits until `done()` holds; panics naming `what` after `within`.
pub async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
