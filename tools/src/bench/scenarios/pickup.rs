//! Idle pickup latency: enqueue committed -> handler starts, in `serve` (woken by the enqueue)
//! and with a separate `worker` app (woken through the database on PostgreSQL: LISTEN/NOTIFY; by
//! polling on SQLite, and as the fallback on both). Both apps run inside the bench process;
//! `cross_pickup` measures the same with the real binary's processes. A probe consumer beside
//! the built-in ones records the wait from the job id's ULID timestamp.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;

use signup_queue::{
    Role,
    config::HashCost,
    consumers::{Consumer, ConsumerError, JobInfo},
    events::{Envelope, UserRegistered},
};

use crate::{
    bench::{
        Plan,
        harness::{self, Summary, bar, histogram, record},
        target::Target,
    },
    smtp_sink::{SinkConfig, SmtpSink},
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Pickup {
    pub serve: Summary,
    pub separate_worker: Summary,
}

/// Records, at handler start, how long ago the job was enqueued (job ids are ULIDs).
struct PickupProbe(Arc<Mutex<Histogram<u64>>>);

#[async_trait::async_trait]
impl Consumer for PickupProbe {
    fn name(&self) -> &'static str {
        "bench_pickup_probe"
    }
    async fn handle(
        &self,
        _event: &Envelope<UserRegistered>,
        job: &JobInfo,
    ) -> Result<(), ConsumerError> {
        if let (Some(waited), Ok(mut h)) = (job.queue_wait(), self.0.lock()) {
            record(&mut h, waited);
        }
        Ok(())
    }
}

pub async fn run(
    target: &Target,
    plan: &Plan,
    workers: u16,
    hash_cost: HashCost,
) -> anyhow::Result<Pickup> {
    let sink = SmtpSink::start(SinkConfig::default()).await?;
    let serve = measure(target, plan, &sink, workers, hash_cost, false).await?;
    let separate_worker = measure(target, plan, &sink, workers, hash_cost, true).await?;
    sink.stop();
    Ok(Pickup {
        serve,
        separate_worker,
    })
}

/// `plan.pickups` registrations, one at a time with idle gaps, against `serve` or against a
/// `web` + `worker` pair sharing one database.
async fn measure(
    target: &Target,
    plan: &Plan,
    sink: &SmtpSink,
    workers: u16,
    hash_cost: HashCost,
    split: bool,
) -> anyhow::Result<Summary> {
    let seen = Arc::new(Mutex::new(histogram()));
    let probe = Arc::new(PickupProbe(seen.clone()));
    let db = target.fresh("pickup").await?;
    let app = || harness::app(sink.smtp_url(), workers, hash_cost).database(db.url());
    let (apps, url) = if split {
        let web = app()
            .role(Role::Web)
            .consumer(probe.clone())
            .try_spawn()
            .await?;
        let worker = app().role(Role::Worker).consumer(probe).try_spawn().await?;
        let url = web.url("/register/async");
        (vec![worker, web], url)
    } else {
        let app = app().consumer(probe).try_spawn().await?;
        let url = app.url("/register/async");
        (vec![app], url)
    };
    let client = reqwest::Client::new();
    let what = if split {
        "pickup: separate worker process"
    } else {
        "pickup: serve (woken by enqueue)"
    };
    let progress = bar(plan.pickups, what);
    for i in 0..plan.pickups {
        let _ = client
            .post(&url)
            .json(&json!({"email": format!("pickup{}-{i}@bench.local", u8::from(split)), "password": "correct horse battery"}))
            .send()
            .await;
        // Idle between registrations, so each one finds the workers waiting.
        tokio::time::sleep(Duration::from_millis(150)).await;
        progress.inc(1);
    }
    progress.finish_and_clear();
    for app in apps {
        app.stop().await;
    }
    db.remove().await?;
    let h = seen
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    Ok(Summary::of(&h, Duration::from_secs(1)))
}
