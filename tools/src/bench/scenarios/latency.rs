//! Sync vs async registration latency at each SMTP latency, in a closed loop (bound by
//! throughput) and in an open loop at a fixed rate (the server's latency when not saturated).

use serde::Serialize;

use signup_queue::config::HashCost;

use crate::{
    bench::{
        BenchArgs, Plan,
        harness::{self, Summary, bar, load, paced_load},
    },
    smtp_sink::{SinkConfig, SmtpSink},
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
    /// Async then sync, for each SMTP latency in turn.
    pub rows: Vec<LatencyRow>,
    /// Async only, one per SMTP latency.
    pub paced: Vec<PacedRow>,
}

pub async fn run(
    args: &BenchArgs,
    plan: &Plan,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<LatencyResult> {
    let client = reqwest::Client::new();
    let mut result = LatencyResult::default();
    for &latency in &plan.latencies {
        let sink = SmtpSink::start(SinkConfig::with_latency_ms(latency)).await?;
        let app = harness::app(sink.smtp_url(), workers, hash_cost)
            .try_spawn()
            .await?;
        for mode in [Mode::Async, Mode::Sync] {
            let name = mode.as_str();
            let progress = bar(
                plan.requests,
                &format!("latency: {name}, SMTP +{latency} ms"),
            );
            let (h, errors, elapsed) = load(
                &client,
                &app.url(&format!("/register/{name}")),
                &format!("{name}{latency}"),
                plan.requests,
                args.concurrency,
                &progress,
            )
            .await;
            progress.finish_and_clear();
            result.rows.push(LatencyRow {
                summary: Summary::of(&h, elapsed),
                mode,
                smtp_latency_ms: latency,
                errors,
            });
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
            },
            paced_per_s: args.rate,
        });
        app.stop().await;
        sink.stop();
    }
    Ok(result)
}
