//! A mail server you can drive: an SMTP proxy on its own loopback port, in front of the embedded
//! inbox, that the app's mailer talks to. It passes every byte through, except that it
//! - holds back the end of each message (the client's `\r\n.\r\n`) for the configured latency,
//!   so that sending one mail takes as long as with a real, distant mail server;
//! - when "down", answers `421 4.3.2 Service not available` to a new connection (and to the next
//!   command of an open one) and closes it;
//! - when "flaky", answers `451 4.3.0` to a share of the messages instead of passing their end
//!   on, and drops the session: the mail is not delivered, and the sender sees a temporary error.
//!
//! For development only, like the inbox behind it. Controlled by `GET/POST /dev/mail-server`.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// The longest latency the gate accepts (more than any `SMTP_TIMEOUT` worth trying).
pub const MAX_LATENCY: Duration = Duration::from_secs(30);

const DOWN_REPLY: &[u8] =
    b"421 4.3.2 Service not available (development mail server switched down)\r\n";
const FLAKY_REPLY: &[u8] =
    b"451 4.3.0 Temporary failure, try again later (development mail server in flaky mode)\r\n";
/// The end of a message's data, as the client sends it.
const END_OF_DATA: &[u8] = b"\r\n.\r\n";

/// How the development mail server behaves: `GET /dev/mail-server` answers it, `POST` changes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MailServerState {
    /// Added to every mail (before the server answers the end of the message), 0 to 30000.
    pub latency_ms: u64,
    /// Refuses connections with `421` while true.
    pub down: bool,
    /// The share of mails (0 to 1) answered with a temporary `451` instead of being delivered.
    pub flaky_share: f64,
}

/// A change to [`MailServerState`]; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailServerChange {
    /// 0 to 30000.
    #[schema(maximum = 30000)]
    pub latency_ms: Option<u64>,
    pub down: Option<bool>,
    /// 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub flaky_share: Option<f64>,
}

impl MailServerChange {
    /// Checks the ranges; the error names the field and its range.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(ms) = self.latency_ms
            && ms > MAX_LATENCY.as_millis() as u64
        {
            return Err((
                "latency_ms",
                format!(
                    "must be between 0 and {}, got {ms}",
                    MAX_LATENCY.as_millis()
                ),
            ));
        }
        if let Some(share) = self.flaky_share
            && !(0.0..=1.0).contains(&share)
        {
            return Err((
                "flaky_share",
                format!("must be between 0 and 1, got {share}"),
            ));
        }
        Ok(())
    }
}

/// The gate's settings, shared by its connections.
#[derive(Clone)]
pub struct Control {
    state: Arc<Mutex<MailServerState>>,
}

impl Control {
    fn new(latency: Duration) -> Control {
        Control {
            state: Arc::new(Mutex::new(MailServerState {
                latency_ms: latency.min(MAX_LATENCY).as_millis() as u64,
                down: false,
                flaky_share: 0.0,
            })),
        }
    }

    pub fn get(&self) -> MailServerState {
        self.state.lock().map(|s| *s).unwrap_or(MailServerState {
            latency_ms: 0,
            down: false,
            flaky_share: 0.0,
        })
    }

    /// Applies a checked change; returns the new state.
    pub fn apply(&self, change: &MailServerChange) -> MailServerState {
        if let Ok(mut state) = self.state.lock() {
            if let Some(ms) = change.latency_ms {
                state.latency_ms = ms.min(MAX_LATENCY.as_millis() as u64);
            }
            if let Some(down) = change.down {
                state.down = down;
            }
            if let Some(share) = change.flaky_share {
                state.flaky_share = share.clamp(0.0, 1.0);
            }
            tracing::info!(
                latency_ms = state.latency_ms,
                down = state.down,
                flaky_share = state.flaky_share,
                "development mail server changed"
            );
        }
        self.get()
    }
}

/// The running gate.
#[derive(Clone)]
pub struct Gate {
    addr: SocketAddr,
    control: Control,
}

