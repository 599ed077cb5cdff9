//! One file per scenario, each returning its typed result; `bench::run` decides which run and in
//! what order, `bench::report` puts the results together.

pub mod burst;
pub mod cross_pickup;
pub mod drain;
pub mod hash;
pub mod latency;
pub mod pickup;
pub mod pipeline;
pub mod raw_http;
pub mod raw_smtp;
pub mod scale_out;
pub mod transactions;

use std::time::Duration;

use signup_queue::db::Db;
use signup_queue::{
    config::HashCost, consumers, consumers::Deps, mail::Mailer, queue::Wakeup, signup::Signup,
};

/// The registration use case on `pool`, with the built-in consumers' queues, as the app builds
/// it: the bench times the product's own transaction, never a copy of it.
pub fn signup_on(pool: &Db, mailer: Mailer) -> Signup {
    let inline = consumers::built_in(&Deps {
        pool: pool.clone(),
        mailer,
    });
    let queues = inline.iter().map(|c| c.name()).collect();
    Signup::new(
        pool.clone(),
        inline,
        queues,
        Wakeup::default(),
        HashCost::Test,
        10,
    )
}

/// A mailer for scenarios that enqueue but never send: nothing listens on port 9 (discard).
pub fn unused_mailer() -> anyhow::Result<Mailer> {
    Mailer::new(
        "smtp://127.0.0.1:9",
        "Bench <bench@bench.local>",
        Duration::from_secs(1),
        1,
    )
}
