//! Scale-out on PostgreSQL (issue 11), with the real binary: `web` and `worker` processes sharing
//! one database, a worker killed with `kill -9` while the queue drains, and the global SMTP
//! session cap (`SMTP_MAX_SESSIONS`) held across worker processes against a mail server that
//! refuses sessions beyond it. Each test prints a summary line for the CI log, and is skipped
//! (one line) without `DATABASE_URL_PG`.
//!
//! Every process a test starts is killed when the test ends, passing or failing, before its
//! database is dropped ([`Cluster`]'s `Drop`, then [`TempPgDatabase`]'s). The tests take turns:
//! each runs up to six processes and 80 PostgreSQL connections on its own.
//!
//! To look closer: `TOPOLOGY_RUST_LOG` replaces the processes' `RUST_LOG`, and
//! `TOPOLOGY_LOG_DIR=/some/dir` keeps every process's whole log there.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, future::join_all, stream};
use signup_queue::{consumers::welcome::WELCOME_QUEUE, db::Db, queue::inspect};
use signup_queue_tools::{
    smtp_sink::{SinkConfig, SmtpSink},
    testkit::pg::{TempPgDatabase, pg_or_skip},
};
use sqlx::PgPool;

use crate::support::{
    CONSUMERS,
    child::{self, ChildApp},
};

/// The longest a queue may take to drain (and the kill to come).
const DRAIN_WITHIN: Duration = Duration::from_secs(120);
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Registrations in flight at once, over all web processes.
const IN_FLIGHT: usize = 32;

/// One topology test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The acceptance test of the topology: 2 `web` + 3 `worker` processes on one fresh database,
/// 2,000 registrations spread over both webs, one worker `kill -9`ed mid-drain. Every user gets
/// exactly one welcome mail (and one coupon), except the killed worker's in-flight ones, which
/// may arrive twice with the same Message-ID; no job is left unfinished; and the mail server,
/// which refuses sessions beyond the cap, never refuses one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_webs_and_three_workers_survive_a_kill_9_within_one_mail_limit() {
    const USERS: usize = 2_000;
    // Per queue and process: three workers could open 12 sessions without the global cap.
    const WORKERS: usize = 4;
    const CAP: usize = 4;
    let Some(db) = pg_or_skip("the topology acceptance test").await else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let sink = capped_sink(CAP).await;
    let env = ProcessEnv {
        database_url: db.url().to_owned(),
        smtp_url: sink.smtp_url(),
        workers: WORKERS,
        max_sessions: Some(CAP),
        // Re-delivery after two missed heartbeats: 2-3 s.
        heartbeat: Some("1s"),
    };
    let started = Instant::now();
    let mut cluster = Cluster::start(2, 3, &env).await;
    let jobs = JobsView::open(&db).await;
    let startup = started.elapsed();

    // Registrations on their own task; the kill lands while the queue drains.
    let webs = cluster.web_urls();
    let load = tokio::spawn(async move {
        let started = Instant::now();
        let ids = register_all(webs, "topo", USERS).await;
        (ids, started.elapsed())
    });
    wait_until("a quarter of the welcome mails", DRAIN_WITHIN, || {
        mail_count(&sink, "welcome") >= USERS / 4
    })
    .await;
    let victim = cluster.workers[0].pid();
    cluster.workers[0].sigkill().await;
    let killed_at = Instant::now();
    let welcome_at_kill = mail_count(&sink, "welcome");
    let held_at_kill = jobs.held_by(victim).await;
    println!(
        "topology: kill -9 worker pid {victim} at {} after {welcome_at_kill} welcome mails; it \
         held {} jobs, {} of them welcome mails running",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        held_at_kill.all,
        held_at_kill.welcome_running,
    );
    let (load, back_in_queue) =
        tokio::join!(load, jobs.wait_until_none_held_by(victim, DRAIN_WITHIN));
    let (user_ids, registering) = load.expect("the registrations' task");
    let totals = jobs.wait_drained(DRAIN_WITHIN, &cluster).await;
    let drained_after_kill = killed_at.elapsed();

    let welcome = check_mails(&sink, "welcome", &user_ids);
    let coupon = check_mails(&sink, "coupon", &user_ids);
    let slowest = jobs.heartbeats.slowest_except(Some(victim));
    println!(
        "topology: {USERS} users over 2 webs in {:.1}s; 3 workers (WORKERS={WORKERS}, \
         WORKER_HEARTBEAT=1s), one kill -9: its jobs back in the queue after {:.1}s, all drained \
         {:.1}s after the kill; welcome {} users + {} duplicates, coupon {} + {}; jobs done {} \
         failed {}; SMTP max open {} (cap {CAP}), refused {}; slowest live heartbeat {}; start \
         {:.1}s, total {:.1}s",
        registering.as_secs_f64(),
        back_in_queue.duration_since(killed_at).as_secs_f64(),
        drained_after_kill.as_secs_f64(),
        welcome.distinct,
        welcome.duplicates,
        coupon.distinct,
        coupon.duplicates,
        totals.done,
        totals.failed,
        sink.max_open_sessions(),
        sink.refused_sessions(),
        slowest,
        startup.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );

    assert_eq!(totals.failed, 0, "no job failed: {totals:?}");
    assert_eq!(
        totals.done,
        CONSUMERS * USERS as i64,
        "every consumer's job of every user is done: {totals:?}"
    );
    // Two missed heartbeats, then a live worker's next one: 2-3 s; ten is slow by any measure.
    let redelivery = back_in_queue.duration_since(killed_at);
    assert!(
        redelivery <= Duration::from_secs(10),
        "the killed worker's jobs went back to the queue only after {redelivery:?}"
    );
    let diagnosis = jobs.diagnosis(&cluster).await;
    // Only the killed worker's jobs in flight may have sent their mail without being marked done.
    welcome.assert_each_user_once(WORKERS, &diagnosis);
    coupon.assert_each_user_once(WORKERS, &diagnosis);
    assert_eq!(
        sink.refused_sessions(),
        0,
        "the mail server refused sessions beyond {CAP}: the global cap was exceeded"
    );
    assert!(sink.max_open_sessions() <= CAP);
}

