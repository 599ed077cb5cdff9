//! The typed result of a whole run, its `bench-results.json` and the table on stdout, and the
//! markdown table of two runs side by side (`--both`). The JSON's key names and nesting are a
//! contract (BENCHMARKS.md and the docs read it; see `docs/bench/bench-results.json`): a scenario
//! left out is `null`, the ratios are always there; keys are added, never renamed.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use signup_queue::config::HashCost;

use super::{
    harness::{Summary, ratio},
    scenarios::{
        burst::Burst,
        cross_pickup::CrossPickup,
        drain::Drain,
        latency::{LatencyRow, Mode, PacedRow},
        pickup::Pickup,
        pipeline::BacklogPipeline,
        raw_http::RawHttp,
        raw_smtp::RawSmtp,
        scale_out::ScaleOut,
        transactions::Transactions,
    },
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    pub machine: Machine,
    /// The database every scenario ran on: `sqlite` or `postgres`.
    pub backend: String,
    /// What [`cost_name`] says, so a reader knows which hashing the latencies include.
    pub hash_cost: String,
    pub hash_p50_ms: f64,
    pub workers: u16,
    pub concurrency: usize,
    pub quick: bool,
    pub latency: Option<Vec<LatencyRow>>,
    pub paced: Option<Vec<PacedRow>>,
    pub transactions: Option<Transactions>,
    pub pickup: Option<Pickup>,
    /// The real binary's `web` and `worker` processes (`null` also when the binary was not
    /// beside the bench's).
    pub cross_process_pickup: Option<CrossPickup>,
    pub burst: Option<Burst>,
    /// The burst at SMTP +0 ms: mails per second end to end, registrations included.
    pub pipeline: Option<Burst>,
    pub backlog_pipeline: Option<BacklogPipeline>,
    pub slow_smtp_pipeline: Option<BacklogPipeline>,
    pub drain: Option<Drain>,
    /// 1, 2, 4 worker processes and 1, 2 web processes of the real binary.
    pub scale_out: Option<ScaleOut>,
    pub limits: Limits,
    pub ratios: Ratios,
    pub seconds: f64,
}

/// What this machine allows without the queue; each part is `null` when its scenario did not
/// run, but the object itself is always there.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Limits {
    pub raw_lettre: Option<RawSmtp>,
    pub raw_lettre_slow_smtp: Option<RawSmtp>,
    pub trivial_axum_route: Option<RawHttp>,
    /// The transactions scenario's user + jobs row again, beside the other limits. Named when
    /// SQLite was the only backend: on PostgreSQL it is PostgreSQL's (see `backend`).
    pub raw_sqlite_user_and_jobs_tx: Option<Summary>,
}

/// The queue's figures over the matching limits; 0 when either side did not run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ratios {
    pub pipeline_mails_per_s_vs_raw_lettre: f64,
    pub end_to_end_mails_per_s_vs_raw_lettre: f64,
    pub slow_smtp_pipeline_vs_raw_lettre: f64,
    /// Against the raw transaction of the run's backend (the name is from the SQLite-only days).
    pub async_register_per_s_vs_raw_sqlite_tx: f64,
    pub async_register_per_s_vs_trivial_axum_route: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu: String,
    pub memory: String,
}

