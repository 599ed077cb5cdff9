//! One error type for the HTTP layer; every error answers with
//! `{"error": {"code", "message", "field"}}` (or an HTML page for browser forms).

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::users::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Malformed(String),
    #[error("unknown field {0:?}")]
    UnknownField(String),
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    #[error("this email address is already registered")]
    Duplicate,
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("send the body as application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    #[error("too many registrations from this address; try again in {0} s")]
    RateLimited(u64),
    /// `reason` goes to the log only: it names the mail server's address.
    #[error(
        "user {user_id} was registered, but the mail server failed, so {} was not done inline",
        step_text(step)
    )]
    MailFailed {
        user_id: i64,
        step: &'static str,
        reason: String,
    },
    #[error("too many open streams from this address (at most {0}); close one and try again")]
    TooManyStreams(usize),
    #[error("the server is busy; try again in a moment")]
    Busy,
    #[error("the database is not answering; try again in a moment")]
    DatabaseUnavailable(#[source] anyhow::Error),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// What the failing inline step is, for the 502's message.
fn step_text(step: &str) -> String {
    match step {
        crate::consumers::welcome::WELCOME_QUEUE => {
            "the welcome mail (and the work after it)".into()
        }
        crate::consumers::coupon::COUPON_QUEUE => "the coupon mail".into(),
        other => format!("the {other} step (and the work after it)"),
    }
}

impl From<crate::signup::SignupError> for AppError {
    fn from(e: crate::signup::SignupError) -> Self {
        use crate::signup::SignupError;
        match e {
            SignupError::Duplicate => AppError::Duplicate,
            SignupError::MailFailed {
                user_id,
                step,
                reason,
            } => AppError::MailFailed {
                user_id,
                step,
                reason,
            },
            SignupError::Internal(e) => AppError::internal(e),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::internal(e.into())
    }
}

impl AppError {
    /// A 500, or a 503 when the cause is a database that cannot be reached (restarting, down,
    /// no free connection within the pool's timeout): the client may try again.
    pub fn internal(e: anyhow::Error) -> AppError {
        if e.chain()
            .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
            .any(crate::db::is_unavailable)
        {
            AppError::DatabaseUnavailable(e)
        } else {
            AppError::Internal(e)
        }
    }
}

/// The body of every error: `{"error": {...}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `malformed_body`, `unknown_field`, `invalid_field`, `email_taken`, `body_too_large`, `unsupported_media_type`, `rate_limited`, `too_many_streams`, `server_busy`, `database_unavailable`, `mail_failed`, `not_found`, `method_not_allowed`, `internal`.
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Malformed(_) | AppError::UnknownField(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Duplicate => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::MailFailed { .. } => StatusCode::BAD_GATEWAY,
            AppError::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Busy | AppError::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (code, field) = match self {
            AppError::Malformed(_) => ("malformed_body", None),
            AppError::UnknownField(name) => ("unknown_field", Some(name.clone())),
            AppError::Invalid(e) => ("invalid_field", Some(e.field.to_owned())),
            AppError::Duplicate => ("email_taken", Some("email".to_owned())),
            AppError::TooLarge(_) => ("body_too_large", None),
            AppError::UnsupportedMediaType => ("unsupported_media_type", None),
            AppError::RateLimited(_) => ("rate_limited", None),
            AppError::MailFailed { .. } => ("mail_failed", None),
            AppError::TooManyStreams(_) => ("too_many_streams", None),
            AppError::Busy => ("server_busy", None),
            AppError::DatabaseUnavailable(_) => ("database_unavailable", None),
            AppError::NotFound(_) => ("not_found", None),
            AppError::MethodNotAllowed => ("method_not_allowed", None),
            AppError::Internal(_) => ("internal", None),
        };
        let message = match self {
            AppError::Invalid(e) => e.message.clone(),
            // The detail of a 500 stays in the log.
            other => other.to_string(),
        };
        ErrorBody {
            code,
            message,
            field,
        }
    }

    fn log(&self) {
        match self {
            AppError::Internal(e) => tracing::error!(error = ?e, "request failed"),
            AppError::DatabaseUnavailable(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed: the database is not answering")
            }
            AppError::MailFailed {
                user_id,
                step,
                reason,
            } => {
                tracing::warn!(user_id, step, %reason, "sync registration: mail failed")
            }
            other => tracing::debug!(status = %other.status(), error = %other, "request refused"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (
            self.status(),
            Json(serde_json::json!({ "error": self.body() })),
        )
            .into_response();
        let retry_after = match self {
            AppError::RateLimited(seconds) => Some(seconds),
            AppError::TooManyStreams(_) | AppError::Busy => Some(5),
            AppError::DatabaseUnavailable(_) => Some(2),
            _ => None,
        };
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
