//! `signup-queue bench`: measures what the queue buys, against the limits of the same machine,
//! in one run. Starts everything it needs on 127.0.0.1 (the app on a temporary database, an SMTP
//! sink with a configurable latency and session cap), prints a table, writes
//! `bench-results.json` and SVG plots into `--out`. Numbers, never assertions: see BENCHMARKS.md.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;

use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use sqlx::SqlitePool;

use signup_queue::{
    Application, Role, Settings,
    config::{AdminBind, HashCost},
    consumers::{self, Consumer, ConsumerError, Deps, JobInfo},
    events::{Envelope, UserRegistered},
    mail::Mailer,
    queue::Wakeup,
    signup::Signup,
    users::{Email, User, insert_user},
};

use crate::smtp_sink::{SinkConfig, SmtpSink};

/// The registration use case on `pool`, with the built-in consumers' queues, as the app builds it.
fn signup_on(pool: &SqlitePool, mailer: Mailer) -> Signup {
    let queues = consumers::built_in(&Deps {
        pool: pool.clone(),
        mailer: mailer.clone(),
    })
    .iter()
    .map(|c| c.name())
    .collect();
    Signup::new(
        pool.clone(),
        mailer,
        queues,
        Wakeup::default(),
        HashCost::Test,
        10,
    )
}

/// Measure sync vs async, peak shaving and the limits of this machine (starts all it needs on
/// 127.0.0.1).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "signup-queue bench", version)]
pub struct BenchArgs {
    /// A short run (well under a minute) with small counts, for CI.
    #[arg(long)]
    pub quick: bool,
    /// Requests per endpoint in the latency scenario [default: 300; quick: 40].
    #[arg(long)]
    pub requests: Option<usize>,
    /// Concurrent clients in the latency scenario.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
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
    /// Peak shaving: the burst under an SMTP session cap, with its plot.
    Burst,
    /// Mails per second: end to end with registrations, and from a backlog.
    Pipeline,
    /// Queue drain rate with a no-op handler over many finished jobs.
    Drain,
    /// Raw lettre sends and a trivial axum route.
    Limits,
}

struct Plan {
    requests: usize,
    latencies: Vec<u64>,
    burst: usize,
    backlog: usize,
    finished: usize,
    transactions: usize,
    raw_mails: usize,
    slow_pipeline: usize,
    pickups: usize,
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
        }
    }
}

/// Client-side latencies in microseconds.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn summary(h: &Histogram<u64>, elapsed: Duration) -> Value {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(0.50), "p90_ms": ms(0.90), "p99_ms": ms(0.99), "max_ms": h.max() as f64 / 1000.0,
        "throughput_per_s": h.len() as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:<40} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// A running app on a temporary database.
struct RunningApp {
    base: String,
    pool: SqlitePool,
    token: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

fn settings(database_url: String, smtp_url: String, workers: u16, hash_cost: HashCost) -> Settings {
    let mut settings = Settings::for_tests(database_url, Some(smtp_url));
    settings.workers = workers;
    settings.hash_cost = hash_cost;
    settings.rate_limit_per_minute = 0;
    settings.admin_bind = AdminBind::Off;
    settings.smtp_timeout = Duration::from_secs(30);
    settings.retry_cap = Duration::from_secs(5);
    settings
}

async fn start_app(
    smtp_url: String,
    workers: u16,
    hash_cost: HashCost,
    extra: Vec<Arc<dyn Consumer>>,
) -> anyhow::Result<RunningApp> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let app = Application::build_with_consumers(
        settings(url, smtp_url, workers, hash_cost),
        Role::All,
        extra,
    )
    .await?;
    let base = format!("http://{}", app.local_addr().context("no HTTP address")?);
    let pool = app.pool().clone();
    let token = app.shutdown_token();
    let handle = tokio::spawn(app.run_until_stopped(std::future::pending()));
    Ok(RunningApp {
        base,
        pool,
        token,
        handle,
        _dir: dir,
    })
}

impl RunningApp {
    async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.handle).await;
    }
}

/// One registration of `email` against `url`: how long the answer took, and whether it was 201.
fn register_timed(
    client: &reqwest::Client,
    url: &str,
    email: String,
) -> impl std::future::Future<Output = (Duration, bool)> + Send + 'static {
    let request = client
        .post(url)
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send();
    async move {
        let t = Instant::now();
        let ok = matches!(request.await, Ok(r) if r.status().as_u16() == 201);
        (t.elapsed(), ok)
    }
}

/// Client-side latencies into a histogram, and the number of answers that were not 201.
fn tally(results: impl IntoIterator<Item = (Duration, bool)>) -> (Histogram<u64>, usize) {
    let mut h = histogram();
    let mut errors = 0;
    for (latency, ok) in results {
        let _ = h.record(latency.as_micros().max(1) as u64);
        errors += usize::from(!ok);
    }
    (h, errors)
}

