//! `POST /register`, `/register/async`, `/register/sync`: parse once at the edge, then either
//! insert + enqueue in one transaction (async) or insert and send the mail inline (sync).

use std::time::Instant;

use askama::Template;
use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::post,
};
use serde::Serialize;

use crate::{
    events::publish_user_registered,
    jobs::{WELCOME_QUEUE, welcome_email::record_delivery},
    users::{DisplayName, Email, InsertUserError, NewUser, Password, hash_password, insert_user},
    web::{AppState, error::AppError},
};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

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

/// How the request came, and so how it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Form,
    FormAnsweredInJson,
}

#[derive(Debug, Serialize)]
pub struct Registered {
    pub user_id: i64,
    pub job_id: Option<String>,
    pub mode: &'static str,
    pub elapsed_ms: f64,
}

#[tracing::instrument(skip_all, fields(mode = "async", user_id, job_id))]
async fn register_async(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let (format, body) = match read_body(&headers, body).await {
        Ok(read) => read,
        Err((format, e)) => return answer(format, &state, started, Err(e)),
    };
    let result = async {
        let user = parse_registration(format, &body)?;
        let hash = hash_password(user.password.clone(), state.hash_cost).await?;
        let mut tx = state.pool.begin().await?;
        let user_id = insert_user(&mut tx, &user.email, user.name.as_ref(), &hash)
            .await
            .map_err(insert_error)?;
        let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
        let published = publish_user_registered(
            &mut tx,
            &state.consumers,
            user_id,
            state.job_max_attempts,
            request_id,
        )
        .await
        .map_err(|e| anyhow::anyhow!("enqueue failed, registration rolled back: {e}"))?;
        tx.commit().await?;
        state.wakeup.notify();
        for (queue, _) in &published.jobs {
            crate::metrics::job_enqueued(queue);
        }
        let job_id = published.job_for(WELCOME_QUEUE).map(str::to_owned);
        tracing::Span::current()
            .record("user_id", user_id)
            .record("job_id", job_id.as_deref().unwrap_or("-"));
        tracing::info!(
            event_id = %published.event_id,
            consumers = published.jobs.len(),
            "user registered, user_registered published"
        );
        Ok(Registered {
            user_id,
            job_id,
            mode: "async",
            elapsed_ms: 0.0,
        })
    }
    .await;
    answer(format, &state, started, result)
}

#[tracing::instrument(skip_all, fields(mode = "sync", user_id))]
async fn register_sync(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let (format, body) = match read_body(&headers, body).await {
        Ok(read) => read,
        Err((format, e)) => return answer(format, &state, started, Err(e)),
    };
    let result = async {
        let user = parse_registration(format, &body)?;
        let hash = hash_password(user.password.clone(), state.hash_cost).await?;
        let mut conn = state.pool.acquire().await?;
        let user_id = insert_user(&mut conn, &user.email, user.name.as_ref(), &hash)
            .await
            .map_err(insert_error)?;
        drop(conn);
        tracing::Span::current().record("user_id", user_id);
        let stored = crate::users::User {
            id: user_id,
            email: user.email.as_str().to_owned(),
            name: user.name.as_ref().map(|n| n.as_str().to_owned()),
        };
        // The request waits for the mail server: this is the coupling the product demonstrates.
        match state.mailer.send_welcome(&stored).await {
            Ok(message_id) => {
                record_delivery(&state.pool, user_id, &message_id, "sync", None).await?;
                tracing::info!("user registered, welcome mail sent inline");
                Ok(Registered {
                    user_id,
                    job_id: None,
                    mode: "sync",
                    elapsed_ms: 0.0,
                })
            }
            Err(e) => Err(AppError::MailFailed {
                user_id,
                reason: e.to_string(),
            }),
        }
    }
    .await;
    answer(format, &state, started, result)
}

fn insert_error(e: InsertUserError) -> AppError {
    match e {
        InsertUserError::Duplicate => AppError::Duplicate,
        InsertUserError::Database(e) => e.into(),
    }
}

/// Reads the body within the size limit and tells JSON from a browser form.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<(Format, Bytes), (Format, AppError)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok());
    // A form client that asks for JSON only (scripts, tests) is answered in JSON.
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json") && !accept.contains("text/html"));
    let format = match content_type {
        Some(m) if m.essence_str() == "application/x-www-form-urlencoded" && !wants_json => {
            Format::Form
        }
        Some(m) if m.essence_str() == "application/x-www-form-urlencoded" => {
            Format::FormAnsweredInJson
        }
        Some(m) if m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON) => Format::Json,
        _ => return Err((Format::Json, AppError::UnsupportedMediaType)),
    };
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok((format, bytes)),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            let error = if too_large {
                AppError::TooLarge(MAX_BODY_BYTES)
            } else {
                AppError::Malformed(format!("cannot read the request body: {e}"))
            };
            Err((format, error))
        }
    }
}

