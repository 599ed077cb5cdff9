//! The soak's typed results: mails per user and per kind (counted by the README's stable
//! Message-ID, `<welcome-{user_id}@…>` and `<coupon-{user_id}@…>`), the invariants and their
//! verdicts, the summary printed at the end and the JSON written with `--out`.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use signup_queue::queue::inspect::QueueStats;

use super::{
    db::{DbSize, Totals},
    load::Latency,
    procs::Usage,
};
use crate::smtp_sink::Accepted;

/// The mails of one kind (welcome, coupon) against the registered users.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MailKind {
    pub kind: String,
    /// Users answered 201, each owed one mail of this kind.
    pub users: usize,
    /// Mails of this kind the server accepted.
    pub accepted: usize,
    /// Users without one.
    pub missing: usize,
    /// Examples of users without one.
    pub missing_examples: Vec<String>,
    /// Mails accepted more than once with the same Message-ID: the sum of (count - 1).
    pub duplicates: usize,
    /// The documented bound: `WORKERS` per `kill -9` (jobs in flight in this kind's queue).
    pub duplicate_bound: usize,
}

/// Counts the accepted mails of `kind` (the Message-ID's prefix) for the users in `created`.
pub fn mail_kind(
    kind: &str,
    created: &[String],
    accepted: &[Accepted],
    duplicate_bound: usize,
) -> MailKind {
    let prefix = format!("<{kind}-");
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    let mut reached: HashSet<String> = HashSet::new();
    let mut count = 0;
    for mail in accepted {
        let Some(id) = mail.message_id.as_deref() else {
            continue;
        };
        if !id.starts_with(&prefix) {
            continue;
        }
        count += 1;
        *per_id.entry(id).or_default() += 1;
        reached.extend(mail.to.iter().map(|to| normalize(to)));
    }
    let missing: Vec<&String> = created
        .iter()
        .filter(|email| !reached.contains(&normalize(email)))
        .collect();
    MailKind {
        kind: kind.to_owned(),
        users: created.len(),
        accepted: count,
        missing: missing.len(),
        missing_examples: missing.iter().take(5).map(|e| (*e).clone()).collect(),
        duplicates: per_id.values().map(|n| n - 1).sum(),
        duplicate_bound,
    }
}

