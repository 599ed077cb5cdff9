//! The real binary as a child process (for crash and signal tests).

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::watch,
};

pub struct ChildApp {
    pub child: Child,
    /// The HTTP address from the "listening on" log line (only for `serve`/`web`).
    pub addr: Option<String>,
    log: watch::Receiver<Vec<String>>,
}

/// Starts `signup-queue <command>` with `env`; for `serve`/`web` waits for the listening line.
pub async fn start(command: &str, env: &[(&str, String)]) -> ChildApp {
    start_with(command, env, None).await
}

/// Like [`start`], with at most `max_open_files` file descriptors (RLIMIT_NOFILE), to provoke
/// "Too many open files" in its listeners.
pub async fn start_with(
    command: &str,
    env: &[(&str, String)],
    max_open_files: Option<u64>,
) -> ChildApp {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_signup-queue"));
    if let Some(limit) = max_open_files {
        // SAFETY: only an async-signal-safe system call between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_NOFILE,
                    limit,
                    limit,
                )
                .map_err(std::io::Error::from)
            });
        }
    }
    cmd.arg(command)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env("BIND", "127.0.0.1:0")
        .env("ADMIN_BIND", "off")
        .env("HASH_COST", "test")
        .env("DEV_MAIL_LATENCY", "0s")
        .env("RATE_LIMIT_PER_MINUTE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().expect("binary starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, log) = watch::channel(Vec::new());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tx.send_modify(|log| log.push(line));
        }
    });
    let mut app = ChildApp {
        child,
        addr: None,
        log,
    };
    if command == "serve" || command == "web" {
        let line = app
            .wait_for_log("listening on http://", Duration::from_secs(30))
            .await;
        let addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("address in the listening line");
        app.addr = Some(addr.to_owned());
    }
    app
}

impl ChildApp {
    pub fn pid(&self) -> i32 {
        self.child.id().expect("child still running") as i32
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.addr.as_deref().unwrap_or("127.0.0.1:0"),
            path
        )
    }

    /// Waits for a log line containing `needle`; panics with the log so far after `within`.
    pub async fn wait_for_log(&mut self, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(line) = self.log.borrow().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero()
                || tokio::time::timeout(remaining, self.log.changed())
                    .await
                    .is_err()
            {
                panic!(
                    "no log line with {needle:?} within {within:?}; log:\n{}",
                    self.log_text()
                );
            }
        }
    }

    pub fn log_text(&self) -> String {
        self.log.borrow().join("\n")
    }

    pub fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM sent");
    }

    /// kill -9: no chance to clean up.
    pub async fn sigkill(&mut self) {
        self.child.kill().await.expect("SIGKILL sent");
    }

    /// Waits for the exit; panics with the log after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for child"),
            Err(_) => panic!(
                "process did not exit within {within:?}; log:\n{}",
                self.log_text()
            ),
        }
    }
}
