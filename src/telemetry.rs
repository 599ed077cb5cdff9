//! Logs on stderr: human-readable lines or JSON lines (`LOG_FORMAT`), filtered by `RUST_LOG`.
//! The same log lines also feed the job dashboard's live event stream (`/api/v1/events` on the
//! admin listener), which shows the lines logged inside a job's span.

use std::sync::{Arc, Mutex, OnceLock};

use apalis_board::axum::sse::{TracingBroadcaster, TracingSubscriber};
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// The dashboard's event stream: one per process, fed by the log subscriber when there is one.
pub fn board_events() -> Arc<Mutex<TracingBroadcaster>> {
    static EVENTS: OnceLock<Arc<Mutex<TracingBroadcaster>>> = OnceLock::new();
    EVENTS.get_or_init(TracingBroadcaster::create).clone()
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,sqlx=warn,apalis=warn,apalis_core=warn,apalis_sqlite=warn,mailcrab=warn",
        )
    });
    let board = TracingSubscriber::new(&board_events()).layer();
    let registry = tracing_subscriber::registry().with(filter).with(board);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
}
