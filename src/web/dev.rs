//! Development-only controls for the page's experiments, mounted only with the embedded inbox:
//! `GET/POST /dev/consumers` (switch a consumer to fail: "decoupled") and `POST /dev/burst`
//! (N registrations at once, one way or the other: "peak shaving"). Each takes JSON, or the
//! page's form (answered with a redirect back to the page).

use std::time::{Duration, Instant};

use axum::{
    Form, Json, Router,
    extract::{FromRequest, Request, State},
    http::header,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{
    signup::Phases,
    users::{DisplayName, Email, FieldError, NewUser, Password},
    web::{AppState, error::AppError},
};

/// The largest burst; registrations of one burst run at most [`BURST_CONCURRENCY`] at a time (a
/// password hash takes 19 MiB).
pub const BURST_MAX: u32 = 100;
const BURST_CONCURRENCY: usize = 8;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dev/consumers", get(consumers).post(switch_consumer))
        .route("/dev/burst", post(burst))
}

fn is_form(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// JSON or a urlencoded form into `T`; the flag says which it was.
async fn body<T: serde::de::DeserializeOwned>(request: Request) -> Result<(T, bool), AppError> {
    if is_form(&request) {
        Form::<T>::from_request(request, &())
            .await
            .map(|Form(t)| (t, true))
            .map_err(|e| AppError::Malformed(e.body_text()))
    } else {
        Json::<T>::from_request(request, &())
            .await
            .map(|Json(t)| (t, false))
            .map_err(|e| AppError::Malformed(e.body_text()))
    }
}

/// The consumers of `user_registered` and which of them are switched to fail.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsumerSwitches {
    pub consumers: Vec<&'static str>,
    pub failing: Vec<String>,
}

fn switches(state: &AppState) -> Result<ConsumerSwitches, AppError> {
    let faults = state.faults.as_ref().ok_or(AppError::NotFound("route"))?;
    Ok(ConsumerSwitches {
        consumers: state.signup.queues().to_vec(),
        failing: faults.failing(),
    })
}

async fn consumers(State(state): State<AppState>) -> Result<Json<ConsumerSwitches>, AppError> {
    switches(&state).map(Json)
}

/// `{"queue": "signup_coupon", "fail": true}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSwitch {
    pub queue: String,
    /// JSON: a boolean; the page's form: `on`/`off`.
    #[serde(deserialize_with = "bool_or_on")]
    #[schema(value_type = bool)]
    pub fail: bool,
}

fn bool_or_on<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bool(b) => Ok(b),
        Raw::Text(t) => match t.as_str() {
            "on" | "true" => Ok(true),
            "off" | "false" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "expected true/false or on/off, got {other:?}"
            ))),
        },
    }
}

async fn switch_consumer(State(state): State<AppState>, request: Request) -> Response {
    let Some(faults) = state.faults.clone() else {
        return AppError::NotFound("route").into_response();
    };
    let (change, form) = match body::<ConsumerSwitch>(request).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if !state.signup.queues().contains(&change.queue.as_str()) {
        return AppError::Invalid(FieldError {
            field: "queue",
            message: format!(
                "is not a consumer of user_registered (one of {})",
                state.signup.queues().join(", ")
            ),
        })
        .into_response();
    }
    faults.set(&change.queue, change.fail);
    tracing::info!(queue = %change.queue, fail = change.fail, "consumer fault switch (development only)");
    if form {
        return Redirect::to("/#consumers").into_response();
    }
    match switches(&state) {
        Ok(s) => Json(s).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `{"count": 20, "mode": "async"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BurstRequest {
    /// 1 to 100 registrations.
    #[serde(deserialize_with = "number_or_text")]
    #[schema(value_type = u32, minimum = 1, maximum = 100)]
    pub count: u32,
    pub mode: BurstMode,
}

/// Which path a burst takes.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BurstMode {
    /// Through the queue.
    Async,
    /// Inline, every consumer inside each registration.
    Sync,
}

fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u32),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("not a count: {t:?}"))),
    }
}

/// What a burst measured.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BurstResult {
    pub mode: BurstMode,
    pub count: u32,
    /// Registrations answered 201.
    pub created: u32,
    /// Registrations that failed (sync: the mail server failed).
    pub failed: u32,
    /// From the first registration's start to the last one's answer.
    pub took_ms: f64,
    /// The slowest single registration.
    pub slowest_ms: f64,
}

/// `POST /dev/burst`: `count` registrations at once through the same use case as the forms,
/// [`BURST_CONCURRENCY`] at a time, so the page can show what a peak does to each path.
async fn burst(State(state): State<AppState>, request: Request) -> Response {
    if state.faults.is_none() {
        return AppError::NotFound("route").into_response();
    }
    let (wanted, form) = match body::<BurstRequest>(request).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if !(1..=BURST_MAX).contains(&wanted.count) {
        return AppError::Invalid(FieldError {
            field: "count",
            message: format!("must be between 1 and {BURST_MAX}, got {}", wanted.count),
        })
        .into_response();
    }
    let inline = matches!(wanted.mode, BurstMode::Sync);
    let tag = ulid::Ulid::generate().to_string().to_lowercase();
    let started = Instant::now();
    let outcomes: Vec<(bool, Duration)> = futures::stream::iter(0..wanted.count)
        .map(|i| {
            let signup = state.signup.clone();
            let tag = tag.clone();
            async move {
                let began = Instant::now();
                let user = match burst_user(&tag, i) {
                    Ok(user) => user,
                    Err(_) => return (false, began.elapsed()),
                };
                let mut phases = Phases::new();
                let ok = if inline {
                    signup.register_inline(user, &mut phases).await.is_ok()
                } else {
                    signup
                        .register_queued(user, None, &mut phases)
                        .await
                        .is_ok()
                };
                (ok, began.elapsed())
            }
        })
        .buffer_unordered(BURST_CONCURRENCY)
        .collect()
        .await;
    let created = outcomes.iter().filter(|(ok, _)| *ok).count() as u32;
    let result = BurstResult {
        mode: wanted.mode,
        count: wanted.count,
        created,
        failed: wanted.count - created,
        took_ms: ms(started.elapsed()),
        slowest_ms: ms(outcomes.iter().map(|(_, d)| *d).max().unwrap_or_default()),
    };
    tracing::info!(?result, "burst (development only)");
    if form {
        return Redirect::to("/#burst").into_response();
    }
    Json(result).into_response()
}

fn burst_user(tag: &str, i: u32) -> Result<NewUser, FieldError> {
    Ok(NewUser {
        email: Email::parse(&format!("burst-{tag}-{i}@example.com"))?,
        password: Password::parse("burst password")?,
        name: DisplayName::parse(&format!("Burst {i}"))?,
    })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}