impl Ratios {
    pub fn of(r: &Results) -> Ratios {
        let raw_mails_per_s = r.limits.raw_lettre.as_ref().map(|l| l.mails_per_s);
        let mails_per_s = |b: &Option<Burst>| b.as_ref().map(|b| b.mails_per_s);
        let backlog_mails_per_s = |p: &Option<BacklogPipeline>| p.as_ref().map(|p| p.mails_per_s);
        let async_rate = r
            .latency
            .iter()
            .flatten()
            .find(|row| {
                row.mode == Mode::Async
                    && row.smtp_latency_ms == 0
                    && row.concurrency == r.concurrency
            })
            .map(|row| row.summary.throughput_per_s)
            .unwrap_or_default();
        let f = Option::unwrap_or_default;
        Ratios {
            pipeline_mails_per_s_vs_raw_lettre: ratio(
                f(backlog_mails_per_s(&r.backlog_pipeline)),
                f(raw_mails_per_s),
            ),
            end_to_end_mails_per_s_vs_raw_lettre: ratio(
                f(mails_per_s(&r.pipeline)),
                f(raw_mails_per_s),
            ),
            slow_smtp_pipeline_vs_raw_lettre: ratio(
                f(backlog_mails_per_s(&r.slow_smtp_pipeline)),
                f(r.limits
                    .raw_lettre_slow_smtp
                    .as_ref()
                    .map(|l| l.mails_per_s)),
            ),
            async_register_per_s_vs_raw_sqlite_tx: ratio(
                async_rate,
                f(r.transactions
                    .as_ref()
                    .map(|t| t.user_and_jobs.throughput_per_s)),
            ),
            async_register_per_s_vs_trivial_axum_route: ratio(
                async_rate,
                f(r.limits
                    .trivial_axum_route
                    .as_ref()
                    .map(|t| t.summary.throughput_per_s)),
            ),
        }
    }
}

pub fn cost_name(hash_cost: HashCost) -> &'static str {
    match hash_cost {
        HashCost::Production => "production (argon2id m=19 MiB, t=2, p=1)",
        HashCost::Test => "test (argon2id, tiny parameters)",
    }
}

/// CPU model and memory from /proc, empty where it cannot be read (not Linux).
pub fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_owned())
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_owned))
        .unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu,
        memory,
    }
}

