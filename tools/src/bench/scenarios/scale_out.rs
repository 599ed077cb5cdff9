//! Scale-out with the real binary, on one machine: what more processes give.
//!
//! - Pipeline: 1, 2, 4 `signup-queue worker` processes, started and idle on a fresh database;
//!   then a backlog of registrations (the user row and every consumer's job, through the product's
//!   own transaction) commits at once, and the clock runs from that commit until every job is
//!   done and every mail accepted by the SMTP sink (+0 ms, no session cap).
//! - Registrations: 1 and 2 `signup-queue web` processes, the same closed loop of clients spread
//!   over them (request `i` to process `i mod n`), no worker process running (the jobs wait), so
//!   that only the web side is measured.
//!
//! Each run says where the CPU went (each process, the database server, the bench's own process
//! with the clients and the SMTP sink, the rest of the machine; see `cpu`): on a machine with two
//! cores, four worker processes cannot run four times as fast, and the table should show why.

use std::time::{Duration, Instant};

use serde::Serialize;

use signup_queue::{config::HashCost, db::Db};

use crate::{
    bench::{
        Plan,
        cpu::{CpuUse, CpuWatch},
        harness::{Summary, bar, load_over, per_s},
        product::{Process, Product, pids},
        scenarios::{
            pipeline::{enqueue, jobs_in_table},
            signup_on, unused_mailer,
        },
        target::Target,
    },
    smtp_sink::{SinkConfig, SmtpSink},
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct ScaleOut {
    pub pipeline: Vec<ScaledPipeline>,
    pub register: Vec<ScaledRegister>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ScaledPipeline {
    pub worker_processes: usize,
    /// `WORKERS` of each process: concurrent jobs per consumer queue.
    pub workers_per_queue: u16,
    pub registrations: usize,
    pub jobs: i64,
    pub left_undone: i64,
    pub mails: usize,
    pub duplicates: usize,
    pub seconds: f64,
    pub mails_per_s: f64,
    pub jobs_per_s: f64,
    pub cpu: CpuUse,
    /// Worker processes and database server together, per mail.
    pub product_cpu_us_per_mail: f64,
    /// The whole machine (the SMTP sink and anything else running included), per mail.
    pub machine_cpu_us_per_mail: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ScaledRegister {
    pub web_processes: usize,
    pub concurrency: usize,
    pub errors: usize,
    pub latency: Summary,
    pub cpu: CpuUse,
    /// Web processes and database server together, per registration.
    pub product_cpu_us_per_registration: f64,
    /// The whole machine (the HTTP clients included), per registration.
    pub machine_cpu_us_per_registration: f64,
}

/// `None` when the product's binary is not beside the bench's.
pub async fn run(
    target: &Target,
    plan: &Plan,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<Option<ScaleOut>> {
    let mut result = ScaleOut::default();
    for &n in &plan.worker_processes {
        match pipeline(target, plan, n, workers, hash_cost).await? {
            Some(row) => result.pipeline.push(row),
            None => return Ok(None),
        }
    }
    for &n in &plan.web_processes {
        match register(target, plan, n, workers, hash_cost).await? {
            Some(row) => result.register.push(row),
            None => return Ok(None),
        }
    }
    Ok(Some(result))
}

/// The database URL to watch the server's CPU for, on PostgreSQL.
fn postgres_url<'a>(target: &Target, url: &'a str) -> Option<&'a str> {
    matches!(target, Target::Postgres(_)).then_some(url)
}

async fn pipeline(
    target: &Target,
    plan: &Plan,
    processes: usize,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<Option<ScaledPipeline>> {
    let registrations = plan.burst;
    let sink = SmtpSink::start(SinkConfig::default()).await?;
    let db = target.fresh("scale_workers").await?;
    let scenario = format!("scale_{processes}_workers");
    let Some(product) = Product::find(
        plan,
        &scenario,
        db.url(),
        &sink.smtp_url(),
        workers,
        hash_cost,
    )?
    else {
        return Ok(None);
    };
    let pool = signup_queue::db::connect_and_migrate(db.url()).await?;
    let mut running = Vec::with_capacity(processes);
    for n in 1..=processes {
        running.push(product.start("worker", n as u32, &[]).await?);
    }
    let procs: Vec<&Process> = running.iter().collect();
    // One transaction, so that every worker process sees the whole backlog at once, at its
    // commit: the clock starts there.
    let signup = signup_on(&pool, unused_mailer()?);
    let mut tx = pool.begin().await?;
    let queued = bar(registrations, "scale-out: registrations queued");
    enqueue(&mut tx, &signup, 0..registrations, "scale", &queued).await?;
    queued.finish_and_clear();
    let watch = CpuWatch::start(&pids(&procs), postgres_url(target, db.url())).await?;
    let started = Instant::now();
    tx.commit().await?;
    let jobs = jobs_in_table(&pool).await?;
    let progress = bar(
        2 * registrations,
        &format!("scale-out: {processes} worker process(es), mails"),
    );
    let deadline = started + Duration::from_secs(if registrations > 1000 { 300 } else { 60 });
    // The sink is watched first (no load on the database), then the jobs without a mail.
    while sink.accepted_count() < 2 * registrations && Instant::now() < deadline {
        progress.set_position(sink.accepted_count() as u64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut left = jobs_not_done(&pool).await?;
    while left > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = jobs_not_done(&pool).await?;
    }
    let elapsed = started.elapsed();
    let cpu = watch.stop().await;
    progress.finish_and_clear();
    for process in running {
        process.stop().await?;
    }
    pool.close().await;
    db.remove().await?;
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
    let per_mail = |ms: f64| ms * 1000.0 / mails.max(1) as f64;
    Ok(Some(ScaledPipeline {
        worker_processes: processes,
        workers_per_queue: workers,
        registrations,
        jobs,
        left_undone: left,
        mails,
        duplicates: total_ids - ids.len(),
        seconds: elapsed.as_secs_f64(),
        mails_per_s: per_s(mails as f64, elapsed),
        jobs_per_s: per_s((jobs - left) as f64, elapsed),
        product_cpu_us_per_mail: per_mail(cpu.product_and_db_ms()),
        machine_cpu_us_per_mail: per_mail(cpu.machine_ms),
        cpu,
    }))
}

async fn register(
    target: &Target,
    plan: &Plan,
    processes: usize,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<Option<ScaledRegister>> {
    const CONCURRENCY: usize = 64;
    let requests = plan.scale_requests;
    // Nothing sends mail here (no worker runs); the sink only gives the processes a valid URL.
    let sink = SmtpSink::start(SinkConfig::default()).await?;
    let db = target.fresh("scale_webs").await?;
    let scenario = format!("scale_{processes}_webs");
    let Some(product) = Product::find(
        plan,
        &scenario,
        db.url(),
        &sink.smtp_url(),
        workers,
        hash_cost,
    )?
    else {
        return Ok(None);
    };
    let mut running = Vec::with_capacity(processes);
    for n in 1..=processes {
        running.push(product.start("web", n as u32, &[]).await?);
    }
    let procs: Vec<&Process> = running.iter().collect();
    let urls: Vec<String> = running.iter().map(|p| p.url("/register/async")).collect();
    let client = reqwest::Client::new();
    let progress = bar(requests, &format!("scale-out: {processes} web process(es)"));
    let watch = CpuWatch::start(&pids(&procs), postgres_url(target, db.url())).await?;
    let (h, errors, elapsed) = load_over(
        &client,
        &urls,
        &format!("scale{processes}"),
        requests,
        CONCURRENCY,
        &progress,
    )
    .await;
    let cpu = watch.stop().await;
    progress.finish_and_clear();
    for process in running {
        process.stop().await?;
    }
    db.remove().await?;
    sink.stop();
    let per_registration = |ms: f64| ms * 1000.0 / (requests - errors).max(1) as f64;
    Ok(Some(ScaledRegister {
        web_processes: processes,
        concurrency: CONCURRENCY,
        errors,
        latency: Summary::of(&h, elapsed),
        product_cpu_us_per_registration: per_registration(cpu.product_and_db_ms()),
        machine_cpu_us_per_registration: per_registration(cpu.machine_ms),
        cpu,
    }))
}

async fn jobs_not_done(pool: &Db) -> anyhow::Result<i64> {
    Ok(signup_queue::queue::inspect::stats(pool)
        .await?
        .iter()
        .map(|q| q.pending + q.running + q.retrying + q.failed)
        .sum())
}
