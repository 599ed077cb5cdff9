//! Cross-process pickup with the real binary: a `signup-queue web` process and a separate
//! `signup-queue worker` process on one database; registrations one at a time through the web's
//! HTTP API, each followed by an idle gap, and for each job the time from its enqueue to the
//! start of its handler in the worker process.
//!
//! Where the start time comes from: the worker process measures it itself, at handler start,
//! for its `job_queue_wait_seconds` histogram (`/metrics` on its admin listener): now minus the
//! time in the job's id, a ULID the web process generated inside the registration's
//! transaction. The histogram's buckets are too coarse for a p50, but it also exports the sum of
//! every wait per queue; read after each registration, once that registration's jobs have
//! started, the sum's increase is each job's exact wait, one job per queue. No probe is added to
//! the product, and the bench's own clock is never compared with the worker's (one machine, one
//! clock, but the reading is the product's). The ULID holds whole milliseconds, so a wait reads
//! 0-1 ms longer than it was (0.5 ms on average), and it starts a little before the commit (the
//! rest of the transaction: the other queues' jobs, the commit itself).

use std::{collections::HashMap, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

use signup_queue::config::HashCost;

use crate::{
    bench::{
        Plan,
        harness::{bar, histogram, record, register_timed},
        product::{Process, Product},
        target::Target,
    },
    smtp_sink::{SinkConfig, SmtpSink},
    testkit::CONSUMERS,
};

/// Idle time after each registration, so that each one finds the worker waiting (as in `pickup`).
const IDLE_GAP: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Default, Serialize)]
pub struct CrossPickup {
    pub registrations: usize,
    pub idle_gap_ms: u64,
    /// Every job of every registration (one per consumer queue): enqueue to handler start.
    pub every_job: Waits,
    /// The first of each registration's jobs to start: how soon the worker process reacted.
    pub first_job: Waits,
    /// Jobs whose start the worker had not reported 5 s after their registration.
    pub missing: u64,
    /// Registrations not answered 201.
    pub errors: usize,
}

/// Waits in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Waits {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Waits {
    fn of(h: &Histogram<u64>) -> Waits {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Waits {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// `None` when the product's binary is not beside the bench's.
pub async fn run(
    target: &Target,
    plan: &Plan,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<Option<CrossPickup>> {
    let sink = SmtpSink::start(SinkConfig::default()).await?;
    let db = target.fresh("cross_pickup").await?;
    let Some(product) = Product::find(
        plan,
        "cross_pickup",
        db.url(),
        &sink.smtp_url(),
        workers,
        hash_cost,
    )?
    else {
        return Ok(None);
    };
    // The web process first: it creates the database; then the worker, as an operator would.
    let web = product.start("web", 1, &[]).await?;
    let worker = product.start("worker", 1, &[]).await?;
    let result = measure(plan, &web, &worker).await;
    worker.stop().await?;
    web.stop().await?;
    sink.stop();
    db.remove().await?;
    result.map(Some)
}

async fn measure(plan: &Plan, web: &Process, worker: &Process) -> anyhow::Result<CrossPickup> {
    let client = reqwest::Client::new();
    let url = web.url("/register/async");
    let mut seen = waits_so_far(&client, worker).await?;
    // A few registrations first, not counted: connections opened, LISTEN in place, caches warm.
    for i in 0..3 {
        let _ = register_timed(&client, &url, format!("xwarm-{i}@bench.local")).await;
        tokio::time::sleep(IDLE_GAP).await;
        let (now, _) = started_since(&client, worker, &seen).await?;
        seen = now;
    }
    let (mut every, mut first) = (histogram(), histogram());
    let (mut missing, mut errors) = (0, 0);
    let progress = bar(plan.pickups, "pickup: web + worker processes");
    for i in 0..plan.pickups {
        let (_, ok) = register_timed(&client, &url, format!("xpickup-{i}@bench.local")).await;
        errors += usize::from(!ok);
        tokio::time::sleep(IDLE_GAP).await;
        let (now, waits) = started_since(&client, worker, &seen).await?;
        seen = now;
        for wait in &waits {
            record(&mut every, *wait);
        }
        if let Some(soonest) = waits.iter().min() {
            record(&mut first, *soonest);
        }
        if ok {
            missing += (CONSUMERS as u64).saturating_sub(waits.len() as u64);
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(CrossPickup {
        registrations: plan.pickups,
        idle_gap_ms: IDLE_GAP.as_millis() as u64,
        every_job: Waits::of(&every),
        first_job: Waits::of(&first),
        missing,
        errors,
    })
}

/// Per queue: jobs started so far and the sum of their waits (seconds), from the worker's
/// `job_queue_wait_seconds_count` and `_sum`.
type WaitSums = HashMap<String, (u64, f64)>;

async fn waits_so_far(client: &reqwest::Client, worker: &Process) -> anyhow::Result<WaitSums> {
    let text = client
        .get(worker.metrics_url())
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(parse_wait_sums(&text))
}

/// Waits (at most 5 s) until every queue has started one more job than in `before`, and returns
/// the new sums with each new job's wait. A queue that started two (a warm-up's straggler) gives
/// their mean.
async fn started_since(
    client: &reqwest::Client,
    worker: &Process,
    before: &WaitSums,
) -> anyhow::Result<(WaitSums, Vec<Duration>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = waits_so_far(client, worker).await?;
        let mut waits = Vec::new();
        for (queue, (count, sum)) in &now {
            let (count_before, sum_before) = before.get(queue).copied().unwrap_or_default();
            if *count > count_before {
                let mean = (sum - sum_before) / (count - count_before) as f64;
                waits.push(Duration::from_secs_f64(mean.max(0.0)));
            }
        }
        if waits.len() >= CONSUMERS as usize || tokio::time::Instant::now() > deadline {
            return Ok((now, waits));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `job_queue_wait_seconds_sum{queue="..."} 0.123` and `..._count{queue="..."} 4` lines of the
/// Prometheus text format, per queue.
fn parse_wait_sums(text: &str) -> WaitSums {
    let mut sums = WaitSums::new();
    for line in text.lines() {
        let (is_sum, rest) = if let Some(rest) = line.strip_prefix("job_queue_wait_seconds_sum{") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("job_queue_wait_seconds_count{") {
            (false, rest)
        } else {
            continue;
        };
        let Some(queue) = rest
            .split_once("queue=\"")
            .and_then(|(_, q)| q.split_once('"'))
            .map(|(q, _)| q.to_owned())
        else {
            continue;
        };
        let Some(value) = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse::<f64>().ok())
        else {
            continue;
        };
        let entry = sums.entry(queue).or_default();
        if is_sum {
            entry.1 = value;
        } else {
            entry.0 = value as u64;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_counts_are_read_per_queue() {
        let text = "# TYPE job_queue_wait_seconds histogram\n\
            job_queue_wait_seconds_bucket{queue=\"welcome_email\",le=\"0.001\"} 0\n\
            job_queue_wait_seconds_sum{queue=\"welcome_email\"} 0.0123\n\
            job_queue_wait_seconds_count{queue=\"welcome_email\"} 3\n\
            job_queue_wait_seconds_sum{queue=\"audit_log\"} 0.5\n\
            job_queue_wait_seconds_count{queue=\"audit_log\"} 4\n\
            jobs_started_total{queue=\"audit_log\"} 4\n";
        let sums = parse_wait_sums(text);
        assert_eq!(sums.len(), 2);
        assert_eq!(sums["welcome_email"], (3, 0.0123));
        assert_eq!(sums["audit_log"], (4, 0.5));
    }
}
