//! `signup-queue bench`: measures what the queue buys, against the limits of the same machine,
//! in one run. Starts everything it needs on 127.0.0.1 (the app on a temporary database, an SMTP
//! sink with a configurable latency and session cap, the product's own `web` and `worker`
//! processes for the scenarios between processes), prints a table, writes `bench-results.json`
//! and SVG plots into `--out`. Numbers, never assertions: see BENCHMARKS.md.
//!
//! The database is SQLite (a temporary file per scenario) unless `--database-url` names a
//! PostgreSQL server, where each scenario gets a database of its own, dropped after it; `--both`
//! runs everything on SQLite and then on PostgreSQL, and puts the two side by side.
//!
//! This file owns the command line, the plan (how many of each thing a run does) and the order
//! of the scenarios; [`harness`] what they measure with, [`target`] each scenario's database,
//! [`product`] the product's processes, [`cpu`] where the CPU goes, [`scenarios`] one file each,
//! [`report`] the typed results, the table and the JSON, [`plot`] the SVG.

mod cpu;
mod harness;
mod plot;
mod product;
mod report;
mod scenarios;
mod side_by_side;
mod table;
mod target;

use std::{path::PathBuf, time::Instant};

use anyhow::Context;

use signup_queue::config::HashCost;

use report::{Limits, Results};
use scenarios::{
    burst, cross_pickup, drain, hash, latency, pickup, pipeline, raw_http, raw_smtp, scale_out,
    transactions,
};
use target::Target;

/// Measure sync vs async, peak shaving and the limits of this machine (starts all it needs on
/// 127.0.0.1).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "signup-queue bench", version)]
pub struct BenchArgs {
    /// A short run (well under two minutes) with small counts, for CI.
    #[arg(long)]
    pub quick: bool,
    /// The database the scenarios run on: unset or `sqlite://...`, SQLite (a temporary file per
    /// scenario; the file named is never touched); `postgres://user@host:port/db`, that
    /// PostgreSQL server (a fresh database per scenario, created and dropped by the bench, so the
    /// user needs CREATEDB; the database named is never touched).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Run everything on SQLite, then on the PostgreSQL server of --database-url, and write the
    /// two side by side (side-by-side.md; bench-results.json is SQLite's,
    /// bench-results-postgres.json PostgreSQL's).
    #[arg(long)]
    pub both: bool,
    /// Requests per endpoint in the latency scenario [default: 300; quick: 40].
    #[arg(long)]
    pub requests: Option<usize>,
    /// Concurrent clients in the latency scenario.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Concurrent clients of a second closed loop (async and sync, SMTP +0 ms) in the latency
    /// scenario; 0 leaves it out.
    #[arg(long, default_value_t = 64)]
    pub high_concurrency: usize,
    /// SMTP sink latencies (ms per message) for the latency scenario [default: 0,1000; quick: 0,200].
    #[arg(long, value_delimiter = ',')]
    pub smtp_latency_ms: Option<Vec<u64>>,
    /// Open-loop rate (requests per second) of the paced async latency run, to show latency when
    /// the server is not saturated (the concurrency run is bound by throughput).
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// SMTP sink latency during the burst (peak shaving), also used for the pipeline and raw
    /// lettre runs against a mail server that takes its time.
    #[arg(long, default_value_t = 20)]
    pub burst_latency_ms: u64,
    /// Most concurrent SMTP sessions the sink accepts (refusing more with 421) [default: WORKERS].
    #[arg(long)]
    pub smtp_max_sessions: Option<usize>,
    /// Registrations in the burst, and in the pipeline runs at SMTP +0 ms [default: 5000; quick: 300].
    #[arg(long)]
    pub burst: Option<usize>,
    /// Jobs waiting in the drain-rate scenario [default: 10000; quick: 1000].
    #[arg(long)]
    pub backlog: Option<usize>,
    /// Finished jobs already in the table in the drain-rate scenario [default: 50000; quick: 5000].
    #[arg(long)]
    pub finished: Option<usize>,
    /// Run only these scenarios (comma-separated); the others are left out of the table and JSON.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Scenario>,
    /// Where bench-results.json and the plots go.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Concurrent jobs per consumer queue in the app under test (WORKERS, as for `serve`).
    #[arg(long, env = "WORKERS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
    /// Keep the logs of the product's `web` and `worker` processes (the scenarios between
    /// processes) in this folder, one subfolder per run of a scenario [default: a temporary
    /// folder, removed].
    #[arg(long)]
    pub product_logs: Option<PathBuf>,
    /// RUST_LOG of those processes, e.g. `info,apalis_core=debug` with --product-logs.
    #[arg(long, default_value = "warn")]
    pub product_log_filter: String,
    /// Password hashing in the app under test: `test` by default here (the bench measures the
    /// queue, and says so), or `production`.
    #[arg(long, env = "HASH_COST", value_enum, default_value_t = HashCost::Test)]
    pub hash_cost: HashCost,
}

