//! Logs on stderr: human-readable lines or JSON lines (`LOG_FORMAT`), filtered by `RUST_LOG`.
//! The lines logged inside a job's span also feed the job dashboard's live event stream
//! (`/api/v1/events` on the admin listener, its Logs page), as the JSON lines apalis-board reads.
//!
//! That stream is ours, not apalis-board's: its broadcaster keeps every client that ever
//! connected (about 2.8 KB each, never freed), and its lines need a span with `task_id` and
//! `attempt`. Here each dashboard client holds a receiver of one broadcast channel, dropped with
//! its connection, and lines are formatted for the dashboard only while one is open.

use std::{
    io::Write,
    sync::{Arc, OnceLock},
};

use tokio::sync::broadcast;
use tracing_subscriber::{
    EnvFilter, Layer, filter::filter_fn, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::config::LogFormat;

/// Log lines (JSON) of jobs, for the dashboard's open event streams.
pub fn job_log_lines() -> &'static broadcast::Sender<Arc<str>> {
    static LINES: OnceLock<broadcast::Sender<Arc<str>>> = OnceLock::new();
    LINES.get_or_init(|| broadcast::channel(256).0)
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,sqlx=warn,apalis=warn,apalis_core=warn,apalis_sqlite=warn,apalis_postgres=warn,mailcrab=warn",
        )
    });
    let board = fmt::layer()
        .json()
        .with_ansi(false)
        .with_writer(|| JobLineWriter(Vec::new()))
        .with_filter(filter_fn(|_| job_log_lines().receiver_count() > 0));
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

/// Collects one formatted line and, when it was logged inside a job's span, broadcasts it.
struct JobLineWriter(Vec<u8>);

impl Write for JobLineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for JobLineWriter {
    fn drop(&mut self) {
        let Ok(line) = std::str::from_utf8(&self.0) else {
            return;
        };
        let line = line.trim_end();
        if is_job_line(line) {
            let _ = job_log_lines().send(Arc::from(line));
        }
    }
}

/// apalis-board's `LogEntry` wants a span with `task_id` and `attempt`: lines outside a job's
/// span would not parse there.
fn is_job_line(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line)
        .is_ok_and(|v| v["span"]["task_id"].is_string() && v["span"]["attempt"].is_number())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lines_of_a_job_span_go_to_the_dashboard() {
        assert!(is_job_line(
            r#"{"timestamp":"t","level":"INFO","fields":{"message":"welcome mail sent"},"target":"x","span":{"task_id":"01J","attempt":1,"name":"run_consumer"}}"#
        ));
        assert!(!is_job_line(
            r#"{"timestamp":"t","level":"INFO","fields":{"message":"request"},"target":"x","span":{"route":"/"}}"#
        ));
        assert!(!is_job_line("not json"));
    }
}
