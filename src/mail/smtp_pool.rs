//! Plain SMTP connections kept open between sends, for `smtp://host:port` without TLS or
//! credentials.

use lettre::Message;

use super::SendError;

/// Plain SMTP connections kept open between sends, with TCP_NODELAY. lettre writes the message
/// and its final `.` in two writes; with Nagle's algorithm on, the second waits for the server's
/// delayed ACK (about 40 ms a mail on Linux). lettre's pooled transport cannot set the option,
/// and it returns connections to its pool from a spawned task, so a send that follows at once
/// opens one more connection than the concurrency limit allows. This pool does neither.
pub(super) struct DirectSmtp {
    address: String,
    idle: tokio::sync::Mutex<Vec<lettre::transport::smtp::client::AsyncSmtpConnection>>,
    max_idle: usize,
    hello: lettre::transport::smtp::extension::ClientId,
}

impl DirectSmtp {
    pub(super) fn new(address: String, max_idle: usize) -> Self {
        DirectSmtp {
            address,
            idle: tokio::sync::Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
            hello: lettre::transport::smtp::extension::ClientId::default(),
        }
    }

    async fn connect(
        &self,
    ) -> Result<lettre::transport::smtp::client::AsyncSmtpConnection, SendError> {
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| SendError::Connect(format!("{}: {e}", self.address)))?;
        let _ = stream.set_nodelay(true);
        Ok(
            lettre::transport::smtp::client::AsyncSmtpConnection::connect_with_transport(
                Box::new(stream),
                &self.hello,
            )
            .await?,
        )
    }

    /// Sends one message on an idle connection or a new one; with `keep_open` false the
    /// connection is closed (QUIT answered) before this returns.
    pub(super) async fn send(&self, message: &Message, keep_open: bool) -> Result<(), SendError> {
        let bytes = message.formatted();
        let reused = self.idle.lock().await.pop();
        let was_reused = reused.is_some();
        let mut conn = match reused {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let mut result = conn.send(message.envelope(), &bytes).await;
        if result.is_err() && was_reused {
            // The server may have closed an idle connection: one more try on a fresh one.
            conn.abort().await;
            conn = self.connect().await?;
            result = conn.send(message.envelope(), &bytes).await;
        }
        match result {
            Ok(_) => {
                let mut idle = self.idle.lock().await;
                if keep_open && idle.len() < self.max_idle {
                    idle.push(conn);
                } else {
                    drop(idle);
                    let _ = conn.quit().await;
                }
                Ok(())
            }
            Err(e) => {
                conn.abort().await;
                Err(e.into())
            }
        }
    }

    pub(super) async fn test_connection(&self) -> Result<bool, SendError> {
        let mut conn = self.connect().await?;
        let _ = conn.quit().await;
        Ok(true)
    }
}
