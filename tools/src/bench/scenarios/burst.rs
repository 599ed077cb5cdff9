//! Peak shaving: a burst of async registrations against an SMTP sink that takes its time and
//! caps its sessions, sampled every 100 ms (accepted, queue depth, delivered) until every welcome
//! mail is out. At SMTP +0 ms and without a plot, the same run is the end-to-end pipeline.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde::Serialize;
use signup_queue::db::Db;

use signup_queue::config::HashCost;

use crate::{
    bench::{
        BenchArgs, Plan,
        harness::{self, Summary, bar, per_s, register_timed, tally},
        plot::{Sample, draw_burst},
        target::Target,
    },
    smtp_sink::{SinkConfig, SmtpSink},
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Burst {
    pub registrations: usize,
    pub smtp_latency_ms: u64,
    pub smtp_session_cap: usize,
    pub workers: u16,
    pub errors: usize,
    pub async_during_burst: Summary,
    pub burst_seconds: f64,
    /// From the burst's start to the last welcome mail (or the deadline).
    pub drain_seconds: f64,
    pub welcome_mails: usize,
    pub lost: usize,
    pub duplicates: usize,
    pub all_mails_incl_coupons: usize,
    pub mails_per_s: f64,
    pub max_smtp_sessions: usize,
    pub refused_smtp_sessions: usize,
}

/// Welcome mails only: the coupon consumer's mails go to the same sink.
fn welcome_ids(sink: &SmtpSink) -> Vec<String> {
    sink.accepted()
        .into_iter()
        .filter_map(|m| m.message_id)
        .filter(|id| id.starts_with("<welcome-"))
        .collect()
}

pub async fn run(
    target: &Target,
    args: &BenchArgs,
    plan: &Plan,
    workers: u16,
    hash_cost: HashCost,
    latency_ms: u64,
    plot: Option<&Path>,
) -> anyhow::Result<Burst> {
    let cap = args.smtp_max_sessions.unwrap_or(usize::from(workers));
    let sink = SmtpSink::start(SinkConfig {
        latency: Duration::from_millis(latency_ms),
        max_sessions: Some(cap),
    })
    .await?;
    let db = target.fresh("burst").await?;
    let app = harness::app(sink.smtp_url(), workers, hash_cost)
        .database(db.url())
        .try_spawn()
        .await?;
    let client = reqwest::Client::new();
    let accepted = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let started = Instant::now();
    let sampler = tokio::spawn(sample(
        started,
        accepted.clone(),
        samples.clone(),
        sink.clone(),
        app.pool.clone(),
    ));
    let what = if plot.is_some() {
        "burst (peak shaving)"
    } else {
        "pipeline (SMTP +0 ms)"
    };
    let progress = bar(plan.burst, what);
    let url = app.url("/register/async");
    let results: Vec<(Duration, bool)> = futures::stream::iter(0..plan.burst)
        .map(|i| {
            let request =
                register_timed(&client, &url, format!("burst{latency_ms}-{i}@bench.local"));
            let accepted = accepted.clone();
            async move {
                let (latency, ok) = request.await;
                if ok {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                (latency, ok)
            }
        })
        .buffer_unordered(64)
        .inspect(|_| progress.inc(1))
        .collect()
        .await;
    let burst_time = started.elapsed();
    progress.finish_and_clear();
    let (h, errors) = tally(results);
    let expected = plan.burst - errors;
    // Twice the time the capped sessions need for every mail, plus slack for a slow machine.
    let per_mail = Duration::from_millis(latency_ms.max(1));
    let deadline = Instant::now()
        + per_mail * (2 * plan.burst as u32) / (cap.max(1) as u32)
        + Duration::from_secs(60);
    let drain = bar(expected, "draining: mails delivered");
    loop {
        let delivered = welcome_ids(&sink).len();
        drain.set_position(delivered as u64);
        if delivered >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_time = started.elapsed();
    drain.finish_and_clear();
    sampler.abort();
    let ids = welcome_ids(&sink);
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    let all_mails = sink.accepted_count();
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    if let Some(path) = plot {
        draw_burst(path, &samples, latency_ms, cap)?;
    }
    let result = Burst {
        registrations: plan.burst,
        smtp_latency_ms: latency_ms,
        smtp_session_cap: cap,
        workers,
        errors,
        async_during_burst: Summary::of(&h, burst_time),
        burst_seconds: burst_time.as_secs_f64(),
        drain_seconds: drain_time.as_secs_f64(),
        welcome_mails: ids.len(),
        lost: expected.saturating_sub(distinct.len()),
        duplicates: ids.len() - distinct.len(),
        all_mails_incl_coupons: all_mails,
        mails_per_s: per_s(all_mails as f64, drain_time),
        max_smtp_sessions: sink.max_open_sessions(),
        refused_smtp_sessions: sink.refused_sessions(),
    };
    app.stop().await;
    sink.stop();
    db.remove().await?;
    Ok(result)
}

/// The timeline for the plot, every 100 ms until aborted.
async fn sample(
    started: Instant,
    accepted: Arc<AtomicUsize>,
    samples: Arc<Mutex<Vec<Sample>>>,
    sink: SmtpSink,
    pool: Db,
) {
    loop {
        let depth: i64 = signup_queue::queue::inspect::stats(&pool)
            .await
            .map(|stats| {
                stats
                    .iter()
                    .filter(|q| q.queue == "welcome_email")
                    .map(|q| q.pending + q.running + q.retrying + q.failed)
                    .sum()
            })
            .unwrap_or(-1);
        let delivered = sink
            .accepted()
            .iter()
            .filter(|m| {
                m.message_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("<welcome-"))
            })
            .count();
        if let Ok(mut s) = samples.lock() {
            s.push(Sample {
                t: started.elapsed().as_secs_f64(),
                accepted: accepted.load(Ordering::Relaxed),
                depth,
                delivered,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