/// `n` registrations against `url`, `concurrency` at a time; returns latencies, non-201 count,
/// and the wall time.
async fn load(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
    progress: &ProgressBar,
) -> (Histogram<u64>, usize, Duration) {
    let started = Instant::now();
    let results: Vec<(Duration, bool)> = futures::stream::iter(0..n)
        .map(|i| register_timed(client, url, format!("{prefix}-{i}@bench.local")))
        .buffer_unordered(concurrency)
        .inspect(|_| progress.inc(1))
        .collect()
        .await;
    let (h, errors) = tally(results);
    (h, errors, started.elapsed())
}

/// `n` registrations at a steady `rate` per second whatever the answers (open loop), so the
/// latency is the server's, not the queueing of a saturated closed loop.
async fn paced_load(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    n: usize,
    rate: u32,
    progress: &ProgressBar,
) -> (Histogram<u64>, usize, Duration) {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::with_capacity(n);
    for i in 0..n {
        ticks.tick().await;
        let request = register_timed(client, url, format!("{prefix}-{i}@bench.local"));
        let progress = progress.clone();
        requests.push(tokio::spawn(async move {
            let result = request.await;
            progress.inc(1);
            result
        }));
    }
    let mut results = Vec::with_capacity(n);
    let mut unfinished = 0;
    for request in requests {
        // A task that could not finish counts as an error, with no latency to record.
        match request.await {
            Ok(result) => results.push(result),
            Err(_) => unfinished += 1,
        }
    }
    let (h, errors) = tally(results);
    (h, errors + unfinished, started.elapsed())
}

fn latency_row(
    h: &Histogram<u64>,
    elapsed: Duration,
    mode: &str,
    smtp_latency_ms: u64,
    errors: usize,
) -> Value {
    let mut row = summary(h, elapsed);
    row["mode"] = json!(mode);
    row["smtp_latency_ms"] = json!(smtp_latency_ms);
    row["errors"] = json!(errors);
    row
}

async fn latency_scenario(
    args: &BenchArgs,
    plan: &Plan,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<(Value, Value)> {
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    let mut paced = Vec::new();
    for &latency in &plan.latencies {
        let sink = SmtpSink::start(SinkConfig::with_latency_ms(latency)).await?;
        let app = start_app(sink.smtp_url(), workers, hash_cost, Vec::new()).await?;
        for mode in ["async", "sync"] {
            let progress = bar(
                plan.requests,
                &format!("latency: {mode}, SMTP +{latency} ms"),
            );
            let (h, errors, elapsed) = load(
                &client,
                &format!("{}/register/{mode}", app.base),
                &format!("{mode}{latency}"),
                plan.requests,
                args.concurrency,
                &progress,
            )
            .await;
            progress.finish_and_clear();
            rows.push(latency_row(&h, elapsed, mode, latency, errors));
        }
        let progress = bar(
            plan.requests,
            &format!("latency: async at {}/s, SMTP +{latency} ms", args.rate),
        );
        let (h, errors, elapsed) = paced_load(
            &client,
            &format!("{}/register/async", app.base),
            &format!("paced{latency}"),
            plan.requests,
            args.rate,
            &progress,
        )
        .await;
        progress.finish_and_clear();
        let mut row = latency_row(&h, elapsed, "async", latency, errors);
        row["paced_per_s"] = json!(args.rate);
        paced.push(row);
        app.stop().await;
        sink.stop();
    }
    Ok((json!(rows), json!(paced)))
}

/// User + jobs transactions with no HTTP and no hashing: the queue's own cost, and the limit.
async fn transaction_scenario(plan: &Plan) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("tx.db").display());
    let pool = signup_queue::db::connect_and_migrate(&url).await?;
    let mailer = Mailer::new(
        "smtp://127.0.0.1:9",
        "Bench <bench@bench.local>",
        Duration::from_secs(1),
        1,
    )?;
    let signup = signup_on(&pool, mailer);
    let progress = bar(2 * plan.transactions, "SQLite: user with and without jobs");
    let mut results = serde_json::Map::new();
    for with_jobs in [false, true] {
        let mut h = histogram();
        let started = Instant::now();
        for i in 0..plan.transactions {
            let email = Email::parse(&format!("tx{}-{i}@bench.local", u8::from(with_jobs)))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let t = Instant::now();
            let mut tx = pool.begin().await?;
            if with_jobs {
                signup
                    .insert_and_publish(&mut tx, &email, None, "$argon2id$bench", None)
                    .await?;
            } else {
                insert_user(&mut tx, &email, None, "$argon2id$bench").await?;
            }
            tx.commit().await?;
            let _ = h.record(t.elapsed().as_micros().max(1) as u64);
            progress.inc(1);
        }
        let key = if with_jobs {
            "user_and_jobs"
        } else {
            "user_only"
        };
        results.insert(key.into(), summary(&h, started.elapsed()));
    }
    progress.finish_and_clear();
    let p50 = |k: &str| results[k]["p50_ms"].as_f64().unwrap_or_default();
    let overhead = p50("user_and_jobs") - p50("user_only");
    results.insert("enqueue_overhead_p50_ms".into(), json!(overhead));
    results.insert(
        "consumers".into(),
        json!(
            consumers::built_in(&Deps {
                pool: pool.clone(),
                mailer: Mailer::new(
                    "smtp://127.0.0.1:9",
                    "B <b@b.local>",
                    Duration::from_secs(1),
                    1
                )?
            })
            .len()
        ),
    );
    pool.close().await;
    Ok(Value::Object(results))
}

