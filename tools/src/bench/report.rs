//! The typed result of a whole run, its `bench-results.json` and the table on stdout (the
//! markdown table of two runs side by side, `--both`, is `side_by_side`). The JSON's key names and nesting are a
//! contract (BENCHMARKS.md and the docs read it; see `docs/bench/bench-results.json`): a scenario
//! left out is `null`, the ratios are always there; keys are added, never renamed.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use signup_queue::config::HashCost;

use super::{
    harness::{Summary, ratio},
    scenarios::{
        burst::Burst,
        cross_pickup::CrossPickup,
        drain::Drain,
        latency::{LatencyRow, Mode, PacedRow},
        pickup::Pickup,
        pipeline::BacklogPipeline,
        raw_http::RawHttp,
        raw_smtp::RawSmtp,
        scale_out::ScaleOut,
        transactions::Transactions,
    },
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    pub machine: Machine,
    /// The database every scenario ran on: `sqlite` or `postgres`.
    pub backend: String,
    /// What [`cost_name`] says, so a reader knows which hashing the latencies include.
    pub hash_cost: String,
    pub hash_p50_ms: f64,
    pub workers: u16,
    pub concurrency: usize,
    pub quick: bool,
    pub latency: Option<Vec<LatencyRow>>,
    pub paced: Option<Vec<PacedRow>>,
    pub transactions: Option<Transactions>,
    pub pickup: Option<Pickup>,
    /// The real binary's `web` and `worker` processes (`null` also when the binary was not
    /// beside the bench's).
    pub cross_process_pickup: Option<CrossPickup>,
    pub burst: Option<Burst>,
    /// The burst at SMTP +0 ms: mails per second end to end, registrations included.
    pub pipeline: Option<Burst>,
    pub backlog_pipeline: Option<BacklogPipeline>,
    pub slow_smtp_pipeline: Option<BacklogPipeline>,
    pub drain: Option<Drain>,
    /// 1, 2, 4 worker processes and 1, 2 web processes of the real binary.
    pub scale_out: Option<ScaleOut>,
    pub limits: Limits,
    pub ratios: Ratios,
    pub seconds: f64,
}

/// What this machine allows without the queue; each part is `null` when its scenario did not
/// run, but the object itself is always there.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Limits {
    pub raw_lettre: Option<RawSmtp>,
    pub raw_lettre_slow_smtp: Option<RawSmtp>,
    pub trivial_axum_route: Option<RawHttp>,
    /// The transactions scenario's user + jobs row again, beside the other limits. Named when
    /// SQLite was the only backend: on PostgreSQL it is PostgreSQL's (see `backend`).
    pub raw_sqlite_user_and_jobs_tx: Option<Summary>,
}

/// The queue's figures over the matching limits; 0 when either side did not run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ratios {
    pub pipeline_mails_per_s_vs_raw_lettre: f64,
    pub end_to_end_mails_per_s_vs_raw_lettre: f64,
    pub slow_smtp_pipeline_vs_raw_lettre: f64,
    /// Against the raw transaction of the run's backend (the name is from the SQLite-only days).
    pub async_register_per_s_vs_raw_sqlite_tx: f64,
    pub async_register_per_s_vs_trivial_axum_route: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu: String,
    pub memory: String,
}

impl Ratios {
    pub fn of(r: &Results) -> Ratios {
        let raw_mails_per_s = r.limits.raw_lettre.as_ref().map(|l| l.mails_per_s);
        let mails_per_s = |b: &Option<Burst>| b.as_ref().map(|b| b.mails_per_s);
        let backlog_mails_per_s = |p: &Option<BacklogPipeline>| p.as_ref().map(|p| p.mails_per_s);
        let async_rate = r
            .latency
            .iter()
            .flatten()
            .find(|row| {
                row.mode == Mode::Async
                    && row.smtp_latency_ms == 0
                    && row.concurrency == r.concurrency
            })
            .map(|row| row.summary.throughput_per_s)
            .unwrap_or_default();
        let f = Option::unwrap_or_default;
        Ratios {
            pipeline_mails_per_s_vs_raw_lettre: ratio(
                f(backlog_mails_per_s(&r.backlog_pipeline)),
                f(raw_mails_per_s),
            ),
            end_to_end_mails_per_s_vs_raw_lettre: ratio(
                f(mails_per_s(&r.pipeline)),
                f(raw_mails_per_s),
            ),
            slow_smtp_pipeline_vs_raw_lettre: ratio(
                f(backlog_mails_per_s(&r.slow_smtp_pipeline)),
                f(r.limits
                    .raw_lettre_slow_smtp
                    .as_ref()
                    .map(|l| l.mails_per_s)),
            ),
            async_register_per_s_vs_raw_sqlite_tx: ratio(
                async_rate,
                f(r.transactions
                    .as_ref()
                    .map(|t| t.user_and_jobs.throughput_per_s)),
            ),
            async_register_per_s_vs_trivial_axum_route: ratio(
                async_rate,
                f(r.limits
                    .trivial_axum_route
                    .as_ref()
                    .map(|t| t.summary.throughput_per_s)),
            ),
        }
    }
}

