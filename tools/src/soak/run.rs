//! One soak run, start to end: the mail server and the processes up, the load with its outage
//! and kills on schedule and a progress line every `--progress-every`, then the drain, the stop,
//! the retention check, the counts and the verdicts.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::{
    Plan, SoakArgs,
    db::{DbView, Totals},
    load::{self, SharedTally},
    procs::{self, Launcher, Proc, Usage},
    report::{self, Registrations, Retention, Smtp, SoakReport},
};
use crate::smtp_sink::{SinkConfig, SmtpSink};

/// Runs the soak; the report says whether the invariants held (`ok`).
pub async fn run(args: SoakArgs) -> anyhow::Result<SoakReport> {
    let plan = Plan::new(&args)?;
    let binary = procs::product_binary(args.binary.as_deref())?;
    let work = tempfile::Builder::new()
        .prefix("signup-queue-soak-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let log_dir = work.path().join("logs");
    std::fs::create_dir_all(&log_dir).context("cannot create the log folder")?;
    let database_url = format!("sqlite://{}", work.path().join("soak.db").display());

    let sink = SmtpSink::start(SinkConfig::default())
        .await
        .context("cannot start the mail server")?;
    sink.set_fail_share(plan.fail_share);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("no free port")?
        .port();
    let env = [
        ("DATABASE_URL", database_url.clone()),
        ("SMTP_URL", sink.smtp_url()),
        ("BIND", format!("127.0.0.1:{port}")),
        ("WORKERS", plan.workers.to_string()),
        ("WORKER_HEARTBEAT", "2s".into()),
        ("RETRY_BASE", "1s".into()),
        ("RETRY_CAP", "10s".into()),
        ("JOB_MAX_ATTEMPTS", "1000".into()),
        ("RATE_LIMIT_PER_MINUTE", "0".into()),
        ("HASH_COST", "test".into()),
        ("ADMIN_BIND", "off".into()),
        (
            "JOB_RETENTION",
            humantime::format_duration(plan.retention).to_string(),
        ),
        ("SHUTDOWN_TIMEOUT", "10s".into()),
        ("RUST_LOG", "warn".into()),
    ];
    let launcher = Launcher {
        binary,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        log_dir,
    };
    println!(
        "soak: {} at {}/s, mail server {} with {:.0}% 451s, down {:.0}-{:.0} s, worker kill -9 every {}; product {}, logs in {}",
        humantime::format_duration(plan.duration),
        plan.rate,
        sink.smtp_url(),
        plan.fail_share * 100.0,
        plan.outage_start.as_secs_f64(),
        plan.outage_end.as_secs_f64(),
        humantime::format_duration(plan.kill_every),
        launcher.binary.display(),
        launcher.log_dir.display()
    );

    let t0 = Instant::now();
    let mut soak = Soak {
        t0,
        web: launcher.start("web", 1, 0.0)?,
        worker: None,
        ended: Vec::new(),
        db: None,
        sink: sink.clone(),
        tally: SharedTally::default(),
        db_series: Vec::new(),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let base = format!("http://127.0.0.1:{port}");
    soak.wait_ready(&client, &base).await?;
    soak.db = Some(DbView::open(&database_url).await?);
    soak.worker = Some(launcher.start("worker", 1, soak.now())?);

    // The load, on its own task.
    let stop_load = CancellationToken::new();
    let load = tokio::spawn(load::run(
        client,
        format!("{base}/register"),
        ulid::Ulid::generate().to_string().to_ascii_lowercase(),
        plan.rate,
        Arc::clone(&soak.tally),
        stop_load.clone(),
    ));

    let kills = plan.kills();
    let mut next_kill = 0;
    let mut next_progress = plan.progress_every;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while t0.elapsed() < plan.duration {
        tick.tick().await;
        let now = t0.elapsed();
        if now >= plan.outage_start && now < plan.outage_end && !sink.is_down() {
            sink.go_down();
            println!("[{:>5.0}s] mail server DOWN", now.as_secs_f64());
        } else if now >= plan.outage_end && sink.is_down() {
            sink.come_up();
            println!("[{:>5.0}s] mail server up again", now.as_secs_f64());
        }
        if next_kill < kills.len() && now >= kills[next_kill] {
            next_kill += 1;
            soak.kill_and_restart_worker(&launcher, next_kill as u32 + 1)
                .await?;
        }
        soak.observe(false)?;
        if now >= next_progress {
            next_progress += plan.progress_every;
            soak.progress("").await;
        }
    }

    // The end: no more load, the mail server up, the queue drained.
    stop_load.cancel();
    load.await.context("the load task")?;
    sink.come_up();
    let load_end = Instant::now();
    println!(
        "[{:>5.0}s] load stopped; waiting for the queue to drain (at most {})",
        soak.now(),
        humantime::format_duration(plan.drain_timeout)
    );
    let mut drain_s = None;
    let mut next_progress = Instant::now() + plan.progress_every;
    while load_end.elapsed() < plan.drain_timeout {
        if soak.totals().await.is_ok_and(|t| t.left() == 0) {
            drain_s = Some(load_end.elapsed().as_secs_f64());
            break;
        }
        soak.observe(false)?;
        if Instant::now() >= next_progress {
            next_progress += plan.progress_every;
            soak.progress(" (draining)").await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    soak.progress(" (end)").await;

    // Stop both processes gracefully, then look at the database alone.
    let at = soak.now();
    if let Some(worker) = soak.worker.take() {
        soak.ended
            .push(worker.terminate(at, Duration::from_secs(20)).await?);
    }
    let web_usage = soak.web.terminate(at, Duration::from_secs(20)).await?;
    let db = soak.db.take().context("no database view")?;
    let queues = db.stats().await?;
    let jobs_left = Totals::from_stats(&queues);
    // `done_at` is in whole seconds: 2 s more so the last second's jobs are past the age too.
    let wait = (plan.retention + Duration::from_secs(2)).saturating_sub(load_end.elapsed());
    if !wait.is_zero() {
        println!(
            "waiting {} so the last jobs are older than JOB_RETENTION",
            humantime::format_duration(Duration::from_secs(wait.as_secs()))
        );
        tokio::time::sleep(wait).await;
    }
    let before = db.size().await?;
    let older_than = format!("{}s", plan.retention.as_secs().max(1));
    let purge_output = launcher
        .run_once(&["jobs", "purge-done", "--older-than", &older_than])
        .await?;
    let after = db.size().await?;
    db.close().await;
    sink.stop();

    let tally = soak
        .tally
        .lock()
        .map_err(|_| anyhow::anyhow!("the load's tally is poisoned"))?;
    let accepted = sink.accepted();
    let bound = usize::from(plan.workers) * kills.len();
    let mut processes = vec![web_usage];
    processes.append(&mut soak.ended);
    let mut report = SoakReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_at: chrono::Utc::now()
            .checked_sub_signed(chrono::TimeDelta::from_std(t0.elapsed()).unwrap_or_default())
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        duration_s: plan.duration.as_secs_f64(),
        rate: plan.rate,
        workers: plan.workers,
        fail_share: plan.fail_share,
        kill_every_s: plan.kill_every.as_secs_f64(),
        kills: kills.len(),
        wall_s: t0.elapsed().as_secs_f64(),
        registrations: Registrations {
            sent: tally.sent,
            created: tally.created.len(),
            errors: tally.errors,
            error_examples: tally.error_examples.clone(),
            latency: tally.latency(),
        },
        smtp: Smtp {
            accepted: accepted.len(),
            failed_451: sink.failed_count(),
            cut_sessions: sink.cut_sessions(),
            outage_start_s: plan.outage_start.as_secs_f64(),
            outage_end_s: plan.outage_end.as_secs_f64(),
        },
        welcome: report::mail_kind("welcome", &tally.created, &accepted, bound),
        coupon: report::mail_kind("coupon", &tally.created, &accepted, bound),
        drain_s,
        jobs_left,
        queues,
        processes,
        db_series: std::mem::take(&mut soak.db_series),
        retention: Retention {
            retention_s: plan.retention.as_secs_f64(),
            before,
            after,
            purge_output: purge_output.trim().to_owned(),
        },
        ..SoakReport::default()
    };
    report.judge();
    report.print();
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let path = out.join("soak-results.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if !report.ok {
        let kept = work.keep();
        println!("logs and database kept in {}", kept.display());
    }
    Ok(report)
}

/// The running state of a soak.
struct Soak {
    t0: Instant,
    web: Proc,
    worker: Option<Proc>,
    /// Worker incarnations that ended.
    ended: Vec<Usage>,
    db: Option<DbView>,
    sink: SmtpSink,
    tally: SharedTally,
    db_series: Vec<(f64, u64)>,
}

impl Soak {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Waits for the web process to answer `/health`.
    async fn wait_ready(&mut self, client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.web.exited() {
                bail!("the web process exited at start ({status}); see its log");
            }
            if client
                .get(format!("{base}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the web process did not answer /health within 30 s")
    }

    async fn kill_and_restart_worker(&mut self, launcher: &Launcher, n: u32) -> anyhow::Result<()> {
        let at = self.now();
        if let Some(worker) = self.worker.take() {
            let usage = worker.kill9(at).await?;
            println!(
                "[{at:>5.0}s] kill -9 worker #{} (pid {}, RSS {:.1} MiB, {} fds); starting #{n}",
                usage.incarnation,
                usage.pid,
                report::mib(usage.last.map(|s| s.rss_kib).unwrap_or(0)),
                usage.last.map(|s| s.fds).unwrap_or(0)
            );
            self.ended.push(usage);
        }
        self.worker = Some(launcher.start("worker", n, self.now())?);
        Ok(())
    }

    /// A sample of each process for the peaks; fails when one exited on its own.
    fn observe(&mut self, keep: bool) -> anyhow::Result<()> {
        let at = self.now();
        if let Some(status) = self.web.exited() {
            bail!("the web process exited by itself ({status}); see its log");
        }
        self.web.observe(at, keep);
        if let Some(worker) = self.worker.as_mut() {
            if let Some(status) = worker.exited() {
                bail!("the worker process exited by itself ({status}); see its log");
            }
            worker.observe(at, keep);
        }
        Ok(())
    }

    async fn totals(&self) -> anyhow::Result<Totals> {
        match &self.db {
            Some(db) => db.totals().await,
            None => bail!("no database view"),
        }
    }

    /// One progress line (and a kept sample of each process).
    async fn progress(&mut self, note: &str) {
        if let Err(e) = self.observe(true) {
            println!("{e:#}");
        }
        let at = self.now();
        let (sent, created, errors) = self
            .tally
            .lock()
            .map(|t| (t.sent, t.created.len(), t.errors))
            .unwrap_or_default();
        let queue = match self.totals().await {
            Ok(t) => format!(
                "queue: {} waiting, {} running, {} failed",
                t.pending + t.retrying,
                t.running,
                t.failed
            ),
            Err(e) => format!("queue ? ({e:#})"),
        };
        let db_bytes = self.db.as_ref().map(DbView::file_bytes).unwrap_or(0);
        self.db_series.push((at, db_bytes));
        let usage = |p: &Proc| {
            let s = p.usage.last.unwrap_or_default();
            format!(
                "{}#{} {:.1} MiB {} fds",
                p.usage.role,
                p.usage.incarnation,
                report::mib(s.rss_kib),
                s.fds
            )
        };
        println!(
            "[{at:>5.0}s] sent {sent} created {created} errors {errors} | mails {} (451: {}) | {queue} | smtp {} | {} | {} | db {:.1} MiB{note}",
            self.sink.accepted_count(),
            self.sink.failed_count(),
            if self.sink.is_down() { "DOWN" } else { "up" },
            usage(&self.web),
            self.worker.as_ref().map(usage).unwrap_or_default(),
            db_bytes as f64 / 1024.0 / 1024.0
        );
    }
}
