//! A measuring SMTP sink for benchmarks and fault tests: a real SMTP server (protocol by the
//! `mailin` crate) that can answer each message after a configurable latency, caps concurrent
//! sessions (refusing extra ones with 421, as a loaded mail server does), and counts what it saw.
//! It keeps only envelope data, not message bodies.
//!
//! A session counts as open from its accept until the sink answers QUIT (or the connection ends
//! otherwise): a client that has read the `221` may open its next session at once, and must not
//! find the one it just ended still counted because the sink's task has not finished yet.
//!
//! Faults for the soak, switched at run time: [`SmtpSink::set_fail_share`] answers `451` to a
//! share of messages (and closes that session), and [`SmtpSink::go_down`] / [`SmtpSink::come_up`] close the listener and
//! the open sessions (connections are refused) and listen again on the same port. A session is
//! cut only while it waits for the client's next line, never between accepting a message and
//! answering it, so the sink's counts match what the sender was told.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{io::AsyncWriteExt, net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

mod session;
use session::session;

#[derive(Debug, Clone, Copy, Default)]
pub struct SinkConfig {
    /// Delay before the server accepts each message (after the final `.`).
    pub latency: Duration,
    /// Most sessions open at once; more are refused with 421. `None`: no cap.
    pub max_sessions: Option<usize>,
}

impl SinkConfig {
    /// A sink that takes `ms` milliseconds to accept each message, with no session cap.
    pub fn with_latency_ms(ms: u64) -> Self {
        SinkConfig {
            latency: Duration::from_millis(ms),
            max_sessions: None,
        }
    }
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub to: Vec<String>,
    pub message_id: Option<String>,
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Stats {
    accepted: Mutex<Vec<Accepted>>,
    open_sessions: AtomicUsize,
    max_open_sessions: AtomicUsize,
    refused_sessions: AtomicUsize,
    /// Accepted messages per Message-ID (messages without one are not counted here).
    per_message_id: Mutex<HashMap<String, u32>>,
    /// Accepted messages per recipient.
    per_recipient: Mutex<HashMap<String, u32>>,
    /// Share of messages answered `451`, as `f64` bits (0: none).
    fail_share_bits: AtomicU64,
    /// Messages that reached the end of DATA (accepted or failed): the failure counter's clock.
    messages_seen: AtomicU64,
    failed_messages: AtomicU64,
    /// Connections dropped at once because the sink was down (beside the refused ones, which the
    /// kernel refuses without the sink seeing them).
    cut_sessions: AtomicUsize,
}

impl Stats {
    /// Whether the message that just ended DATA gets `451`: exactly `share` of them, spread
    /// evenly (the n-th fails when `floor(n * share)` steps up), so runs are reproducible.
    fn next_fails(&self) -> bool {
        let share = f64::from_bits(self.fail_share_bits.load(Ordering::SeqCst));
        let n = self.messages_seen.fetch_add(1, Ordering::SeqCst) as f64;
        let fails = share > 0.0 && ((n + 1.0) * share).floor() > (n * share).floor();
        if fails {
            self.failed_messages.fetch_add(1, Ordering::SeqCst);
        }
        fails
    }

    fn record(&self, accepted: Accepted) {
        if let Ok(mut counts) = self.per_recipient.lock() {
            for to in &accepted.to {
                *counts.entry(to.clone()).or_default() += 1;
            }
        }
        if let (Some(id), Ok(mut counts)) = (&accepted.message_id, self.per_message_id.lock()) {
            *counts.entry(id.clone()).or_default() += 1;
        }
        if let Ok(mut all) = self.accepted.lock() {
            all.push(accepted);
        }
    }
}

/// One accepted connection in the open-sessions count (counted at accept); it leaves the count
/// once, at [`OpenSession::end`] or when dropped.
struct OpenSession<'a> {
    stats: &'a Stats,
    counted: bool,
}

impl<'a> OpenSession<'a> {
    fn new(stats: &'a Stats) -> Self {
        OpenSession {
            stats,
            counted: true,
        }
    }

