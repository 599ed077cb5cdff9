//! The worker side of the queue: one apalis worker per consumer queue, woken by this process's
//! enqueues and by polling, each job's outcome turned into done, a retry with backoff, or a
//! failure for good.

use std::{sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use tokio_util::sync::CancellationToken;

use crate::{
    consumers::{Consumer, ConsumerError, JobInfo},
    db::Db,
    events::QueuedMessage,
    queue::{
        publish::REQUEST_ID,
        retry::{RetrySchedule, schedule_retry},
        wakeup::Wakeup,
    },
};

/// Settings of one worker process's pool (per consumer queue).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub heartbeat: Duration,
    pub retry: RetrySchedule,
    pub max_attempts: u32,
}

/// A unique worker name per process and start: a restarted worker must never collide with the
/// name of one still inside the heartbeat window.
pub fn worker_name(queue: &str) -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    let suffix = ulid::Ulid::generate().to_string();
    format!(
        "{queue}-{host}-{}-{}",
        std::process::id(),
        &suffix[suffix.len() - 6..]
    )
}

/// What a consumer's worker shares across its jobs.
#[derive(Clone)]
struct Runtime {
    consumer: Arc<dyn Consumer>,
    pool: Db,
    retry: RetrySchedule,
    max_attempts: u32,
}

#[tracing::instrument(
    skip_all,
    fields(
        consumer = ctx.consumer.name(),
        job_id = %task_id,
        // The dashboard's Logs page reads `task_id` and `attempt`.
        task_id = %task_id,
        attempt = attempt.current(),
        request_id = metadata.get(REQUEST_ID).unwrap_or("-"),
        user_id,
    )
)]
async fn run_consumer(
    message: QueuedMessage,
    task_id: TaskId,
    attempt: Attempt,
    metadata: MetadataStore,
    ctx: Data<Runtime>,
) -> Result<(), BoxDynError> {
    let queue = ctx.consumer.name();
    let job = JobInfo {
        id: task_id.to_string(),
        attempt: attempt.current(),
        inline: false,
    };
    let started = std::time::Instant::now();
    crate::metrics::job_started(queue, job.queue_wait());
    let outcome = match message.into_user_registered() {
        Err(e) => {
            tracing::error!(error = %e, "message refused; job failed");
            Err(ConsumerError::abort(e.to_string()))
        }
        Ok(event) => {
            tracing::Span::current().record("user_id", event.payload.user_id);
            ctx.consumer.handle(&event, &job).await
        }
    };
    let last_attempt = job.attempt >= ctx.max_attempts as usize;
    let (result, label) = match outcome {
        Ok(()) => (Ok(()), "succeeded"),
        Err(ConsumerError::Abort(e)) => {
            tracing::warn!(error = %e, "job aborted: retrying cannot help");
            (Err(AbortError::new(e).into()), "failed")
        }
        Err(ConsumerError::Retry(e)) => {
            let delay = ctx.retry.delay_after(job.attempt);
            if let Err(db) = schedule_retry(&ctx.pool, &job.id, delay).await {
                tracing::error!(error = %db, "cannot schedule the retry; it runs without delay");
            }
            if last_attempt {
                tracing::error!(error = %e, "job failed for good: attempts exhausted");
            } else {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
            }
            (Err(e), if last_attempt { "failed" } else { "retried" })
        }
    };
    crate::metrics::job_finished(queue, label, started.elapsed());
    result
}

