//! `/dev/mailbox`: the embedded development inbox as a page and as JSON. Mounted only when the
//! process runs the embedded inbox (`SMTP_URL` unset).

use askama::Template;
use axum::{
    Json, Router,
    extract::{Query, State},
    response::{Html, IntoResponse, Response},
    routing::get,
};

use crate::{
    dev_inbox::CaughtMail,
    web::{AppState, error::AppError},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dev/mailbox", get(page))
        .route("/dev/mailbox/api/messages", get(messages))
}

fn caught(state: &AppState) -> Vec<CaughtMail> {
    state
        .inbox
        .as_ref()
        .map(|i| i.messages())
        .unwrap_or_default()
}

async fn messages(State(state): State<AppState>) -> Json<Vec<CaughtMail>> {
    Json(caught(&state))
}

#[derive(Template)]
#[template(path = "mailbox.html")]
struct MailboxPage {
    mails: Vec<CaughtMail>,
    smtp_addr: String,
    to: Option<String>,
}

#[derive(serde::Deserialize)]
struct Filter {
    /// Only mails to addresses containing this (case-insensitive).
    to: Option<String>,
}

async fn page(State(state): State<AppState>, Query(filter): Query<Filter>) -> Response {
    let to = filter
        .to
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty());
    let mails = caught(&state)
        .into_iter()
        .filter(|m| {
            to.as_ref()
                .is_none_or(|t| m.to.iter().any(|a| a.to_lowercase().contains(t)))
        })
        .collect();
    let page = MailboxPage {
        mails,
        to,
        smtp_addr: state
            .inbox
            .as_ref()
            .map(|i| i.addr().to_string())
            .unwrap_or_default(),
    };
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => AppError::Internal(e.into()).into_response(),
    }
}
