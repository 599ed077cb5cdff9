//! `signup-queue jobs ...`: the queue from the terminal. Opens DATABASE_URL directly (no server
//! needed). Exit status: 0 done, 1 error (unknown job, not failed, database), 2 usage.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::{
    db,
    queue::{Job, JobState, inspect},
};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Counts per queue: pending, running, retrying, done, failed, and the oldest waiting job.
    Stats(Output),
    /// The latest jobs, newest first.
    List {
        /// Only jobs in this state.
        #[arg(long, value_enum)]
        status: Option<JobState>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        output: Output,
    },
    /// Jobs that exhausted their attempts (or were aborted), with their last error.
    Failed {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        output: Output,
    },
    /// Put failed jobs back in the queue with a fresh attempt budget.
    Retry {
        /// The job to retry.
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        id: Option<String>,
        /// Retry every failed job.
        #[arg(long)]
        all_failed: bool,
    },
    /// Delete finished (done) jobs older than the given age (retention), e.g. 7d, 12h.
    PurgeDone {
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
}

#[derive(Debug, Args)]
pub struct Output {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(database_url: &str, command: JobsCommand) -> anyhow::Result<()> {
    let pool = db::open_existing(database_url).await?;
    match command {
        JobsCommand::Stats(output) => {
            let stats = inspect::stats(&pool).await?;
            if output.json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else if stats.is_empty() {
                println!("no jobs");
            } else {
                let now = chrono::Utc::now().timestamp();
                let mut table = table(&[
                    "queue",
                    "pending",
                    "running",
                    "retrying",
                    "done",
                    "failed",
                    "oldest waiting",
                ]);
                for s in stats {
                    let oldest = s
                        .oldest_waiting_run_at
                        .map(|t| {
                            humantime::format_duration(Duration::from_secs((now - t).max(0) as u64))
                                .to_string()
                        })
                        .unwrap_or_else(|| "-".into());
                    table.add_row(vec![
                        s.queue,
                        s.pending.to_string(),
                        s.running.to_string(),
                        s.retrying.to_string(),
                        s.done.to_string(),
                        s.failed.to_string(),
                        oldest,
                    ]);
                }
                println!("{table}");
            }
        }
        JobsCommand::List {
            status,
            limit,
            output,
        } => print_jobs(&inspect::list(&pool, status, limit).await?, &output)?,
        JobsCommand::Failed { limit, output } => print_jobs(
            &inspect::list(&pool, Some(JobState::Failed), limit).await?,
            &output,
        )?,
        JobsCommand::Retry { id: Some(id), .. } => {
            inspect::retry(&pool, &id).await?;
            println!("job {id} is back in the queue");
        }
        JobsCommand::Retry { id: None, .. } => {
            let n = inspect::retry_all_failed(&pool).await?;
            println!("{n} failed job(s) back in the queue");
        }
        JobsCommand::PurgeDone { older_than } => {
            let secs = i64::try_from(older_than.as_secs()).context("--older-than is too large")?;
            let n = inspect::purge_done(&pool, secs).await?;
            println!(
                "deleted {n} done job(s) finished more than {} ago",
                humantime::format_duration(older_than)
            );
        }
    }
    pool.close().await;
    Ok(())
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    table
}

fn print_jobs(jobs: &[Job], output: &Output) -> anyhow::Result<()> {
    if output.json {
        println!("{}", serde_json::to_string_pretty(jobs)?);
        return Ok(());
    }
    if jobs.is_empty() {
        println!("no jobs");
        return Ok(());
    }
    let mut table = table(&[
        "id",
        "queue",
        "status",
        "attempts",
        "run at (UTC)",
        "last error",
    ]);
    for job in jobs {
        let run_at = chrono::DateTime::from_timestamp(job.run_at, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let mut error = job.last_error.clone().unwrap_or_default();
        if error.chars().count() > 80 {
            error = error.chars().take(79).collect::<String>() + "…";
        }
        table.add_row(vec![
            job.id.clone(),
            job.queue.clone(),
            job.status.to_string(),
            format!("{}/{}", job.attempts, job.max_attempts),
            run_at,
            error,
        ]);
    }
    println!("{table}");
    Ok(())
}