/// The scenarios `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Sync vs async register latency at each SMTP latency.
    Latency,
    /// Raw SQLite user (+ jobs) transactions: enqueue overhead.
    Transactions,
    /// Idle pickup time, in `serve` and in a separate worker.
    Pickup,
    /// Idle pickup time between a `web` and a `worker` process of the real binary.
    CrossPickup,
    /// Peak shaving: the burst under an SMTP session cap, with its plot.
    Burst,
    /// Mails per second: end to end with registrations, and from a backlog.
    Pipeline,
    /// Queue drain rate with a no-op handler over many finished jobs.
    Drain,
    /// Raw lettre sends and a trivial axum route.
    Limits,
    /// Pipeline with 1, 2, 4 worker processes and registrations with 1, 2 web processes (real
    /// binary), with the CPU of each.
    ScaleOut,
}

/// How many of each thing a run does: `--quick` and the flags decide, the scenarios read it.
pub(crate) struct Plan {
    pub(crate) requests: usize,
    pub(crate) latencies: Vec<u64>,
    pub(crate) burst: usize,
    pub(crate) backlog: usize,
    pub(crate) finished: usize,
    pub(crate) transactions: usize,
    pub(crate) raw_mails: usize,
    pub(crate) slow_pipeline: usize,
    pub(crate) pickups: usize,
    /// Worker processes of each scale-out pipeline run (its backlog: `burst` registrations).
    pub(crate) worker_processes: Vec<usize>,
    /// Web processes of each scale-out registration run.
    pub(crate) web_processes: Vec<usize>,
    pub(crate) scale_requests: usize,
    pub(crate) product_logs: Option<PathBuf>,
    pub(crate) product_log_filter: String,
}

impl BenchArgs {
    fn plan(&self) -> Plan {
        let quick = self.quick;
        Plan {
            requests: self.requests.unwrap_or(if quick { 40 } else { 300 }),
            latencies: self
                .smtp_latency_ms
                .clone()
                .unwrap_or_else(|| if quick { vec![0, 200] } else { vec![0, 1000] }),
            burst: self.burst.unwrap_or(if quick { 300 } else { 5000 }),
            backlog: self.backlog.unwrap_or(if quick { 1000 } else { 10_000 }),
            finished: self.finished.unwrap_or(if quick { 5000 } else { 50_000 }),
            transactions: if quick { 300 } else { 3000 },
            raw_mails: if quick { 200 } else { 2000 },
            slow_pipeline: if quick { 20 } else { 200 },
            pickups: if quick { 20 } else { 100 },
            worker_processes: vec![1, 2, 4],
            web_processes: vec![1, 2],
            scale_requests: if quick { 300 } else { 3000 },
            product_logs: self.product_logs.clone(),
            product_log_filter: self.product_log_filter.clone(),
        }
    }
}

