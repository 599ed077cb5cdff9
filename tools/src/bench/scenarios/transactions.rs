//! Raw database transactions, no HTTP and no hashing, one after another: a user row alone, then
//! a user row with every consumer's job through the product's `Signup::insert_and_publish`. The
//! difference is what the queue costs a registration; on SQLite the rate is the ceiling of its
//! one writer (on PostgreSQL, of one connection's round trips).

use std::time::Instant;

use serde::Serialize;

use indicatif::ProgressBar;
use signup_queue::db::Db;
use signup_queue::{
    consumers::{self, Deps},
    signup::Signup,
    users::{Email, insert_user},
};

use crate::bench::{
    Plan,
    harness::{Summary, bar, histogram, record},
    scenarios::{signup_on, unused_mailer},
    target::Target,
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Transactions {
    pub user_only: Summary,
    pub user_and_jobs: Summary,
    /// p50 of `user_and_jobs` minus p50 of `user_only`.
    pub enqueue_overhead_p50_ms: f64,
    /// Jobs written with each user: one per built-in consumer.
    pub consumers: usize,
}

pub async fn run(target: &Target, plan: &Plan) -> anyhow::Result<Transactions> {
    let db = target.fresh("transactions").await?;
    let pool = signup_queue::db::connect_and_migrate(db.url()).await?;
    let signup = signup_on(&pool, unused_mailer()?);
    let progress = bar(
        2 * plan.transactions,
        &format!("{}: user with and without jobs", target.backend().as_str()),
    );
    let user_only = timed(&pool, &signup, false, plan.transactions, &progress).await?;
    let user_and_jobs = timed(&pool, &signup, true, plan.transactions, &progress).await?;
    progress.finish_and_clear();
    let consumers = consumers::built_in(&Deps {
        pool: pool.clone(),
        mailer: unused_mailer()?,
    })
    .len();
    pool.close().await;
    db.remove().await?;
    Ok(Transactions {
        enqueue_overhead_p50_ms: user_and_jobs.p50_ms - user_only.p50_ms,
        user_only,
        user_and_jobs,
        consumers,
    })
}

/// `n` committed transactions, one at a time, each with a user row and maybe its jobs.
async fn timed(
    pool: &Db,
    signup: &Signup,
    with_jobs: bool,
    n: usize,
    progress: &ProgressBar,
) -> anyhow::Result<Summary> {
    let mut h = histogram();
    let started = Instant::now();
    for i in 0..n {
        let email = Email::parse(&format!("tx{}-{i}@bench.local", u8::from(with_jobs)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let t = Instant::now();
        let mut tx = pool.begin().await?;
        if with_jobs {
            signup
                .insert_and_publish(tx.conn(), &email, None, "$argon2id$bench", None)
                .await?;
        } else {
            insert_user(tx.conn(), &email, None, "$argon2id$bench").await?;
        }
        tx.commit().await?;
        record(&mut h, t.elapsed());
        progress.inc(1);
    }
    Ok(Summary::of(&h, started.elapsed()))
}
