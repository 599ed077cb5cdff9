//! The product's processes for the soak: the `signup-queue` binary found beside the soak's own,
//! started as `web` or `worker` with the soak's environment, logs to files, killed with `kill -9`
//! or stopped with SIGTERM; and their resident memory and open file descriptors read from
//! `/proc/<pid>`, with the peak and the last value of each incarnation.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::{Child, Command};

/// `signup-queue` beside the running executable (a workspace build puts both in one folder).
pub fn product_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_owned());
        }
        bail!("no product binary at {}", path.display());
    }
    let exe = std::env::current_exe().context("cannot find the soak's own executable")?;
    let dir = exe
        .parent()
        .context("the soak's executable has no folder")?;
    let product = dir.join(format!("signup-queue{}", std::env::consts::EXE_SUFFIX));
    if !product.is_file() {
        bail!(
            "no signup-queue binary beside this one ({}): build it with cargo build --release \
             (or cargo build --workspace)",
            product.display()
        );
    }
    Ok(product)
}

/// Memory and descriptors of one process at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// Seconds since the soak started.
    pub at_s: f64,
    pub rss_kib: u64,
    pub fds: u64,
}

/// Reads `/proc/<pid>/status` (VmRSS) and counts `/proc/<pid>/fd`; `None` when the process is gone.
pub fn sample(pid: u32, at_s: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status.lines().find_map(|line| {
        line.strip_prefix("VmRSS:")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample { at_s, rss_kib, fds })
}

/// What one incarnation of a process used: its samples (every progress tick) and the peaks of
/// every sample taken (every second).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub role: String,
    pub incarnation: u32,
    pub pid: u32,
    pub started_at_s: f64,
    /// When it ended (killed or stopped), seconds since the soak started.
    pub ended_at_s: Option<f64>,
    /// How it ended: "kill -9", "SIGTERM, exit 0", ...
    pub ended_by: Option<String>,
    pub peak_rss_kib: u64,
    pub peak_fds: u64,
    /// The last sample before it ended.
    pub last: Option<Sample>,
    /// One sample per progress tick, from 5 s after the start.
    pub series: Vec<Sample>,
}

impl Usage {
    fn observe(&mut self, s: Sample) {
        self.peak_rss_kib = self.peak_rss_kib.max(s.rss_kib);
        self.peak_fds = self.peak_fds.max(s.fds);
        self.last = Some(s);
    }
}

/// Seconds after its start from which a process's samples go into its series.
const SETTLED_S: f64 = 5.0;

/// One running `signup-queue web|worker`.
pub struct Proc {
    child: Child,
    pub usage: Usage,
}

/// Starts and restarts the product's processes with one environment, logs into `log_dir`.
pub struct Launcher {
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub log_dir: PathBuf,
}

impl Launcher {
    /// Starts `signup-queue <role>` (incarnation `n`, for the log's name and the report).
    pub fn start(&self, role: &str, n: u32, at_s: f64) -> anyhow::Result<Proc> {
        let log_path = self.log_dir.join(format!("{role}-{n}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg(role)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log file handle")?)
            .stderr(log)
            .kill_on_drop(true);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} {role}", self.binary.display()))?;
        let pid = child.id().context("the child has no pid")?;
        Ok(Proc {
            child,
            usage: Usage {
                role: role.to_owned(),
                incarnation: n,
                pid,
                started_at_s: at_s,
                ..Usage::default()
            },
        })
    }

    /// Runs `signup-queue <args>` to the end and returns its stdout (for `jobs ...`).
    pub async fn run_once(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&self.binary)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run signup-queue {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "signup-queue {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Proc {
    /// Takes a sample for the peaks; `keep` also stores it in the series, once the process is
    /// past its first seconds (a sample right after the start sees the executable still
    /// loading). `false`: it exited.
    pub fn observe(&mut self, at_s: f64, keep: bool) -> bool {
        match sample(self.usage.pid, at_s) {
            Some(s) => {
                self.usage.observe(s);
                if keep && at_s - self.usage.started_at_s >= SETTLED_S {
                    self.usage.series.push(s);
                }
                true
            }
            None => false,
        }
    }

    /// Whether it exited on its own (with the status).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `kill -9`: no chance to clean up. Returns the usage of the incarnation that ended.
    pub async fn kill9(mut self, at_s: f64) -> anyhow::Result<Usage> {
        self.observe(at_s, true);
        self.child.kill().await.context("cannot kill -9")?;
        self.usage.ended_at_s = Some(at_s);
        self.usage.ended_by = Some("kill -9".into());
        Ok(self.usage)
    }

    /// SIGTERM, then waits up to `within` for the exit (then `kill -9`).
    pub async fn terminate(mut self, at_s: f64, within: Duration) -> anyhow::Result<Usage> {
        self.observe(at_s, true);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.usage.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .context("cannot send SIGTERM")?;
        let how = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => format!("SIGTERM, {status}"),
            Ok(Err(e)) => format!("SIGTERM, wait failed: {e}"),
            Err(_) => {
                self.child.kill().await.context("cannot kill -9")?;
                format!("SIGTERM, no exit within {within:?}, then kill -9")
            }
        };
        self.usage.ended_at_s = Some(at_s);
        self.usage.ended_by = Some(how);
        Ok(self.usage)
    }
}
