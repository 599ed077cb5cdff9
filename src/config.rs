//! Settings: every option is a command-line flag with an environment variable of the same meaning.
//! Depends on nothing else of this crate: every other module may read it.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};

/// Options shared by every command that runs the application.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// HTTP listen address of the public site and API.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:3000", global = true)]
    pub bind: SocketAddr,

    /// The database: `sqlite://path/to/file.db` (embedded; created with its folder if missing)
    /// or `postgres://user[:password]@host[:port]/database` (many web and worker processes on
    /// many machines; the database is created if missing). Migrations run at start.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/signup-queue.db",
        global = true
    )]
    pub database_url: String,

    /// Where mail goes, e.g. smtp://127.0.0.1:1025 (MailHog/Mailpit) or smtps://user:pass@host.
    /// Unset: `serve` starts the embedded development inbox (a real SMTP server inside the process
    /// on a free loopback port, mails shown at /dev/mailbox). For development only: never use the
    /// embedded inbox in production.
    #[arg(long, env = "SMTP_URL", hide_env_values = true, global = true)]
    pub smtp_url: Option<String>,

    /// Embedded inbox only (SMTP_URL unset): how long its SMTP server takes to accept each mail,
    /// like a distant mail server (the chapter's 1-2 s), e.g. 1500ms, 0s. Changeable at run
    /// time on the page or with `POST /dev/mail-server`. Ignored with SMTP_URL.
    #[arg(long, env = "DEV_MAIL_LATENCY", default_value = "1500ms", value_parser = duration_between("0s", "30s"), global = true)]
    pub dev_mail_latency: Duration,

    /// Sender of every mail (welcome, coupon); its domain also names the Message-IDs.
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "Signup Queue <welcome@signup-queue.local>",
        global = true
    )]
    pub mail_from: String,

    /// Give up on one SMTP send (connect + transfer) after this long, e.g. 10s, 500ms.
    #[arg(long, env = "SMTP_TIMEOUT", default_value = "10s", value_parser = duration_between("100ms", "10m"), global = true)]
    pub smtp_timeout: Duration,

    /// Concurrent jobs per consumer queue in a worker process; all its mail sends together use at
    /// most this many SMTP sessions (see SMTP_MAX_SESSIONS).
    #[arg(long, env = "WORKERS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024), global = true)]
    pub workers: u16,

    /// Most SMTP sessions open at once. On PostgreSQL: across *all* worker processes on the
    /// database (each session holds an advisory-lock slot; a crashed worker's slots free
    /// themselves), and a worker process holds at most WORKERS of them. On SQLite: per worker
    /// process. Unset: WORKERS per process, on either database.
    #[arg(long, env = "SMTP_MAX_SESSIONS", value_parser = clap::value_parser!(u16).range(1..=1024), global = true)]
    pub smtp_max_sessions: Option<u16>,

    /// Attempts a consumer's job gets before it ends `failed` (crash re-deliveries count too).
    #[arg(long, env = "JOB_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub job_max_attempts: u32,

    /// First retry delay after a failed job; doubles per attempt, with jitter (granularity: 1 s).
    #[arg(long, env = "RETRY_BASE", default_value = "1s", value_parser = duration_between("1s", "1h"), global = true)]
    pub retry_base: Duration,

    /// Longest delay between two attempts.
    #[arg(long, env = "RETRY_CAP", default_value = "5m", value_parser = duration_between("1s", "7d"), global = true)]
    pub retry_cap: Duration,

    /// How often an idle worker looks for jobs written by other processes (jobs enqueued by this
    /// process wake it at once).
    #[arg(long, env = "POLL_INTERVAL", default_value = "100ms", value_parser = duration_between("10ms", "1h"), global = true)]
    pub poll_interval: Duration,

    /// Worker heartbeat. Jobs of a worker that missed two heartbeats (it crashed, even with
    /// kill -9) go back to the queue at a live worker's next heartbeat: within 2-3 heartbeats
    /// (8-12 s with the default).
    #[arg(long, env = "WORKER_HEARTBEAT", default_value = "4s", value_parser = duration_between("1s", "1h"), global = true)]
    pub worker_heartbeat: Duration,

    /// Finished (done) jobs older than this are deleted by the worker process, every 10 minutes,
    /// so the job table does not grow without end; e.g. 7d, 12h. `0s` keeps them forever.
    #[arg(long, env = "JOB_RETENTION", default_value = "7d", value_parser = humantime::parse_duration, global = true)]
    pub job_retention: Duration,

    /// On SIGINT/SIGTERM, wait at most this long for in-flight requests and jobs.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = duration_between("0s", "1h"), global = true)]
    pub shutdown_timeout: Duration,

    /// Connections the public listener serves at once; past that a client gets a short 503
    /// (`Retry-After`) and the connection is closed.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65_536), global = true)]
    pub max_connections: u32,

    /// Register requests per client IP per minute; 0 turns the limit off (load tests).
    #[arg(
        long,
        env = "RATE_LIMIT_PER_MINUTE",
        default_value_t = 60,
        global = true
    )]
    pub rate_limit_per_minute: u32,

    /// Operator listener: job dashboard (apalis-board) at its root, Prometheus /metrics.
    /// `auto`: 127.0.0.1:3001, or none (with a warning) when another process on this machine
    /// already has that port; an address: that one, or the process refuses to start; `off`
    /// disables it. A non-loopback address requires ADMIN_TOKEN.
    #[arg(long, env = "ADMIN_BIND", default_value = "auto", global = true)]
    pub admin_bind: AdminBind,

    /// Bearer token required on every admin route when set; mandatory when ADMIN_BIND is not a
    /// loopback address.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,

    /// Serve the embedded development inbox (`/dev/mailbox`: every user's mail and coupon) even
    /// when BIND is not a loopback address. Without it, `serve` refuses to start that way: set
    /// SMTP_URL to a real mail server, or bind to 127.0.0.1.
    #[arg(long, env = "ALLOW_PUBLIC_DEV_INBOX", global = true)]
    pub allow_public_dev_inbox: bool,

    /// Publish every `user_registered` to RabbitMQ (a fourth consumer, the relay), e.g.
    /// amqp://user:pass@127.0.0.1:5672/%2f. Set it on every process (`web` writes the relay's
    /// jobs, `worker` runs them). Unset: no relay.
    #[arg(long, env = "EVENTS_AMQP_URL", hide_env_values = true, global = true)]
    pub events_amqp_url: Option<String>,

    /// The durable topic exchange the relay publishes to (declared at connect), routing key
    /// `user_registered.v1`.
    #[arg(
        long,
        env = "EVENTS_AMQP_EXCHANGE",
        default_value = "signup.events",
        global = true
    )]
    pub events_amqp_exchange: String,

    /// Link to the inbox UI shown to users. Default: /dev/mailbox with the embedded inbox,
    /// else http://127.0.0.1:8025 (MailHog/Mailpit).
    #[arg(long, env = "MAILBOX_URL", global = true)]
    pub mailbox_url: Option<String>,

    /// Password hashing cost: `production` (argon2id, OWASP: 19 MiB, 2 passes) or `test`
    /// (argon2id with tiny parameters, for tests and benchmarks only).
    #[arg(long, env = "HASH_COST", value_enum, default_value_t = HashCost::Production, global = true)]
    pub hash_cost: HashCost,

    /// Log format on stderr: `text` or `json` (one JSON object per line). Filter with RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HashCost {
    Production,
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// Settings for tests and benchmarks: port 0, the given database, cheap hashing, no rate limit.
    pub fn for_tests(database_url: impl Into<String>, smtp_url: Option<String>) -> Self {
        Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.into(),
            smtp_url,
            dev_mail_latency: Duration::ZERO,
            mail_from: "Signup Queue <welcome@signup-queue.local>".into(),
            smtp_timeout: Duration::from_secs(5),
            workers: 4,
            smtp_max_sessions: None,
            job_max_attempts: 10,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(2),
            poll_interval: Duration::from_millis(100),
            worker_heartbeat: Duration::from_secs(4),
            shutdown_timeout: Duration::from_secs(10),
            job_retention: Duration::from_secs(7 * 86400),
            rate_limit_per_minute: 0,
            max_connections: 512,
            admin_bind: AdminBind::Off,
            admin_token: None,
            allow_public_dev_inbox: false,
            mailbox_url: None,
            events_amqp_url: None,
            events_amqp_exchange: "signup.events".into(),
            hash_cost: HashCost::Test,
            log_format: LogFormat::Text,
        }
    }
}