/// One sample of the burst timeline.
#[derive(Clone, Copy)]
struct Sample {
    t: f64,
    accepted: usize,
    depth: i64,
    delivered: usize,
}

async fn burst_scenario(
    args: &BenchArgs,
    plan: &Plan,
    workers: u16,
    hash_cost: HashCost,
    latency_ms: u64,
    plot: Option<&PathBuf>,
) -> anyhow::Result<Value> {
    let cap = args.smtp_max_sessions.unwrap_or(usize::from(workers));
    let sink = SmtpSink::start(SinkConfig {
        latency: Duration::from_millis(latency_ms),
        max_sessions: Some(cap),
    })
    .await?;
    let app = start_app(sink.smtp_url(), workers, hash_cost, Vec::new()).await?;
    let client = reqwest::Client::new();
    let accepted = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let started = Instant::now();
    let sampler = {
        let (accepted, samples, sink, pool) = (
            accepted.clone(),
            samples.clone(),
            sink.clone(),
            app.pool.clone(),
        );
        tokio::spawn(async move {
            loop {
                let depth: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE job_type = 'welcome_email' AND status != 'Done'")
                    .fetch_one(&pool)
                    .await
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
        })
    };
    let what = if plot.is_some() {
        "burst (peak shaving)"
    } else {
        "pipeline (SMTP +0 ms)"
    };
    let progress = bar(plan.burst, what);
    let url = format!("{}/register/async", app.base);
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
    let welcome_ids = |sink: &SmtpSink| -> Vec<String> {
        sink.accepted()
            .into_iter()
            .filter_map(|m| m.message_id)
            .filter(|id| id.starts_with("<welcome-"))
            .collect()
    };
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
    let result = json!({
        "registrations": plan.burst,
        "smtp_latency_ms": latency_ms,
        "smtp_session_cap": cap,
        "workers": workers,
        "errors": errors,
        "async_during_burst": summary(&h, burst_time),
        "burst_seconds": burst_time.as_secs_f64(),
        "drain_seconds": drain_time.as_secs_f64(),
        "welcome_mails": ids.len(),
        "lost": expected.saturating_sub(distinct.len()),
        "duplicates": ids.len() - distinct.len(),
        "all_mails_incl_coupons": all_mails,
        "mails_per_s": all_mails as f64 / drain_time.as_secs_f64().max(1e-9),
        "max_smtp_sessions": sink.max_open_sessions(),
        "refused_smtp_sessions": sink.refused_sessions(),
    });
    app.stop().await;
    sink.stop();
    Ok(result)
}

fn draw_burst(
    path: &PathBuf,
    samples: &[Sample],
    latency_ms: u64,
    cap: usize,
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let rate = |f: fn(&Sample) -> usize| -> Vec<(f64, f64)> {
        samples
            .windows(2)
            .map(|w| {
                (
                    w[1].t,
                    (f(&w[1]) as f64 - f(&w[0]) as f64) / (w[1].t - w[0].t).max(1e-3),
                )
            })
            .collect()
    };
    let accepted = rate(|s| s.accepted);
    let delivered = rate(|s| s.delivered);
    let depth: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (s.t, s.depth.max(0) as f64))
        .collect();
    let t_max = samples.last().map(|s| s.t).unwrap_or(1.0).max(1.0);
    let y_max = accepted
        .iter()
        .chain(&delivered)
        .chain(&depth)
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Peak shaving: burst of registrations, SMTP +{latency_ms} ms, at most {cap} sessions"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the burst started")
        .y_desc("per second / jobs")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (name, points, color) in [
        ("registrations accepted per second", accepted, BLUE),
        ("queue depth (welcome jobs not done)", depth, RED),
        ("welcome mails delivered per second", delivered, GREEN),
    ] {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The consumer side of the pipeline on its own: `n` registrations committed through the real
/// transaction (user row + every consumer's job) before any worker runs, then a `worker` process's
/// pools drain them into the SMTP sink. Mails accepted per second, from worker start to the last
/// job done, is what the queue adds on top of sending (compare with raw lettre). The end-to-end
/// figure of the burst at SMTP +0 ms cannot reach it: it is bounded by the registration rate.
async fn backlog_pipeline_scenario(
    n: usize,
    latency_ms: u64,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<Value> {
    let sink = SmtpSink::start(SinkConfig::with_latency_ms(latency_ms)).await?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("pipeline.db").display());
    let pool = signup_queue::db::connect_and_migrate(&url).await?;
    let signup = signup_on(
        &pool,
        Mailer::new(
            &sink.smtp_url(),
            "Bench <bench@bench.local>",
            Duration::from_secs(1),
            1,
        )?,
    );
    let fill = bar(n, "pipeline: registrations queued");
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut tx = pool.begin().await?;
        for i in chunk {
            let email = Email::parse(&format!("pipe-{i}@bench.local"))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            signup
                .insert_and_publish(&mut tx, &email, None, "$argon2id$bench", None)
                .await?;
        }
        tx.commit().await?;
        fill.inc(chunk.len() as u64);
    }
    fill.finish_and_clear();
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM Jobs")
        .fetch_one(&pool)
        .await?;
    pool.close().await;

    let app = Application::build(
        settings(url, sink.smtp_url(), workers, hash_cost),
        Role::Worker,
    )
    .await?;
    let pool = app.pool().clone();
    let token = app.shutdown_token();
    let started = Instant::now();
    let cpu_before = process_cpu();
    let handle = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let progress = bar(
        jobs as usize,
        &format!("pipeline, SMTP +{latency_ms} ms: jobs done"),
    );
    let deadline = Instant::now()
        + Duration::from_secs(if n > 1000 { 300 } else { 60 })
        + Duration::from_millis(latency_ms) * (2 * n as u32) / u32::from(workers.max(1));
    let mut left = jobs;
    while left > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE status != 'Done'")
            .fetch_one(&pool)
            .await?;
        progress.set_position((jobs - left).max(0) as u64);
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    progress.finish_and_clear();
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
    let mails = sink.accepted_count();
    let mut ids: Vec<String> = sink
        .accepted()
        .into_iter()
        .filter_map(|m| m.message_id)
        .collect();
    let total_ids = ids.len();
    ids.sort();
    ids.dedup();
    sink.stop();
    Ok(json!({
        "registrations": n,
        "smtp_latency_ms": latency_ms,
        "jobs": jobs,
        "left_undone": left,
        "seconds": elapsed.as_secs_f64(),
        "mails": mails,
        "duplicates": total_ids - ids.len(),
        "mails_per_s": mails as f64 / elapsed.as_secs_f64().max(1e-9),
        "jobs_per_s": (jobs - left) as f64 / elapsed.as_secs_f64().max(1e-9),
        "cpu_us_per_mail": cpu.as_secs_f64() * 1e6 / (mails.max(1) as f64),
    }))
}

