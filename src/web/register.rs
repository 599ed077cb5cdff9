//! `POST /register`, `/register/async`, `/register/sync`: extract a valid registration, call the
//! use case (`signup`) queued or inline, and answer in the request's format with the server's
//! time in `Server-Timing`: the total (`app`) and each phase (`hash`, `db`, then on the
//! synchronous path one entry per consumer, named by its queue: `welcome_email`, `audit_log`,
//! `signup_coupon`, `amqp_relay`).

use std::time::Instant;

use askama::Template;
use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::post,
};
use serde::Serialize;

use crate::{
    signup::{self, Phases, SignupError},
    web::{
        AppState,
        error::AppError,
        extract::{Format, Registration},
    },
};

/// The register routes, limited to `rate_limit_per_minute` requests per client IP (0: no limit).
pub fn router(rate_limit_per_minute: u32) -> Router<AppState> {
    let routes = Router::new()
        .route("/register", post(register_async))
        .route("/register/async", post(register_async))
        .route("/register/sync", post(register_sync));
    match rate_limit(rate_limit_per_minute) {
        Some(layer) => routes.route_layer(layer),
        None => routes,
    }
}

type RateLimitLayer = tower_governor::GovernorLayer<
    tower_governor::key_extractor::PeerIpKeyExtractor,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
    Body,
>;

/// A token bucket per client IP: `per_minute` requests as a burst, refilled evenly over a minute.
fn rate_limit(per_minute: u32) -> Option<RateLimitLayer> {
    if per_minute == 0 {
        return None;
    }
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .period(
            std::time::Duration::from_millis(60_000 / u64::from(per_minute))
                .max(std::time::Duration::from_millis(1)),
        )
        .burst_size(per_minute)
        .finish()?;
    let limiter = config.limiter().clone();
    // Forget idle clients so the table of addresses stays small.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
        }
    });
    Some(
        tower_governor::GovernorLayer::new(config).error_handler(|error| match error {
            tower_governor::GovernorError::TooManyRequests { wait_time, .. } => {
                AppError::RateLimited(wait_time.max(1)).into_response()
            }
            other => AppError::Internal(anyhow::anyhow!("rate limiter: {other}")).into_response(),
        }),
    )
}

/// The JSON answer to a registration.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub user_id: i64,
    /// The welcome mail's job (async); null for sync.
    pub job_id: Option<String>,
    /// Every job of the registration, by consumer queue (async; empty for sync, whose consumers
    /// ran inside the request).
    pub jobs: std::collections::BTreeMap<String, String>,
    pub mode: &'static str,
    pub elapsed_ms: f64,
}

async fn register_async(State(state): State<AppState>, registration: Registration) -> Response {
    let mut phases = Phases::new();
    let result = state
        .signup
        .register_queued(
            registration.user,
            registration.request_id.as_deref(),
            &mut phases,
        )
        .await;
    reply(
        &state,
        registration.format,
        registration.started,
        "async",
        result,
        &phases,
    )
}

async fn register_sync(State(state): State<AppState>, registration: Registration) -> Response {
    let mut phases = Phases::new();
    let result = state
        .signup
        .register_inline(registration.user, &mut phases)
        .await;
    reply(
        &state,
        registration.format,
        registration.started,
        "sync",
        result,
        &phases,
    )
}

fn reply(
    state: &AppState,
    format: Format,
    started: Instant,
    mode: &'static str,
    result: Result<signup::Registered, SignupError>,
    phases: &Phases,
) -> Response {
    let result = result
        .map(|r| Registered {
            user_id: r.user_id,
            job_id: r.job_id,
            jobs: r
                .jobs
                .into_iter()
                .map(|(queue, id)| (queue.to_owned(), id))
                .collect(),
            mode,
            elapsed_ms: 0.0,
        })
        .map_err(AppError::from);
    let mut response = answer(format, state, started, result);
    add_phases(&mut response, phases);
    response
}

/// Puts the phases before the `app` total in `Server-Timing`.
fn add_phases(response: &mut Response, phases: &Phases) {
    let mut entries: Vec<String> = phases
        .iter()
        .map(|(name, took)| format!("{name};dur={}", ms(*took)))
        .collect();
    if entries.is_empty() {
        return;
    }
    if let Some(total) = response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
    {
        entries.push(total.to_owned());
    }
    if let Ok(value) = HeaderValue::from_str(&entries.join(", ")) {
        response.headers_mut().insert("server-timing", value);
    }
}

/// Milliseconds with two decimals.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

#[derive(Template)]
#[template(path = "register_result.html")]
struct ResultPage<'a> {
    ok: Option<&'a Registered>,
    error: Option<crate::web::error::ErrorBody>,
    mailbox_url: &'a str,
}

/// Answers in the request's format, with the server's time in `Server-Timing`.
pub(crate) fn answer(
    format: Format,
    state: &AppState,
    started: Instant,
    result: Result<Registered, AppError>,
) -> Response {
    let elapsed_ms = ms(started.elapsed());
    let mut response = match (format, result) {
        (Format::Json | Format::FormAnsweredInJson, Ok(mut registered)) => {
            registered.elapsed_ms = elapsed_ms;
            (StatusCode::CREATED, Json(registered)).into_response()
        }
        (Format::Json | Format::FormAnsweredInJson, Err(e)) => e.into_response(),
        (Format::Form, result) => {
            let (status, ok, error) = match &result {
                Ok(_) => (StatusCode::CREATED, result.as_ref().ok(), None),
                Err(e) => (e.status(), None, Some(e.body())),
            };
            if let Err(e) = &result {
                tracing::debug!(status = %status, error = %e, "form registration refused");
            }
            let page = ResultPage {
                ok,
                error,
                mailbox_url: &state.mailbox_url,
            };
            match page.render() {
                Ok(html) => (status, Html(html)).into_response(),
                Err(e) => AppError::Internal(e.into()).into_response(),
            }
        }
    };
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={elapsed_ms}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}
