//! Retention (`JOB_RETENTION`): the worker process deletes finished jobs older than the limit,
//! every 10 minutes, so the job table does not grow without end.

use std::time::Duration;

use crate::db::Db;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(600);

/// Runs until `stop` is cancelled.
pub async fn purge_finished_jobs(pool: Db, retention: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    let secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match crate::queue::inspect::purge_done(&pool, secs).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "retention: deleted finished jobs older than JOB_RETENTION"
            ),
            Err(e) => tracing::warn!(error = %e, "retention: cannot delete finished jobs"),
        }
    }
}
