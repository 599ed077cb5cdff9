//! The soak's load: open-loop registrations at a steady rate over HTTP (each request is sent on
//! its tick whether or not the earlier ones were answered), each with a unique email, with the
//! answers tallied: 201s by email, other answers and transport errors with a few examples, and the
//! client-side latency.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// What the load saw so far.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    /// Emails answered 201, in the order of the answers.
    pub created: Vec<String>,
    pub errors: u64,
    /// The first few errors, for the report.
    pub error_examples: Vec<String>,
    /// Client-side latency of every answered request, in microseconds.
    latencies_us: Vec<u32>,
}

/// Latency percentiles of the answered registrations.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Tally {
    pub fn latency(&self) -> Latency {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let at = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((sorted.len() - 1) as f64 * q).round() as usize;
            f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
        };
        Latency {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

pub type SharedTally = Arc<Mutex<Tally>>;

/// The email of registration `i` of run `run`.
pub fn email(run: &str, i: u64) -> String {
    format!("soak-{run}-{i}@soak.test")
}

/// Sends `rate` registrations per second to `url` until `stop`, then waits for the answers of
/// the requests in flight (each bounded by the client's timeout).
pub async fn run(
    client: reqwest::Client,
    url: String,
    run_id: String,
    rate: u32,
    tally: SharedTally,
    stop: CancellationToken,
) {
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut tick = tokio::time::interval(period);
    // Open loop: a late tick is caught up, so the rate over the run is the one asked for.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut i = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let email = email(&run_id, i);
        i += 1;
        if let Ok(mut t) = tally.lock() {
            t.sent += 1;
        }
        let request = client
            .post(&url)
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send();
        let tally = Arc::clone(&tally);
        in_flight.spawn(async move {
            let started = Instant::now();
            let outcome = request.await;
            let elapsed = started.elapsed();
            let Ok(mut t) = tally.lock() else { return };
            match outcome {
                Ok(response) if response.status().as_u16() == 201 => {
                    t.latencies_us
                        .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                    t.created.push(email);
                }
                Ok(response) => {
                    t.latencies_us
                        .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                    t.errors += 1;
                    if t.error_examples.len() < 5 {
                        t.error_examples
                            .push(format!("{email}: HTTP {}", response.status()));
                    }
                }
                Err(e) => {
                    t.errors += 1;
                    if t.error_examples.len() < 5 {
                        t.error_examples.push(format!("{email}: {e}"));
                    }
                }
            }
        });
        // Reap the answered ones so the set stays small over a long run.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}
