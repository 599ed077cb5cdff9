//! signup-queue: registration with a welcome mail, synchronous beside asynchronous (apalis on
//! SQLite), to show what a message queue buys a web app.
//!
//! Where things live, one home per concept (dependencies point down this list, never up):
//! - [`cli`], [`app`]: the command line, and the builder of the application from [`config`]
//!   (roles `serve`, `web`, `worker`);
//! - [`web`]: HTTP only (router, the registration extractor, handlers, errors, pages, live
//!   streams, the inbox pages);
//! - [`ops`]: the operator side (admin listener, `jobs` CLI);
//! - [`signup`]: the registration use case, queued or inline;
//! - [`consumers`]: the reactions to `user_registered` (welcome mail, audit log, coupon);
//! - [`queue`]: everything that knows the job storage (publish in a transaction, workers,
//!   wake-up, retries, job states, queries);
//! - [`events`]: the message contract (envelope, `user_registered`, the legacy shape);
//! - [`users`], [`mail`], [`dev_inbox`]: users and their validation, outgoing SMTP, the embedded
//!   development inbox;
//! - [`db`], [`metrics`], [`telemetry`], [`config`]: the pool and migrations, Prometheus
//!   counters, logs, settings.

pub mod app;
pub mod cli;
pub mod config;
pub mod consumers;
pub mod db;
pub mod dev_inbox;
pub mod events;
pub mod mail;
pub mod metrics;
pub mod ops;
pub mod queue;
pub mod signup;
pub mod telemetry;
pub mod users;
pub mod web;

pub use app::{Application, Role};
pub use config::Settings;