pub fn cost_name(hash_cost: HashCost) -> &'static str {
    match hash_cost {
        HashCost::Production => "production (argon2id m=19 MiB, t=2, p=1)",
        HashCost::Test => "test (argon2id, tiny parameters)",
    }
}

/// CPU model and memory from /proc, empty where it cannot be read (not Linux).
pub fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_owned())
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_owned))
        .unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu,
        memory,
    }
}

/// Writes `results` as pretty JSON. Through a `serde_json::Value` on purpose: its map sorts the
/// keys, as the file has always been written, so diffs between runs stay readable.
pub fn write(results: &Results, path: &Path) -> anyhow::Result<()> {
    let value = serde_json::to_value(results)?;
    std::fs::write(path, serde_json::to_string_pretty(&value)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::bench::{
        cpu::{CpuUse, ProcessCpu},
        scenarios::scale_out::{ScaledPipeline, ScaledRegister},
    };

    /// Every key path in `v`, array elements as `[]` whatever their index.
    fn key_paths(v: &Value, at: String, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    let path = format!("{at}.{key}");
                    out.insert(path.clone());
                    key_paths(value, path, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    key_paths(item, format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }

    fn paths_of(v: &Value) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        key_paths(v, String::new(), &mut out);
        out
    }

    #[test]
    fn a_full_run_has_the_documented_key_paths() {
        let mut results = Results {
            latency: Some(vec![LatencyRow::default()]),
            paced: Some(vec![PacedRow::default()]),
            transactions: Some(Transactions::default()),
            pickup: Some(Pickup::default()),
            cross_process_pickup: Some(CrossPickup::default()),
            burst: Some(Burst::default()),
            pipeline: Some(Burst::default()),
            backlog_pipeline: Some(BacklogPipeline::default()),
            slow_smtp_pipeline: Some(BacklogPipeline::default()),
            drain: Some(Drain::default()),
            scale_out: Some(ScaleOut {
                pipeline: vec![ScaledPipeline {
                    cpu: CpuUse {
                        processes: vec![ProcessCpu::default()],
                        db_server_ms: Some(0.0),
                        ..CpuUse::default()
                    },
                    ..ScaledPipeline::default()
                }],
                register: vec![ScaledRegister {
                    cpu: CpuUse {
                        processes: vec![ProcessCpu::default()],
                        ..CpuUse::default()
                    },
                    ..ScaledRegister::default()
                }],
            }),
            limits: Limits {
                raw_lettre: Some(RawSmtp::default()),
                raw_lettre_slow_smtp: Some(RawSmtp::default()),
                trivial_axum_route: Some(RawHttp::default()),
                raw_sqlite_user_and_jobs_tx: Some(Summary::default()),
            },
            ..Results::default()
        };
        results.ratios = Ratios::of(&results);
        let ours = serde_json::to_value(&results).expect("serializes");
        let documented: Value =
            serde_json::from_str(include_str!("../../../docs/bench/bench-results.json"))
                .expect("docs/bench/bench-results.json is JSON");
        let (ours, documented) = (paths_of(&ours), paths_of(&documented));
        assert_eq!(
            ours.difference(&documented).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "keys the documented run does not have"
        );
        assert_eq!(
            documented.difference(&ours).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "documented keys we no longer write"
        );
    }

    #[test]
    fn left_out_scenarios_are_null_and_limits_and_ratios_stay() {
        let value = serde_json::to_value(Results::default()).expect("serializes");
        for key in [
            "latency",
            "paced",
            "transactions",
            "pickup",
            "burst",
            "pipeline",
        ] {
            assert!(value[key].is_null(), "{key}");
        }
        assert!(value["limits"].is_object() && value["limits"]["raw_lettre"].is_null());
        assert_eq!(value["ratios"]["pipeline_mails_per_s_vs_raw_lettre"], 0.0);
    }
}
