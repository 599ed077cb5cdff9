//! Where the CPU goes between two moments: each product process (`/proc/<pid>/stat`, user +
//! system), this process (the load generator, the SMTP sink, or an app started in-process), the
//! PostgreSQL server's processes that serve the scenario's database, and the whole machine
//! (`/proc/stat`), so that what none of those used (another program on the machine) shows too.
//! On a 2-core machine this says more than a throughput that stops growing.

use std::{collections::HashMap, time::Duration, time::Instant};

use serde::Serialize;
use sqlx::Connection;

use super::harness::process_cpu;

/// CPU time used over one measured window, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUse {
    pub seconds: f64,
    /// Each product process started for the scenario (`web-1`, `worker-2`, ...).
    pub processes: Vec<ProcessCpu>,
    /// The bench process: the HTTP clients or the backlog's writer, the SMTP sink, and the app
    /// when a scenario runs it in-process.
    pub bench_process_ms: f64,
    /// The PostgreSQL server's processes that served the scenario's database (its backends, and
    /// the WAL writer, checkpointer and background writer, which serve every database); `null` on
    /// SQLite, which runs inside the app's processes.
    pub db_server_ms: Option<f64>,
    /// Every CPU of the machine, busy (user, system, irq, steal).
    pub machine_ms: f64,
    /// What the machine used beyond all the above: other programs, the kernel's own threads.
    pub other_ms: f64,
    /// `machine_ms` over what the machine's CPUs could give in the window (1.0: all busy).
    pub machine_busy_fraction: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessCpu {
    pub name: String,
    pub cpu_ms: f64,
}

impl CpuUse {
    /// Product processes whose name starts with `role` (`web`, `worker`), together.
    pub fn role_ms(&self, role: &str) -> f64 {
        self.processes
            .iter()
            .filter(|p| p.name.starts_with(role))
            .map(|p| p.cpu_ms)
            .sum()
    }

    /// The product's processes and the database server: what the product costs.
    pub fn product_and_db_ms(&self) -> f64 {
        self.role_ms("") + self.db_server_ms.unwrap_or_default()
    }
}

/// A window being measured: [`CpuWatch::start`], the work, [`CpuWatch::stop`].
pub struct CpuWatch {
    started: Instant,
    machine: Duration,
    own: Duration,
    processes: Vec<(String, u32, Duration)>,
    db: Option<DbServerWatch>,
}

impl CpuWatch {
    /// `processes`: name and pid of each product process; `postgres_url`: the scenario's
    /// database, when it is on PostgreSQL.
    pub async fn start(
        processes: &[(String, u32)],
        postgres_url: Option<&str>,
    ) -> anyhow::Result<CpuWatch> {
        let db = match postgres_url {
            Some(url) => Some(DbServerWatch::start(url).await?),
            None => None,
        };
        Ok(CpuWatch {
            started: Instant::now(),
            machine: machine_busy(),
            own: process_cpu(),
            processes: processes
                .iter()
                .map(|(name, pid)| (name.clone(), *pid, pid_cpu(*pid).unwrap_or_default()))
                .collect(),
            db,
        })
    }

    pub async fn stop(self) -> CpuUse {
        let seconds = self.started.elapsed().as_secs_f64();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let processes: Vec<ProcessCpu> = self
            .processes
            .iter()
            .map(|(name, pid, before)| ProcessCpu {
                name: name.clone(),
                cpu_ms: ms(pid_cpu(*pid).unwrap_or(*before).saturating_sub(*before)),
            })
            .collect();
        let bench_process_ms = ms(process_cpu().saturating_sub(self.own));
        let db_server_ms = match self.db {
            Some(db) => Some(ms(db.stop().await)),
            None => None,
        };
        let machine_ms = ms(machine_busy().saturating_sub(self.machine));
        let accounted = processes.iter().map(|p| p.cpu_ms).sum::<f64>()
            + bench_process_ms
            + db_server_ms.unwrap_or_default();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        CpuUse {
            seconds,
            processes,
            bench_process_ms,
            db_server_ms,
            machine_ms,
            other_ms: (machine_ms - accounted).max(0.0),
            machine_busy_fraction: machine_ms / (cpus * seconds * 1000.0).max(1e-9),
        }
    }
}

/// `/proc` gives CPU times in USER_HZ ticks, which Linux fixes at 100 a second on every
/// architecture it exports them from (whatever the kernel's own tick rate).
const TICKS_PER_S: f64 = 100.0;

fn ticks(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 / TICKS_PER_S)
}

/// User + system CPU time of one process so far (`None` once it is gone).
pub fn pid_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(ticks)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in ticks. The command name
/// (field 2) is in parentheses and may hold spaces, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy time of every CPU of the machine together so far (user, nice, system, irq, softirq,
/// steal; not idle or iowait).
pub fn machine_busy() -> Duration {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next().and_then(parse_machine))
        .map(ticks)
        .unwrap_or_default()
}

fn parse_machine(line: &str) -> Option<u64> {
    let mut fields = line.split_whitespace();
    (fields.next()? == "cpu").then_some(())?;
    let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0))
}

/// The PostgreSQL server's CPU for one database: its backends come and go (a pool opens a
/// connection when it needs one, autovacuum starts workers), so they are looked up in
/// `pg_stat_activity` every 200 ms; a backend first seen after the start counts from zero.
/// The watcher's own connection is left out. A backend that starts and ends between two looks
/// is missed (pools keep their connections, so this is rare).
struct DbServerWatch {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Duration>,
}

const SERVER_PIDS: &str = "SELECT pid FROM pg_stat_activity \
     WHERE (datname = current_database() AND pid <> pg_backend_pid()) \
        OR backend_type IN ('walwriter', 'checkpointer', 'background writer')";

impl DbServerWatch {
    async fn start(url: &str) -> anyhow::Result<DbServerWatch> {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        // At the start: what each process had used before (counted off at the end).
        let mut seen: HashMap<i32, (Duration, Duration)> = HashMap::new();
        for pid in server_pids(&mut conn).await? {
            if let Some(cpu) = pid_cpu(pid as u32) {
                seen.insert(pid, (cpu, cpu));
            }
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let last_look = stopped.is_cancelled();
                for pid in server_pids(&mut conn).await.unwrap_or_default() {
                    if let Some(cpu) = pid_cpu(pid as u32) {
                        seen.entry(pid).or_insert((Duration::ZERO, cpu)).1 = cpu;
                    }
                }
                // One that left the list (a closed connection) keeps its last value: its pid
                // may belong to another program by now.
                if last_look {
                    break;
                }
                tokio::select! {
                    _ = stopped.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            let _ = conn.close().await;
            seen.values()
                .map(|(before, last)| last.saturating_sub(*before))
                .sum()
        });
        Ok(DbServerWatch { stop, task })
    }

    async fn stop(self) -> Duration {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

async fn server_pids(conn: &mut sqlx::PgConnection) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar(SERVER_PIDS).fetch_all(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line =
            "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194304 100 0 0 0 1234 56 0 0 20 0 8 0 99 0 0";
        assert_eq!(parse_stat(line), Some(1234 + 56));
    }

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let line = "cpu  100 5 50 9000 40 3 2 7 0 0";
        assert_eq!(parse_machine(line), Some(100 + 5 + 50 + 3 + 2 + 7));
        assert_eq!(parse_machine("cpu0 1 2 3 4 5 6 7 8"), None);
    }

    #[test]
    fn this_process_and_the_machine_can_be_read() {
        assert!(pid_cpu(std::process::id()).is_some());
        assert!(machine_busy() > Duration::ZERO);
    }
}