/// A worker that stops with an error is restarted:
/// - when the job storage cannot be reached (PostgreSQL restarting or down, a connection cut, the
///   pool out of connections, SQLite locked past its busy budget): always. The restarted worker's
///   first query waits for a connection up to the pool's timeout (3 s on PostgreSQL), which paces
///   the restarts while the database is away; once it answers, the worker goes on, and the jobs
///   were in the database all along.
/// - for anything else (e.g. a job row it cannot decode), so one bad row cannot silence a queue for
///   good; but more than 10 such restarts a minute means something is broken for real, and the
///   worker stays down (the logs say why).
fn restart_unless_looping(worker: &WorkerContext, error: &WorkerError) -> bool {
    use std::sync::Mutex;
    use std::time::Instant;
    static RESTARTS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
    if storage_unavailable(error) {
        tracing::warn!(worker = worker.name(), %error, "job storage unavailable; restarting the worker, it waits for the database");
        return true;
    }
    let Ok(mut restarts) = RESTARTS.lock() else {
        return false;
    };
    restarts.retain(|t| t.elapsed() < Duration::from_secs(60));
    if restarts.len() >= 10 {
        tracing::error!(worker = worker.name(), %error, "worker stopped with an error; too many restarts, leaving it down");
        return false;
    }
    restarts.push(Instant::now());
    tracing::error!(worker = worker.name(), %error, "worker stopped with an error; restarting it");
    true
}

/// Is this the storage being unreachable rather than broken? apalis wraps the storage's error in
/// types that keep no `source()`, so the sqlx error is recognised by its message.
fn storage_unavailable(error: &WorkerError) -> bool {
    const MARKERS: [&str; 11] = [
        "pool timed out while waiting for an open connection",
        "attempted to acquire a connection on a closed pool",
        "error communicating with database",
        "error occurred while attempting to establish a TLS connection",
        "encountered unexpected or invalid data",
        "terminating connection due to administrator command",
        "the database system is starting up",
        "the database system is shutting down",
        "the database system is in recovery mode",
        "server closed the connection unexpectedly",
        "database is locked",
    ];
    let WorkerError::BackendError(inner) = error else {
        return false;
    };
    let text = inner.to_string();
    MARKERS.iter().any(|marker| text.contains(marker))
}

/// One worker per consumer, all woken by the same signal: this process's enqueues, and other
/// processes' on PostgreSQL (LISTEN/NOTIFY; see `wakeup`).
pub fn run_workers(
    consumers: &[Arc<dyn Consumer>],
    pool: &Db,
    wakeup: &Wakeup,
    settings: &PoolSettings,
) -> WorkerPool {
    let live = LiveWorkers::default();
    WorkerPool {
        monitor: register_workers(Monitor::new(), consumers, pool, wakeup, settings, &live),
        live,
        db: pool.clone(),
        heartbeat: settings.heartbeat,
    }
}