/// The raw fields of a registration, before validation.
#[derive(Debug, Default)]
struct RawRegistration {
    email: Option<String>,
    password: Option<String>,
    name: Option<String>,
}

impl RawRegistration {
    fn set(&mut self, key: &str, value: String) -> Result<(), AppError> {
        let slot = match key {
            "email" => &mut self.email,
            "password" => &mut self.password,
            "name" => &mut self.name,
            other => return Err(AppError::UnknownField(other.to_owned())),
        };
        if slot.is_some() {
            return Err(AppError::Malformed(format!("field {key:?} is given twice")));
        }
        *slot = Some(value);
        Ok(())
    }
}

pub fn parse_registration(format: Format, body: &[u8]) -> Result<NewUser, AppError> {
    let raw = match format {
        Format::Json => parse_json(body)?,
        Format::Form | Format::FormAnsweredInJson => parse_form(body)?,
    };
    let required = |value: Option<String>, field: &'static str| {
        value.ok_or_else(|| {
            AppError::Invalid(crate::users::FieldError {
                field,
                message: "is required".into(),
            })
        })
    };
    let email = Email::parse(&required(raw.email, "email")?).map_err(AppError::Invalid)?;
    let password =
        Password::parse(&required(raw.password, "password")?).map_err(AppError::Invalid)?;
    let name = match raw.name {
        Some(name) => DisplayName::parse(&name).map_err(AppError::Invalid)?,
        None => None,
    };
    Ok(NewUser {
        email,
        password,
        name,
    })
}

fn parse_json(body: &[u8]) -> Result<RawRegistration, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::Malformed("the request body is empty".into()));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| AppError::Malformed(format!("the body is not valid JSON: {e}")))?;
    let serde_json::Value::Object(fields) = value else {
        return Err(AppError::Malformed("the body must be a JSON object".into()));
    };
    let mut raw = RawRegistration::default();
    for (key, value) in fields {
        match value {
            serde_json::Value::String(text) => raw.set(&key, text)?,
            serde_json::Value::Null if key == "name" => {}
            _ if matches!(key.as_str(), "email" | "password" | "name") => {
                let field = match key.as_str() {
                    "email" => "email",
                    "password" => "password",
                    _ => "name",
                };
                return Err(AppError::Invalid(crate::users::FieldError {
                    field,
                    message: "must be a string".into(),
                }));
            }
            _ => return Err(AppError::UnknownField(key)),
        }
    }
    Ok(raw)
}

/// `application/x-www-form-urlencoded`, strictly: invalid percent-encoding or UTF-8 is refused
/// rather than silently replaced.
fn parse_form(body: &[u8]) -> Result<RawRegistration, AppError> {
    let decode = |part: &[u8]| -> Result<String, AppError> {
        let plus_as_space: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&plus_as_space)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| AppError::Malformed("the form is not valid UTF-8".into()))
    };
    let mut raw = RawRegistration::default();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let mut halves = pair.splitn(2, |&b| b == b'=');
        let key = decode(halves.next().unwrap_or_default())?;
        let value = decode(halves.next().unwrap_or_default())?;
        // Browsers send an empty optional field; treat it as absent.
        if key == "name" && value.trim().is_empty() {
            continue;
        }
        raw.set(&key, value)?;
    }
    Ok(raw)
}

#[derive(Template)]
#[template(path = "register_result.html")]
struct ResultPage<'a> {
    ok: Option<&'a Registered>,
    error: Option<crate::web::error::ErrorBody>,
    mailbox_url: &'a str,
}

/// Answers in the request's format, with the server's time in `Server-Timing`.
fn answer(
    format: Format,
    state: &AppState,
    started: Instant,
    result: Result<Registered, AppError>,
) -> Response {
    let elapsed_ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_unknown_field_is_refused() {
        let err = parse_registration(
            Format::Json,
            br#"{"email":"a@b.co","password":"12345678","admin":true}"#,
        )
        .unwrap_err();
        assert!(matches!(err, AppError::UnknownField(f) if f == "admin"));
    }

    #[test]
    fn json_with_wrong_type_names_the_field() {
        let err =
            parse_registration(Format::Json, br#"{"email":42,"password":"12345678"}"#).unwrap_err();
        assert!(matches!(err, AppError::Invalid(f) if f.field == "email"));
    }

    #[test]
    fn form_is_decoded_strictly() {
        let user = parse_registration(
            Format::Form,
            b"email=ada%40example.com&password=correct+horse&name=",
        )
        .expect("valid form");
        assert_eq!(user.email.as_str(), "ada@example.com");
        assert!(user.name.is_none());
        assert!(parse_registration(Format::Form, b"email=%FF&password=12345678").is_err());
    }
}
