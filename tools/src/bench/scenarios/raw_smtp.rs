//! A limit: raw lettre sends of the welcome mail to the same kind of sink, no queue, as many at
//! a time as the app has workers.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use signup_queue::{consumers::welcome::send_welcome, mail::Mailer, users::User};

use crate::{
    bench::harness::{bar, per_s, process_cpu},
    smtp_sink::{SinkConfig, SmtpSink},
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct RawSmtp {
    pub mails: usize,
    pub errors: usize,
    pub mails_per_s: f64,
    pub cpu_us_per_mail: f64,
    pub smtp_latency_ms: u64,
    pub concurrency: u16,
}

pub async fn run(n: usize, latency_ms: u64, workers: u16) -> anyhow::Result<RawSmtp> {
    let sink = SmtpSink::start(SinkConfig::with_latency_ms(latency_ms)).await?;
    let mailer = Mailer::new(
        &sink.smtp_url(),
        "Bench <bench@bench.local>",
        Duration::from_secs(30),
        u32::from(workers),
    )?;
    let progress = bar(
        n,
        &format!("limit: raw lettre sends, SMTP +{latency_ms} ms"),
    );
    let started = Instant::now();
    let cpu_before = process_cpu();
    let sent: Vec<bool> = futures::stream::iter(0..n)
        .map(|i| {
            let mailer = mailer.clone();
            async move {
                let user = User {
                    id: i as i64,
                    email: format!("raw{i}@bench.local"),
                    name: None,
                };
                send_welcome(&mailer, &user).await.is_ok()
            }
        })
        .buffer_unordered(usize::from(workers))
        .inspect(|_| progress.inc(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    progress.finish_and_clear();
    sink.stop();
    let ok = sent.iter().filter(|s| **s).count();
    Ok(RawSmtp {
        mails: ok,
        errors: sent.len() - ok,
        mails_per_s: per_s(ok as f64, elapsed),
        cpu_us_per_mail: cpu.as_secs_f64() * 1e6 / (ok.max(1) as f64),
        smtp_latency_ms: latency_ms,
        concurrency: workers,
    })
}
