//! Sync vs async registration latency at each SMTP latency, in a closed loop (bound by
//! throughput) and in an open loop at a fixed rate (the server's latency when not saturated);
//! then, against the fast mail server, the closed loop again with more clients
//! (`--high-concurrency`), where the database's writes queue up.

use serde::Serialize;

use signup_queue::config::HashCost;

use crate::{
    bench::{
        BenchArgs, Plan,
        harness::{self, Summary, bar, load, paced_load},
        target::Target,
    },
    smtp_sink::{SinkConfig, SmtpSink},
    testkit::TestApp,
};

/// Which endpoint: `/register/async` answers once the jobs are committed, `/register/sync` once
/// the welcome mail is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Async,
    Sync,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Sync => "sync",
        }
    }
}

/// One closed-loop run: `concurrency` clients, each waiting for its answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyRow {
    #[serde(flatten)]
    pub summary: Summary,
    pub mode: Mode,
    pub smtp_latency_ms: u64,
    pub errors: usize,
    /// Clients at once (a paced row: the clients of the closed loop it follows).
    pub concurrency: usize,
}

/// One open-loop run at `paced_per_s` registrations a second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PacedRow {
    #[serde(flatten)]
    pub row: LatencyRow,
    pub paced_per_s: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyResult {
    /// Async then sync, for each SMTP latency in turn; then async and sync at the high
    /// concurrency, SMTP +0 ms.
    pub rows: Vec<LatencyRow>,
    /// Async only, one per SMTP latency.
    pub paced: Vec<PacedRow>,
}

pub async fn run(
    target: &Target,
    args: &BenchArgs,
    plan: &Plan,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<LatencyResult> {
    let client = reqwest::Client::new();
    let mut result = LatencyResult::default();
    for &latency in &plan.latencies {
        let sink = SmtpSink::start(SinkConfig::with_latency_ms(latency)).await?;
        let db = target.fresh("latency").await?;
        let app = harness::app(sink.smtp_url(), workers, hash_cost)
            .database(db.url())
            .try_spawn()
            .await?;
        for mode in [Mode::Async, Mode::Sync] {
            let row = closed_loop(&client, &app, plan, mode, latency, args.concurrency).await;
            result.rows.push(row);
        }
        let progress = bar(
            plan.requests,
            &format!("latency: async at {}/s, SMTP +{latency} ms", args.rate),
        );
        let (h, errors, elapsed) = paced_load(
            &client,
            &app.url("/register/async"),
            &format!("paced{latency}"),
            plan.requests,
            args.rate,
            &progress,
        )
        .await;
        progress.finish_and_clear();
        result.paced.push(PacedRow {
            row: LatencyRow {
                summary: Summary::of(&h, elapsed),
                mode: Mode::Async,
                smtp_latency_ms: latency,
                errors,
                concurrency: args.concurrency,
            },
            paced_per_s: args.rate,
        });
        app.stop().await;
        sink.stop();
        db.remove().await?;
    }
    if args.high_concurrency > 0 {
        let sink = SmtpSink::start(SinkConfig::with_latency_ms(0)).await?;
        let db = target.fresh("latency_high").await?;
        let app = harness::app(sink.smtp_url(), workers, hash_cost)
            .database(db.url())
            .try_spawn()
            .await?;
        for mode in [Mode::Async, Mode::Sync] {
            let row = closed_loop(&client, &app, plan, mode, 0, args.high_concurrency).await;
            result.rows.push(row);
        }
        app.stop().await;
        sink.stop();
        db.remove().await?;
    }
    Ok(result)
}

/// `plan.requests` registrations on one endpoint, `concurrency` clients at a time.
async fn closed_loop(
    client: &reqwest::Client,
    app: &TestApp,
    plan: &Plan,
    mode: Mode,
    latency: u64,
    concurrency: usize,
) -> LatencyRow {
    let name = mode.as_str();
    let progress = bar(
        plan.requests,
        &format!("latency: {name}, SMTP +{latency} ms, {concurrency} clients"),
    );
    let (h, errors, elapsed) = load(
        client,
        &app.url(&format!("/register/{name}")),
        &format!("{name}{latency}c{concurrency}"),
        plan.requests,
        concurrency,
        &progress,
    )
    .await;
    progress.finish_and_clear();
    LatencyRow {
        summary: Summary::of(&h, elapsed),
        mode,
        smtp_latency_ms: latency,
        errors,
        concurrency,
    }
}
