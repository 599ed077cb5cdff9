//! Test-only helpers around the one app builder (`signup_queue_tools::testkit`, shared with the
//! bench): log capture, the real binary as a child process, one test body on both databases
//! (`db`), and the admin token.
#![allow(dead_code)]

pub mod child;
pub mod db;
pub mod logs;

pub(crate) use db::{TestDb, app_on, on_both_databases};

pub use signup_queue_tools::testkit::*;

/// The admin bearer token the admin tests use.
pub const TOKEN: &str = "s3cret-operator-token";

/// The one way tests start the app: the testkit builder, with the log capture installed first
/// so every line the app logs is captured.
pub fn app() -> TestAppBuilder {
    logs::captured();
    TestApp::builder()
}