fn normalize(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Registrations {
    pub sent: u64,
    pub created: usize,
    pub errors: u64,
    pub error_examples: Vec<String>,
    pub latency: Latency,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Smtp {
    pub accepted: usize,
    /// Messages answered 451 by the fault injection.
    pub failed_451: u64,
    /// Sessions cut when the server went down.
    pub cut_sessions: usize,
    pub outage_start_s: f64,
    pub outage_end_s: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Retention {
    pub retention_s: f64,
    /// Before `signup-queue jobs purge-done --older-than JOB_RETENTION` (processes stopped).
    pub before: DbSize,
    pub after: DbSize,
    /// The purge command's own line.
    pub purge_output: String,
}

/// One verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Everything a soak run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    pub command: String,
    pub started_at: String,
    pub duration_s: f64,
    pub rate: u32,
    pub workers: u16,
    pub fail_share: f64,
    pub kill_every_s: f64,
    pub kills: usize,
    pub wall_s: f64,
    pub registrations: Registrations,
    pub smtp: Smtp,
    pub welcome: MailKind,
    pub coupon: MailKind,
    /// Seconds from the end of the load to an empty queue; `None`: gave up.
    pub drain_s: Option<f64>,
    pub jobs_left: Totals,
    pub queues: Vec<QueueStats>,
    pub processes: Vec<Usage>,
    /// Database bytes on disk (file + WAL) at each progress tick: (seconds, bytes).
    pub db_series: Vec<(f64, u64)>,
    pub retention: Retention,
    pub checks: Vec<Check>,
    pub ok: bool,
}

impl SoakReport {
    /// Fills `checks` and `ok` from the figures.
    pub fn judge(&mut self) {
        let r = &self.registrations;
        let mut checks = vec![Check {
            name: "every registration answered 201".into(),
            ok: r.errors == 0 && r.created as u64 == r.sent,
            detail: format!(
                "{} sent, {} created, {} errors",
                r.sent, r.created, r.errors
            ),
        }];
        for kind in [&self.welcome, &self.coupon] {
            checks.push(Check {
                name: format!("no {} mail missing", kind.kind),
                ok: kind.missing == 0,
                detail: format!("{} of {} users without one", kind.missing, kind.users),
            });
            checks.push(Check {
                name: format!("{} duplicates within the bound", kind.kind),
                ok: kind.duplicates <= kind.duplicate_bound,
                detail: format!(
                    "{} duplicates, bound {} (WORKERS {} x {} kills)",
                    kind.duplicates, kind.duplicate_bound, self.workers, self.kills
                ),
            });
        }
        checks.push(Check {
            name: "no job left pending, retrying or running".into(),
            ok: self.jobs_left.left() == 0,
            detail: format!(
                "{} pending, {} retrying, {} running",
                self.jobs_left.pending, self.jobs_left.retrying, self.jobs_left.running
            ),
        });
        checks.push(Check {
            name: "no job failed for good".into(),
            ok: self.jobs_left.failed == 0,
            detail: format!("{} failed", self.jobs_left.failed),
        });
        self.ok = checks.iter().all(|c| c.ok);
        self.checks = checks;
    }

    /// The summary for the terminal.
    pub fn print(&self) {
        let r = &self.registrations;
        println!();
        println!(
            "soak: {:.0} s at {}/s, WORKERS {}, {} kill -9 of the worker, mail server down {:.0}-{:.0} s, {:.0}% of mails answered 451",
            self.duration_s,
            self.rate,
            self.workers,
            self.kills,
            self.smtp.outage_start_s,
            self.smtp.outage_end_s,
            self.fail_share * 100.0
        );
        println!(
            "registrations: {} sent, {} answered 201, {} errors; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            r.sent, r.created, r.errors, r.latency.p50_ms, r.latency.p99_ms, r.latency.max_ms
        );
        for e in &r.error_examples {
            println!("  error: {e}");
        }
        println!(
            "mail server: {} accepted, {} answered 451, {} sessions cut by the outage",
            self.smtp.accepted, self.smtp.failed_451, self.smtp.cut_sessions
        );
        for k in [&self.welcome, &self.coupon] {
            println!(
                "{} mails: {} accepted for {} users, {} missing, {} duplicates (bound {})",
                k.kind, k.accepted, k.users, k.missing, k.duplicates, k.duplicate_bound
            );
        }
        match self.drain_s {
            Some(s) => println!("queue drained {s:.1} s after the load stopped"),
            None => println!("queue NOT drained"),
        }
        let j = &self.jobs_left;
        println!(
            "jobs: {} done, {} pending, {} retrying, {} running, {} failed",
            j.done, j.pending, j.retrying, j.running, j.failed
        );
        println!("processes (RSS MiB / open fds; early: the first sample 5-15 s after the start):");
        for u in &self.processes {
            let first = u.series.first().copied().unwrap_or_default();
            let last = u.last.unwrap_or_default();
            println!(
                "  {:<6} #{:<2} pid {:<7} {:>6.0}-{:<6.0} s  early {:>6.1}/{:<4} peak {:>6.1}/{:<4} last {:>6.1}/{:<4} ({})",
                u.role,
                u.incarnation,
                u.pid,
                u.started_at_s,
                u.ended_at_s.unwrap_or(self.wall_s),
                mib(first.rss_kib),
                first.fds,
                mib(u.peak_rss_kib),
                u.peak_fds,
                mib(last.rss_kib),
                last.fds,
                u.ended_by.as_deref().unwrap_or("running")
            );
        }
        let ret = &self.retention;
        println!(
            "database before purge-done --older-than {:.0}s: {} job rows, {:.1} MiB file + {:.1} MiB WAL, {:.1} MiB in use",
            ret.retention_s,
            ret.before.job_rows,
            mib_b(ret.before.file_bytes),
            mib_b(ret.before.wal_bytes),
            mib_b(ret.before.used_bytes)
        );
        println!(
            "database after:  {} job rows, {:.1} MiB file + {:.1} MiB WAL, {:.1} MiB in use ({} free pages)",
            ret.after.job_rows,
            mib_b(ret.after.file_bytes),
            mib_b(ret.after.wal_bytes),
            mib_b(ret.after.used_bytes),
            ret.after.free_pages
        );
        for c in &self.checks {
            println!(
                "{} {}: {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
        }
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn mib_b(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}
