//! Captures every log line of the test binary (no colors) for assertions on logs, and hands it
//! to libtest's output capture as well (shown for failing tests).

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

/// Installs the capturing subscriber on first call (call it before anything logs).
pub fn captured() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                "debug,signup_queue=trace,sqlx=warn,hyper=info,hyper_util=info,h2=info,tower=info",
            )
            .with_ansi(false)
            .with_writer(move || CaptureWriter(Arc::clone(&sink)))
            .try_init();
        logs
    })
    .clone()
}

pub fn text(logs: &Arc<Mutex<Vec<u8>>>) -> String {
    logs.lock()
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default()
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            logs.extend_from_slice(buf);
        }
        print!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
