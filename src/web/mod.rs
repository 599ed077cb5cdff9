//! The public HTTP listener, HTTP only: one module per area, merged here; the work is done by
//! `signup` (registration) and read from `queue` (job status).

pub mod dev;
pub mod error;
pub mod extract;
pub mod feed;
pub mod jobs;
pub mod live;
pub mod mailbox;
pub mod openapi;
pub mod pages;
pub mod register;
pub mod server;

use std::time::Duration;

use crate::db::Db;
use axum::{
    Router,
    http::{HeaderName, HeaderValue, Request, header},
};
use tower_http::{
    compression::CompressionLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{dev_inbox::DevInbox, signup::Signup};

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The registration use case.
    pub signup: Signup,
    /// For job status, the queue panel and `/health`.
    pub pool: Db,
    /// The database file as opened, for `/health` (`None`: in memory).
    pub db_file: Option<crate::db::DbFile>,
    /// "Is the mail server up?", shared by every visitor.
    pub mail_probe: crate::mail::MailServerProbe,
    /// The queue snapshot every queue stream reads.
    pub queue_feed: feed::QueueFeed,
    /// Open live streams, per client and in total.
    pub streams: feed::StreamLimits,
    /// Register requests per client IP per minute; 0: no limit.
    pub rate_limit_per_minute: u32,
    /// The embedded development inbox, when this process runs one.
    pub inbox: Option<DevInbox>,
    /// The switch that makes consumers fail (development only: with the embedded inbox).
    pub faults: Option<crate::consumers::fault::FaultSwitch>,
    /// Link to the inbox UI shown to visitors.
    pub mailbox_url: String,
    /// Cancelled on shutdown: long-lived responses (SSE) end on it.
    pub shutdown: tokio_util::sync::CancellationToken,
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .merge(pages::router())
        .merge(register::router(state.rate_limit_per_minute))
        .merge(jobs::router())
        .merge(live::router())
        .merge(openapi::router());
    if state.inbox.is_some() {
        router = router
            .merge(mailbox::router())
            .merge(dev::router())
            .merge(openapi::dev_router());
    }
    router
        .route_layer(axum::middleware::from_fn(crate::metrics::track_http))
        .fallback(|| async { error::AppError::NotFound("route") })
        .method_not_allowed_fallback(|| async { error::AppError::MethodNotAllowed })
        .with_state(state)
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(60),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let route = request
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| request.uri().path().to_owned());
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("http", method = %request.method(), route = %route, request_id = %request_id)
                })
                // Failures are logged once, by AppError, with their cause.
                .on_failure(())
                .on_response(
                    |response: &axum::http::Response<_>, latency: Duration, _span: &tracing::Span| {
                        tracing::info!(
                            status = response.status().as_u16(),
                            latency_ms = latency.as_secs_f64() * 1000.0,
                            "request"
                        );
                    },
                ),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUlid))
        .layer(axum::middleware::from_fn(drop_unsafe_request_id))
}

/// Longest client-chosen request id kept.
const REQUEST_ID_MAX: usize = 64;

/// A client's `x-request-id` is kept only when it is short and of a safe alphabet (letters,
/// digits, `-`, `_`, `.`): it is stored in every job row of the registration and repeated in the
/// log lines. Any other value is dropped, and the request gets a new id like any other.
async fn drop_unsafe_request_id(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let unsafe_id = request.headers().get("x-request-id").is_some_and(|v| {
        let bytes = v.as_bytes();
        bytes.is_empty()
            || bytes.len() > REQUEST_ID_MAX
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    if unsafe_id {
        request.headers_mut().remove("x-request-id");
    }
    next.run(request).await
}

/// Request ids are ULIDs, like job ids: sortable by time.
#[derive(Clone, Copy)]
struct MakeRequestUlid;

impl MakeRequestId for MakeRequestUlid {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&ulid::Ulid::generate().to_string())
            .ok()
            .map(RequestId::new)
    }
}
