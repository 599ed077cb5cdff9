//! `signup-queue jobs ...` against a real database (SQLite and PostgreSQL): the real binary, real
//! exit statuses.

use std::{process::Output, time::Duration};

use signup_queue::{
    db::Backend,
    dev_inbox::DevInbox,
    queue::{JobState, inspect},
    with_db,
};
use sqlx::AssertSqlSafe;

use crate::support::{
    db::{self, jobs_table},
    *,
};

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

async fn failed_jobs_are_listed_retried_and_delivered_and_old_done_jobs_purged(db: TestDb) {
    let port = unused_port();
    let app = app_on(&db)
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
    let eight_days = match db.backend() {
        Backend::Sqlite => "8 * 86400",
        Backend::Postgres => "interval '8 days'",
    };
    db::execute(
        &app,
        &format!("UPDATE {{jobs}} SET done_at = done_at - {eight_days}"),
        None,
    )
    .await;
    let purged = jobs(&database_url, &["purge-done", "--older-than", "7d"]);
    // Welcome (retried) and audit are done; the coupon job failed too and was not retried.
    assert!(stdout(&purged).contains("deleted 2"), "{}", stdout(&purged));
    let left: Vec<(String, JobState)> = inspect::list(&app.pool, None, 100)
        .await
        .expect("jobs")
        .into_iter()
        .map(|job| (job.queue, job.status))
        .collect();
    assert_eq!(
        left,
        vec![("signup_coupon".to_owned(), JobState::Failed)],
        "only failed jobs stay"
    );
    inbox.stop();
    app.stop().await;
}
on_both_databases!(
    failed_jobs_are_listed_retried_and_delivered_and_old_done_jobs_purged,
    multi_thread
);

async fn sql_status_conditions_agree_with_the_api_mapping(db: TestDb) {
    let pool = signup_queue::db::connect_and_migrate(db.url())
        .await
        .expect("database");
    // The stored payload is irrelevant here; the column is a BLOB on SQLite, bytea on PostgreSQL.
    let insert = format!(
        "INSERT INTO {} (job, id, job_type, status, attempts, max_attempts) \
         VALUES ({}, $1, 'probe', $2, $3, $4)",
        jobs_table(&pool),
        match db.backend() {
            Backend::Sqlite => "x'7b7d'",
            Backend::Postgres => "'\\x7b7d'::bytea",
        }
    );
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
        with_db!(&pool, pool => {
            sqlx::query(AssertSqlSafe(insert.clone()))
                .bind(format!("job{i}"))
                .bind(*status)
                .bind(*attempts)
                .bind(*max)
                .execute(pool)
                .await
                .expect("insert");
        });
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
    pool.close().await;
}
on_both_databases!(sql_status_conditions_agree_with_the_api_mapping);
