//! Drain rate of the queue itself: a no-op handler under apalis' SQLite backend, a backlog on
//! top of many finished jobs (finished rows are what a busy table carries, and they slow the
//! fetch query).

use std::time::{Duration, Instant};

use apalis::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::SqlitePool;

use crate::bench::{
    Plan,
    harness::{bar, per_s},
};

const QUEUE: &str = "bench_noop";

#[derive(Debug, Clone, Default, Serialize)]
pub struct Drain {
    pub backlog: usize,
    pub finished_before: usize,
    pub seconds: f64,
    pub left_undone: i64,
    pub jobs_per_s: f64,
}

async fn noop(_job: Value) -> Result<(), BoxDynError> {
    Ok(())
}

/// `n` jobs pushed on the bench queue, 1000 to a transaction.
async fn push(pool: &SqlitePool, n: usize, fill: &indicatif::ProgressBar) -> anyhow::Result<()> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|i| {
                TaskBuilder::new(serde_json::to_vec(&json!({"n": i})).unwrap_or_default()).build()
            })
            .collect();
        let mut tx = pool.begin().await?;
        apalis_sqlite::queries::push_tasks(&mut *tx, QUEUE, &tasks).await?;
        tx.commit().await?;
        fill.inc(chunk.len() as u64);
    }
    Ok(())
}

async fn left_undone(pool: &SqlitePool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status != 'Done'")
            .bind(QUEUE)
            .fetch_one(pool)
            .await?,
    )
}

pub async fn run(plan: &Plan, workers: u16) -> anyhow::Result<Drain> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("drain.db").display());
    let db = signup_queue::db::connect_and_migrate(&url).await?;
    let pool = db
        .sqlite()
        .ok_or_else(|| anyhow::anyhow!("the drain scenario runs on SQLite"))?
        .clone();
    let fill = bar(plan.finished + plan.backlog, "drain: filling the job table");
    push(&pool, plan.finished, &fill).await?;
    sqlx::query("UPDATE Jobs SET status = 'Done', attempts = 1, done_at = strftime('%s','now'), lock_by = NULL WHERE job_type = ?1")
        .bind(QUEUE)
        .execute(&pool)
        .await?;
    push(&pool, plan.backlog, &fill).await?;
    fill.finish_and_clear();

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
        let left = left_undone(&pool).await?;
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
    let left = left_undone(&pool).await?;
    pool.close().await;
    Ok(Drain {
        backlog: plan.backlog,
        finished_before: plan.finished,
        seconds: elapsed.as_secs_f64(),
        left_undone: left,
        jobs_per_s: per_s((plan.backlog as i64 - left) as f64, elapsed),
    })
}
