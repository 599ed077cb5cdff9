//! A measuring SMTP sink for benchmarks and fault tests: a real SMTP server (protocol by the
//! `mailin` crate) that can answer each message after a configurable latency, caps concurrent
//! sessions (refusing extra ones with 421, as a loaded mail server does), and counts what it saw.
//! It keeps only envelope data, not message bodies.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

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
}

#[derive(Clone)]
pub struct SmtpSink {
    addr: SocketAddr,
    stats: Arc<Stats>,
    token: CancellationToken,
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
        };
        tokio::spawn(sink.clone().serve(listener, config));
        Ok(sink)
    }

    async fn serve(self, listener: TcpListener, config: SinkConfig) {
        loop {
            let socket = tokio::select! {
                _ = self.token.cancelled() => return,
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
            let refuse = config.max_sessions.is_some_and(|cap| open > cap);
            if !refuse {
                stats.max_open_sessions.fetch_max(open, Ordering::SeqCst);
            }
            tokio::spawn(async move {
                if refuse {
                    stats.refused_sessions.fetch_add(1, Ordering::SeqCst);
                    let mut socket = socket;
                    let _ = socket
                        .write_all(b"421 Too many connections, try later\r\n")
                        .await;
                } else {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = session(socket, &stats, config.latency) => {}
                    }
                }
                stats.open_sessions.fetch_sub(1, Ordering::SeqCst);
            });
        }
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
}

#[derive(Default)]
struct Envelope {
    to: Vec<String>,
    header_block: Vec<u8>,
    in_headers: bool,
    /// Shared with the connection loop, which cannot reach into the session's handler.
    finished: Arc<Mutex<Option<Accepted>>>,
}

impl Handler for Envelope {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.header_block.clear();
        self.in_headers = true;
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.in_headers {
            self.header_block.extend_from_slice(buf);
            if buf == b"\r\n" || buf == b"\n" || self.header_block.len() > 64 * 1024 {
                self.in_headers = false;
            }
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let headers = String::from_utf8_lossy(&self.header_block);
        let message_id = headers.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("message-id")
                .then(|| value.trim().to_owned())
        });
        if let Ok(mut finished) = self.finished.lock() {
            *finished = Some(Accepted {
                to: std::mem::take(&mut self.to),
                message_id,
                at: Instant::now(),
            });
        }
        mailin::response::OK
    }
}

async fn session(socket: TcpStream, stats: &Stats, latency: Duration) -> std::io::Result<()> {
    let peer: IpAddr = socket
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(Ipv4Addr::LOCALHOST.into());
    let mut stream = BufReader::new(socket);
    let finished: Arc<Mutex<Option<Accepted>>> = Arc::default();
    let envelope = Envelope {
        finished: Arc::clone(&finished),
        ..Envelope::default()
    };
    let mut session = SessionBuilder::new("signup-queue-sink").build(peer, envelope);
    stream
        .get_mut()
        .write_all(&session.greeting().buffer()?)
        .await?;
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if stream.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let response = session.process(&line);
        let completed = finished.lock().ok().and_then(|mut f| f.take());
        if let Some(accepted) = completed {
            // The message is complete: answer only after the simulated latency.
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let mut accepted = accepted;
            accepted.at = Instant::now();
            if let Ok(mut all) = stats.accepted.lock() {
                all.push(accepted);
            }
        }
        match response.action {
            Action::Reply | Action::UpgradeTls => {
                stream.get_mut().write_all(&response.buffer()?).await?;
            }
            Action::Close => {
                stream.get_mut().write_all(&response.buffer()?).await?;
                return Ok(());
            }
            Action::NoReply => {}
        }
    }
}
