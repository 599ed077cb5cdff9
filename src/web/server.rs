//! The public listener's accept loop, instead of `axum::serve`, which sets no limits: a client
//! that sends a header line every few seconds, sends nothing, or idles on a keep-alive connection
//! held its connection for ever, 2,000 of them were all held, and such connections made a
//! graceful shutdown wait its whole grace period. Here:
//! - headers must arrive within [`HEADER_READ_TIMEOUT`] of the connection waiting for them, which
//!   also closes a connection that sends nothing and an idle keep-alive connection;
//! - at most `MAX_CONNECTIONS` connections are served at once; past that a client gets a short
//!   503 with `Retry-After` and the connection is closed;
//! - an accept error (e.g. "Too many open files") is logged and the loop goes on after a pause;
//! - on shutdown, idle connections close at once and the loop waits for requests in flight.
//!
//! Long-lived responses (SSE) are bounded by the stream limits in `web::feed`.

use std::{sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{io::AsyncWriteExt, net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a connection may take to send a request's headers, counted from when it starts
/// waiting for them (after accept, and after each response on a keep-alive connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

const BUSY_BODY: &str = r#"{"error":{"code":"server_busy","message":"too many connections; try again in 5 s","field":null}}"#;

/// Serves `router` on `listener` until `shutdown` is cancelled, then finishes the requests in
/// flight (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only (no TLS here, so browsers speak HTTP/1.1): hyper-util's auto-detecting
    // builder first reads the connection's preface with no timeout at all.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut pause = Duration::from_millis(10);
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    pause = Duration::from_millis(10);
                    accepted
                }
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: wait a
                    // little (less busy-looping while descriptors are short) and go on.
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "accept failed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%remote, max_connections, "connection refused: too many open connections");
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            router.clone().oneshot(request.map(Body::new))
        });
        // No upgrades: the app has no WebSocket route.
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A short answer for a connection over the limit, bounded in time.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BUSY_BODY}",
            BUSY_BODY.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}
