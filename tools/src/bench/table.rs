//! The run's table on stdout, as the bench prints it at the end.

use super::report::*;
use super::scenarios::scale_out::ScaleOut;

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
