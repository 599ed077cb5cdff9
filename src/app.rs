//! Builds the application from settings: database, mailer, optional development inbox, HTTP
//! listener and worker pool. `main` and the tests use the same builder.

use std::{future::Future, net::SocketAddr, sync::Arc};

use crate::db::Db;
use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{AdminBind, Settings},
    consumers::{self, Consumer},
    db,
    dev_inbox::DevInbox,
    mail::{MailServerProbe, Mailer},
    queue::{self, PoolSettings, RetrySchedule, Wakeup},
    signup::Signup,
    web::{
        self, AppState,
        feed::{QueueFeed, StreamLimits},
    },
};

/// Which halves of the application this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP server and workers in one process (`serve`).
    All,
    /// HTTP server only (`web`).
    Web,
    /// Workers only (`worker`).
    Worker,
}

impl Role {
    fn serves_http(self) -> bool {
        matches!(self, Role::All | Role::Web)
    }
    fn runs_workers(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

pub struct Application {
    settings: Settings,
    role: Role,
    pool: Db,
    listener: Option<TcpListener>,
    admin_listener: Option<TcpListener>,
    state: AppState,
    /// The consumers of `user_registered` this process's workers run.
    consumers: Vec<Arc<dyn Consumer>>,
    wakeup: Wakeup,
    token: CancellationToken,
}

impl Application {
    pub async fn build(settings: Settings, role: Role) -> anyhow::Result<Application> {
        Application::build_with_consumers(settings, role, Vec::new()).await
    }

    /// Like [`Application::build`], with consumers of `user_registered` beyond the built-in ones
    /// (a test adds one this way; so could an embedding application).
    pub async fn build_with_consumers(
        settings: Settings,
        role: Role,
        extra_consumers: Vec<Arc<dyn Consumer>>,
    ) -> anyhow::Result<Application> {
        settings.check_admin_exposure()?;
        let pool = db::connect_and_migrate(&settings.database_url).await?;
        if settings.smtp_url.is_none()
            && role == Role::All
            && !settings.bind.ip().is_loopback()
            && !settings.allow_public_dev_inbox
        {
            anyhow::bail!(
                "BIND={} is not a loopback address and SMTP_URL is not set: the embedded development \
                 inbox would show every user's mail at /dev/mailbox to anyone who can reach it. Set \
                 SMTP_URL to a real mail server, bind to 127.0.0.1, or accept it with ALLOW_PUBLIC_DEV_INBOX=true",
                settings.bind
            );
        }
        let inbox = match (&settings.smtp_url, role) {
            (Some(_), _) => None,
            (None, Role::All) => Some(
                DevInbox::start(settings.dev_mail_latency)
                    .await
                    .context("cannot start the development inbox")?,
            ),
            (None, _) => anyhow::bail!(
                "SMTP_URL is required for `web` and `worker` (the embedded development inbox \
                 belongs to the all-in-one `serve`), e.g. SMTP_URL=smtp://127.0.0.1:1025"
            ),
        };
        let smtp_url = match (&settings.smtp_url, &inbox) {
            (Some(url), _) => url.clone(),
            (None, Some(inbox)) => inbox.smtp_url(),
            (None, None) => unreachable!("checked above"),
        };
        let mailer = Mailer::new(
            &smtp_url,
            &settings.mail_from,
            settings.smtp_timeout,
            u32::from(settings.smtp_max_sessions.unwrap_or(settings.workers)),
        )?;
        let mailbox_url = settings.mailbox_url.clone().unwrap_or_else(|| {
            if inbox.is_some() {
                "/dev/mailbox".into()
            } else {
                "http://127.0.0.1:8025".into()
            }
        });
        let listener = if role.serves_http() {
            Some(
                TcpListener::bind(settings.bind)
                    .await
                    .with_context(|| format!("cannot listen on {} (BIND)", settings.bind))?,
            )
        } else {
            None
        };
        let admin_listener = match settings.admin_bind {
            AdminBind::At(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} (ADMIN_BIND; `off` disables it)")
            })?),
            AdminBind::Auto => match TcpListener::bind(AdminBind::AUTO_ADDR).await {
                Ok(listener) => Some(listener),
                Err(e) => {
                    tracing::warn!(
                        addr = %AdminBind::AUTO_ADDR,
                        error = %e,
                        "no operator listener (dashboard, /metrics) in this process: its default \
                         address is taken, e.g. by another signup-queue process on this machine; \
                         give each process its own ADMIN_BIND to have one"
                    );
                    None
                }
            },
            AdminBind::Off => None,
        };
        let token = CancellationToken::new();
        // All consumers of this process together open at most WORKERS SMTP sessions; with
        // SMTP_MAX_SESSIONS on PostgreSQL, all worker processes together at most that many.
        let workers = usize::from(settings.workers);
        let worker_mailer = match (&pool, settings.smtp_max_sessions) {
            (db::Db::Postgres(pg), Some(slots)) => {
                mailer.limited_across_processes(pg, usize::from(slots), workers)
            }
            (_, Some(cap)) => mailer.limited(usize::from(cap)),
            (_, None) => mailer.limited(workers),
        };
        let mut consumers = consumers::built_in(&consumers::Deps {
            pool: pool.clone(),
            mailer: worker_mailer,
        });
        // The synchronous registration runs the same consumers inside its request, with the
        // unlimited mailer (one request waits for its own mails, never for the workers').
        let mut inline = consumers::built_in(&consumers::Deps {
            pool: pool.clone(),
            mailer: mailer.clone(),
        });
        if let Some(url) = &settings.events_amqp_url {
            let relay = consumers::amqp_relay::AmqpRelay::new(url, &settings.events_amqp_exchange)?;
            tracing::info!(
                broker = relay.broker(),
                exchange = %settings.events_amqp_exchange,
                "user_registered is relayed to RabbitMQ (EVENTS_AMQP_URL)"
            );
            let relay: Arc<dyn Consumer> = Arc::new(relay);
            consumers.push(Arc::clone(&relay));
            inline.push(relay);
        }
        consumers.extend(extra_consumers.iter().cloned());
        inline.extend(extra_consumers);
        // With the embedded inbox, the page can switch consumers to fail (development only).
        let faults = inbox
            .as_ref()
            .map(|_| consumers::fault::FaultSwitch::default());
        if let Some(faults) = &faults {
            consumers = consumers.into_iter().map(|c| faults.wrap(c)).collect();
            inline = inline.into_iter().map(|c| faults.wrap(c)).collect();
        }
        let wakeup = Wakeup::default();
        let signup = Signup::new(
            pool.clone(),
            inline,
            consumers.iter().map(|c| c.name()).collect(),
            wakeup.clone(),
            settings.hash_cost,
            settings.job_max_attempts,
        );
        let mail_probe = MailServerProbe::new(mailer);
        let state = AppState {
            signup,
            pool: pool.clone(),
            db_file: db::DbFile::of(&settings.database_url),
            queue_feed: QueueFeed::new(pool.clone(), mail_probe.clone(), token.clone()),
            mail_probe,
            streams: StreamLimits::default(),
            rate_limit_per_minute: settings.rate_limit_per_minute,
            inbox,
            faults,
            mailbox_url,
            shutdown: token.clone(),
        };
        Ok(Application {
            settings,
            role,
            pool,
            listener,
            admin_listener,
            state,
            consumers,
            wakeup,
            token,
        })
    }

    /// The HTTP address actually bound (port 0 resolved), if this process serves HTTP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The admin listener's address (port 0 resolved), unless `ADMIN_BIND=off`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn pool(&self) -> &Db {
        &self.pool
    }

    pub fn inbox(&self) -> Option<&DevInbox> {
        self.state.inbox.as_ref()
    }

    /// Cancel it to shut down gracefully (what SIGINT/SIGTERM do in `main`).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Runs until `signal` resolves or the shutdown token is cancelled, then stops taking
    /// requests, lets in-flight requests and jobs finish (bounded by `SHUTDOWN_TIMEOUT`), and
    /// returns.
    pub async fn run_until_stopped(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let token = self.token.clone();
        tokio::spawn({
            let token = token.clone();
            async move {
                tokio::select! {
                    _ = signal => token.cancel(),
                    _ = token.cancelled() => {}
                }
            }
        });
        let grace = self.settings.shutdown_timeout;

        let http = match self.listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                tracing::info!("listening on http://{addr}");
                if let Some(inbox) = &self.state.inbox {
                    tracing::info!(
                        "development inbox: http://{addr}/dev/mailbox (SMTP on {})",
                        inbox.addr()
                    );
                }
                let router = web::router(self.state.clone());
                Some(tokio::spawn(web::server::serve(
                    listener,
                    router,
                    self.settings.max_connections as usize,
                    token.clone(),
                )))
            }
            None => None,
        };

        let admin = match self.admin_listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                tracing::info!(
                    "admin: job dashboard http://{addr}/ and metrics http://{addr}/metrics"
                );
                let queues: Vec<&'static str> = self.consumers.iter().map(|c| c.name()).collect();
                let router = crate::ops::admin::router(
                    self.pool.clone(),
                    self.settings.admin_token.clone(),
                    &queues,
                );
                // The operator listener gets the same timeouts; a few connections are plenty.
                Some(tokio::spawn(web::server::serve(
                    listener,
                    router,
                    64,
                    token.clone(),
                )))
            }
            None => None,
        };

        // Workers stop after the HTTP server has finished its requests: a request in flight
        // still gets its job written while the workers are up.
        let workers_token = CancellationToken::new();
        let workers = if self.role.runs_workers() {
            let pool_settings = PoolSettings {
                concurrency: usize::from(self.settings.workers),
                poll_interval: self.settings.poll_interval,
                heartbeat: self.settings.worker_heartbeat,
                retry: RetrySchedule {
                    base: self.settings.retry_base,
                    cap: self.settings.retry_cap,
                },
                max_attempts: self.settings.job_max_attempts,
            };
            let workers =
                queue::run_workers(&self.consumers, &self.pool, &self.wakeup, &pool_settings);
            tokio::spawn(queue::wakeup::watch_other_processes(
                self.pool.clone(),
                self.wakeup.clone(),
                workers_token.clone(),
            ));
            tracing::info!(
                database = self.pool.backend().as_str(),
                concurrency = self.settings.workers,
                smtp_max_sessions = ?self.settings.smtp_max_sessions,
                consumers = ?self.consumers.iter().map(|c| c.name()).collect::<Vec<_>>(),
                "worker pool started"
            );
            if !self.settings.job_retention.is_zero() {
                tokio::spawn(queue::retention::purge_finished_jobs(
                    self.pool.clone(),
                    self.settings.job_retention,
                    workers_token.clone(),
                ));
            }
            Some(tokio::spawn(
                workers.run_until(workers_token.clone(), grace),
            ))
        } else {
            None
        };

        token.cancelled().await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: no new requests, finishing work in flight"
        );
        let deadline = tokio::time::Instant::now() + grace + std::time::Duration::from_secs(1);
        if let Some(http) = http {
            match tokio::time::timeout_at(deadline, http).await {
                Ok(Ok(())) => tracing::info!("HTTP server stopped"),
                Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
                Err(_) => {
                    tracing::warn!("HTTP requests still open after the grace period; dropped")
                }
            }
        }
        if let Some(admin) = admin
            && let Ok(Err(e)) = tokio::time::timeout_at(deadline, admin).await
        {
            tracing::error!(error = %e, "admin listener task failed");
        }
        workers_token.cancel();
        if let Some(workers) = workers {
            match tokio::time::timeout_at(deadline, workers).await {
                Ok(Ok(Ok(()))) => tracing::info!("workers stopped"),
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "workers stopped with an error"),
                Ok(Err(e)) => tracing::error!(error = %e, "worker task failed"),
                Err(_) => tracing::warn!(
                    "jobs still running after the grace period; they stay in the queue and are re-delivered"
                ),
            }
        }
        if let Some(inbox) = &self.state.inbox {
            inbox.stop();
        }
        self.pool.close().await;
        Ok(())
    }
}
