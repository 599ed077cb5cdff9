//! The markdown table of two runs of the same plan side by side (`--both`): SQLite first,
//! PostgreSQL second, figure by figure, for BENCHMARKS.md.

use super::{report::Results, scenarios::latency::Mode};

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
    use super::*;
    use crate::bench::scenarios::{drain::Drain, latency::LatencyRow};

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
}
