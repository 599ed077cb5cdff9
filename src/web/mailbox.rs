//! `/dev/mailbox`: the embedded development inbox as a page and as JSON. Mounted only when the
//! process runs the embedded inbox (`SMTP_URL` unset).

use askama::Template;
use axum::{
    Json, Router,
    extract::State,
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
}

async fn page(State(state): State<AppState>) -> Response {
    let page = MailboxPage {
        mails: caught(&state),
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
