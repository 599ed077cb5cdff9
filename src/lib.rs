//! signup-queue: registration with a welcome mail, synchronous beside asynchronous (apalis on
//! SQLite), to show what a message queue buys a web app.

pub mod admin;
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod dev_inbox;
pub mod events;
pub mod jobs;
pub mod jobs_cli;
pub mod mail;
pub mod metrics;
pub mod redis_queue;
pub mod smtp_sink;
pub mod telemetry;
pub mod users;
pub mod web;

pub use app::{Application, Role};
pub use config::Settings;