    /// The session is over for the client (QUIT answered, or the connection ended).
    fn end(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.stats.open_sessions.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

#[derive(Clone)]
pub struct SmtpSink {
    addr: SocketAddr,
    stats: Arc<Stats>,
    token: CancellationToken,
    /// `true` while the sink is down (see [`SmtpSink::go_down`]).
    down: Arc<watch::Sender<bool>>,
}

impl SmtpSink {
    /// Starts on a free loopback port.
    pub async fn start(config: SinkConfig) -> std::io::Result<SmtpSink> {
        SmtpSink::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: SinkConfig) -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind(addr).await?;
        let sink = SmtpSink {
            addr: listener.local_addr()?,
            stats: Arc::default(),
            token: CancellationToken::new(),
            down: Arc::new(watch::channel(false).0),
        };
        tokio::spawn(sink.clone().serve(listener, config));
        Ok(sink)
    }

    async fn serve(self, listener: TcpListener, config: SinkConfig) {
        let mut listener = Some(listener);
        let mut down = self.down.subscribe();
        loop {
            // Up: accept until stopped or switched down.
            if let Some(up) = listener.take() {
                let phase = self.token.child_token();
                self.accept_until_down(&up, config, &phase, &mut down).await;
                // Dropping the listener makes the kernel refuse new connections.
                phase.cancel();
            }
            if self.token.is_cancelled() {
                return;
            }
            // Down: wait to be switched up, then listen on the same port again.
            tokio::select! {
                _ = self.token.cancelled() => return,
                changed = down.wait_for(|d| !*d) => if changed.is_err() { return },
            }
            listener = self.rebind().await;
            if listener.is_none() {
                return;
            }
        }
    }

    /// Accepts sessions until the sink is stopped or switched down; sessions end with `phase`.
    async fn accept_until_down(
        &self,
        listener: &TcpListener,
        config: SinkConfig,
        phase: &CancellationToken,
        down: &mut watch::Receiver<bool>,
    ) {
        loop {
            let socket = tokio::select! {
                _ = self.token.cancelled() => return,
                _ = down.wait_for(|d| *d) => return,
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        tracing::warn!(error = %e, "SMTP sink: accept failed");
                        continue;
                    }
                },
            };
            let _ = socket.set_nodelay(true);
            let open = self.stats.open_sessions.fetch_add(1, Ordering::SeqCst) + 1;
            let stats = Arc::clone(&self.stats);
            let token = self.token.clone();
            let phase = phase.clone();
            let refuse = config.max_sessions.is_some_and(|cap| open > cap);
            if !refuse {
                stats.max_open_sessions.fetch_max(open, Ordering::SeqCst);
            }
            tokio::spawn(async move {
                let mut open = OpenSession::new(&stats);
                if refuse {
                    stats.refused_sessions.fetch_add(1, Ordering::SeqCst);
                    let mut socket = socket;
                    let _ = socket
                        .write_all(b"421 Too many connections, try later\r\n")
                        .await;
                } else {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = session(socket, &stats, config.latency, &phase, &mut open) => {}
                    }
                }
            });
        }
    }

    /// Listens on the sink's address again (retrying for a while: the old socket may linger).
    async fn rebind(&self) -> Option<TcpListener> {
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => return Some(listener),
                Err(e) => {
                    tracing::warn!(error = %e, addr = %self.addr, "SMTP sink: cannot listen again yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        tracing::error!(addr = %self.addr, "SMTP sink: gave up listening again");
        None
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn smtp_url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.stats
            .accepted
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    pub fn accepted_count(&self) -> usize {
        self.stats
            .accepted
            .lock()
            .map(|a| a.len())
            .unwrap_or_default()
    }

    /// The most sessions that were open at once (refused ones not counted).
    pub fn max_open_sessions(&self) -> usize {
        self.stats.max_open_sessions.load(Ordering::SeqCst)
    }

    pub fn refused_sessions(&self) -> usize {
        self.stats.refused_sessions.load(Ordering::SeqCst)
    }

    /// Stops accepting and ends open sessions.
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// Answers `451` (transient failure) to `share` (0 to 1) of the messages from now on.
    pub fn set_fail_share(&self, share: f64) {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.stats
            .fail_share_bits
            .store(share.to_bits(), Ordering::SeqCst);
    }

    /// An outage: stops listening (connections are refused) and cuts the open sessions at their
    /// next read, until [`SmtpSink::come_up`].
    pub fn go_down(&self) {
        self.down.send_replace(true);
    }

    /// Ends the outage: listens again on the same address.
    pub fn come_up(&self) {
        self.down.send_replace(false);
    }

    pub fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    /// Messages answered `451` by [`SmtpSink::set_fail_share`].
    pub fn failed_count(&self) -> u64 {
        self.stats.failed_messages.load(Ordering::SeqCst)
    }

    /// Sessions cut because the sink went down.
    pub fn cut_sessions(&self) -> usize {
        self.stats.cut_sessions.load(Ordering::SeqCst)
    }

    /// Accepted messages per Message-ID.
    pub fn count_by_message_id(&self) -> HashMap<String, u32> {
        self.stats
            .per_message_id
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Accepted messages per recipient.
    pub fn count_by_recipient(&self) -> HashMap<String, u32> {
        self.stats
            .per_recipient
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}
