//! A very short soak (20 s at 10 registrations/s, the worker `kill -9`ed twice, the mail server
//! down for 5 s and failing 5% of mails) against the real product binary, which a workspace build
//! puts beside the tools; skipped with one line when it is not there. Asserts the invariants in
//! the JSON report. The long runs and their figures: RELIABILITY.md.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

fn product_binary() -> Option<PathBuf> {
    signup_queue_tools::testkit::product_beside(Path::new(env!("CARGO_BIN_EXE_signup-queue-soak")))
}

#[test]
fn a_short_soak_loses_no_mail_and_leaves_no_job() {
    if product_binary().is_none() {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_signup-queue-soak"))
        .args([
            "--duration",
            "20s",
            "--rate",
            "10",
            "--kill-every",
            "8s",
            "--outage",
            "5s",
            "--retention",
            "2s",
            "--drain-timeout",
            "60s",
            "--progress-every",
            "5s",
            "--out",
        ])
        .arg(out.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("the soak runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "soak failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    let text = std::fs::read_to_string(out.path().join("soak-results.json")).expect("report");
    let report: Value = serde_json::from_str(&text).expect("JSON report");
    let n = |pointer: &str| {
        report
            .pointer(pointer)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{pointer} in the report:\n{text}"))
    };
    assert_eq!(report["ok"], Value::Bool(true), "{stdout}");
    assert!(n("/registrations/sent") >= 150.0, "{stdout}");
    assert_eq!(n("/registrations/created"), n("/registrations/sent"));
    assert_eq!(n("/registrations/errors"), 0.0);
    assert_eq!(n("/kills"), 2.0, "killed at 8 s and 16 s");
    for kind in ["welcome", "coupon"] {
        assert_eq!(n(&format!("/{kind}/users")), n("/registrations/created"));
        assert_eq!(n(&format!("/{kind}/missing")), 0.0, "{kind}: {stdout}");
        assert!(
            n(&format!("/{kind}/duplicates")) <= n(&format!("/{kind}/duplicate_bound")),
            "{kind}: {stdout}"
        );
    }
    for state in ["pending", "running", "retrying", "failed"] {
        assert_eq!(n(&format!("/jobs_left/{state}")), 0.0, "{state}: {stdout}");
    }
    assert!(
        n("/smtp/failed_451") > 0.0,
        "the mail server failed some mails"
    );
    assert!(report["drain_s"].is_number(), "the queue drained");
    // The web process and three worker incarnations, each sampled.
    let processes = report["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 4, "{stdout}");
    assert!(
        processes
            .iter()
            .all(|p| p["peak_rss_kib"].as_u64().unwrap_or(0) > 0)
    );
    assert!(
        n("/retention/after/job_rows") < n("/retention/before/job_rows"),
        "purge-done deleted the finished jobs"
    );
}
