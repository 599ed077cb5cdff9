//! Group commit for the consumers' small writes (delivery records, audit rows, "coupon mailed").
//!
//! Each job used to write its own row in its own statement: one more round trip to the SQLite
//! connection's thread and one more write transaction per job, all queueing on SQLite's single
//! writer. A [`BatchWriter`] takes the rows of all the jobs that finish at about the same time and
//! writes them with one multi-row statement. A handler's `write` returns only once its row is
//! committed, so a job is still acknowledged only after its record is durable: the guarantees do
//! not change, only the number of write transactions does.
//!
//! No timer: the writer flushes whatever is waiting as soon as the previous flush is done. At low
//! load every row is written at once, alone; under load the batches grow by themselves.

use std::sync::Arc;

use crate::db::Db;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

/// The most rows in one statement (SQLite allows 32,766 bound values, PostgreSQL 65,535; rows
/// here have at most 5).
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<(), Arc<sqlx::Error>>>;

/// Writes one batch of rows in one statement (or one transaction). The rows are shared, not
/// copied: the writer keeps them to retry one by one if the batch fails.
pub type Flush<T> =
    Arc<dyn Fn(Db, Arc<[T]>) -> BoxFuture<'static, Result<(), sqlx::Error>> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batched write failed: {0}")]
    Database(Arc<sqlx::Error>),
    #[error("the batch writer has stopped")]
    Stopped,
}

pub struct BatchWriter<T> {
    pool: Db,
    flush: Flush<T>,
    /// The writer task, started by the first `write` (so a consumer can be built outside a
    /// Tokio runtime, and a process that never writes runs no task).
    sender: std::sync::OnceLock<mpsc::Sender<(T, Reply)>>,
}

impl<T: Clone + Send + Sync + 'static> BatchWriter<T> {
    /// A writer whose task ends when this handle is dropped.
    pub fn new(pool: Db, flush: Flush<T>) -> Self {
        BatchWriter {
            pool,
            flush,
            sender: std::sync::OnceLock::new(),
        }
    }

    /// Queues one row and waits until it is committed.
    pub async fn write(&self, row: T) -> Result<(), BatchError> {
        let sender = self
            .sender
            .get_or_init(|| spawn(self.pool.clone(), Arc::clone(&self.flush)));
        let (reply, committed) = oneshot::channel();
        sender
            .send((row, reply))
            .await
            .map_err(|_| BatchError::Stopped)?;
        committed
            .await
            .map_err(|_| BatchError::Stopped)?
            .map_err(BatchError::Database)
    }
}

fn spawn<T: Clone + Send + Sync + 'static>(pool: Db, flush: Flush<T>) -> mpsc::Sender<(T, Reply)> {
    let (sender, mut receiver) = mpsc::channel::<(T, Reply)>(4 * MAX_BATCH);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let (rows, replies): (Vec<T>, Vec<Reply>) = batch.drain(..).unzip();
            let rows: Arc<[T]> = rows.into();
            match flush(pool.clone(), Arc::clone(&rows)).await {
                Ok(()) => {
                    for reply in replies {
                        let _ = reply.send(Ok(()));
                    }
                }
                Err(e) if rows.len() == 1 => {
                    if let Some(reply) = replies.into_iter().next() {
                        let _ = reply.send(Err(Arc::new(e)));
                    }
                }
                Err(e) => {
                    // One bad row must not fail the others: write them one by one, so each job
                    // gets its own row's outcome.
                    tracing::debug!(error = %e, rows = rows.len(), "batched write failed; writing its rows one by one");
                    for (row, reply) in rows.iter().zip(replies) {
                        let result = flush(pool.clone(), Arc::new([row.clone()]))
                            .await
                            .map_err(Arc::new);
                        let _ = reply.send(result);
                    }
                }
            }
        }
    });
    sender
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pool() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("batch.db").display());
        let pool = crate::db::connect_and_migrate(&url)
            .await
            .expect("database");
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY CHECK (n >= 0))")
            .execute(pool.sqlite().expect("sqlite"))
            .await
            .expect("table");
        (dir, pool)
    }

    fn insert() -> Flush<i64> {
        Arc::new(|pool, rows| {
            Box::pin(async move {
                crate::with_db!(&pool, pool => {
                    let mut query = sqlx::QueryBuilder::new("INSERT INTO t (n) ");
                    query.push_values(rows.iter(), |mut b, n| {
                        b.push_bind(*n);
                    });
                    query.build().execute(pool).await.map(|_| ())
                })
            })
        })
    }

    #[tokio::test]
    async fn concurrent_rows_are_all_committed_before_write_returns() {
        let (_dir, pool) = pool().await;
        let writer = Arc::new(BatchWriter::new(pool.clone(), insert()));
        let writes = (0..500).map(|n| {
            let writer = Arc::clone(&writer);
            async move { writer.write(n).await }
        });
        for result in futures::future::join_all(writes).await {
            result.expect("committed");
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(pool.sqlite().expect("sqlite"))
            .await
            .expect("count");
        assert_eq!(count, 500);
    }

    #[tokio::test]
    async fn a_bad_row_fails_alone() {
        let (_dir, pool) = pool().await;
        let writer = Arc::new(BatchWriter::new(pool.clone(), insert()));
        // -1 breaks the CHECK constraint; whichever batch it lands in, only its own write fails.
        let writes = (-1..100).map(|n| {
            let writer = Arc::clone(&writer);
            async move { (n, writer.write(n).await) }
        });
        for (n, result) in futures::future::join_all(writes).await {
            assert_eq!(result.is_ok(), n >= 0, "row {n}: {result:?}");
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(pool.sqlite().expect("sqlite"))
            .await
            .expect("count");
        assert_eq!(count, 100);
    }
}