/// The global mail limit alone: three worker processes, a mail server that refuses sessions
/// beyond 2, a burst of 1,000 registrations: with `SMTP_MAX_SESSIONS=2` nothing is refused and
/// everything arrives once. The same three workers without it open more sessions than the server
/// allows, so the first half cannot pass by accident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_one_smtp_session_limit() {
    const USERS: usize = 1_000;
    const WORKERS: usize = 4;
    const CAP: usize = 2;
    let Some(db) = pg_or_skip("the global mail limit test").await else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let sink = capped_sink(CAP).await;
    let env = ProcessEnv {
        database_url: db.url().to_owned(),
        smtp_url: sink.smtp_url(),
        workers: WORKERS,
        max_sessions: Some(CAP),
        heartbeat: None,
    };
    let started = Instant::now();
    // The burst is queued before any worker runs, so all three start on a full queue.
    let mut cluster = Cluster::start(1, 0, &env).await;
    let jobs = JobsView::open(&db).await;
    let user_ids = register_all(cluster.web_urls(), "burst", USERS).await;
    let queued = started.elapsed();
    let drain_started = Instant::now();
    cluster.start_workers(3, &env).await;
    let totals = jobs.wait_drained(DRAIN_WITHIN, &cluster).await;
    let drain = drain_started.elapsed();
    let welcome = check_mails(&sink, "welcome", &user_ids);
    let coupon = check_mails(&sink, "coupon", &user_ids);
    println!(
        "global mail limit: {USERS} users queued in {:.1}s; 3 workers (WORKERS={WORKERS}) with \
         SMTP_MAX_SESSIONS={CAP} drained {} mails in {:.1}s ({:.0} mails/s): max open {}, \
         refused {}, duplicates {}",
        queued.as_secs_f64(),
        sink.accepted_count(),
        drain.as_secs_f64(),
        sink.accepted_count() as f64 / drain.as_secs_f64(),
        sink.max_open_sessions(),
        sink.refused_sessions(),
        welcome.duplicates + coupon.duplicates,
    );
    assert_eq!(
        sink.refused_sessions(),
        0,
        "the mail server refused sessions beyond {CAP}: the global cap was exceeded"
    );
    assert!(sink.max_open_sessions() <= CAP);
    assert_eq!(totals.failed, 0, "no job failed: {totals:?}");
    assert_eq!(totals.done, CONSUMERS * USERS as i64, "{totals:?}");
    // No worker crashed: not one mail twice.
    let diagnosis = jobs.diagnosis(&cluster).await;
    welcome.assert_each_user_once(0, &diagnosis);
    coupon.assert_each_user_once(0, &diagnosis);

    // The contrast: the same three workers, each capped at WORKERS on its own, against a fresh
    // mail server with the same limit.
    cluster.stop_workers().await;
    let uncapped_sink = capped_sink(CAP).await;
    let uncapped = ProcessEnv {
        smtp_url: uncapped_sink.smtp_url(),
        max_sessions: None,
        ..env
    };
    register_all(cluster.web_urls(), "contrast", 200).await;
    cluster.start_workers(3, &uncapped).await;
    wait_until(
        "a refusal without SMTP_MAX_SESSIONS",
        Duration::from_secs(30),
        || uncapped_sink.refused_sessions() > 0,
    )
    .await;
    println!(
        "global mail limit: without SMTP_MAX_SESSIONS the same workers had {} sessions refused \
         (cap {CAP}) by the time {} mails were accepted",
        uncapped_sink.refused_sessions(),
        uncapped_sink.accepted_count()
    );
}