/// Drain rate of the queue itself: a no-op handler, a backlog on top of many finished jobs.
async fn drain_scenario(plan: &Plan, workers: u16) -> anyhow::Result<Value> {
    use apalis::prelude::*;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("drain.db").display());
    let pool = signup_queue::db::connect_and_migrate(&url).await?;
    const QUEUE: &str = "bench_noop";
    let fill = bar(plan.finished + plan.backlog, "drain: filling the job table");
    let push = |n: usize| {
        let pool = pool.clone();
        let fill = fill.clone();
        async move {
            for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
                let tasks: Vec<_> = chunk
                    .iter()
                    .map(|i| {
                        TaskBuilder::new(serde_json::to_vec(&json!({"n": i})).unwrap_or_default())
                            .build()
                    })
                    .collect();
                let mut tx = pool.begin().await?;
                apalis_sqlite::queries::push_tasks(&mut *tx, QUEUE, &tasks).await?;
                tx.commit().await?;
                fill.inc(chunk.len() as u64);
            }
            anyhow::Ok(())
        }
    };
    push(plan.finished).await?;
    sqlx::query("UPDATE Jobs SET status = 'Done', attempts = 1, done_at = strftime('%s','now'), lock_by = NULL WHERE job_type = ?1")
        .bind(QUEUE)
        .execute(&pool)
        .await?;
    push(plan.backlog).await?;
    fill.finish_and_clear();

    async fn noop(_job: Value) -> Result<(), BoxDynError> {
        Ok(())
    }
    let config = apalis_sqlite::Config::default()
        .queue(QUEUE)
        .batch_size(usize::from(workers) * 4);
    let backend = apalis_sqlite::SqliteStorage::<Value>::new(&pool)
        .with_config(config)
        .poll_with_interval(Duration::from_millis(10));
    let token = tokio_util::sync::CancellationToken::new();
    let stop = token.clone();
    let monitor = Monitor::new().register(move |_| {
        WorkerBuilder::new(signup_queue::queue::workers::worker_name(QUEUE))
            .backend(backend.clone())
            .concurrency(usize::from(workers))
            .build(noop)
    });
    let started = Instant::now();
    let running = tokio::spawn(async move {
        monitor
            .run_with_signal(async move {
                stop.cancelled().await;
                Ok(())
            })
            .await
    });
    let progress = bar(plan.backlog, "drain: no-op jobs done");
    let deadline = Instant::now() + Duration::from_secs(if plan.backlog > 5000 { 300 } else { 60 });
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status != 'Done'",
        )
        .bind(QUEUE)
        .fetch_one(&pool)
        .await?;
        progress.set_position((plan.backlog as i64 - left).max(0) as u64);
        if left == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    let left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status != 'Done'")
            .bind(QUEUE)
            .fetch_one(&pool)
            .await?;
    pool.close().await;
    Ok(json!({
        "backlog": plan.backlog,
        "finished_before": plan.finished,
        "seconds": elapsed.as_secs_f64(),
        "left_undone": left,
        "jobs_per_s": (plan.backlog as i64 - left) as f64 / elapsed.as_secs_f64().max(1e-9),
    }))
}

