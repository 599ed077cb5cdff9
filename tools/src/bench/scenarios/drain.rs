//! Drain rate of the queue itself: a no-op handler under apalis' SQLite or PostgreSQL backend,
//! configured as the app configures it (batch of 4 × WORKERS), a backlog on top of many finished
//! jobs (finished rows are what a busy table carries, and they slow the fetch query). The jobs are
//! pushed with apalis' own insert (`push_tasks` of apalis-sqlite or apalis-postgres), and the
//! finished ones marked done with one `UPDATE` in each backend's dialect; they keep no `lock_by`
//! (a real finished row keeps its worker's, but that worker is gone, so no query of the draining
//! worker reads it).

use std::time::{Duration, Instant};

use apalis::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use signup_queue::db::Db;

use crate::bench::{
    Plan,
    harness::{bar, per_s},
    target::Target,
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
async fn push(db: &Db, n: usize, fill: &indicatif::ProgressBar) -> anyhow::Result<()> {
    // Due a second ago: PostgreSQL rows carry `run_at` in whole seconds and are fetched once
    // `run_at < now()` (as the app's publish does).
    let due = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_sub(1));
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|i| {
                TaskBuilder::new(serde_json::to_vec(&json!({"n": i})).unwrap_or_default())
                    .run_at_timestamp(due)
                    .build()
            })
            .collect();
        match db {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                apalis_sqlite::queries::push_tasks(&mut *tx, QUEUE, &tasks).await?;
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                apalis_postgres::queries::push_tasks(&mut *tx, QUEUE, tasks).await?;
                tx.commit().await?;
            }
        }
        fill.inc(chunk.len() as u64);
    }
    Ok(())
}

/// Every job on the bench queue done, as a worker would have left it (but with no `lock_by`).
async fn mark_done(db: &Db) -> anyhow::Result<()> {
    match db {
        Db::Sqlite(pool) => {
            sqlx::query("UPDATE Jobs SET status = 'Done', attempts = 1, done_at = strftime('%s','now'), lock_by = NULL WHERE job_type = ?1")
                .bind(QUEUE)
                .execute(pool)
                .await?;
        }
        Db::Postgres(pool) => {
            sqlx::query("UPDATE apalis.jobs SET status = 'Done', attempts = 1, done_at = now(), lock_by = NULL WHERE job_type = $1")
                .bind(QUEUE)
                .execute(pool)
                .await?;
            // As autovacuum would after such an update: fresh statistics for the planner.
            sqlx::query("VACUUM ANALYZE apalis.jobs")
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

async fn left_undone(db: &Db) -> anyhow::Result<i64> {
    let sql = match db {
        Db::Sqlite(_) => "SELECT COUNT(*) FROM Jobs WHERE job_type = $1 AND status != 'Done'",
        Db::Postgres(_) => {
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND status != 'Done'"
        }
    };
    Ok(
        signup_queue::with_db!(db, pool => sqlx::query_scalar(sql).bind(QUEUE).fetch_one(pool).await?),
    )
}

pub async fn run(target: &Target, plan: &Plan, workers: u16) -> anyhow::Result<Drain> {
    let temp = target.fresh("drain").await?;
    let db = signup_queue::db::connect_and_migrate(temp.url()).await?;
    let fill = bar(plan.finished + plan.backlog, "drain: filling the job table");
    push(&db, plan.finished, &fill).await?;
    mark_done(&db).await?;
    push(&db, plan.backlog, &fill).await?;
    fill.finish_and_clear();

    let token = tokio_util::sync::CancellationToken::new();
    let stop = token.clone();
    let batch = usize::from(workers) * 4;
    let poll = Duration::from_millis(10);
    let monitor = match &db {
        Db::Sqlite(pool) => {
            let config = apalis_sqlite::Config::default()
                .queue(QUEUE)
                .batch_size(batch);
            let backend = apalis_sqlite::SqliteStorage::<Value>::new(pool)
                .with_config(config)
                .poll_with_interval(poll);
            Monitor::new().register(move |_| {
                WorkerBuilder::new(signup_queue::queue::workers::worker_name(QUEUE))
                    .backend(backend.clone())
                    .concurrency(usize::from(workers))
                    .build(noop)
            })
        }
        Db::Postgres(pool) => {
            let config = apalis_postgres::Config::default()
                .queue(QUEUE)
                .batch_size(batch);
            let storage = apalis_postgres::PostgresStorage::<Value>::new(pool).with_config(config);
            Monitor::new().register(move |_| {
                let backend = PollWith::new(storage.clone(), Strategy::new().interval(poll));
                WorkerBuilder::new(signup_queue::queue::workers::worker_name(QUEUE))
                    .backend(backend)
                    .concurrency(usize::from(workers))
                    .build(noop)
            })
        }
    };
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
        let left = left_undone(&db).await?;
        progress.set_position((plan.backlog as i64 - left).max(0) as u64);
        if left == 0 || Instant::now() > deadline {
            break;
        }
        // The count reads the whole table (on PostgreSQL a scan of every row) on the cores the
        // drain runs on: often enough to end within 2 % of the drain's time, no more.
        let pause =
            (started.elapsed() / 50).clamp(Duration::from_millis(10), Duration::from_millis(250));
        tokio::time::sleep(pause).await;
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    let left = left_undone(&db).await?;
    db.close().await;
    temp.remove().await?;
    Ok(Drain {
        backlog: plan.backlog,
        finished_before: plan.finished,
        seconds: elapsed.as_secs_f64(),
        left_undone: left,
        jobs_per_s: per_s((plan.backlog as i64 - left) as f64, elapsed),
    })
}