/// A mail server that answers at once and refuses sessions beyond `cap` with 421.
async fn capped_sink(cap: usize) -> SmtpSink {
    SmtpSink::start(SinkConfig {
        latency: Duration::ZERO,
        max_sessions: Some(cap),
    })
    .await
    .expect("SMTP sink")
}

/// What the processes of a test are started with.
#[derive(Debug, Clone)]
struct ProcessEnv {
    database_url: String,
    smtp_url: String,
    workers: usize,
    max_sessions: Option<usize>,
    /// `WORKER_HEARTBEAT`; `None`: the default.
    heartbeat: Option<&'static str>,
}

impl ProcessEnv {
    fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("SMTP_URL", self.smtp_url.clone()),
            ("WORKERS", self.workers.to_string()),
            ("RETRY_BASE", "1s".to_owned()),
            ("RETRY_CAP", "2s".to_owned()),
            // The start lines ("listening on", "worker pool started"), every warning, and the
            // jobs apalis takes back from workers it believes dead.
            (
                "RUST_LOG",
                std::env::var("TOPOLOGY_RUST_LOG").unwrap_or_else(|_| {
                    "warn,signup_queue::app=info,apalis_postgres=info".to_owned()
                }),
            ),
        ];
        if let Some(cap) = self.max_sessions {
            vars.push(("SMTP_MAX_SESSIONS", cap.to_string()));
        }
        if let Some(heartbeat) = self.heartbeat {
            vars.push(("WORKER_HEARTBEAT", heartbeat.to_owned()));
        }
        vars
    }
}

/// The `web` and `worker` processes of one test, killed with it.
struct Cluster {
    webs: Vec<ChildApp>,
    workers: Vec<ChildApp>,
}

impl Cluster {
    /// Starts the processes side by side (migrations may run from several at once) and waits
    /// until each is ready.
    async fn start(webs: usize, workers: usize, env: &ProcessEnv) -> Cluster {
        let vars = env.vars();
        let mut cluster = Cluster {
            webs: join_all((0..webs).map(|_| child::start("web", &vars))).await,
            workers: Vec::new(),
        };
        cluster.start_workers(workers, env).await;
        cluster
    }