/// Raw lettre send rate to the same kind of sink, no queue.
async fn raw_smtp_scenario(n: usize, latency_ms: u64, workers: u16) -> anyhow::Result<Value> {
    let sink = SmtpSink::start(SinkConfig::with_latency_ms(latency_ms)).await?;
    let mailer = Mailer::new(
        &sink.smtp_url(),
        "Bench <bench@bench.local>",
        Duration::from_secs(30),
        u32::from(workers),
    )?;
    let progress = bar(
        n,
        &format!("limit: raw lettre sends, SMTP +{latency_ms} ms"),
    );
    let started = Instant::now();
    let cpu_before = process_cpu();
    let sent: Vec<bool> = futures::stream::iter(0..n)
        .map(|i| {
            let mailer = mailer.clone();
            async move {
                let user = User {
                    id: i as i64,
                    email: format!("raw{i}@bench.local"),
                    name: None,
                };
                signup_queue::consumers::welcome::send_welcome(&mailer, &user)
                    .await
                    .is_ok()
            }
        })
        .buffer_unordered(usize::from(workers))
        .inspect(|_| progress.inc(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    progress.finish_and_clear();
    sink.stop();
    let ok = sent.iter().filter(|s| **s).count();
    Ok(json!({
        "mails": ok,
        "errors": sent.len() - ok,
        "mails_per_s": ok as f64 / elapsed.as_secs_f64().max(1e-9),
        "cpu_us_per_mail": cpu.as_secs_f64() * 1e6 / (ok.max(1) as f64),
        "smtp_latency_ms": latency_ms,
        "concurrency": workers,
    }))
}

/// A trivial axum route's request rate with the same client and concurrency.
async fn raw_http_scenario(args: &BenchArgs, plan: &Plan) -> anyhow::Result<Value> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new().route(
        "/",
        axum::routing::post(|| async { (axum::http::StatusCode::CREATED, "ok") }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();
    let n = plan.requests * 5;
    let progress = bar(n, "limit: trivial axum route");
    let (h, errors, elapsed) = load(
        &client,
        &format!("http://{addr}/"),
        "raw",
        n,
        args.concurrency,
        &progress,
    )
    .await;
    progress.finish_and_clear();
    server.abort();
    let mut row = summary(&h, elapsed);
    row["errors"] = json!(errors);
    Ok(row)
}

/// Records, at handler start, how long ago the job was enqueued (job ids are ULIDs).
struct PickupProbe(Arc<Mutex<Histogram<u64>>>);

#[async_trait::async_trait]
impl Consumer for PickupProbe {
    fn name(&self) -> &'static str {
        "bench_pickup_probe"
    }
    async fn handle(
        &self,
        _event: &Envelope<UserRegistered>,
        job: &JobInfo,
    ) -> Result<(), ConsumerError> {
        if let (Some(waited), Ok(mut h)) = (job.queue_wait(), self.0.lock()) {
            let _ = h.record(waited.as_micros().max(1) as u64);
        }
        Ok(())
    }
}

/// Idle pickup latency: enqueue committed -> handler starts, in `serve` (woken by the enqueue)
/// and with a separate worker process (found by polling).
async fn pickup_scenario(plan: &Plan, workers: u16, hash_cost: HashCost) -> anyhow::Result<Value> {
    let sink = SmtpSink::start(SinkConfig::default()).await?;
    let client = reqwest::Client::new();
    let mut out = serde_json::Map::new();
    for split in [false, true] {
        let seen = Arc::new(Mutex::new(histogram()));
        let probe: Vec<Arc<dyn Consumer>> = vec![Arc::new(PickupProbe(seen.clone()))];
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("pickup.db").display());
        let mut apps = Vec::new();
        let base = if split {
            let web = Application::build_with_consumers(
                settings(url.clone(), sink.smtp_url(), workers, hash_cost),
                Role::Web,
                probe.clone(),
            )
            .await?;
            let worker = Application::build_with_consumers(
                settings(url, sink.smtp_url(), workers, hash_cost),
                Role::Worker,
                probe,
            )
            .await?;
            let base = format!("http://{}", web.local_addr().context("no address")?);
            apps.push(web);
            apps.push(worker);
            base
        } else {
            let app = Application::build_with_consumers(
                settings(url, sink.smtp_url(), workers, hash_cost),
                Role::All,
                probe,
            )
            .await?;
            let base = format!("http://{}", app.local_addr().context("no address")?);
            apps.push(app);
            base
        };
        let tokens: Vec<_> = apps.iter().map(|a| a.shutdown_token()).collect();
        let handles: Vec<_> = apps
            .into_iter()
            .map(|a| tokio::spawn(a.run_until_stopped(std::future::pending())))
            .collect();
        let what = if split {
            "pickup: separate worker process"
        } else {
            "pickup: serve (woken by enqueue)"
        };
        let progress = bar(plan.pickups, what);
        for i in 0..plan.pickups {
            let _ = client
                .post(format!("{base}/register/async"))
                .json(&json!({"email": format!("pickup{}-{i}@bench.local", u8::from(split)), "password": "correct horse battery"}))
                .send()
                .await;
            // Idle between registrations, so each one finds the workers waiting.
            tokio::time::sleep(Duration::from_millis(150)).await;
            progress.inc(1);
        }
        progress.finish_and_clear();
        for token in tokens {
            token.cancel();
        }
        for handle in handles {
            let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
        }
        let h = seen
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram());
        let key = if split { "separate_worker" } else { "serve" };
        out.insert(key.into(), summary(&h, Duration::from_secs(1)));
    }
    sink.stop();
    Ok(Value::Object(out))
}

