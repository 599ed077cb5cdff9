//! A job's state as the API reports it, read from the job table.

use serde::Serialize;
use sqlx::SqlitePool;

/// `GET /api/jobs/{id}`: `status` is one of pending, running, done, failed, retrying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    pub id: String,
    pub status: &'static str,
    pub attempts: i64,
    pub last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    last_result: Option<String>,
}

#[tracing::instrument(skip(pool))]
pub async fn job_status(pool: &SqlitePool, id: &str) -> Result<Option<JobStatus>, sqlx::Error> {
    let row: Option<JobRow> = sqlx::query_as(
        "SELECT id, status, attempts, max_attempts, last_result FROM Jobs WHERE id = ?1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| {
        let status = public_status(&row.status, row.attempts, row.max_attempts);
        let last_error = (status != "done")
            .then(|| row.last_result.as_deref().and_then(error_text))
            .flatten();
        JobStatus {
            id: row.id,
            status,
            attempts: row.attempts,
            last_error,
        }
    }))
}

/// Maps apalis' states onto the API's five.
pub fn public_status(storage_status: &str, attempts: i64, max_attempts: i64) -> &'static str {
    match storage_status {
        "Running" => "running",
        "Done" => "done",
        "Failed" if attempts < max_attempts => "retrying",
        "Failed" | "Killed" => "failed",
        // Back in the queue after a failed attempt or a crashed worker.
        _ if attempts > 0 => "retrying",
        _ => "pending",
    }
}

/// apalis stores a result as JSON; an error is `{"Err": "..."}`.
pub fn error_text(stored: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(stored) {
        Ok(serde_json::Value::Object(map)) => match map.get("Err") {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        },
        Ok(_) => None,
        Err(_) => Some(stored.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_the_documented_five() {
        assert_eq!(public_status("Pending", 0, 10), "pending");
        assert_eq!(public_status("Queued", 0, 10), "pending");
        assert_eq!(public_status("Running", 1, 10), "running");
        assert_eq!(public_status("Done", 1, 10), "done");
        assert_eq!(public_status("Failed", 3, 10), "retrying");
        assert_eq!(public_status("Pending", 2, 10), "retrying");
        assert_eq!(public_status("Failed", 10, 10), "failed");
        assert_eq!(public_status("Killed", 1, 10), "failed");
    }

    #[test]
    fn error_text_is_unwrapped() {
        assert_eq!(error_text(r#"{"Err":"boom"}"#).as_deref(), Some("boom"));
        assert_eq!(error_text(r#"{"Ok":null}"#), None);
    }
}
