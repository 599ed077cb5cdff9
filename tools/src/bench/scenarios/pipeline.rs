//! The consumer side of the pipeline on its own: `n` registrations committed through the real
//! transaction (user row + every consumer's job) before any worker runs, then a `worker` app's
//! pools (in this process) drain them into the SMTP sink. Mails accepted per second, from worker
//! start to the last job done, is what the queue adds on top of sending (compare with raw
//! lettre). The end-to-end figure of the burst at SMTP +0 ms cannot reach it: it is bounded by
//! the registration rate.

use std::time::{Duration, Instant};

use serde::Serialize;

use signup_queue::{
    Role,
    config::HashCost,
    db::{Db, DbTx},
    signup::Signup,
    users::Email,
};

use crate::{
    bench::{
        cpu::{CpuUse, CpuWatch},
        harness::{self, bar, per_s, process_cpu},
        scenarios::{signup_on, unused_mailer},
        target::Target,
    },
    smtp_sink::{SinkConfig, SmtpSink},
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct BacklogPipeline {
    pub registrations: usize,
    pub smtp_latency_ms: u64,
    /// Jobs in the table before the worker started (every consumer's, not only mails).
    pub jobs: i64,
    pub left_undone: i64,
    pub seconds: f64,
    pub mails: usize,
    pub duplicates: usize,
    pub mails_per_s: f64,
    pub jobs_per_s: f64,
    /// CPU of the bench process (the app's workers and the SMTP sink, both in it) per mail. On
    /// PostgreSQL the database server's share is not in it: see `cpu_us_per_mail_with_db`.
    pub cpu_us_per_mail: f64,
    /// The bench process and the database server's processes (PostgreSQL) per mail: the figure
    /// to compare across backends (on SQLite it equals `cpu_us_per_mail`).
    pub cpu_us_per_mail_with_db: f64,
    pub cpu: CpuUse,
}

pub async fn run(
    target: &Target,
    n: usize,
    latency_ms: u64,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<BacklogPipeline> {
    let sink = SmtpSink::start(SinkConfig::with_latency_ms(latency_ms)).await?;
    // The backlog is written before any app exists.
    let db = target.fresh("pipeline").await?;
    let pool = signup_queue::db::connect_and_migrate(db.url()).await?;
    let jobs = fill(&pool, n, 100, "pipe").await?;
    pool.close().await;

    let app = harness::app(sink.smtp_url(), workers, hash_cost)
        .database(db.url())
        .role(Role::Worker)
        .try_spawn()
        .await?;
    let postgres = matches!(target, Target::Postgres(_)).then_some(db.url());
    let watch = CpuWatch::start(&[], postgres).await?;
    let started = Instant::now();
    let cpu_before = process_cpu();
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
        left = app.jobs_not_done(None).await?;
        progress.set_position((jobs - left).max(0) as u64);
    }
    let elapsed = started.elapsed();
    let own_cpu = process_cpu().saturating_sub(cpu_before);
    let cpu = watch.stop().await;
    progress.finish_and_clear();
    app.stop().await;
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
    Ok(BacklogPipeline {
        registrations: n,
        smtp_latency_ms: latency_ms,
        jobs,
        left_undone: left,
        seconds: elapsed.as_secs_f64(),
        mails,
        duplicates: total_ids - ids.len(),
        mails_per_s: per_s(mails as f64, elapsed),
        jobs_per_s: per_s((jobs - left) as f64, elapsed),
        cpu_us_per_mail: own_cpu.as_secs_f64() * 1e6 / (mails.max(1) as f64),
        cpu_us_per_mail_with_db: (cpu.bench_process_ms + cpu.db_server_ms.unwrap_or_default())
            * 1000.0
            / (mails.max(1) as f64),
        cpu,
    })
}

/// `n` registrations through `Signup::insert_and_publish`, `per_transaction` to a transaction,
/// emails `{prefix}-{i}@bench.local`; returns the number of jobs in the table.
pub async fn fill(db: &Db, n: usize, per_transaction: usize, prefix: &str) -> anyhow::Result<i64> {
    let signup = signup_on(db, unused_mailer()?);
    let fill = bar(n, "registrations queued");
    for chunk in (0..n).collect::<Vec<_>>().chunks(per_transaction.max(1)) {
        let mut tx = db.begin().await?;
        enqueue(&mut tx, &signup, chunk.iter().copied(), prefix, &fill).await?;
        tx.commit().await?;
    }
    fill.finish_and_clear();
    jobs_in_table(db).await
}

/// Registrations `numbers` through `Signup::insert_and_publish` in the caller's transaction,
/// each counted on `progress`.
pub async fn enqueue(
    tx: &mut DbTx,
    signup: &Signup,
    numbers: impl Iterator<Item = usize>,
    prefix: &str,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    for i in numbers {
        let email = Email::parse(&format!("{prefix}-{i}@bench.local"))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        signup
            .insert_and_publish(tx.conn(), &email, None, "$argon2id$bench", None)
            .await?;
        progress.inc(1);
    }
    Ok(())
}

/// Jobs in the table, in any state.
pub async fn jobs_in_table(db: &Db) -> anyhow::Result<i64> {
    Ok(signup_queue::queue::inspect::stats(db)
        .await?
        .iter()
        .map(|q| {
            signup_queue::queue::JobState::ALL
                .iter()
                .map(|s| q.count(*s))
                .sum::<i64>()
        })
        .sum())
}