/// A duration flag that refuses values that cannot work (a zero poll interval would be a hot
/// loop, a zero heartbeat or SMTP timeout fails every job), naming the allowed range.
fn duration_between(
    min: &'static str,
    max: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |raw| {
        let parse = |s: &str| humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"));
        let value = parse(raw)?;
        let (low, high) = (parse(min)?, parse(max)?);
        if value < low || value > high {
            return Err(format!("must be between {min} and {max}, got {raw}"));
        }
        Ok(value)
    }
}

/// Where the admin listener binds, from `ADMIN_BIND` (`off` disables it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminBind {
    Off,
    At(SocketAddr),
    /// The default: [`AdminBind::AUTO_ADDR`] when it is free; when another process on this
    /// machine has it (a `web` and a `worker` side by side), this one runs without, and says so.
    Auto,
}

impl AdminBind {
    pub const AUTO_ADDR: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3001);
}

impl std::str::FromStr for AdminBind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(AdminBind::Off);
        }
        if s.eq_ignore_ascii_case("auto") {
            return Ok(AdminBind::Auto);
        }
        s.parse().map(AdminBind::At).map_err(|e| {
            format!("{s:?} is neither `off`, `auto` nor an address like 127.0.0.1:3001: {e}")
        })
    }
}

impl Settings {
    /// Refuses a public admin listener without a token: the dashboard can enqueue and retry jobs.
    pub fn check_admin_exposure(&self) -> anyhow::Result<()> {
        if let AdminBind::At(addr) = self.admin_bind
            && !addr.ip().is_loopback()
            && self.admin_token.as_deref().is_none_or(str::is_empty)
        {
            anyhow::bail!(
                "ADMIN_BIND={addr} is not a loopback address: set ADMIN_TOKEN (the dashboard can enqueue and retry jobs), \
                 bind it to 127.0.0.1, or turn it off with ADMIN_BIND=off"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_that_cannot_work_are_refused_with_the_range() {
        let poll = duration_between("10ms", "1h");
        let error = poll("0s").expect_err("a zero poll interval is a hot loop");
        assert!(error.contains("between 10ms and 1h"), "{error}");
        assert_eq!(poll("250ms"), Ok(Duration::from_millis(250)));
        assert!(poll("2h").is_err());
        assert!(poll("soon").is_err());
    }
}
