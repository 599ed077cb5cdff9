//! The embedded development inbox: a real SMTP server (mailcrab's development server) on a
//! loopback port, keeping the mails it catches in memory for `/dev/mailbox`, behind a gate
//! ([`gate`]) that makes it as slow, down or flaky as a real one can be.
//! For development and tests only: it accepts any mail from anyone and forgets all on exit.

pub mod gate;

use std::{
    collections::VecDeque,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many caught mails are kept (oldest dropped first).
const KEEP: usize = 1000;

/// One caught mail, in the JSON shape of `GET /dev/mailbox/api/messages`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaughtMail {
    pub id: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub received_at: String,
    #[serde(skip)]
    pub message_id: Option<String>,
    /// Every header, in the order mailcrab gives them (shown on the inbox page).
    #[serde(skip)]
    pub headers: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct DevInbox {
    /// The gate's address: where the app sends mail.
    addr: SocketAddr,
    /// mailcrab's own address, behind the gate.
    upstream: SocketAddr,
    gate: gate::Gate,
    mails: Arc<Mutex<VecDeque<CaughtMail>>>,
    arrivals: broadcast::Sender<CaughtMail>,
    token: CancellationToken,
}

impl DevInbox {
    /// Starts on a free loopback port (picked by the OS), with a mail latency of `latency`.
    pub async fn start(latency: Duration) -> anyhow::Result<DevInbox> {
        let mut last_error = None;
        // mailcrab binds the port itself, so the port is picked first; another process may take it
        // in between, hence a few tries.
        for _ in 0..5 {
            let port = free_loopback_port()?;
            match DevInbox::start_on(port, latency).await {
                Ok(inbox) => return Ok(inbox),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no free port")))
    }

    /// Starts mailcrab on 127.0.0.1:`port` and its gate on a free port; fails when the server does
    /// not come up.
    pub async fn start_on(port: u16, latency: Duration) -> anyhow::Result<DevInbox> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let (tx, rx) = broadcast::channel::<mailcrab::MailMessage>(1024);
        let token = CancellationToken::new();
        let server = tokio::spawn(mailcrab::mail_server(
            addr.ip(),
            port,
            tx.clone(),
            false,
            token.clone(),
        ));
        // mailcrab logs and returns when it cannot bind; wait until the port answers.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if server.is_finished() {
                anyhow::bail!("the development SMTP server could not listen on {addr}");
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                token.cancel();
                anyhow::bail!("the development SMTP server did not start on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::spawn(keep_serving(addr, tx, token.clone(), server));
        let gate = gate::Gate::start(addr, latency, token.clone()).await?;
        let (arrivals, _) = broadcast::channel(1024);
        let inbox = DevInbox {
            addr: gate.addr(),
            upstream: addr,
            gate,
            mails: Arc::default(),
            arrivals,
            token,
        };
        tokio::spawn(inbox.clone().collect(rx));
        tracing::info!(
            addr = %inbox.addr,
            upstream = %addr,
            latency_ms = latency.as_millis() as u64,
            "development inbox (SMTP) listening: for development only"
        );
        Ok(inbox)
    }

    async fn collect(self, mut rx: broadcast::Receiver<mailcrab::MailMessage>) {
        loop {
            tokio::select! {
                _ = self.token.cancelled() => return,
                message = rx.recv() => match message {
                    Ok(message) => {
                        let mail = to_caught(&message);
                        tracing::info!(to = ?mail.to, subject = %mail.subject, "development inbox caught a mail");
                        if let Ok(mut mails) = self.mails.lock() {
                            mails.push_front(mail.clone());
                            mails.truncate(KEEP);
                        }
                        let _ = self.arrivals.send(mail);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "development inbox fell behind and lost mails");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// Where the app sends mail: the gate (latency, down, flaky) in front of the inbox.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The inbox's own SMTP address, without the gate.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.upstream
    }

    /// The latency, down and flaky switches of the gate.
    pub fn control(&self) -> &gate::Control {
        self.gate.control()
    }

    /// Forgets every caught mail.
    pub fn clear(&self) {
        if let Ok(mut mails) = self.mails.lock() {
            mails.clear();
        }
    }

    pub fn smtp_url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Caught mails, newest first.
    pub fn messages(&self) -> Vec<CaughtMail> {
        self.mails
            .lock()
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A stream of mails as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<CaughtMail> {
        self.arrivals.subscribe()
    }

    /// Stops accepting connections (connections already open finish their session).
    pub fn stop(&self) {
        self.token.cancel();
    }
}

fn free_loopback_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// mailcrab's message type keeps its fields private but serializes them all.
fn to_caught(message: &mailcrab::MailMessage) -> CaughtMail {
    let value = serde_json::to_value(message).unwrap_or_default();
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
    let address = |v: &serde_json::Value| {
        let email = v["email"].as_str().unwrap_or_default();
        match v["name"].as_str() {
            Some(name) if !name.is_empty() => format!("{name} <{email}>"),
            _ => email.to_owned(),
        }
    };
    let headers = value["headers"].as_object();
    let message_id = headers.and_then(|h| {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("message-id"))
            .and_then(|(_, v)| v.as_str())
            .map(|v| v.trim().to_owned())
    });
    let received_at = chrono::DateTime::from_timestamp(message.time, 0)
        .unwrap_or_else(chrono::Utc::now)
        .to_rfc3339();
    CaughtMail {
        id: message.id.to_string(),
        from: address(&value["from"]),
        to: value["to"]
            .as_array()
            .map(|to| to.iter().map(address).collect())
            .unwrap_or_default(),
        subject: text("subject"),
        text: text("text"),
        html: text("html"),
        received_at,
        message_id,
        headers: headers
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// mailcrab's accept loop ends for good on the first accept error (say "Too many open files"
/// under a connection flood), and the inbox would then refuse every later mail. This restarts it
/// on the same address, backing off from 100 ms to 5 s between tries, until shutdown.
async fn keep_serving(
    addr: SocketAddr,
    tx: broadcast::Sender<mailcrab::MailMessage>,
    token: CancellationToken,
    mut server: tokio::task::JoinHandle<mailcrab::Result<()>>,
) {
    const FIRST: Duration = Duration::from_millis(100);
    let mut backoff = FIRST;
    loop {
        let started = tokio::time::Instant::now();
        let _ = (&mut server).await;
        if token.is_cancelled() {
            return;
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = FIRST;
        }
        tracing::error!(
            %addr,
            retry_in_ms = backoff.as_millis() as u64,
            "development inbox: the SMTP server stopped accepting (see the error above); restarting it"
        );
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
        server = tokio::spawn(mailcrab::mail_server(
            addr.ip(),
            addr.port(),
            tx.clone(),
            false,
            token.clone(),
        ));
    }
}
