//! What the live streams share, so their cost does not grow with the number of visitors: one
//! queue snapshot for every `/api/queue/events` stream (one database poll a second while anyone
//! listens, none otherwise; the mail server's state from the shared probe), and the limits on
//! open streams (per client address and in total) with a maximum lifetime, after which the
//! browser's EventSource reconnects by itself.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use crate::db::Db;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    consumers::welcome::WELCOME_QUEUE, mail::MailServerProbe, queue::inspect, web::error::AppError,
};

/// How often the shared snapshot is refreshed while someone listens.
const QUEUE_TICK: Duration = Duration::from_secs(1);
/// Open streams one client address may hold (a page holds two: its queue panel and one job).
pub const STREAMS_PER_CLIENT: usize = 8;
/// Open streams in all.
pub const STREAMS_TOTAL: usize = 1024;
/// A stream ends after this long; the browser reconnects (after `RECONNECT`), so a forgotten tab
/// or a client that only holds connections open does not keep a slot for ever.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(300);
/// The reconnection delay the streams ask browsers for.
pub const RECONNECT: Duration = Duration::from_secs(1);

/// The queue panel's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueueSnapshot {
    pub pending: i64,
    pub running: i64,
    pub retrying: i64,
    pub done: i64,
    pub failed: i64,
    /// `up` or `down`: does the mail server answer (the shared, cached probe)?
    pub mail_server: &'static str,
}

/// Reads the welcome queue's counts and the mail server's state once.
pub async fn queue_snapshot(
    pool: &Db,
    probe: &MailServerProbe,
) -> Result<QueueSnapshot, sqlx::Error> {
    let stats = inspect::stats(pool)
        .await?
        .into_iter()
        .find(|s| s.queue == WELCOME_QUEUE)
        .unwrap_or_default();
    Ok(QueueSnapshot {
        pending: stats.pending,
        running: stats.running,
        retrying: stats.retrying,
        done: stats.done,
        failed: stats.failed,
        mail_server: if probe.is_up().await { "up" } else { "down" },
    })
}

/// One snapshot for every queue stream.
#[derive(Clone)]
pub struct QueueFeed {
    pool: Db,
    probe: MailServerProbe,
    shutdown: CancellationToken,
    snapshot: watch::Sender<Option<QueueSnapshot>>,
    poller: Arc<OnceLock<()>>,
}

impl QueueFeed {
    pub fn new(pool: Db, probe: MailServerProbe, shutdown: CancellationToken) -> Self {
        QueueFeed {
            pool,
            probe,
            shutdown,
            snapshot: watch::channel(None).0,
            poller: Arc::default(),
        }
    }

    /// The shared snapshot; the first subscriber starts the one poller.
    pub fn subscribe(&self) -> watch::Receiver<Option<QueueSnapshot>> {
        let receiver = self.snapshot.subscribe();
        self.poller.get_or_init(|| {
            tokio::spawn(self.clone().poll());
        });
        receiver
    }

    async fn poll(self) {
        loop {
            if self.snapshot.receiver_count() > 0 {
                match queue_snapshot(&self.pool, &self.probe).await {
                    Ok(now) => {
                        self.snapshot.send_if_modified(|last| {
                            let changed = last.as_ref() != Some(&now);
                            *last = Some(now);
                            changed
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "queue feed: database error"),
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(QUEUE_TICK) => {}
            }
        }
    }
}

/// Counts open streams per client address and in total.
#[derive(Clone, Default)]
pub struct StreamLimits {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open stream; dropping it (the stream ended or the client left) frees the slot.
pub struct StreamSlot {
    limits: StreamLimits,
    client: IpAddr,
}

impl StreamLimits {
    /// A slot for a new stream of `client`, or 429 (this client holds too many) / 503 (the
    /// server holds too many).
    pub fn open(&self, client: IpAddr) -> Result<StreamSlot, AppError> {
        let mut open = self.open.lock().map_err(|_| AppError::Busy)?;
        let total: usize = open.values().sum();
        let mine = open.get(&client).copied().unwrap_or(0);
        if mine >= STREAMS_PER_CLIENT {
            return Err(AppError::TooManyStreams(STREAMS_PER_CLIENT));
        }
        if total >= STREAMS_TOTAL {
            return Err(AppError::Busy);
        }
        *open.entry(client).or_default() += 1;
        Ok(StreamSlot {
            limits: self.clone(),
            client,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.limits.open.lock()
            && let Some(n) = open.get_mut(&self.client)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_share_and_slots_come_back() {
        let limits = StreamLimits::default();
        let client: IpAddr = [127, 0, 0, 1].into();
        let slots: Vec<_> = (0..STREAMS_PER_CLIENT)
            .map(|_| limits.open(client).expect("within the share"))
            .collect();
        assert!(matches!(
            limits.open(client),
            Err(AppError::TooManyStreams(_))
        ));
        assert!(
            limits.open([127, 0, 0, 2].into()).is_ok(),
            "others still get one"
        );
        drop(slots);
        assert!(limits.open(client).is_ok(), "slots are freed");
    }
}
