//! Wakes this process's idle workers when there is a job for them: right after this process's
//! own enqueue commits ([`Wakeup::notify`]), and, on PostgreSQL, when another process commits one
//! ([`watch_other_processes`]: LISTEN/NOTIFY), so they start within milliseconds instead of
//! waiting for the next poll (`POLL_INTERVAL`, the fallback, which also finds retries scheduled for
//! later, and on SQLite the jobs other processes wrote).

use std::sync::{Arc, Mutex};

use futures::channel::mpsc;

#[derive(Clone, Default)]
pub struct Wakeup {
    subscribers: Arc<Mutex<Vec<mpsc::Sender<()>>>>,
}

impl Wakeup {
    /// A stream that yields once per wake-up (wake-ups that arrive while one is pending coalesce).
    pub fn subscribe(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push(tx);
        }
        rx
    }

    pub fn notify(&self) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            // A full channel already has a wake-up pending; a disconnected one is a stopped worker.
            subscribers.retain_mut(|tx| match tx.try_send(()) {
                Ok(()) => true,
                Err(e) => e.is_full(),
            });
        }
    }
}

/// Wakes this process's workers when another process commits a job, until `stop`. PostgreSQL:
/// LISTEN on the channel apalis-postgres' insert trigger notifies (`apalis::job::insert`), one
/// connection per process, reconnecting with backoff when the server goes away (and waking the
/// workers once after reconnecting, for what was missed).
///
/// SQLite has no such signal across processes: its workers find other processes' jobs by polling.
/// (`PRAGMA data_version` checked every few milliseconds was tried: the median pickup fell to 5 ms,
/// but every write, the workers' own included, became a wake-up, and with that many wake-ups
/// apalis' poll loop now and then stopped hearing both them and its interval until the next
/// heartbeat: p99 2.6 s across processes, and in `serve` 14 of 100 jobs still waiting at the end
/// of the bench, BENCHMARKS.md.)
pub async fn watch_other_processes(
    db: crate::db::Db,
    wakeup: Wakeup,
    stop: tokio_util::sync::CancellationToken,
) {
    match db {
        crate::db::Db::Postgres(pool) => {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = listen_postgres(pool, wakeup) => {}
            }
        }
        crate::db::Db::Sqlite(_) => {}
    }
}

const INSERT_CHANNEL: &str = "apalis::job::insert";

async fn listen_postgres(pool: sqlx::PgPool, wakeup: Wakeup) {
    use std::time::Duration;
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(INSERT_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listener {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot LISTEN for new jobs; polling meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if connected_before {
            tracing::info!("listening for new jobs again");
            wakeup.notify();
        }
        connected_before = true;
        backoff = Duration::from_millis(100);
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wakeup.notify(),
                // The connection was lost; the next try_recv reconnects and listens again.
                Ok(None) => {
                    tracing::warn!("lost the LISTEN connection; reconnecting");
                    wakeup.notify();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
    }
}