    async fn start_workers(&mut self, n: usize, env: &ProcessEnv) {
        let vars = env.vars();
        let started = join_all((0..n).map(|_| async {
            let mut worker = child::start("worker", &vars).await;
            worker
                .wait_for_log("worker pool started", READY_WITHIN)
                .await;
            worker
        }))
        .await;
        self.workers.extend(started);
    }

    /// SIGTERM to every worker, and their clean exit.
    async fn stop_workers(&mut self) {
        for worker in &self.workers {
            worker.sigterm();
        }
        for mut worker in self.workers.drain(..) {
            let status = worker.wait_exit(Duration::from_secs(30)).await;
            assert!(status.success(), "worker exit: {status}");
        }
    }

    fn web_urls(&self) -> Vec<String> {
        self.webs.iter().map(|web| web.url("")).collect()
    }

    /// The last log lines of every process (warnings, errors, re-enqueued jobs).
    fn logs(&self) -> String {
        self.webs
            .iter()
            .map(|p| ("web", p))
            .chain(self.workers.iter().map(|p| ("worker", p)))
            .map(|(role, p)| {
                let pid = p.child.id().map_or("exited".into(), |id| id.to_string());
                format!("--- {role} (pid {pid}):\n{}", tail(&p.log_text(), 40))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    /// kill -9 to every process still running, and a short wait for them to be gone, so no
    /// process outlives the test or talks to its database while it is dropped.
    fn drop(&mut self) {
        if let Ok(dir) = std::env::var("TOPOLOGY_LOG_DIR") {
            for (i, p) in self.webs.iter().chain(&self.workers).enumerate() {
                let pid = p.child.id().unwrap_or_default();
                let _ = std::fs::write(format!("{dir}/{i}-{pid}.log"), p.log_text());
            }
        }
        let mut all: Vec<&mut ChildApp> = self
            .webs
            .iter_mut()
            .chain(self.workers.iter_mut())
            .collect();
        for app in &mut all {
            let _ = app.child.start_kill();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && all
                .iter_mut()
                .any(|app| matches!(app.child.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Registers `n` users (async registration), spread round-robin over `webs`, [`IN_FLIGHT`] at a
/// time; every answer must be 201. Returns the user ids.
async fn register_all(webs: Vec<String>, prefix: &'static str, n: usize) -> Vec<i64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let answers: Vec<Result<i64, String>> = stream::iter(0..n)
        .map(|i| {
            let url = format!("{}/register/async", webs[i % webs.len()]);
            let body = serde_json::json!({
                "email": format!("{prefix}{i}@example.com"),
                "password": "correct horse battery",
            });
            let request = client.post(url).json(&body).send();
            async move {
                let response = request.await.map_err(|e| format!("{prefix}{i}: {e}"))?;
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                match body["user_id"].as_i64() {
                    Some(id) if status == 201 => Ok(id),
                    _ => Err(format!("{prefix}{i}: {status} {body}")),
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let (ids, failures): (Vec<_>, Vec<_>) = answers.into_iter().partition(Result::is_ok);
    let failures: Vec<String> = failures.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} of {n} registrations not answered 201, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    ids.into_iter().filter_map(Result::ok).collect()
}

/// Mails of `kind` ("welcome", "coupon") the sink accepted, duplicates included.
fn mail_count(sink: &SmtpSink, kind: &str) -> usize {
    let prefix = format!("<{kind}-");
    sink.accepted()
        .iter()
        .filter(|m| {
            m.message_id
                .as_deref()
                .is_some_and(|id| id.starts_with(&prefix))
        })
        .count()
}

/// The mails of one kind (Message-ID `<{kind}-{user_id}@signup-queue.local>`) against the users
/// who registered.
#[derive(Debug)]
struct MailCheck {
    kind: &'static str,
    /// Users with at least one mail.
    distinct: usize,
    /// Copies beyond the first, over all users.
    duplicates: u32,
    /// The most copies one user got.
    most: u32,
    /// Users who got it more than once.
    twice: Vec<i64>,
    missing: Vec<i64>,
    /// Message-IDs of this kind for no registered user.
    strangers: Vec<String>,
}

fn check_mails(sink: &SmtpSink, kind: &'static str, users: &[i64]) -> MailCheck {
    let prefix = format!("<{kind}-");
    let suffix = "@signup-queue.local>";
    let mut per_user: HashMap<i64, u32> = HashMap::new();
    let mut strangers = Vec::new();
    for (id, n) in sink.count_by_message_id() {
        let Some(rest) = id.strip_prefix(&prefix) else {
            continue;
        };
        match rest
            .strip_suffix(suffix)
            .and_then(|user| user.parse::<i64>().ok())
        {
            Some(user) => *per_user.entry(user).or_default() += n,
            None => strangers.push(id),
        }
    }
    let missing = users
        .iter()
        .filter(|u| !per_user.contains_key(u))
        .copied()
        .collect();
    strangers.extend(
        per_user
            .keys()
            .filter(|u| !users.contains(u))
            .map(|u| format!("{prefix}{u}{suffix}")),
    );
    MailCheck {
        kind,
        distinct: per_user.len(),
        duplicates: per_user.values().map(|n| n - 1).sum(),
        most: per_user.values().copied().max().unwrap_or(0),
        twice: per_user
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(u, _)| *u)
            .collect(),
        missing,
        strangers,
    }
}

impl MailCheck {
    /// Every user got this mail; at most `duplicates` users got it twice, and none more often.
    fn assert_each_user_once(&self, duplicates: usize, context: &str) {
        let kind = self.kind;
        assert!(
            self.missing.is_empty(),
            "{} users got no {kind} mail, e.g. {:?}\n{context}",
            self.missing.len(),
            &self.missing[..self.missing.len().min(10)]
        );
        assert!(
            self.strangers.is_empty(),
            "{kind} mails for no registered user: {:?}",
            self.strangers
        );
        assert!(
            self.duplicates as usize <= duplicates && self.most <= 2,
            "{} duplicate {kind} mails (at most {duplicates} allowed, each at most twice; most \
             copies for one user: {}), users {:?}\n{context}",
            self.duplicates,
            self.most,
            self.twice
        );
    }
}

/// Job counts over every queue, through the product's own query (`jobs stats`).
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    pending: i64,
    running: i64,
    retrying: i64,
    done: i64,
    failed: i64,
}

impl Totals {
    fn left(&self) -> i64 {
        self.pending + self.running + self.retrying
    }
}

/// Jobs held by one worker process at one moment.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Fetched or running, every queue.
    all: i64,
    /// Running in the welcome queue: mails that may arrive twice.
    welcome_running: i64,
}

/// The test's own view of its database: two connections, and a heartbeat watch.
struct JobsView {
    pool: PgPool,
    db: Db,
    heartbeats: HeartbeatWatch,
}

impl JobsView {
    async fn open(db: &TempPgDatabase) -> JobsView {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(db.url())
            .await
            .expect("the test database");
        JobsView {
            db: Db::Postgres(pool.clone()),
            heartbeats: HeartbeatWatch::start(pool.clone()),
            pool,
        }
    }

    async fn totals(&self) -> Totals {
        let stats = inspect::stats(&self.db).await.expect("job stats");
        stats.iter().fold(Totals::default(), |t, s| Totals {
            pending: t.pending + s.pending,
            running: t.running + s.running,
            retrying: t.retrying + s.retrying,
            done: t.done + s.done,
            failed: t.failed + s.failed,
        })
    }

    /// Waits until no job is pending, running or retrying; panics with the counts and the
    /// processes' logs after `within`.
    async fn wait_drained(&self, within: Duration, cluster: &Cluster) -> Totals {
        let deadline = Instant::now() + within;
        loop {
            let totals = self.totals().await;
            if totals.left() == 0 {
                return totals;
            }
            assert!(
                Instant::now() < deadline,
                "jobs left after {within:?}: {totals:?}\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Jobs locked by a worker of process `pid` (worker names carry the pid, see
    /// `queue::workers::worker_name`), from apalis' job table.
    async fn held_by(&self, pid: i32) -> Held {
        let (all, welcome_running): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'Running' AND job_type = $2)
             FROM apalis.jobs WHERE status IN ('Queued', 'Running') AND lock_by LIKE $1",
        )
        .bind(format!("%-{pid}-%"))
        .bind(WELCOME_QUEUE)
        .fetch_one(&self.pool)
        .await
        .expect("jobs held by a worker");
        Held {
            all,
            welcome_running,
        }
    }

    /// Waits until the dead process `pid` holds no job any more; returns when.
    async fn wait_until_none_held_by(&self, pid: i32, within: Duration) -> Instant {
        let started = Instant::now();
        loop {
            let held = self.held_by(pid).await;
            if held.all == 0 {
                return Instant::now();
            }
            assert!(
                started.elapsed() < within,
                "{held:?} still held by the killed worker {pid} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Why mails may have gone twice, for a failure's message: jobs per number of attempts,
    /// the longest gap between heartbeats of each worker, and the processes' last log lines (jobs
    /// taken back from workers believed dead are logged there).
    async fn diagnosis(&self, cluster: &Cluster) -> String {
        let attempts: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT attempts, COUNT(*) FROM apalis.jobs GROUP BY attempts ORDER BY attempts",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        format!(
            "jobs per number of attempts: {attempts:?}\nlongest without a heartbeat, per worker: \
             {}\n{}",
            self.heartbeats.all(),
            cluster.logs()
        )
    }
}

/// Samples, every 200 ms, how long ago each worker last beat (`apalis.workers.last_seen`):
/// a live worker older than two heartbeats is taken for dead and its jobs handed to others.
struct HeartbeatWatch {
    oldest: Arc<Mutex<HashMap<String, f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HeartbeatWatch {
    fn start(pool: PgPool) -> HeartbeatWatch {
        let oldest: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let task = tokio::spawn({
            let oldest = Arc::clone(&oldest);
            async move {
                loop {
                    let ages: Vec<(String, f64)> = sqlx::query_as(
                        "SELECT id, EXTRACT(EPOCH FROM clock_timestamp() - last_seen)::float8
                         FROM apalis.workers",
                    )
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_default();
                    if let Ok(mut oldest) = oldest.lock() {
                        for (worker, age) in ages {
                            let seen = oldest.entry(worker).or_default();
                            *seen = seen.max(age);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        HeartbeatWatch { oldest, task }
    }

    /// Every worker seen, longest gap first.
    fn all(&self) -> String {
        let mut oldest: Vec<(String, f64)> = self
            .oldest
            .lock()
            .map(|o| o.clone().into_iter().collect())
            .unwrap_or_default();
        oldest.sort_by(|a, b| b.1.total_cmp(&a.1));
        oldest
            .iter()
            .map(|(worker, age)| format!("{worker} {age:.1}s"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The worker that went longest without a heartbeat, leaving out the process `killed`.
    fn slowest_except(&self, killed: Option<i32>) -> String {
        let killed = killed.map(|pid| format!("-{pid}-"));
        let oldest = self.oldest.lock().map(|o| o.clone()).unwrap_or_default();
        oldest
            .into_iter()
            .filter(|(worker, _)| killed.as_ref().is_none_or(|k| !worker.contains(k)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or("none".into(), |(worker, age)| {
                format!("{age:.1}s ({worker})")
            })
    }
}

impl Drop for HeartbeatWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
