//! `GET /dev/openapi.json`: the development-only controls, described apart from the public API.

use axum::{Json, Router, routing::get};
use utoipa::OpenApi;

use super::ErrorEnvelope;
use crate::{
    dev_inbox::gate::{MailServerChange, MailServerState},
    web::{
        AppState,
        dev::{BurstMode, BurstRequest, BurstResult, ConsumerSwitch, ConsumerSwitches},
        error::ErrorBody,
    },
};

/// The development-only controls (embedded inbox only), described apart at `/dev/openapi.json`:
/// they change how the app behaves (a mail server switched down makes `/register/sync` answer
/// 502), so a fuzzer pointed at the public description must not find them there.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "signup-queue development controls",
        description = "Embedded inbox only (SMTP_URL unset): the development mail server's switches, the consumer fault switch, the burst.",
        license(name = "MIT")
    ),
    paths(
        mail_server_get,
        mail_server_post,
        consumers_get,
        consumers_post,
        burst
    ),
    components(schemas(
        ErrorEnvelope,
        ErrorBody,
        MailServerState,
        MailServerChange,
        ConsumerSwitches,
        ConsumerSwitch,
        BurstRequest,
        BurstMode,
        BurstResult
    ))
)]
pub struct DevApiDoc;

/// `GET /dev/openapi.json` (mounted with the embedded inbox only).
pub fn dev_router() -> Router<AppState> {
    Router::new().route(
        "/dev/openapi.json",
        get(|| async { Json(DevApiDoc::openapi()) }),
    )
}

#[utoipa::path(
    get,
    path = "/dev/mail-server",
    summary = "Development inbox only: the development mail server's latency, down and flaky switches",
    responses(
        (status = 200, description = "The switches", body = MailServerState),
        (status = 404, description = "The embedded inbox is not running (SMTP_URL is set)", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn mail_server_get() {}

#[utoipa::path(
    post,
    path = "/dev/mail-server",
    summary = "Development inbox only: change the switches (absent fields stay); a form gets a redirect to the page",
    request_body(content((MailServerChange = "application/json"))),
    responses(
        (status = 200, description = "The new switches", body = MailServerState),
        (status = 400, description = "Malformed body or unknown field", body = ErrorEnvelope),
        (status = 404, description = "The embedded inbox is not running (SMTP_URL is set)", body = ErrorEnvelope),
        (status = 422, description = "A value is out of range", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn mail_server_post() {}

#[utoipa::path(
    get,
    path = "/dev/consumers",
    summary = "Development inbox only: the consumers of user_registered and which are switched to fail",
    responses(
        (status = 200, description = "The switches", body = ConsumerSwitches),
        (status = 404, description = "The embedded inbox is not running (SMTP_URL is set)", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn consumers_get() {}

#[utoipa::path(
    post,
    path = "/dev/consumers",
    summary = "Development inbox only: switch one consumer to fail (its jobs retry) or back; a form gets a redirect to the page",
    request_body(content((ConsumerSwitch = "application/json"))),
    responses(
        (status = 200, description = "The switches", body = ConsumerSwitches),
        (status = 400, description = "Malformed body or unknown field", body = ErrorEnvelope),
        (status = 404, description = "The embedded inbox is not running (SMTP_URL is set)", body = ErrorEnvelope),
        (status = 422, description = "Not a consumer's queue", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn consumers_post() {}

#[utoipa::path(
    post,
    path = "/dev/burst",
    summary = "Development inbox only: 1 to 100 registrations at once (8 at a time), async or sync; a form gets a redirect to the page",
    request_body(content((BurstRequest = "application/json"))),
    responses(
        (status = 200, description = "What the burst measured", body = BurstResult),
        (status = 400, description = "Malformed body or unknown field", body = ErrorEnvelope),
        (status = 404, description = "The embedded inbox is not running (SMTP_URL is set)", body = ErrorEnvelope),
        (status = 422, description = "count or mode out of range", body = ErrorEnvelope),
        (status = 503, description = "The burst outlasted the request timeout (60 s): a slow mail server inline", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn burst() {}
