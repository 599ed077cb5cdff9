//! `signup-queue-soak`: the long run of issue 13. The real product binary runs as a `web` and a
//! separate `worker` process on one temporary SQLite database; registrations flow at a steady
//! rate for `--duration` while the in-process mail server answers `451` to a share of the mails
//! and is down for `--outage` in the middle, and the worker is `kill -9`ed and restarted every
//! `--kill-every`. At the end the load stops, the queue drains, and the run reports registrations,
//! mails per user (missing, duplicates against the README's bound), jobs left, RSS and open fds
//! of each process, and the database size before and after retention; it exits non-zero when an
//! invariant fails. See RELIABILITY.md.
//!
//! This file owns the command line and the plan (what happens when); [`run`] the run itself,
//! [`procs`] the child processes and `/proc` samples, [`load`] the registrations, [`db`] the
//! read-only view of the database, [`report`] the typed results and the verdicts.

mod db;
mod load;
pub(crate) mod procs;
pub mod report;
mod run;

use std::{path::PathBuf, time::Duration};

pub use run::run;

/// Registrations at a steady rate against a `web` and a `worker` process while the mail server
/// fails a share of mails and goes down once and the worker is killed with SIGKILL and restarted;
/// reports what arrived and what the processes used. Exits 1 when an invariant fails.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "signup-queue-soak", version)]
pub struct SoakArgs {
    /// How long registrations flow (the drain and the retention check come after).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Registrations per second, open loop.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// How long the mail server is down, in the middle of the run [default: 1m, at most a sixth
    /// of --duration].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub outage: Option<Duration>,
    /// `kill -9` and restart the worker this often [default: 5m, at most a third of --duration].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub kill_every: Option<Duration>,
    /// Share of mails the mail server answers `451` (transient failure), 0 to 1.
    #[arg(long, default_value_t = 0.05)]
    pub fail_share: f64,
    /// WORKERS of the worker process (jobs in flight per queue; the bound on duplicates per kill).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
    /// JOB_RETENTION of the processes, and the age given to `jobs purge-done` at the end.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// Give up waiting for the queue to drain after this long.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// A progress line this often.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub progress_every: Duration,
    /// Folder for `soak-results.json` (created if missing).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The product binary [default: `signup-queue` beside this one].
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

/// When things happen, from the arguments.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub duration: Duration,
    pub rate: u32,
    pub outage_start: Duration,
    pub outage_end: Duration,
    pub kill_every: Duration,
    pub fail_share: f64,
    pub workers: u16,
    pub retention: Duration,
    pub drain_timeout: Duration,
    pub progress_every: Duration,
}

impl Plan {
    pub fn new(args: &SoakArgs) -> anyhow::Result<Plan> {
        anyhow::ensure!(!args.duration.is_zero(), "--duration must be more than 0");
        anyhow::ensure!(
            (0.0..=1.0).contains(&args.fail_share),
            "--fail-share must be between 0 and 1"
        );
        let outage = args
            .outage
            .unwrap_or_else(|| Duration::from_secs(60).min(args.duration / 6))
            .min(args.duration);
        let kill_every = args
            .kill_every
            .unwrap_or_else(|| Duration::from_secs(300).min(args.duration / 3))
            .max(Duration::from_secs(1));
        let outage_start = (args.duration / 2).saturating_sub(outage / 2);
        Ok(Plan {
            duration: args.duration,
            rate: args.rate,
            outage_start,
            outage_end: outage_start + outage,
            kill_every,
            fail_share: args.fail_share,
            workers: args.workers,
            retention: args.retention,
            drain_timeout: args.drain_timeout,
            progress_every: args.progress_every.max(Duration::from_secs(1)),
        })
    }

    /// The moments of the kills: every `kill_every`, before the end of the load.
    pub fn kills(&self) -> Vec<Duration> {
        (1u32..)
            .map(|k| self.kill_every * k)
            .take_while(|t| *t < self.duration)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_two_minute_run_has_a_twenty_second_outage_in_the_middle_and_two_kills() {
        let plan = Plan::new(&SoakArgs::parse_from(["soak"])).expect("plan");
        assert_eq!(plan.outage_start, Duration::from_secs(50));
        assert_eq!(plan.outage_end, Duration::from_secs(70));
        assert_eq!(
            plan.kills(),
            [Duration::from_secs(40), Duration::from_secs(80)]
        );
    }

    #[test]
    fn an_hour_has_a_one_minute_outage_and_a_kill_every_five_minutes() {
        let plan = Plan::new(&SoakArgs::parse_from(["soak", "--duration", "60m"])).expect("plan");
        assert_eq!(plan.outage_end - plan.outage_start, Duration::from_secs(60));
        assert_eq!(plan.outage_start, Duration::from_secs(1770));
        assert_eq!(plan.kills().len(), 11);
    }
}
