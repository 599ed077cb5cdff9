//! The bench harness runs end to end in its smallest mode and writes every scenario: a check
//! that it works, not of the numbers (speed is never asserted in tests).

/// Runs `signup-queue-bench --quick ARGS --out DIR` and returns its bench-results.json.
fn run_bench(args: &[&str], out: &std::path::Path) -> serde_json::Value {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_signup-queue-bench"))
        .arg("--quick")
        .args(args)
        .arg("--out")
        .arg(out)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("bench runs");
    assert!(status.success());
    let text = std::fs::read_to_string(out.join("bench-results.json")).expect("results written");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn the_smallest_bench_run_writes_every_scenario() {
    let out = tempfile::tempdir().expect("temp dir");
    let results = run_bench(
        &[
            "--requests",
            "5",
            "--burst",
            "20",
            "--backlog",
            "50",
            "--finished",
            "50",
            "--smtp-latency-ms",
            "0,10",
        ],
        out.path(),
    );
    for scenario in [
        "latency",
        "transactions",
        "pickup",
        "burst",
        "pipeline",
        "backlog_pipeline",
        "slow_smtp_pipeline",
        "paced",
        "drain",
        "limits",
        "ratios",
    ] {
        assert!(!results[scenario].is_null(), "{scenario} missing");
    }
    assert_eq!(
        results["latency"].as_array().map(Vec::len),
        Some(4),
        "sync and async at two latencies"
    );
    assert_eq!(results["burst"]["lost"], 0);
    assert_eq!(results["burst"]["duplicates"], 0);
    for pipeline in ["backlog_pipeline", "slow_smtp_pipeline"] {
        assert_eq!(results[pipeline]["left_undone"], 0, "{pipeline}");
        assert_eq!(results[pipeline]["duplicates"], 0, "{pipeline}");
    }
    assert!(
        results["hash_cost"]
            .as_str()
            .unwrap_or_default()
            .starts_with("test"),
        "the run says which hashing it used"
    );
    let svg = std::fs::read_to_string(out.path().join("peak-shaving.svg")).expect("plot written");
    assert!(svg.contains("<svg") && svg.contains("queue depth"));
}

#[test]
fn only_runs_the_chosen_scenarios() {
    let out = tempfile::tempdir().expect("temp dir");
    let results = run_bench(
        &["--only", "drain", "--backlog", "20", "--finished", "20"],
        out.path(),
    );
    assert_eq!(results["drain"]["left_undone"], 0);
    for skipped in ["latency", "transactions", "burst", "pipeline"] {
        assert!(results[skipped].is_null(), "{skipped} ran");
    }
    assert!(
        !out.path().join("peak-shaving.svg").exists(),
        "no burst, no plot"
    );
}
