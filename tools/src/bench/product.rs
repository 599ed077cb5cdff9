//! The product's own binary (`signup-queue`, found beside the bench's, as the soak finds it),
//! started as separate `web` and `worker` processes on one database: what the scenarios between
//! processes measure is the program users run, not a copy built into the bench. The bench's
//! environment is not passed on; each process gets the settings below, its own ports and a log
//! file in a temporary folder (its end is printed when a process fails to start), or in a folder
//! of `--product-logs` that is kept.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::ValueEnum;

use signup_queue::config::HashCost;

use crate::{
    bench::Plan,
    soak::procs::{Launcher, Proc, product_binary},
    testkit::unused_port,
};

/// How to start `web` and `worker` processes on one database and one SMTP server.
pub struct Product {
    binary: PathBuf,
    env: Vec<(String, String)>,
    logs: Logs,
}

enum Logs {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Logs {
    fn path(&self) -> &std::path::Path {
        match self {
            Logs::Temporary(dir) => dir.path(),
            Logs::Kept(dir) => dir,
        }
    }
}

/// One running process of the product, ready (it answered over HTTP).
pub struct Process {
    /// `web-1`, `worker-2`, ...
    pub name: String,
    proc: Proc,
    /// The public listener (web processes).
    pub http: Option<SocketAddr>,
    /// The admin listener: `/metrics` (both roles).
    pub admin: SocketAddr,
}

impl Product {
    /// `None` when the binary is not beside the bench's (a build of the tools package alone):
    /// the scenarios that need it say so and are left out. `scenario` names the log folder.
    pub fn find(
        plan: &Plan,
        scenario: &str,
        database_url: &str,
        smtp_url: &str,
        workers: u16,
        hash_cost: HashCost,
    ) -> anyhow::Result<Option<Product>> {
        let binary = match product_binary(None) {
            Ok(binary) => binary,
            Err(e) => {
                eprintln!("skipped: {e:#}");
                return Ok(None);
            }
        };
        let hash_cost = hash_cost
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_else(|| "test".into());
        let env = [
            ("DATABASE_URL", database_url.to_owned()),
            ("SMTP_URL", smtp_url.to_owned()),
            ("WORKERS", workers.to_string()),
            ("HASH_COST", hash_cost),
            // As the in-process scenarios (`harness::app`): no rate limit (one client address),
            // long SMTP timeouts, short retry backoff.
            ("RATE_LIMIT_PER_MINUTE", "0".into()),
            ("SMTP_TIMEOUT", "30s".into()),
            ("RETRY_CAP", "5s".into()),
            ("SHUTDOWN_TIMEOUT", "10s".into()),
            ("RUST_LOG", plan.product_log_filter.clone()),
        ];
        let logs = match &plan.product_logs {
            None => Logs::Temporary(
                tempfile::Builder::new()
                    .prefix("signup-queue-bench-logs-")
                    .tempdir()?,
            ),
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                Logs::Kept(
                    tempfile::Builder::new()
                        .prefix(&format!("{scenario}-"))
                        .tempdir_in(dir)?
                        .keep(),
                )
            }
        };
        Ok(Some(Product {
            binary,
            env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            logs,
        }))
    }

    /// Starts `signup-queue <role>` (`web` or `worker`) number `n`, with `extra` settings, and
    /// waits until it answers: a web process its `/health`, a worker its admin `/metrics`.
    pub async fn start(
        &self,
        role: &str,
        n: u32,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Process> {
        let http = (role == "web").then(|| SocketAddr::from(([127, 0, 0, 1], unused_port())));
        let admin = SocketAddr::from(([127, 0, 0, 1], unused_port()));
        let mut env = self.env.clone();
        env.push(("ADMIN_BIND".into(), admin.to_string()));
        if let Some(http) = http {
            env.push(("BIND".into(), http.to_string()));
        }
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let launcher = Launcher {
            binary: self.binary.clone(),
            env,
            log_dir: self.logs.path().to_owned(),
        };
        let mut process = Process {
            name: format!("{role}-{n}"),
            proc: launcher.start(role, n, 0.0)?,
            http,
            admin,
        };
        let ready = match http {
            Some(http) => format!("http://{http}/health"),
            None => format!("http://{admin}/metrics"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.proc.exited() {
                bail!(
                    "{} exited at start ({status}); its log: {}",
                    process.name,
                    self.log_tail(role, n)
                );
            }
            if client
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(process);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer {ready} within 30 s; its log: {}",
                    process.name,
                    self.log_tail(role, n)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self, role: &str, n: u32) -> String {
        let path = self.logs.path().join(format!("{role}-{n}.log"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.proc.usage.pid
    }

    /// A URL on the public listener (panics on a worker: it has none).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.expect("a web process"))
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.admin)
    }

    /// SIGTERM, as an operator stops it (in-flight work finishes), at most 20 s.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.proc
            .terminate(0.0, Duration::from_secs(20))
            .await
            .with_context(|| format!("cannot stop {}", self.name))?;
        Ok(())
    }
}

/// Name and pid of each process, for [`super::cpu::CpuWatch`].
pub fn pids(processes: &[&Process]) -> Vec<(String, u32)> {
    processes
        .iter()
        .map(|p| (p.name.clone(), p.pid()))
        .collect()
}
