//! The cap on concurrent SMTP sessions (`SMTP_MAX_SESSIONS`). Mail providers limit how many
//! connections one sender may hold open; above it they refuse (421) and the mail waits for a retry.
//! - Per process (SQLite, or no PostgreSQL): a semaphore.
//! - Across every worker process on one PostgreSQL database: each send holds one of N slots, a
//!   transaction-level advisory lock `(SLOTS_KEY, slot)` on a connection of a small pool of its
//!   own, for the whole SMTP session. A crashed process (even `kill -9`) loses its connections,
//!   and PostgreSQL releases their locks with them: no lease to expire, no slot leaked. While no
//!   slot is free a sender waits and tries again (2 ms, doubling to 50 ms). In this mode a session
//!   carries one mail and is closed before its slot is released, so an idle kept-open connection
//!   never counts against another process's share.

use std::{sync::Arc, time::Duration};

use sqlx::{PgPool, Postgres, Transaction, postgres::PgPoolOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// First key of the advisory locks (second key: the slot). Any constant unlikely to collide with
/// another application's advisory locks on the same database: "sq" + "mail" in ASCII.
const SLOTS_KEY: i32 = 0x7371_6d61;

#[derive(Clone)]
pub(super) enum SessionLimit {
    Local(Arc<Semaphore>),
    Global(Arc<GlobalSlots>),
}

pub(super) struct GlobalSlots {
    /// Only for the lock transactions: the application's pool is never starved by senders.
    locks: PgPool,
    slots: i32,
    /// No more senders of this process wait for a slot than it has workers.
    local: Arc<Semaphore>,
}

/// Held for the duration of one SMTP session; [`SessionPermit::release`] after it.
pub(super) struct SessionPermit {
    _local: OwnedSemaphorePermit,
    /// The transaction holding the slot's advisory lock; rolling it back releases the slot.
    /// (Dropped without `release`, sqlx rolls it back when the connection is next used.)
    slot: Option<Transaction<'static, Postgres>>,
}

impl SessionPermit {
    /// Gives the slot back at once (the SMTP session is closed by now).
    pub(super) async fn release(mut self) {
        if let Some(tx) = self.slot.take()
            && let Err(e) = tx.rollback().await
        {
            // The connection is gone, and the lock with it.
            tracing::debug!(error = %e, "releasing an SMTP session slot");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum LimitError {
    #[error("cannot take an SMTP session slot: the database is not answering: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the mailer is shutting down")]
    Closed,
}

impl SessionLimit {
    pub(super) fn local(n: usize) -> SessionLimit {
        SessionLimit::Local(Arc::new(Semaphore::new(n.max(1))))
    }

    /// `slots` sessions across every process that uses the same database; at most
    /// `per_process` of them from this one.
    pub(super) fn global(pool: &PgPool, slots: usize, per_process: usize) -> SessionLimit {
        let per_process = per_process.clamp(1, slots.max(1));
        let locks = PgPoolOptions::new()
            .max_connections(per_process as u32)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with((*pool.connect_options()).clone());
        SessionLimit::Global(Arc::new(GlobalSlots {
            locks,
            slots: i32::try_from(slots.max(1)).unwrap_or(i32::MAX),
            local: Arc::new(Semaphore::new(per_process)),
        }))
    }

    pub(super) fn is_global(&self) -> bool {
        matches!(self, SessionLimit::Global(_))
    }

    pub(super) async fn acquire(&self) -> Result<SessionPermit, LimitError> {
        match self {
            SessionLimit::Local(semaphore) => Ok(SessionPermit {
                _local: Arc::clone(semaphore)
                    .acquire_owned()
                    .await
                    .map_err(|_| LimitError::Closed)?,
                slot: None,
            }),
            SessionLimit::Global(global) => global.acquire().await,
        }
    }
}

impl GlobalSlots {
    async fn acquire(&self) -> Result<SessionPermit, LimitError> {
        let local = Arc::clone(&self.local)
            .acquire_owned()
            .await
            .map_err(|_| LimitError::Closed)?;
        let mut pause = Duration::from_millis(2);
        let mut waited = false;
        loop {
            let mut tx = self.locks.begin().await?;
            // Start at a random slot so processes do not all fight over slot 0; the scan stops at
            // the first lock taken (at most one is held).
            let start = rand::random_range(0..self.slots);
            let slot: Option<i32> = sqlx::query_scalar(
                "SELECT slot FROM (
                     SELECT (s + $2) % $3 AS slot FROM generate_series(0, $3 - 1) AS s
                 ) AS slots
                 WHERE pg_try_advisory_xact_lock($1, slot)
                 LIMIT 1",
            )
            .bind(SLOTS_KEY)
            .bind(start)
            .bind(self.slots)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(slot) = slot {
                if waited {
                    tracing::debug!(slot, "SMTP session slot free again");
                }
                return Ok(SessionPermit {
                    _local: local,
                    slot: Some(tx),
                });
            }
            tx.rollback().await?;
            if !waited {
                tracing::debug!(
                    slots = self.slots,
                    "all SMTP session slots are taken (SMTP_MAX_SESSIONS, all processes); waiting"
                );
                waited = true;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