/// Runs the chosen scenarios on the chosen database (or on both, one after the other), writes the
/// JSON and prints the table.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let target = Target::from_url(args.database_url.as_deref())?;
    if !args.both {
        run_on(&args, &target, "").await?;
        return Ok(());
    }
    let Target::Postgres(_) = target else {
        anyhow::bail!(
            "--both runs on SQLite and on PostgreSQL: give the server with --database-url \
             postgres://user@host:port/postgres (or DATABASE_URL)"
        );
    };
    let started = Instant::now();
    let sqlite = run_on(&args, &Target::Sqlite, "").await?;
    let postgres = run_on(&args, &target, "-postgres").await?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let table = side_by_side::side_by_side(&sqlite, &postgres, &command, started.elapsed());
    let path = args.out.join("side-by-side.md");
    std::fs::write(&path, &table).with_context(|| format!("cannot write {}", path.display()))?;
    println!("\n{table}");
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Runs the chosen scenarios one after another, never side by side: they share the machine they
/// measure. Then writes the JSON (`bench-results{suffix}.json`) and prints the table.
async fn run_on(args: &BenchArgs, target: &Target, suffix: &str) -> anyhow::Result<Results> {
    let (workers, hash_cost) = (args.workers, args.hash_cost);
    let plan = args.plan();
    let backend = target.backend().as_str();
    let cost_name = report::cost_name(hash_cost);
    eprintln!(
        "signup-queue bench{} on {backend}: WORKERS={workers}, password hashing: {cost_name}",
        if args.quick { " --quick" } else { "" }
    );
    let started = Instant::now();
    let hash_p50_ms = hash::p50_ms(hash_cost).await?;
    let want = |s: Scenario| args.only.is_empty() || args.only.contains(&s);
    let (latency, paced) = if want(Scenario::Latency) {
        let result = latency::run(target, args, &plan, workers, hash_cost).await?;
        (Some(result.rows), Some(result.paced))
    } else {
        (None, None)
    };
    let transactions = if want(Scenario::Transactions) {
        Some(transactions::run(target, &plan).await?)
    } else {
        None
    };
    let pickup = if want(Scenario::Pickup) {
        Some(pickup::run(target, &plan, workers, hash_cost).await?)
    } else {
        None
    };
    let cross_process_pickup = if want(Scenario::CrossPickup) {
        cross_pickup::run(target, &plan, workers, hash_cost).await?
    } else {
        None
    };
    let plot = args.out.join(format!("peak-shaving{suffix}.svg"));
    let burst = if want(Scenario::Burst) {
        let latency_ms = args.burst_latency_ms;
        Some(
            burst::run(
                target,
                args,
                &plan,
                workers,
                hash_cost,
                latency_ms,
                Some(&plot),
            )
            .await?,
        )
    } else {
        None
    };
    let (pipeline, backlog_pipeline, slow_smtp_pipeline) = if want(Scenario::Pipeline) {
        (
            Some(burst::run(target, args, &plan, workers, hash_cost, 0, None).await?),
            Some(pipeline::run(target, plan.burst, 0, workers, hash_cost).await?),
            Some(
                pipeline::run(
                    target,
                    plan.slow_pipeline,
                    args.burst_latency_ms,
                    workers,
                    hash_cost,
                )
                .await?,
            ),
        )
    } else {
        (None, None, None)
    };
    let drain = if want(Scenario::Drain) {
        Some(drain::run(target, &plan, workers).await?)
    } else {
        None
    };
    let scale_out = if want(Scenario::ScaleOut) {
        scale_out::run(target, &plan, workers, hash_cost).await?
    } else {
        None
    };
    let (raw_lettre, raw_lettre_slow_smtp, trivial_axum_route) = if want(Scenario::Limits) {
        (
            Some(raw_smtp::run(plan.raw_mails, 0, workers).await?),
            Some(raw_smtp::run(plan.slow_pipeline * 2, args.burst_latency_ms, workers).await?),
            Some(raw_http::run(&plan, args.concurrency).await?),
        )
    } else {
        (None, None, None)
    };

    let limits = Limits {
        raw_lettre,
        raw_lettre_slow_smtp,
        trivial_axum_route,
        raw_sqlite_user_and_jobs_tx: transactions.as_ref().map(|t| t.user_and_jobs.clone()),
    };
    let mut results = Results {
        machine: report::machine(),
        backend: backend.to_owned(),
        hash_cost: cost_name.to_owned(),
        hash_p50_ms,
        workers,
        concurrency: args.concurrency,
        quick: args.quick,
        latency,
        paced,
        transactions,
        pickup,
        cross_process_pickup,
        burst,
        pipeline,
        backlog_pipeline,
        slow_smtp_pipeline,
        drain,
        scale_out,
        limits,
        ratios: Default::default(),
        seconds: 0.0,
    };
    results.ratios = report::Ratios::of(&results);
    results.seconds = started.elapsed().as_secs_f64();
    let path = args.out.join(format!("bench-results{suffix}.json"));
    report::write(&results, &path)?;
    table::print_table(&results);
    if want(Scenario::Burst) {
        eprintln!("wrote {} and {}", path.display(), plot.display());
    } else {
        eprintln!("wrote {}", path.display());
    }
    Ok(results)
}
