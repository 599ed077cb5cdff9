//! The Redis exercise against a real redis-server: the real `signup-queue-redis` binary as
//! producer and consumers.
//! Needs `REDIS_URL` (CI starts a server and sets it); skipped with one line when unset.

use std::{
    process::{Output, Stdio},
    time::Duration,
};

use redis::AsyncCommands;

fn redis_url() -> Option<String> {
    signup_queue_tools::testkit::service_or_skip(
        "REDIS_URL",
        "(e.g. redis://127.0.0.1:6379) to run the Redis tests",
    )
}

fn unique(name: &str) -> String {
    format!("test:{name}:{}", ulid::Ulid::generate())
}

fn binary(url: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_signup-queue-redis"));
    cmd.args(args)
        .env_clear()
        .env("REDIS_URL", url)
        .env("NO_COLOR", "1");
    cmd
}

fn run(url: &str, args: &[&str]) -> Output {
    binary(url, args).output().expect("binary runs")
}

fn lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A consumer the test will kill with SIGKILL (kill_on_drop as a safety net).
fn spawn_killable(url: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_signup-queue-redis"))
        .args(args)
        .env_clear()
        .env("REDIS_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("consumer")
}

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

#[tokio::test]
async fn lpush_then_brpop_is_first_in_first_out_and_stdin_works() {
    let Some(url) = redis_url() else { return };
    let queue = unique("fifo");

    assert!(
        run(&url, &["produce", "--queue", &queue, "one", "two"])
            .status
            .success()
    );
    let mut stdin_producer = binary(&url, &["produce", "--queue", &queue])
        .stdin(Stdio::piped())
        .spawn()
        .expect("producer");
    {
        use std::io::Write;
        let mut stdin = stdin_producer.stdin.take().expect("stdin");
        writeln!(stdin, "three\nfour").expect("write");
    }
    assert!(stdin_producer.wait().expect("wait").success());
    let consumed = run(
        &url,
        &[
            "consume",
            "--queue",
            &queue,
            "--max",
            "4",
            "--timeout",
            "2s",
        ],
    );

    assert!(consumed.status.success());
    assert_eq!(lines(&consumed), vec!["one", "two", "three", "four"]);
    let left: usize = redis(&url).await.llen(&queue).await.expect("llen");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_reliable_consumer_killed_mid_message_handles_it_again_after_restart() {
    let Some(url) = redis_url() else { return };
    let queue = unique("reliable");
    let processing = format!("{queue}:processing:worker-a");
    assert!(
        run(&url, &["produce", "--queue", &queue, "important"])
            .status
            .success()
    );

    let mut slow = spawn_killable(
        &url,
        &[
            "consume",
            "--reliable",
            "--queue",
            &queue,
            "--consumer",
            "worker-a",
            "--handle-delay",
            "30s",
        ],
    );
    let mut conn = redis(&url).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let held: usize = conn.llen(&processing).await.expect("llen");
        if held == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer never took the message"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    slow.kill().await.expect("kill -9");
    let queued: usize = conn.llen(&queue).await.expect("llen");
    assert_eq!(
        queued, 0,
        "the message left the queue: a plain BRPOP consumer would have lost it"
    );

    let restarted = run(
        &url,
        &[
            "consume",
            "--reliable",
            "--queue",
            &queue,
            "--consumer",
            "worker-a",
            "--max",
            "1",
            "--timeout",
            "2s",
        ],
    );

    assert!(restarted.status.success());
    assert_eq!(
        lines(&restarted),
        vec!["important"],
        "handled again, not lost"
    );
    assert!(String::from_utf8_lossy(&restarted.stderr).contains("recovered 1 unfinished message"));
    let held: usize = conn.llen(&processing).await.expect("llen");
    assert_eq!(held, 0, "removed once handled");
}

#[tokio::test]
async fn stream_consumers_share_the_work_and_claim_what_a_dead_one_held() {
    let Some(url) = redis_url() else { return };
    let stream = unique("stream");
    let messages: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
    let mut args = vec!["produce", "--stream", "--queue", &stream];
    args.extend(messages.iter().map(String::as_str));
    assert!(run(&url, &args).status.success());

    let consumer = |name: &str| {
        binary(
            &url,
            &[
                "consume",
                "--stream",
                "--queue",
                &stream,
                "--group",
                "g",
                "--consumer",
                name,
                "--until-empty",
                "--timeout",
                "1s",
                "--handle-delay",
                "20ms",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("consumer")
    };
    let (a, b) = (consumer("a"), consumer("b"));
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    let (from_a, from_b) = (lines(&a), lines(&b));
    let mut all: Vec<String> = from_a.iter().chain(from_b.iter()).cloned().collect();
    all.sort();
    let mut expected = messages.clone();
    expected.sort();
    assert_eq!(all, expected, "every entry handled exactly once");
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both consumers got work: {from_a:?} / {from_b:?}"
    );

    // A consumer dies holding an entry; another claims it once it has been idle long enough.
    assert!(
        run(&url, &["produce", "--stream", "--queue", &stream, "stuck"])
            .status
            .success()
    );
    let mut dying = spawn_killable(
        &url,
        &[
            "consume",
            "--stream",
            "--queue",
            &stream,
            "--group",
            "g",
            "--consumer",
            "doomed",
            "--handle-delay",
            "30s",
        ],
    );
    let mut conn = redis(&url).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pending: redis::streams::StreamPendingReply =
            conn.xpending(&stream, "g").await.expect("xpending");
        if pending.count() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the doomed consumer never read the entry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dying.kill().await.expect("kill -9");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let rescuer = run(
        &url,
        &[
            "consume",
            "--stream",
            "--queue",
            &stream,
            "--group",
            "g",
            "--consumer",
            "rescuer",
            "--claim-idle",
            "200ms",
            "--until-empty",
            "--timeout",
            "1s",
        ],
    );

    assert_eq!(lines(&rescuer), vec!["stuck"]);
    assert!(String::from_utf8_lossy(&rescuer.stderr).contains("claimed 1"));
    let pending: redis::streams::StreamPendingReply =
        conn.xpending(&stream, "g").await.expect("xpending");
    assert_eq!(pending.count(), 0, "acknowledged");
}
