//! What every scenario measures with: latency histograms and their summary, progress bars, the
//! registration load generators (closed loop and paced), CPU time, ratios, and the app under
//! test, started through the test kit so that tests and bench start it the same way.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use signup_queue::config::{AdminBind, HashCost};

use crate::testkit::{TestApp, TestAppBuilder};

/// Client-side latencies in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Records `latency` in microseconds; 1 µs at least, as the histogram's lower bound wants.
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let _ = h.record(latency.as_micros().max(1) as u64);
}

/// A latency histogram in milliseconds, and its count over the wall time it took.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub throughput_per_s: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>, elapsed: Duration) -> Summary {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Summary {
            count: h.len(),
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1000.0,
            throughput_per_s: h.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        }
    }
}

/// A progress bar on stderr, cleared by the caller when done so that the table stays readable.
pub fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:<40} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// The app under test, sending to `smtp_url`: the scenario adds a role, consumers or a shared
/// database, then calls `try_spawn`. No rate limit (the bench is one client address) and long
/// SMTP timeouts, so that slow sinks show up as latency rather than as failures.
pub fn app(smtp_url: String, workers: u16, hash_cost: HashCost) -> TestAppBuilder {
    TestApp::builder().smtp(smtp_url).settings(move |s| {
        s.workers = workers;
        s.hash_cost = hash_cost;
        s.rate_limit_per_minute = 0;
        s.admin_bind = AdminBind::Off;
        s.smtp_timeout = Duration::from_secs(30);
        s.retry_cap = Duration::from_secs(5);
    })
}

/// One registration of `email` against `url`: how long the answer took, and whether it was 201.
pub fn register_timed(
    client: &reqwest::Client,
    url: &str,
    email: String,
) -> impl std::future::Future<Output = (Duration, bool)> + Send + 'static {
    // Built before the clock starts, so the timing is the round trip only.
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
pub fn tally(results: impl IntoIterator<Item = (Duration, bool)>) -> (Histogram<u64>, usize) {
    let mut h = histogram();
    let mut errors = 0;
    for (latency, ok) in results {
        record(&mut h, latency);
        errors += usize::from(!ok);
    }
    (h, errors)
}

/// `n` registrations against `url`, `concurrency` at a time; returns latencies, non-201 count,
/// and the wall time.
pub async fn load(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
    progress: &ProgressBar,
) -> (Histogram<u64>, usize, Duration) {
    load_over(client, &[url.to_owned()], prefix, n, concurrency, progress).await
}

/// Like [`load`], spread over several servers: registration `i` goes to `urls[i % urls.len()]`.
pub async fn load_over(
    client: &reqwest::Client,
    urls: &[String],
    prefix: &str,
    n: usize,
    concurrency: usize,
    progress: &ProgressBar,
) -> (Histogram<u64>, usize, Duration) {
    let started = Instant::now();
    let results: Vec<(Duration, bool)> = futures::stream::iter(0..n)
        .map(|i| {
            let url = &urls[i % urls.len().max(1)];
            register_timed(client, url, format!("{prefix}-{i}@bench.local"))
        })
        .buffer_unordered(concurrency)
        .inspect(|_| progress.inc(1))
        .collect()
        .await;
    let (h, errors) = tally(results);
    (h, errors, started.elapsed())
}

/// `n` registrations at a steady `rate` per second whatever the answers (open loop), so the
/// latency is the server's, not the queueing of a saturated closed loop.
pub async fn paced_load(
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

/// CPU time (user + system) this process has used so far: the bench runs the app, the SMTP
/// sink and the clients in one process, so CPU per mail compares the queue's work with a raw
/// send's more steadily than wall time on a shared machine.
pub fn process_cpu() -> Duration {
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

/// `a / b`, or 0 when `b` was not measured (a scenario left out), so the JSON stays a number.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Per second over `elapsed`, never dividing by zero.
pub fn per_s(n: f64, elapsed: Duration) -> f64 {
    n / elapsed.as_secs_f64().max(1e-9)
}