impl Gate {
    /// Listens on a free loopback port and forwards to `upstream` until `token` is cancelled.
    pub async fn start(
        upstream: SocketAddr,
        latency: Duration,
        token: CancellationToken,
    ) -> anyhow::Result<Gate> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("the development mail server gate cannot listen")?;
        let addr = listener.local_addr()?;
        let control = Control::new(latency);
        tokio::spawn(accept(listener, upstream, control.clone(), token));
        Ok(Gate { addr, control })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn control(&self) -> &Control {
        &self.control
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    control: Control,
    token: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, _)) => {
                let control = control.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        result = session(client, upstream, control) => {
                            if let Err(e) = result {
                                tracing::debug!(error = %e, "development mail server gate: session ended");
                            }
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "development mail server gate: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One client session, proxied to its own upstream session.
async fn session(
    mut client: TcpStream,
    upstream: SocketAddr,
    control: Control,
) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    if control.get().down {
        client.write_all(DOWN_REPLY).await?;
        client.shutdown().await?;
        return Ok(());
    }
    let server = TcpStream::connect(upstream).await?;
    let _ = server.set_nodelay(true);
    let (mut client_read, client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // The replies the gate writes itself go through the same writer as the server's replies.
    let client_write = &tokio::sync::Mutex::new(client_write);
    let replies = {
        async move {
            let mut buf = vec![0u8; 8192];
            loop {
                let n = server_read.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                client_write.lock().await.write_all(&buf[..n]).await?;
            }
        }
    };
    let commands = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut scanner = Scanner::default();
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                let _ = server_write.shutdown().await;
                return Ok::<_, std::io::Error>(());
            }
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                if control.get().down {
                    let mut writer = client_write.lock().await;
                    writer.write_all(DOWN_REPLY).await?;
                    writer.shutdown().await?;
                    return Ok(());
                }
                match scanner.feed(chunk) {
                    Scan::Pass => {
                        server_write.write_all(chunk).await?;
                        chunk = &[];
                    }
                    Scan::EndOfData { before, end } => {
                        server_write.write_all(&chunk[..before]).await?;
                        let state = control.get();
                        tokio::time::sleep(Duration::from_millis(state.latency_ms)).await;
                        let flaky = state.flaky_share > 0.0
                            && rand::rng().random_bool(state.flaky_share.min(1.0));
                        if flaky || control.get().down {
                            let mut writer = client_write.lock().await;
                            writer
                                .write_all(if flaky { FLAKY_REPLY } else { DOWN_REPLY })
                                .await?;
                            writer.shutdown().await?;
                            return Ok(());
                        }
                        server_write.write_all(&chunk[before..end]).await?;
                        chunk = &chunk[end..];
                    }
                }
            }
        }
    };
    tokio::select! {
        r = replies => r,
        r = commands => r,
    }
}

/// Follows the client's side of SMTP far enough to find the end of each message: command lines
/// until `DATA`, then data until `\r\n.\r\n`.
#[derive(Default)]
struct Scanner {
    in_data: bool,
    /// The current command line so far (command mode), or the last bytes seen (data mode).
    tail: Vec<u8>,
}

enum Scan {
    /// Nothing special in this chunk: forward it whole.
    Pass,
    /// The message ends in this chunk: its final `.\r\n` is `before..end` (or its rest).
    EndOfData { before: usize, end: usize },
}

impl Scanner {
    fn feed(&mut self, chunk: &[u8]) -> Scan {
        for (i, &byte) in chunk.iter().enumerate() {
            if self.in_data {
                self.tail.push(byte);
                if self.tail.len() > END_OF_DATA.len() {
                    self.tail.remove(0);
                }
                // DATA is followed by the message; an empty one is `.\r\n` right away.
                if self.tail == END_OF_DATA {
                    self.in_data = false;
                    self.tail.clear();
                    // The `.\r\n` is the last three bytes up to here; when it straddles two
                    // reads, what is left of it in this one is held back (the server needs the
                    // whole line).
                    let end = i + 1;
                    return Scan::EndOfData {
                        before: end.saturating_sub(3),
                        end,
                    };
                }
            } else {
                self.tail.push(byte);
                if byte == b'\n' {
                    let line = std::mem::take(&mut self.tail);
                    if line.trim_ascii().eq_ignore_ascii_case(b"DATA") {
                        self.in_data = true;
                        // The message starts on a new line: pretend a `\r\n` preceded it.
                        self.tail.extend_from_slice(b"\r\n");
                    }
                } else if self.tail.len() > 1024 {
                    self.tail.clear();
                }
            }
        }
        Scan::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(scanner: &mut Scanner, chunk: &[u8]) -> Option<usize> {
        match scanner.feed(chunk) {
            Scan::Pass => None,
            Scan::EndOfData { before, .. } => Some(before),
        }
    }

    #[test]
    fn the_end_of_a_message_is_found_after_data_only() {
        let mut s = Scanner::default();
        assert_eq!(ends(&mut s, b"EHLO x\r\nMAIL FROM:<a@b>\r\n"), None);
        assert_eq!(ends(&mut s, b"RCPT TO:<c@d>\r\n.\r\n"), None, "not in data");
        assert_eq!(ends(&mut s, b"DATA\r\n"), None);
        let body = b"Subject: hi\r\n\r\n..stuffed\r\nbye\r\n.\r\n";
        assert_eq!(ends(&mut s, body), Some(body.len() - 3));
        assert_eq!(ends(&mut s, b"QUIT\r\n"), None);
        // Split terminator: the part before the `.` in one read, the rest in the next.
        assert_eq!(ends(&mut s, b"DATA\r\nbody\r\n"), None);
        assert_eq!(ends(&mut s, b".\r\n"), Some(0));
    }
}
