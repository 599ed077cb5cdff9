//! The application's integration tests, in one test binary (one link step for all of them). Each
//! test starts its own app (`support::app()`) on port 0 with its own temporary database, or runs
//! the real binary as a child process, so the tests can share this process. Apart, in their own
//! binaries: `tests/metrics.rs` (see there) and the tools' tests (`tools/tests/`). A test whose
//! behaviour depends on the database is written once and run on SQLite and on PostgreSQL
//! (`on_both_databases!`, `support/db.rs`); `postgres.rs` holds what only PostgreSQL has.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod amqp_relay;
mod bad_input;
mod browser;
mod consumers;
mod faults;
mod hardening;
mod jobs_cli;
mod layering;
mod lesson;
mod message_schemas;
mod page;
mod postgres;
mod register;
mod security;
mod topology;
