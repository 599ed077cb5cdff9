//! `GET /api/openapi.json`: an OpenAPI 3.1 description of the public API, built from the types
//! the handlers really send (`ToSchema` derives) and the paths below. CI points schemathesis, a
//! fuzzer nobody here wrote, at the running app with it: every response must match this
//! description, and no request may get a 5xx.

use axum::{Json, Router, routing::get};
use utoipa::{OpenApi, ToSchema};

mod dev;

pub use dev::{DevApiDoc, dev_router};

use crate::{
    dev_inbox::CaughtMail,
    queue::{JobState, JobStatus},
    web::{AppState, error::ErrorBody, feed::QueueSnapshot, register::Registered},
};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "signup-queue",
        description = "Registration with a welcome mail, synchronous beside asynchronous: what a message queue buys a web app.",
        license(name = "MIT")
    ),
    paths(
        register,
        register_async,
        register_sync,
        job,
        job_events,
        queue,
        queue_events,
        health,
        mailbox_messages,
        mailbox_clear,
        mailbox_events,
        mailbox_mailhog,
    ),
    components(schemas(
        Registration,
        Registered,
        ErrorEnvelope,
        ErrorBody,
        JobStatus,
        JobState,
        QueueSnapshot,
        Health,
        CaughtMail,
        SseEvent
    ))
)]
pub struct ApiDoc;

/// A registration: JSON, or the same fields as a urlencoded form (a browser form gets an HTML
/// page back unless it asks for JSON). Unknown fields and a field given twice are refused.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Registration {
    /// Trimmed; compared case-insensitively; the domain is stored in its IDNA (punycode) form.
    #[schema(format = Email, max_length = 254, example = "ada@example.com")]
    email: String,
    /// 8 to 128 characters; stored only as an argon2id hash.
    #[schema(
        min_length = 8,
        max_length = 128,
        pattern = "^[^\\x00]*$",
        example = "correct horse"
    )]
    password: String,
    /// At most 100 characters, one line.
    #[schema(
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$",
        example = "Ada"
    )]
    name: Option<String>,
}

/// One Server-Sent Event of a stream: its name, its data (JSON text) and the reconnection delay.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SseEvent {
    /// The event's name (`status`, `queue`, `ready`, `mail`, `lagged`).
    event: Option<String>,
    /// JSON text.
    data: String,
    /// Reconnection delay in ms.
    retry: Option<u64>,
    id: Option<String>,
}

/// `{"error": {"code", "message", "field"}}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorEnvelope {
    error: ErrorBody,
}

/// `/health`: `ok`, or `unavailable` with what is wrong with the database.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// `ok` or `unavailable`.
    status: String,
    /// With `unavailable`: what is wrong.
    database: Option<String>,
}

/// The responses every registration route can give.
macro_rules! register_path {
    ($name:ident, $path:literal, $summary:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            summary = $summary,
            request_body(
                content(
                    (Registration = "application/json"),
                    (Registration = "application/x-www-form-urlencoded")
                )
            ),
            responses(
                (status = 201, description = "Registered", content((Registered = "application/json"), (String = "text/html"))),
                (status = 400, description = "Malformed body, unknown field, or a field twice", content((ErrorEnvelope = "application/json"), (String = "text/html"))),
                (status = 409, description = "The address is registered", content((ErrorEnvelope = "application/json"), (String = "text/html"))),
                (status = 413, description = "Body over 16 KiB", content((ErrorEnvelope = "application/json"), (String = "text/html"))),
                (status = 415, description = "Neither JSON nor a urlencoded form", body = ErrorEnvelope),
                (status = 422, description = "A field is invalid", content((ErrorEnvelope = "application/json"), (String = "text/html"))),
                (status = 429, description = "Over RATE_LIMIT_PER_MINUTE; see Retry-After", body = ErrorEnvelope),
                (status = 502, description = "Sync only: the mail server failed (the user row stays)", content((ErrorEnvelope = "application/json"), (String = "text/html"))),
                (status = 503, description = "Too many connections, or the request timed out", body = ErrorEnvelope),
            )
        )]
        #[allow(dead_code)]
        fn $name() {}
    };
}