/// The current name of each consumer's worker in this process (a restarted worker gets a new
/// name; its old name must stop beating, so that the jobs it held are re-delivered).
#[derive(Clone, Default)]
struct LiveWorkers(Arc<std::sync::Mutex<std::collections::HashMap<&'static str, String>>>);

impl LiveWorkers {
    fn set(&self, queue: &'static str, name: String) {
        if let Ok(mut names) = self.0.lock() {
            names.insert(queue, name);
        }
    }

    fn names(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|names| names.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// The process's own heartbeat for its workers, on a timer of its own.
///
/// apalis beats only between fetches: a worker whose prefetched jobs are all waiting (for an SMTP
/// slot, say) sends none, and after two missed beats the other processes take it for dead and
/// re-deliver its jobs while it still runs them (measured on PostgreSQL: live workers silent for
/// 4-25 s with a 1 s heartbeat, and dozens of duplicate mails). Here a process that is alive keeps
/// its workers alive, every half heartbeat; one killed with `kill -9` stops beating at once, and
/// its jobs go back to the queue after two heartbeats, as before.
async fn keep_alive(db: Db, live: LiveWorkers, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let names = live.names();
        if names.is_empty() {
            continue;
        }
        let (table, now) = match db.backend() {
            crate::db::Backend::Sqlite => ("Workers", "strftime('%s', 'now')"),
            crate::db::Backend::Postgres => ("apalis.workers", "now()"),
        };
        let beat: Result<(), sqlx::Error> = crate::with_db!(&db, pool => {
            let mut query = sqlx::QueryBuilder::new(format!(
                "UPDATE {table} SET last_seen = {now} WHERE id IN ("
            ));
            let mut ids = query.separated(", ");
            for name in &names {
                ids.push_bind(name.as_str());
            }
            query.push(")");
            query.build().execute(pool).await.map(|_| ())
        });
        if let Err(e) = beat {
            tracing::warn!(error = %e, "worker heartbeat failed; trying again");
        }
    }
}

/// The workers of one process, ready to run.
pub struct WorkerPool {
    monitor: Monitor,
    live: LiveWorkers,
    db: Db,
    heartbeat: Duration,
}

impl WorkerPool {
    /// Runs until `stop` is cancelled, then lets the jobs in flight finish within `grace`; jobs
    /// fetched but not started go back to the queue.
    pub async fn run_until(
        self,
        stop: tokio_util::sync::CancellationToken,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let beating = CancellationToken::new();
        tokio::spawn(keep_alive(
            self.db.clone(),
            self.live.clone(),
            self.heartbeat / 2,
            beating.clone(),
        ));
        let _stop_beating = beating.drop_guard();
        self.monitor
            .shutdown_timeout(grace)
            .run_with_signal(async move {
                stop.cancelled().await;
                Ok(())
            })
            .await
            .map_err(anyhow::Error::from)
    }
}

fn register_workers(
    mut monitor: Monitor,
    consumers: &[Arc<dyn Consumer>],
    pool: &Db,
    wakeup: &Wakeup,
    settings: &PoolSettings,
    live: &LiveWorkers,
) -> Monitor {
    monitor = monitor.should_restart(restart_unless_looping);
    for consumer in consumers {
        let runtime = Runtime {
            consumer: Arc::clone(consumer),
            pool: pool.clone(),
            retry: settings.retry,
            max_attempts: settings.max_attempts,
        };
        let wakeup = wakeup.clone();
        let settings = settings.clone();
        let live = live.clone();
        // Fetch ahead of the concurrency limit so a freed slot finds its next job waiting.
        let batch_size = settings.concurrency * 4;
        monitor = match pool {
            Db::Sqlite(pool) => {
                let pool = pool.clone();
                monitor.register(move |_| {
                    let queue = runtime.consumer.name();
                    let config = apalis_sqlite::Config::default()
                        .queue(queue)
                        .batch_size(batch_size)
                        .heartbeat_interval(settings.heartbeat);
                    let strategy = Strategy::new()
                        .stream(wakeup.subscribe())
                        .interval(settings.poll_interval);
                    let backend = SqliteStorage::<QueuedMessage>::new(&pool)
                        .with_config(config)
                        .poll_with_strategy(strategy);
                    let name = worker_name(queue);
                    live.set(queue, name.clone());
                    WorkerBuilder::new(name)
                        .backend(backend)
                        .data(runtime.clone())
                        .catch_panic()
                        .concurrency(settings.concurrency)
                        .build(run_consumer)
                })
            }
            Db::Postgres(pool) => {
                let pool = pool.clone();
                monitor.register(move |_| {
                    let queue = runtime.consumer.name();
                    let config = apalis_postgres::Config::default()
                        .queue(queue)
                        .batch_size(batch_size)
                        .heartbeat_interval(settings.heartbeat)
                        // As on SQLite: a worker that missed two heartbeats is dead, and its
                        // jobs go back to the queue (apalis-postgres' own default is ten).
                        .missed_heartbeats(2);
                    let strategy = Strategy::new()
                        .stream(wakeup.subscribe())
                        .interval(settings.poll_interval);
                    let backend = PollWith::new(
                        PostgresStorage::<QueuedMessage>::new(&pool).with_config(config),
                        strategy,
                    );
                    let name = worker_name(queue);
                    live.set(queue, name.clone());
                    WorkerBuilder::new(name)
                        .backend(backend)
                        .data(runtime.clone())
                        .catch_panic()
                        .concurrency(settings.concurrency)
                        .build(run_consumer)
                })
            }
        };
    }
    monitor
}