/// Writes `results` as pretty JSON. Through a `serde_json::Value` on purpose: its map sorts the
/// keys, as the file has always been written, so diffs between runs stay readable.
pub fn write(results: &Results, path: &Path) -> anyhow::Result<()> {
    let value = serde_json::to_value(results)?;
    std::fs::write(path, serde_json::to_string_pretty(&value)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn print_table(r: &Results) {
    println!(
        "\nsignup-queue bench on {}: {} CPUs, hashing {} (p50 {:.2} ms)",
        r.backend, r.machine.cpus, r.hash_cost, r.hash_p50_ms
    );
    println!(
        "\n{:<40} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "latency (client side)", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s"
    );
    let rows = r.latency.iter().flatten().map(|row| (row, None));
    let paced = (r.paced.iter().flatten()).map(|p| (&p.row, Some(p.paced_per_s)));
    for (row, rate) in rows.chain(paced) {
        // A paced row is an open loop: its rate says how it ran, not a number of clients.
        let how = rate.map_or_else(
            || format!(", c={}", row.concurrency),
            |rate| format!(" at {rate}/s"),
        );
        let s = &row.summary;
        println!(
            "{:<40} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.1}",
            format!(
                "{} register, SMTP +{} ms{how}",
                row.mode.as_str(),
                row.smtp_latency_ms,
            ),
            s.p50_ms,
            s.p90_ms,
            s.p99_ms,
            s.max_ms,
            s.throughput_per_s
        );
    }
    if let Some(t) = &r.transactions {
        println!(
            "\nenqueue overhead (p50, {} consumers' jobs in the user transaction): {:.3} ms",
            t.consumers, t.enqueue_overhead_p50_ms
        );
        println!(
            "raw {} user+jobs transactions: {:.0}/s (user only: {:.0}/s)",
            r.backend, t.user_and_jobs.throughput_per_s, t.user_only.throughput_per_s
        );
        if r.latency.is_some() {
            let clients = r.concurrency;
            // Little's law: clients that each wait for their answer cannot be answered faster on
            // average than `clients / rate`, whatever rate the database's transaction allows.
            println!(
                "  so at concurrency {clients} the mean latency cannot fall below {:.2} ms (Little's law: {clients} / that rate)",
                1000.0 * clients as f64 / t.user_and_jobs.throughput_per_s.max(1e-9)
            );
        }
    }
    if let Some(p) = &r.pickup {
        println!(
            "idle pickup p50: serve {:.2} ms, separate worker {:.2} ms (both in this process)",
            p.serve.p50_ms, p.separate_worker.p50_ms
        );
    }
    if let Some(x) = &r.cross_process_pickup {
        println!(
            "cross-process pickup (web + worker processes of the binary), enqueue to handler start: every job p50 {:.2} ms, p95 {:.2} ms, max {:.2}; first job of each registration p50 {:.2} ms, p95 {:.2} ms ({} registrations, {} missing)",
            x.every_job.p50_ms,
            x.every_job.p95_ms,
            x.every_job.max_ms,
            x.first_job.p50_ms,
            x.first_job.p95_ms,
            x.registrations,
            x.missing
        );
    }
    if let Some(b) = &r.burst {
        println!(
            "\nburst: {} registrations, SMTP +{} ms, cap {} sessions: async p99 {:.2} ms during the burst ({:.1} s), drained in {:.1} s; max SMTP sessions {}, refused {}, errors {}, lost {}, duplicates {}",
            b.registrations,
            b.smtp_latency_ms,
            b.smtp_session_cap,
            b.async_during_burst.p99_ms,
            b.burst_seconds,
            b.drain_seconds,
            b.max_smtp_sessions,
            b.refused_smtp_sessions,
            b.errors,
            b.lost,
            b.duplicates
        );
    }
    if let (Some(p), Some(bp), Some(sp)) = (&r.pipeline, &r.backlog_pipeline, &r.slow_smtp_pipeline)
    {
        println!(
            "pipeline (SMTP +0 ms): {:.0} mails/s ({:.0} us CPU a mail, {:.0} with the database server) from a backlog of {} registrations (worker start to last job done); {:.0} mails/s end to end with the registrations (bounded by their rate)",
            bp.mails_per_s,
            bp.cpu_us_per_mail,
            bp.cpu_us_per_mail_with_db,
            bp.registrations,
            p.mails_per_s
        );
        println!(
            "pipeline (SMTP +{} ms): {:.0} mails/s from a backlog of {} registrations",
            sp.smtp_latency_ms, sp.mails_per_s, sp.registrations
        );
    }
    if let Some(d) = &r.drain {
        println!(
            "queue drain (no-op, {} on top of {} finished): {:.0} jobs/s",
            d.backlog, d.finished_before, d.jobs_per_s
        );
    }
    if let Some(d) = &r.scale_out {
        print_scale_out(d);
    }
    let l = &r.limits;
    if let (Some(raw), Some(slow), Some(http)) = (
        &l.raw_lettre,
        &l.raw_lettre_slow_smtp,
        &l.trivial_axum_route,
    ) {
        println!(
            "limits: raw lettre {:.0} mails/s ({:.0} us CPU a mail); trivial axum route {:.0} req/s",
            raw.mails_per_s, raw.cpu_us_per_mail, http.summary.throughput_per_s
        );
        println!(
            "limits: raw lettre at SMTP +{} ms: {:.0} mails/s",
            slow.smtp_latency_ms, slow.mails_per_s
        );
    }
    let q = &r.ratios;
    let complete = r.latency.is_some()
        && r.transactions.is_some()
        && r.pipeline.is_some()
        && l.raw_lettre.is_some();
    let Some(slow) = r.slow_smtp_pipeline.as_ref().filter(|_| complete) else {
        println!("ratios: need the latency, transactions, pipeline and limits scenarios");
        return;
    };
    println!(
        "ratios: pipeline/raw lettre {:.0} % (end to end {:.0} %; at SMTP +{} ms {:.0} %), async register/raw SQLite tx {:.0} %, async register/trivial route {:.0} %",
        100.0 * q.pipeline_mails_per_s_vs_raw_lettre,
        100.0 * q.end_to_end_mails_per_s_vs_raw_lettre,
        slow.smtp_latency_ms,
        100.0 * q.slow_smtp_pipeline_vs_raw_lettre,
        100.0 * q.async_register_per_s_vs_raw_sqlite_tx,
        100.0 * q.async_register_per_s_vs_trivial_axum_route
    );
}

fn print_scale_out(d: &ScaleOut) {
    println!(
        "\n{:<28} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "scale-out (SMTP +0 ms)",
        "mails/s",
        "us CPU/mail",
        "app ms",
        "db ms",
        "bench ms",
        "other ms",
        "busy"
    );
    for p in &d.pipeline {
        println!(
            "{:<28} {:>9.0} {:>11.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>7.0}%",
            format!("{} worker process(es)", p.worker_processes),
            p.mails_per_s,
            p.product_cpu_us_per_mail,
            p.cpu.role_ms("worker"),
            p.cpu.db_server_ms.unwrap_or_default(),
            p.cpu.bench_process_ms,
            p.cpu.other_ms,
            100.0 * p.cpu.machine_busy_fraction
        );
    }
    println!(
        "{:<28} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "", "req/s", "us CPU/req", "app ms", "db ms", "bench ms", "other ms", "busy"
    );
    for w in &d.register {
        println!(
            "{:<28} {:>9.0} {:>11.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>7.0}%   p50 {:.2} ms, p99 {:.2} ms",
            format!("{} web process(es), c={}", w.web_processes, w.concurrency),
            w.latency.throughput_per_s,
            w.product_cpu_us_per_registration,
            w.cpu.role_ms("web"),
            w.cpu.db_server_ms.unwrap_or_default(),
            w.cpu.bench_process_ms,
            w.cpu.other_ms,
            100.0 * w.cpu.machine_busy_fraction,
            w.latency.p50_ms,
            w.latency.p99_ms
        );
    }
}

/// Two runs of the same plan (SQLite first, PostgreSQL second) as a markdown table, figure by
/// figure, for BENCHMARKS.md; a figure a run did not measure is `-`.
pub fn side_by_side(
    sqlite: &Results,
    postgres: &Results,
    command: &str,
    took: std::time::Duration,
) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "Command: `{command}` ({:.0} s); {} CPUs ({}), {}; hashing {}; WORKERS={}.",
        took.as_secs_f64(),
        sqlite.machine.cpus,
        sqlite.machine.cpu,
        sqlite
            .machine
            .memory
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        sqlite.hash_cost,
        sqlite.workers
    ));
    line(String::new());
    line("| figure | SQLite | PostgreSQL |".into());
    line("|---|---|---|".into());
    let dash = || "-".to_owned();
    let both = |f: &dyn Fn(&Results) -> Option<String>| {
        (
            f(sqlite).unwrap_or_else(dash),
            f(postgres).unwrap_or_else(dash),
        )
    };
    let mut row = |name: String, f: &dyn Fn(&Results) -> Option<String>| {
        let (a, b) = both(f);
        line(format!("| {name} | {a} | {b} |"));
    };
    let register = |mode: Mode, smtp: u64, concurrency: usize| {
        move |r: &Results| {
            r.latency
                .iter()
                .flatten()
                .find(|x| {
                    x.mode == mode && x.smtp_latency_ms == smtp && x.concurrency == concurrency
                })
                .map(|x| {
                    let s = &x.summary;
                    format!(
                        "{:.0} req/s; p50 {:.2} ms, p99 {:.2}{}",
                        s.throughput_per_s,
                        s.p50_ms,
                        s.p99_ms,
                        errors(x.errors)
                    )
                })
        }
    };
    let c = sqlite.concurrency;
    let mut concurrencies: Vec<usize> = sqlite
        .latency
        .iter()
        .flatten()
        .map(|x| x.concurrency)
        .collect();
    concurrencies.sort_unstable();
    concurrencies.dedup();
    for concurrency in concurrencies {
        for mode in [Mode::Async, Mode::Sync] {
            row(
                format!(
                    "{} register, {concurrency} clients, SMTP +0 ms",
                    mode.as_str()
                ),
                &register(mode, 0, concurrency),
            );
        }
    }
    let slow: Vec<u64> = sqlite
        .latency
        .iter()
        .flatten()
        .map(|x| x.smtp_latency_ms)
        .filter(|ms| *ms > 0)
        .collect();
    if let Some(&ms) = slow.first() {
        for mode in [Mode::Async, Mode::Sync] {
            row(
                format!("{} register, {c} clients, SMTP +{ms} ms", mode.as_str()),
                &register(mode, ms, c),
            );
        }
    }
    row(
        "async register, steady rate (open loop), SMTP +0 ms".into(),
        &|r: &Results| {
            r.paced
                .iter()
                .flatten()
                .find(|p| p.row.smtp_latency_ms == 0)
                .map(|p| {
                    format!(
                        "at {}/s: p50 {:.2} ms, p99 {:.2}{}",
                        p.paced_per_s,
                        p.row.summary.p50_ms,
                        p.row.summary.p99_ms,
                        errors(p.row.errors)
                    )
                })
        },
    );
    row(
        "enqueue overhead (3 jobs in the user's transaction), p50".into(),
        &|r: &Results| {
            r.transactions
                .as_ref()
                .map(|t| format!("{:.3} ms", t.enqueue_overhead_p50_ms))
        },
    );
    row(
        "raw user + jobs transactions, one after another".into(),
        &|r: &Results| {
            r.transactions.as_ref().map(|t| {
                format!(
                    "{:.0}/s (user alone {:.0}/s)",
                    t.user_and_jobs.throughput_per_s, t.user_only.throughput_per_s
                )
            })
        },
    );
    row(
        "idle pickup, p50: `serve` / separate worker app (in the bench process)".into(),
        &|r: &Results| {
            r.pickup.as_ref().map(|p| {
                format!(
                    "{:.2} ms / {:.2} ms",
                    p.serve.p50_ms, p.separate_worker.p50_ms
                )
            })
        },
    );
    row(
        "**cross-process pickup** (`web` + `worker` processes), every job: p50 / p95 / max".into(),
        &|r: &Results| {
            r.cross_process_pickup.as_ref().map(|x| {
                format!(
                    "**{:.2} ms** / {:.2} / {:.2}{}",
                    x.every_job.p50_ms,
                    x.every_job.p95_ms,
                    x.every_job.max_ms,
                    missing(x.missing)
                )
            })
        },
    );
    row(
        "cross-process pickup, first job of each registration: p50 / p95".into(),
        &|r: &Results| {
            r.cross_process_pickup
                .as_ref()
                .map(|x| format!("{:.2} ms / {:.2}", x.first_job.p50_ms, x.first_job.p95_ms))
        },
    );
    row(
        "burst (64 clients, SMTP +20 ms, session cap): accepted/s; all mails out after".into(),
        &|r: &Results| {
            r.burst.as_ref().map(|b| {
                format!(
                    "{:.0}/s; {:.1} s (max sessions {}/{}, refused {}, lost {}, dup {})",
                    b.registrations as f64 / b.burst_seconds.max(1e-9),
                    b.drain_seconds,
                    b.max_smtp_sessions,
                    b.smtp_session_cap,
                    b.refused_smtp_sessions,
                    b.lost,
                    b.duplicates
                )
            })
        },
    );
    row(
        "pipeline from a backlog, SMTP +0 ms: mails/s; CPU a mail (bench process + database server)"
            .into(),
        &|r: &Results| {
            r.backlog_pipeline.as_ref().map(|p| {
                format!(
                    "{:.0} mails/s; {:.0} µs",
                    p.mails_per_s, p.cpu_us_per_mail_with_db
                )
            })
        },
    );
    row(
        "pipeline end to end (registrations over HTTP meanwhile), SMTP +0 ms".into(),
        &|r: &Results| {
            r.pipeline
                .as_ref()
                .map(|p| format!("{:.0} mails/s", p.mails_per_s))
        },
    );
    row(
        "pipeline from a backlog, slow mail server".into(),
        &|r: &Results| {
            r.slow_smtp_pipeline.as_ref().map(|p| {
                format!(
                    "{:.0} mails/s (SMTP +{} ms)",
                    p.mails_per_s, p.smtp_latency_ms
                )
            })
        },
    );
    row(
        "queue drain, no-op handler, backlog over finished jobs".into(),
        &|r: &Results| {
            r.drain.as_ref().map(|d| {
                format!(
                    "{:.0} jobs/s ({} over {}{})",
                    d.jobs_per_s,
                    d.backlog,
                    d.finished_before,
                    if d.left_undone > 0 {
                        format!(", {} left undone", d.left_undone)
                    } else {
                        String::new()
                    }
                )
            })
        },
    );
    let processes: Vec<usize> = sqlite
        .scale_out
        .iter()
        .flat_map(|s| s.pipeline.iter().map(|p| p.worker_processes))
        .collect();
    for n in processes {
        row(
            format!(
                "scale-out pipeline, {n} worker process(es): mails/s; CPU a mail (workers + db)"
            ),
            &move |r: &Results| {
                r.scale_out.as_ref().and_then(|s| {
                    s.pipeline
                        .iter()
                        .find(|p| p.worker_processes == n)
                        .map(|p| {
                            format!(
                                "{:.0} mails/s; {:.0} µs{}",
                                p.mails_per_s,
                                p.product_cpu_us_per_mail,
                                if p.left_undone > 0 {
                                    format!(" ({} jobs left)", p.left_undone)
                                } else {
                                    String::new()
                                }
                            )
                        })
                })
            },
        );
    }
    let webs: Vec<usize> = sqlite
        .scale_out
        .iter()
        .flat_map(|s| s.register.iter().map(|w| w.web_processes))
        .collect();
    for n in webs {
        row(
            format!(
                "scale-out registrations, {n} web process(es), 64 clients: req/s; p99; CPU a registration (webs + db)"
            ),
            &move |r: &Results| {
                r.scale_out.as_ref().and_then(|s| {
                    s.register.iter().find(|w| w.web_processes == n).map(|w| {
                        format!(
                            "{:.0} req/s; p99 {:.1} ms; {:.0} µs{}",
                            w.latency.throughput_per_s,
                            w.latency.p99_ms,
                            w.product_cpu_us_per_registration,
                            errors(w.errors)
                        )
                    })
                })
            },
        );
    }
    row(
        "limits: raw lettre (SMTP +0 ms) / trivial axum route".into(),
        &|r: &Results| {
            let l = &r.limits;
            match (&l.raw_lettre, &l.trivial_axum_route) {
                (Some(m), Some(h)) => Some(format!(
                    "{:.0} mails/s / {:.0} req/s",
                    m.mails_per_s, h.summary.throughput_per_s
                )),
                _ => None,
            }
        },
    );
    for (name, r) in [("SQLite", sqlite), ("PostgreSQL", postgres)] {
        if let Some(s) = &r.scale_out {
            line(String::new());
            line(format!(
                "Scale-out on {name}, where the CPU went (ms over each run; `other`: the rest of the machine):"
            ));
            line(String::new());
            line("| run | rate | product processes | database server | bench (clients, SMTP sink) | other | machine busy |".into());
            line("|---|---|---|---|---|---|---|".into());
            for p in &s.pipeline {
                line(cpu_row(
                    format!("{} worker process(es)", p.worker_processes),
                    format!("{:.0} mails/s", p.mails_per_s),
                    &p.cpu,
                ));
            }
            for w in &s.register {
                line(cpu_row(
                    format!("{} web process(es)", w.web_processes),
                    format!("{:.0} req/s", w.latency.throughput_per_s),
                    &w.cpu,
                ));
            }
        }
    }
    out
}

