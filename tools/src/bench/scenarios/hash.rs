//! Password hashing time at the run's cost: printed beside the latencies, since with
//! `HASH_COST=production` it is most of a registration.

use std::time::Instant;

use signup_queue::{
    config::HashCost,
    users::{Password, hash_password},
};

use crate::bench::harness::{histogram, record};

/// Median of 20 hashes, in milliseconds.
pub async fn p50_ms(cost: HashCost) -> anyhow::Result<f64> {
    let password =
        Password::parse("correct horse battery").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut h = histogram();
    for _ in 0..20 {
        let t = Instant::now();
        hash_password(password.clone(), cost).await?;
        record(&mut h, t.elapsed());
    }
    Ok(h.value_at_quantile(0.5) as f64 / 1000.0)
}