async fn hash_time(cost: HashCost) -> anyhow::Result<f64> {
    let password = signup_queue::users::Password::parse("correct horse battery")
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut h = histogram();
    for _ in 0..20 {
        let t = Instant::now();
        signup_queue::users::hash_password(password.clone(), cost).await?;
        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
    }
    Ok(h.value_at_quantile(0.5) as f64 / 1000.0)
}

/// CPU time (user + system) this process has used so far: the bench runs the app, the SMTP
/// sink and the clients in one process, so CPU per mail compares the queue's work with a raw
/// send's more steadily than wall time on a shared machine.
fn process_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64)
                    + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            tv(u.user_time()) + tv(u.system_time())
        })
        .unwrap_or_default()
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (workers, hash_cost) = (args.workers, args.hash_cost);
    let plan = args.plan();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let cost_name = match hash_cost {
        HashCost::Production => "production (argon2id m=19 MiB, t=2, p=1)",
        HashCost::Test => "test (argon2id, tiny parameters)",
    };
    eprintln!(
        "signup-queue bench{}: WORKERS={workers}, password hashing: {cost_name}",
        if args.quick { " --quick" } else { "" }
    );
    let started = Instant::now();
    let hash_ms = hash_time(hash_cost).await?;
    let want = |s: Scenario| args.only.is_empty() || args.only.contains(&s);
    let (latency, paced) = if want(Scenario::Latency) {
        latency_scenario(&args, &plan, workers, hash_cost).await?
    } else {
        (Value::Null, Value::Null)
    };
    let transactions = if want(Scenario::Transactions) {
        transaction_scenario(&plan).await?
    } else {
        Value::Null
    };
    let pickup = if want(Scenario::Pickup) {
        pickup_scenario(&plan, workers, hash_cost).await?
    } else {
        Value::Null
    };
    let plot = args.out.join("peak-shaving.svg");
    let burst = if want(Scenario::Burst) {
        burst_scenario(
            &args,
            &plan,
            workers,
            hash_cost,
            args.burst_latency_ms,
            Some(&plot),
        )
        .await?
    } else {
        Value::Null
    };
    let (pipeline, backlog_pipeline, slow_pipeline) = if want(Scenario::Pipeline) {
        (
            burst_scenario(&args, &plan, workers, hash_cost, 0, None).await?,
            backlog_pipeline_scenario(plan.burst, 0, workers, hash_cost).await?,
            backlog_pipeline_scenario(
                plan.slow_pipeline,
                args.burst_latency_ms,
                workers,
                hash_cost,
            )
            .await?,
        )
    } else {
        (Value::Null, Value::Null, Value::Null)
    };
    let drain = if want(Scenario::Drain) {
        drain_scenario(&plan, workers).await?
    } else {
        Value::Null
    };
    let (raw_smtp, raw_smtp_slow, raw_http) = if want(Scenario::Limits) {
        (
            raw_smtp_scenario(plan.raw_mails, 0, workers).await?,
            raw_smtp_scenario(plan.slow_pipeline * 2, args.burst_latency_ms, workers).await?,
            raw_http_scenario(&args, &plan).await?,
        )
    } else {
        (Value::Null, Value::Null, Value::Null)
    };

    let f = |v: &Value| v.as_f64().unwrap_or_default();
    let async_rate = latency
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["mode"] == "async" && r["smtp_latency_ms"] == 0)
        })
        .map(|r| f(&r["throughput_per_s"]))
        .unwrap_or_default();
    let ratios = json!({
        "pipeline_mails_per_s_vs_raw_lettre": ratio(f(&backlog_pipeline["mails_per_s"]), f(&raw_smtp["mails_per_s"])),
        "end_to_end_mails_per_s_vs_raw_lettre": ratio(f(&pipeline["mails_per_s"]), f(&raw_smtp["mails_per_s"])),
        "slow_smtp_pipeline_vs_raw_lettre": ratio(f(&slow_pipeline["mails_per_s"]), f(&raw_smtp_slow["mails_per_s"])),
        "async_register_per_s_vs_raw_sqlite_tx": ratio(async_rate, f(&transactions["user_and_jobs"]["throughput_per_s"])),
        "async_register_per_s_vs_trivial_axum_route": ratio(async_rate, f(&raw_http["throughput_per_s"])),
    });
    let results = json!({
        "machine": machine(),
        "hash_cost": cost_name,
        "hash_p50_ms": hash_ms,
        "workers": workers,
        "concurrency": args.concurrency,
        "quick": args.quick,
        "latency": latency,
        "paced": paced,
        "transactions": transactions,
        "pickup": pickup,
        "burst": burst,
        "pipeline": pipeline,
        "backlog_pipeline": backlog_pipeline,
        "slow_smtp_pipeline": slow_pipeline,
        "drain": drain,
        "limits": {"raw_lettre": raw_smtp, "raw_lettre_slow_smtp": raw_smtp_slow, "trivial_axum_route": raw_http, "raw_sqlite_user_and_jobs_tx": transactions["user_and_jobs"].clone()},
        "ratios": ratios,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let path = args.out.join("bench-results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    print_table(&results);
    if want(Scenario::Burst) {
        eprintln!("wrote {} and {}", path.display(), plot.display());
    } else {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_owned())
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_owned))
        .unwrap_or_default();
    json!({"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "cpu": cpu, "memory": memory})
}

fn print_table(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or_default();
    println!(
        "\nsignup-queue bench: {} CPUs, hashing {} (p50 {:.2} ms)",
        r["machine"]["cpus"],
        r["hash_cost"].as_str().unwrap_or_default(),
        f(&r["hash_p50_ms"])
    );
    println!(
        "\n{:<40} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "latency (client side)", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s"
    );
    let present = |key: &str| !r[key].is_null();
    let rows = r["latency"].as_array().into_iter().flatten();
    let paced = r["paced"].as_array().into_iter().flatten();
    for row in rows.chain(paced) {
        let how = match row["paced_per_s"].as_u64() {
            Some(rate) => format!(" at {rate}/s"),
            None => String::new(),
        };
        println!(
            "{:<40} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.1}",
            format!(
                "{} register{how}, SMTP +{} ms",
                row["mode"].as_str().unwrap_or_default(),
                row["smtp_latency_ms"]
            ),
            f(&row["p50_ms"]),
            f(&row["p90_ms"]),
            f(&row["p99_ms"]),
            f(&row["max_ms"]),
            f(&row["throughput_per_s"])
        );
    }
    let t = &r["transactions"];
    if present("transactions") {
        println!(
            "\nenqueue overhead (p50, {} consumers' jobs in the user transaction): {:.3} ms",
            t["consumers"],
            f(&t["enqueue_overhead_p50_ms"])
        );
        println!(
            "raw SQLite user+jobs transactions: {:.0}/s (user only: {:.0}/s)",
            f(&t["user_and_jobs"]["throughput_per_s"]),
            f(&t["user_only"]["throughput_per_s"])
        );
        if let Some(clients) = r["concurrency"].as_u64().filter(|_| present("latency")) {
            // Little's law: clients that each wait for their answer cannot be answered faster on
            // average than `clients / rate`, whatever the rate of the one SQLite writer allows.
            println!(
                "  so at concurrency {clients} the mean latency cannot fall below {:.2} ms (Little's law: {clients} / that rate)",
                1000.0 * clients as f64 / f(&t["user_and_jobs"]["throughput_per_s"]).max(1e-9)
            );
        }
    }
    if present("pickup") {
        println!(
            "idle pickup p50: serve {:.2} ms, separate worker {:.2} ms",
            f(&r["pickup"]["serve"]["p50_ms"]),
            f(&r["pickup"]["separate_worker"]["p50_ms"])
        );
    }
    let b = &r["burst"];
    if present("burst") {
        println!(
            "\nburst: {} registrations, SMTP +{} ms, cap {} sessions: async p99 {:.2} ms during the burst ({:.1} s), drained in {:.1} s; max SMTP sessions {}, refused {}, errors {}, lost {}, duplicates {}",
            b["registrations"],
            b["smtp_latency_ms"],
            b["smtp_session_cap"],
            f(&b["async_during_burst"]["p99_ms"]),
            f(&b["burst_seconds"]),
            f(&b["drain_seconds"]),
            b["max_smtp_sessions"],
            b["refused_smtp_sessions"],
            b["errors"],
            b["lost"],
            b["duplicates"]
        );
    }
    if present("pipeline") {
        println!(
            "pipeline (SMTP +0 ms): {:.0} mails/s ({:.0} us CPU a mail) from a backlog of {} registrations (worker start to last job done); {:.0} mails/s end to end with the registrations (bounded by their rate)",
            f(&r["backlog_pipeline"]["mails_per_s"]),
            f(&r["backlog_pipeline"]["cpu_us_per_mail"]),
            r["backlog_pipeline"]["registrations"],
            f(&r["pipeline"]["mails_per_s"])
        );
        println!(
            "pipeline (SMTP +{} ms): {:.0} mails/s from a backlog of {} registrations",
            r["slow_smtp_pipeline"]["smtp_latency_ms"],
            f(&r["slow_smtp_pipeline"]["mails_per_s"]),
            r["slow_smtp_pipeline"]["registrations"]
        );
    }
    if present("drain") {
        println!(
            "queue drain (no-op, {} on top of {} finished): {:.0} jobs/s",
            r["drain"]["backlog"],
            r["drain"]["finished_before"],
            f(&r["drain"]["jobs_per_s"])
        );
    }
    if !r["limits"]["raw_lettre"].is_null() {
        println!(
            "limits: raw lettre {:.0} mails/s ({:.0} us CPU a mail); trivial axum route {:.0} req/s",
            f(&r["limits"]["raw_lettre"]["mails_per_s"]),
            f(&r["limits"]["raw_lettre"]["cpu_us_per_mail"]),
            f(&r["limits"]["trivial_axum_route"]["throughput_per_s"])
        );
        println!(
            "limits: raw lettre at SMTP +{} ms: {:.0} mails/s",
            r["limits"]["raw_lettre_slow_smtp"]["smtp_latency_ms"],
            f(&r["limits"]["raw_lettre_slow_smtp"]["mails_per_s"])
        );
    }
    let q = &r["ratios"];
    if !["latency", "transactions", "pipeline"]
        .iter()
        .all(|k| present(k))
        || r["limits"]["raw_lettre"].is_null()
    {
        println!("ratios: need the latency, transactions, pipeline and limits scenarios");
        return;
    }
    println!(
        "ratios: pipeline/raw lettre {:.0} % (end to end {:.0} %; at SMTP +{} ms {:.0} %), async register/raw SQLite tx {:.0} %, async register/trivial route {:.0} %",
        100.0 * f(&q["pipeline_mails_per_s_vs_raw_lettre"]),
        100.0 * f(&q["end_to_end_mails_per_s_vs_raw_lettre"]),
        r["slow_smtp_pipeline"]["smtp_latency_ms"],
        100.0 * f(&q["slow_smtp_pipeline_vs_raw_lettre"]),
        100.0 * f(&q["async_register_per_s_vs_raw_sqlite_tx"]),
        100.0 * f(&q["async_register_per_s_vs_trivial_axum_route"])
    );
}