fn cpu_row(name: String, rate: String, cpu: &super::cpu::CpuUse) -> String {
    let each: Vec<String> = cpu
        .processes
        .iter()
        .map(|p| format!("{:.0}", p.cpu_ms))
        .collect();
    format!(
        "| {name} | {rate} | {:.0} ({}) | {} | {:.0} | {:.0} | {:.0} % of {:.1} s |",
        cpu.role_ms(""),
        each.join(" + "),
        cpu.db_server_ms.map_or_else(
            || "- (in the processes)".to_owned(),
            |ms| format!("{ms:.0}")
        ),
        cpu.bench_process_ms,
        cpu.other_ms,
        100.0 * cpu.machine_busy_fraction,
        cpu.seconds
    )
}

fn errors(n: usize) -> String {
    if n > 0 {
        format!(" ({n} errors)")
    } else {
        String::new()
    }
}

fn missing(n: u64) -> String {
    if n > 0 {
        format!(" ({n} not started)")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::bench::{
        cpu::{CpuUse, ProcessCpu},
        scenarios::scale_out::{ScaledPipeline, ScaledRegister},
    };

    /// Every key path in `v`, array elements as `[]` whatever their index.
    fn key_paths(v: &Value, at: String, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    let path = format!("{at}.{key}");
                    out.insert(path.clone());
                    key_paths(value, path, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    key_paths(item, format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }

    fn paths_of(v: &Value) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        key_paths(v, String::new(), &mut out);
        out
    }

    #[test]
    fn a_full_run_has_the_documented_key_paths() {
        let mut results = Results {
            latency: Some(vec![LatencyRow::default()]),
            paced: Some(vec![PacedRow::default()]),
            transactions: Some(Transactions::default()),
            pickup: Some(Pickup::default()),
            cross_process_pickup: Some(CrossPickup::default()),
            burst: Some(Burst::default()),
            pipeline: Some(Burst::default()),
            backlog_pipeline: Some(BacklogPipeline::default()),
            slow_smtp_pipeline: Some(BacklogPipeline::default()),
            drain: Some(Drain::default()),
            scale_out: Some(ScaleOut {
                pipeline: vec![ScaledPipeline {
                    cpu: CpuUse {
                        processes: vec![ProcessCpu::default()],
                        db_server_ms: Some(0.0),
                        ..CpuUse::default()
                    },
                    ..ScaledPipeline::default()
                }],
                register: vec![ScaledRegister {
                    cpu: CpuUse {
                        processes: vec![ProcessCpu::default()],
                        ..CpuUse::default()
                    },
                    ..ScaledRegister::default()
                }],
            }),
            limits: Limits {
                raw_lettre: Some(RawSmtp::default()),
                raw_lettre_slow_smtp: Some(RawSmtp::default()),
                trivial_axum_route: Some(RawHttp::default()),
                raw_sqlite_user_and_jobs_tx: Some(Summary::default()),
            },
            ..Results::default()
        };
        results.ratios = Ratios::of(&results);
        let ours = serde_json::to_value(&results).expect("serializes");
        let documented: Value =
            serde_json::from_str(include_str!("../../../docs/bench/bench-results.json"))
                .expect("docs/bench/bench-results.json is JSON");
        let (ours, documented) = (paths_of(&ours), paths_of(&documented));
        assert_eq!(
            ours.difference(&documented).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "keys the documented run does not have"
        );
        assert_eq!(
            documented.difference(&ours).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "documented keys we no longer write"
        );
    }

    #[test]
    fn the_side_by_side_table_has_a_row_per_figure_and_dashes_for_what_did_not_run() {
        let mut sqlite = Results {
            concurrency: 16,
            latency: Some(vec![LatencyRow {
                concurrency: 16,
                ..LatencyRow::default()
            }]),
            drain: Some(Drain {
                jobs_per_s: 1234.0,
                ..Drain::default()
            }),
            ..Results::default()
        };
        sqlite.machine.cpus = 2;
        let postgres = Results {
            drain: Some(Drain {
                jobs_per_s: 567.0,
                ..Drain::default()
            }),
            ..sqlite.clone()
        };
        let table = side_by_side(
            &sqlite,
            &Results {
                latency: None,
                ..postgres
            },
            "signup-queue-bench --both",
            std::time::Duration::from_secs(60),
        );
        assert!(table.starts_with("Command: `signup-queue-bench --both` (60 s); 2 CPUs"));
        assert!(table.contains("| queue drain, no-op handler, backlog over finished jobs | 1234 jobs/s (0 over 0) | 567 jobs/s (0 over 0) |"), "{table}");
        assert!(
            table.contains(
                "| async register, 16 clients, SMTP +0 ms | 0 req/s; p50 0.00 ms, p99 0.00 | - |"
            ),
            "{table}"
        );
    }

    #[test]
    fn left_out_scenarios_are_null_and_limits_and_ratios_stay() {
        let value = serde_json::to_value(Results::default()).expect("serializes");
        for key in [
            "latency",
            "paced",
            "transactions",
            "pickup",
            "burst",
            "pipeline",
        ] {
            assert!(value[key].is_null(), "{key}");
        }
        assert!(value["limits"].is_object() && value["limits"]["raw_lettre"].is_null());
        assert_eq!(value["ratios"]["pipeline_mails_per_s_vs_raw_lettre"], 0.0);
    }
}
