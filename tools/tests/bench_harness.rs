//! The bench harness runs end to end in its smallest mode and writes every scenario: a check
//! that it works, not of the numbers (speed is never asserted in tests). On PostgreSQL too when
//! `DATABASE_URL_PG` names a server.

use signup_queue_tools::testkit::{product_beside, service_or_skip};

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
    read_json(&out.join("bench-results.json"))
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("results written");
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
        Some(6),
        "sync and async at two latencies, then both with 64 clients"
    );
    assert_eq!(results["latency"][5]["concurrency"], 64);
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
    assert_eq!(results["backend"], "sqlite", "SQLite unless told otherwise");
    // The scenarios between processes run the product's binary, when a workspace build put it
    // beside the bench's.
    if product_beside(std::path::Path::new(env!(
        "CARGO_BIN_EXE_signup-queue-bench"
    )))
    .is_some()
    {
        let pickup = &results["cross_process_pickup"];
        assert_eq!(pickup["missing"], 0, "every job started: {pickup}");
        assert_eq!(pickup["errors"], 0);
        let scale = &results["scale_out"];
        assert_eq!(
            scale["pipeline"].as_array().map(Vec::len),
            Some(3),
            "1, 2, 4 workers"
        );
        assert_eq!(
            scale["register"].as_array().map(Vec::len),
            Some(2),
            "1, 2 webs"
        );
        for run in scale["pipeline"].as_array().into_iter().flatten() {
            assert_eq!(run["left_undone"], 0, "{run}");
            assert_eq!(run["duplicates"], 0, "{run}");
            assert!(
                run["cpu"]["processes"][0]["cpu_ms"].as_f64() > Some(0.0),
                "{run}"
            );
        }
    }
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

#[test]
fn both_backends_run_from_one_command_and_leave_no_database_behind() {
    let Some(server) = service_or_skip(
        "DATABASE_URL_PG",
        "(e.g. postgres://postgres@127.0.0.1:5432/postgres) to run the bench on PostgreSQL too",
    ) else {
        return;
    };
    let out = tempfile::tempdir().expect("temp dir");
    let _ = run_bench(
        &[
            "--both",
            "--database-url",
            &server,
            "--only",
            "transactions,drain",
            "--backlog",
            "50",
            "--finished",
            "50",
        ],
        out.path(),
    );
    let sqlite = read_json(&out.path().join("bench-results.json"));
    let postgres = read_json(&out.path().join("bench-results-postgres.json"));
    assert_eq!(sqlite["backend"], "sqlite");
    assert_eq!(postgres["backend"], "postgres");
    for results in [&sqlite, &postgres] {
        assert_eq!(results["drain"]["left_undone"], 0, "{}", results["backend"]);
        assert!(results["transactions"]["user_and_jobs"]["count"].as_u64() > Some(0));
    }
    let table = std::fs::read_to_string(out.path().join("side-by-side.md")).expect("table");
    assert!(
        table.contains("| figure | SQLite | PostgreSQL |"),
        "{table}"
    );
    assert!(table.contains("queue drain"), "{table}");

    let left: Vec<String> = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&server).await.expect("server");
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'")
                .fetch_all(&mut conn)
                .await
                .expect("list databases")
        });
    assert_eq!(left, Vec::<String>::new(), "the bench drops its databases");
}
