//! The product binary hands `bench` and `redis` over to the tools built beside it, git-style:
//! `signup-queue redis ARGS` runs `signup-queue-redis ARGS`. The product binary belongs to the
//! other package, so it is looked for beside this package's binaries (a workspace build puts it
//! there); skipped with one line when it is not there.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn product_binary() -> Option<PathBuf> {
    signup_queue_tools::testkit::product_beside(Path::new(env!("CARGO_BIN_EXE_signup-queue-bench")))
}

/// Runs `program ARGS` with a known environment. `WORKERS` is set because the product passes its
/// own `--workers` on to the bench as `WORKERS` (the bench's help shows the value it sees).
fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("WORKERS", "7")
        .output()
        .expect("binary runs")
}

#[test]
fn the_product_binary_forwards_bench_and_redis_to_the_tools_beside_it() {
    let Some(product) = product_binary() else {
        return;
    };
    for (command, tool) in [
        ("bench", env!("CARGO_BIN_EXE_signup-queue-bench")),
        ("redis", env!("CARGO_BIN_EXE_signup-queue-redis")),
    ] {
        let forwarded = run(&product, &[command, "--help"]);
        let direct = run(Path::new(tool), &["--help"]);

        assert!(
            forwarded.status.success(),
            "signup-queue {command} --help: {}",
            String::from_utf8_lossy(&forwarded.stderr)
        );
        assert!(direct.status.success());
        assert!(!direct.stdout.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&forwarded.stdout),
            String::from_utf8_lossy(&direct.stdout),
            "`signup-queue {command} --help` is the tool's own help"
        );
    }
    let bench_help =
        String::from_utf8_lossy(&run(&product, &["bench", "--help"]).stdout).into_owned();
    assert!(
        bench_help.contains("[env: WORKERS=7]"),
        "the bench sees the product's WORKERS: {bench_help}"
    );
}
