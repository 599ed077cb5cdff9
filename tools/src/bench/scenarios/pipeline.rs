//! The consumer side of the pipeline on its own: `n` registrations committed through the real
//! transaction (user row + every consumer's job) before any worker runs, then a `worker` process's
//! pools drain them into the SMTP sink. Mails accepted per second, from worker start to the last
//! job done, is what the queue adds on top of sending (compare with raw lettre). The end-to-end
//! figure of the burst at SMTP +0 ms cannot reach it: it is bounded by the registration rate.

use std::time::{Duration, Instant};

use serde::Serialize;

use signup_queue::{Role, config::HashCost, mail::Mailer, users::Email};

use crate::{
    bench::{
        harness::{self, bar, per_s, process_cpu},
        scenarios::signup_on,
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
    pub cpu_us_per_mail: f64,
}

pub async fn run(
    n: usize,
    latency_ms: u64,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<BacklogPipeline> {
    let sink = SmtpSink::start(SinkConfig::with_latency_ms(latency_ms)).await?;
    // Our own folder, not the test kit's: the backlog is written before any app exists.
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("pipeline.db").display());
    let jobs = fill(&url, n, &sink.smtp_url()).await?;

    let app = harness::app(sink.smtp_url(), workers, hash_cost)
        .database(url)
        .role(Role::Worker)
        .try_spawn()
        .await?;
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
    let cpu = process_cpu().saturating_sub(cpu_before);
    progress.finish_and_clear();
    app.stop().await;
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
        cpu_us_per_mail: cpu.as_secs_f64() * 1e6 / (mails.max(1) as f64),
    })
}

/// `n` registrations through `Signup::insert_and_publish`, 100 to a transaction; returns the
/// number of jobs written.
async fn fill(url: &str, n: usize, smtp_url: &str) -> anyhow::Result<i64> {
    let pool = signup_queue::db::connect_and_migrate(url).await?;
    let signup = signup_on(
        &pool,
        Mailer::new(
            smtp_url,
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
                .insert_and_publish(tx.conn(), &email, None, "$argon2id$bench", None)
                .await?;
        }
        tx.commit().await?;
        fill.inc(chunk.len() as u64);
    }
    fill.finish_and_clear();
    let jobs: i64 = signup_queue::queue::inspect::stats(&pool)
        .await?
        .iter()
        .map(|q| {
            signup_queue::queue::JobState::ALL
                .iter()
                .map(|s| q.count(*s))
                .sum::<i64>()
        })
        .sum();
    pool.close().await;
    Ok(jobs)
}
