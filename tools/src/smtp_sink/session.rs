//! One SMTP session of the sink: the protocol by `mailin`, the envelope and Message-ID kept, the
//! injected `451`s, the simulated latency, and the cut when the sink goes down (only between two
//! commands).

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use super::{Accepted, OpenSession, Stats};

#[derive(Default)]
struct Envelope {
    to: Vec<String>,
    header_block: Vec<u8>,
    in_headers: bool,
    /// Shared with the connection loop, which cannot reach into the session's handler.
    finished: Arc<Mutex<Option<Accepted>>>,
    /// Between DATA and its final `.`: read by the connection loop, which decides failures.
    in_data: Arc<AtomicBool>,
}

impl Handler for Envelope {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.in_data.store(true, Ordering::SeqCst);
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
        self.in_data.store(false, Ordering::SeqCst);
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

pub(super) async fn session(
    socket: TcpStream,
    stats: &Stats,
    latency: Duration,
    phase: &CancellationToken,
    open: &mut OpenSession<'_>,
) -> std::io::Result<()> {
    let peer: IpAddr = socket
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(Ipv4Addr::LOCALHOST.into());
    let mut stream = BufReader::new(socket);
    let finished: Arc<Mutex<Option<Accepted>>> = Arc::default();
    let in_data: Arc<AtomicBool> = Arc::default();
    let envelope = Envelope {
        finished: Arc::clone(&finished),
        in_data: Arc::clone(&in_data),
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
        // Cut only here, between commands: a message is never accepted without its answer.
        let read = tokio::select! {
            _ = phase.cancelled() => {
                stats.cut_sessions.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            read = stream.read_until(b'\n', &mut line) => read?,
        };
        if read == 0 {
            return Ok(());
        }
        // The end of DATA: a failing message is answered 451 here, and the session closed,
        // since `mailin` keeps a session whose DATA its handler refused in the DATA state.
        if in_data.load(Ordering::SeqCst) && is_end_of_data(&line) && stats.next_fails() {
            stream
                .get_mut()
                .write_all(b"451 4.3.0 Temporary failure, try again later\r\n")
                .await?;
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
            stats.record(accepted);
        }
        match response.action {
            Action::Reply | Action::UpgradeTls => {
                stream.get_mut().write_all(&response.buffer()?).await?;
            }
            Action::Close => {
                // Out of the count before the answer: the client may connect again once it has it.
                open.end();
                stream.get_mut().write_all(&response.buffer()?).await?;
                return Ok(());
            }
            Action::NoReply => {}
        }
    }
}

/// The line that ends DATA (dot-stuffing makes it unambiguous while in DATA).
fn is_end_of_data(line: &[u8]) -> bool {
    line == b".\r\n" || line == b".\n"
}
