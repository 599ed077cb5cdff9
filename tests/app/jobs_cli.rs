//! `signup-queue jobs ...` against a real database: the real binary, real exit statuses.

use std::{process::Output, time::Duration};

use signup_queue::{
    dev_inbox::DevInbox,
    queue::{JobState, inspect},
};

use crate::support::*;

fn jobs(database_url: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_signup-queue"))
        .arg("jobs")
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("NO_COLOR", "1")
        .output()
        .expect("binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_are_listed_retried_and_delivered_and_old_done_jobs_purged() {
    let port = unused_port();
    let app = app()
        .smtp(format!("smtp://127.0.0.1:{port}"))
        .settings(|s| s.job_max_attempts = 1)
        .spawn()
        .await;
    let database_url = app.database_url.clone();
    let body: serde_json::Value = app
        .register("/register", "ops@example.com")
        .await
        .json()
        .await
        .expect("json");
    let job_id = body["job_id"].as_str().expect("job id").to_owned();
    app.wait_for_job(&job_id, "failed", Duration::from_secs(10))
        .await;

    let failed = jobs(&database_url, &["failed", "--json"]);
    assert!(failed.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&failed.stdout).expect("json");
    let welcome = listed
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["id"] == job_id.as_str()))
        .unwrap_or_else(|| panic!("the welcome job is listed as failed: {listed}"));
    assert!(
        welcome["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{listed}"
    );
    let table = jobs(&database_url, &["failed"]);
    assert!(stdout(&table).contains(&job_id), "the table names the job");
    // The audit consumer finishes on its own, whatever the mail server does (its
    // acknowledgement may trail the handler by a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let stats: serde_json::Value =
            serde_json::from_slice(&jobs(&database_url, &["stats", "--json"]).stdout)
                .expect("json");
        let audit_done = stats
            .as_array()
            .and_then(|q| q.iter().find(|q| q["queue"] == "audit_log"))
            .is_some_and(|q| q["done"] == 1);
        if audit_done || std::time::Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let queues = stats.as_array().expect("a list per queue");
    let welcome = queues
        .iter()
        .find(|q| q["queue"] == "welcome_email")
        .expect("welcome queue");
    assert_eq!(welcome["failed"], 1);
    let audit = queues
        .iter()
        .find(|q| q["queue"] == "audit_log")
        .expect("audit queue");
    assert_eq!(
        audit["done"], 1,
        "the audit consumer is not held up by the mail outage: {stats}"
    );

    let unknown = jobs(&database_url, &["retry", "01NOSUCHJOB"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no job with id 01NOSUCHJOB"));
    let usage = jobs(&database_url, &["retry"]);
    assert_eq!(usage.status.code(), Some(2), "missing id is a usage error");

    let inbox = DevInbox::start_on(port, std::time::Duration::ZERO)
        .await
        .expect("mail server comes up");
    let retried = jobs(&database_url, &["retry", &job_id]);
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    app.wait_for_job(&job_id, "done", Duration::from_secs(10))
        .await;
    wait_for_mails(&inbox, 1, Duration::from_secs(10)).await;
    let again = jobs(&database_url, &["retry", &job_id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is done, not failed"));

    let kept = jobs(&database_url, &["purge-done", "--older-than", "7d"]);
    assert!(stdout(&kept).contains("deleted 0"), "{}", stdout(&kept));
    sqlx::query("UPDATE Jobs SET done_at = done_at - 8 * 86400")
        .execute(app.sqlite())
        .await
        .expect("age the job");
    let purged = jobs(&database_url, &["purge-done", "--older-than", "7d"]);
    // Welcome (retried) and audit are done; the coupon job failed too and was not retried.
    assert!(stdout(&purged).contains("deleted 2"), "{}", stdout(&purged));
    let left: Vec<(String, String)> = sqlx::query_as("SELECT job_type, status FROM Jobs")
        .fetch_all(app.sqlite())
        .await
        .expect("jobs");
    assert_eq!(
        left,
        vec![("signup_coupon".to_owned(), "Failed".to_owned())],
        "only failed jobs stay"
    );
    inbox.stop();
    app.stop().await;
}

#[tokio::test]
async fn sql_status_conditions_agree_with_the_api_mapping() {
    let (_dir, database_url) = temp_database();
    let pool = signup_queue::db::connect_and_migrate(&database_url)
        .await
        .expect("database");
    let shapes = [
        ("Pending", 0, 3),
        ("Queued", 0, 3),
        ("Pending", 1, 3),
        ("Running", 1, 3),
        ("Done", 1, 3),
        ("Failed", 1, 3),
        ("Failed", 3, 3),
        ("Killed", 1, 3),
    ];
    for (i, (status, attempts, max)) in shapes.iter().enumerate() {
        sqlx::query("INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts) VALUES (x'7b7d', ?1, 'probe', ?2, ?3, ?4)")
            .bind(format!("job{i}"))
            .bind(*status)
            .bind(*attempts)
            .bind(*max)
            .execute(pool.sqlite().expect("sqlite"))
            .await
            .expect("insert");
    }
    for public in JobState::ALL {
        let expected = shapes
            .iter()
            .filter(|(s, a, m)| JobState::of_row(s, *a, *m) == public)
            .count();
        let listed = inspect::list(&pool, Some(public), 100).await.expect("list");
        assert_eq!(listed.len(), expected, "{public}");
        assert!(listed.iter().all(|job| job.status == public));
    }
    assert_eq!(
        JobState::ALL.map(JobState::as_str),
        ["pending", "running", "retrying", "done", "failed"],
        "the five public states, as the API names them"
    );
    let stats = inspect::stats(&pool).await.expect("stats");
    assert_eq!(
        (
            stats[0].pending,
            stats[0].running,
            stats[0].retrying,
            stats[0].done,
            stats[0].failed
        ),
        (2, 1, 2, 1, 2)
    );
}
