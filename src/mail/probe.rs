//! "Is the mail server up?" for status panels, shared by every visitor: at most one probe at a
//! time (single-flight), its answer reused for [`MAX_AGE`], each probe bounded by
//! [`PROBE_TIMEOUT`]. A status page must never become a way to open SMTP sessions at will: before
//! this, every `GET /api/queue` and every open stream opened its own connection.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::Mailer;

/// How long one answer is reused.
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// A mail server that accepts and never answers is "down" after this long, whatever SMTP_TIMEOUT.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct MailServerProbe {
    mailer: Mailer,
    /// The last answer and when it was taken; the lock is held during a probe, so callers that
    /// arrive meanwhile wait for that probe instead of starting their own.
    last: Arc<tokio::sync::Mutex<Option<(Instant, bool)>>>,
}

impl MailServerProbe {
    pub fn new(mailer: Mailer) -> Self {
        MailServerProbe {
            mailer,
            last: Arc::default(),
        }
    }

    /// Drops the cached answer: the next caller probes again (after the development mail
    /// server was switched up or down, say).
    pub async fn forget(&self) {
        *self.last.lock().await = None;
    }

    pub async fn is_up(&self) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, up)) = *last
            && at.elapsed() < MAX_AGE
        {
            return up;
        }
        let up = tokio::time::timeout(PROBE_TIMEOUT, self.mailer.is_reachable())
            .await
            .unwrap_or(false);
        *last = Some((Instant::now(), up));
        up
    }
}