register_path!(
    register,
    "/register",
    "The recommended path: the same as /register/async"
);
register_path!(
    register_async,
    "/register/async",
    "Insert the user and publish user_registered in one transaction; answer at once"
);
register_path!(
    register_sync,
    "/register/sync",
    "Insert the user, send the welcome mail inline, then answer"
);

#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    summary = "A job's status",
    params(("id" = String, Path, description = "The job id (a ULID)")),
    responses(
        (status = 200, description = "The job", body = JobStatus),
        (status = 404, description = "No such job", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn job() {}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/events",
    summary = "A job's status as Server-Sent Events (`status`), until done or failed",
    params(("id" = String, Path, description = "The job id (a ULID)")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = SseEvent),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 429, description = "Too many open streams from this address", body = ErrorEnvelope),
        (status = 503, description = "Too many open streams", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn job_events() {}

#[utoipa::path(
    get,
    path = "/api/queue",
    summary = "The welcome queue's counts and the mail server's state",
    responses((status = 200, description = "Counts", body = QueueSnapshot))
)]
#[allow(dead_code)]
fn queue() {}

#[utoipa::path(
    get,
    path = "/api/queue/events",
    summary = "The same as /api/queue, as Server-Sent Events (`queue`) at each change",
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = SseEvent),
        (status = 429, description = "Too many open streams from this address", body = ErrorEnvelope),
        (status = 503, description = "Too many open streams", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn queue_events() {}

#[utoipa::path(
    get,
    path = "/health",
    summary = "Does the database answer, and is its file the one the app opened?",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Unavailable", body = Health),
    )
)]
#[allow(dead_code)]
fn health() {}

#[utoipa::path(
    get,
    path = "/dev/mailbox/api/messages",
    summary = "Development inbox only (SMTP_URL unset): the caught mails, newest first",
    responses(
        (status = 200, description = "Mails", body = Vec<CaughtMail>),
        (status = 404, description = "The embedded inbox is not running", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn mailbox_messages() {}

#[utoipa::path(
    delete,
    path = "/dev/mailbox/api/messages",
    summary = "Development inbox only: forget every caught mail",
    responses(
        (status = 204, description = "Cleared"),
        (status = 404, description = "The embedded inbox is not running", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn mailbox_clear() {}

#[utoipa::path(
    get,
    path = "/dev/mailbox/events",
    summary = "Development inbox only: new mails as Server-Sent Events (`ready`, then `mail` per arrival)",
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = SseEvent),
        (status = 404, description = "The embedded inbox is not running", body = ErrorEnvelope),
        (status = 429, description = "Too many open streams from this address", body = ErrorEnvelope),
        (status = 503, description = "Too many open streams", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn mailbox_events() {}

/// MailHog's `GET /api/v2/messages` answer: `{"total","count","start","items"}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MailHogMessages {
    total: usize,
    count: usize,
    start: usize,
    /// MailHog's message objects (`ID`, `From`, `To`, `Content`, `Created`, `Raw`).
    items: Vec<serde_json::Value>,
}

#[utoipa::path(
    get,
    path = "/dev/mailbox/api/v2/messages",
    summary = "Development inbox only: the caught mails in MailHog's v2 shape (also at /api/v2/messages)",
    responses(
        (status = 200, description = "Mails", body = MailHogMessages),
        (status = 404, description = "The embedded inbox is not running", body = ErrorEnvelope),
    )
)]
#[allow(dead_code)]
fn mailbox_mailhog() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_openapi_3_1_with_every_public_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        for path in [
            "/register",
            "/register/async",
            "/register/sync",
            "/api/jobs/{id}",
            "/api/jobs/{id}/events",
            "/api/queue",
            "/api/queue/events",
            "/health",
            "/dev/mailbox/api/messages",
            "/dev/mailbox/events",
            "/dev/mailbox/api/v2/messages",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} is not described");
        }
        let dev = serde_json::to_value(DevApiDoc::openapi()).expect("serializes");
        for path in ["/dev/mail-server", "/dev/consumers", "/dev/burst"] {
            assert!(dev["paths"].get(path).is_some(), "{path} is not described");
            assert!(
                doc["paths"].get(path).is_none(),
                "{path} is development only"
            );
        }
        assert_eq!(
            doc["components"]["schemas"]["JobState"]["enum"],
            serde_json::json!(["pending", "running", "retrying", "done", "failed"])
        );
    }
}
