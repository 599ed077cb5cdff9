//! `/dev/mailbox` and `/dev/mail-server`: the embedded development inbox as a page that updates
//! live, as JSON (ours and MailHog's v2 shape), each mail's HTML part in a sandbox, and the
//! switches of the development mail server (latency, down, flaky). Mounted only when the process
//! runs the embedded inbox (`SMTP_URL` unset); otherwise these routes are 404.

use std::{convert::Infallible, net::SocketAddr};

use askama::Template;
use axum::{
    Form, Json, Router,
    extract::{ConnectInfo, FromRequest, Path, Query, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{
        Html, IntoResponse, Redirect, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    dev_inbox::{
        CaughtMail,
        gate::{MailServerChange, MailServerState},
    },
    users::FieldError,
    web::{
        AppState,
        error::AppError,
        feed::{RECONNECT, STREAM_LIFETIME},
    },
};

/// What the sandboxed HTML part may do: show itself with its inline styles and `data:` images,
/// nothing else (no script, no remote fetch, no form, no navigation of the page around it).
const MAIL_HTML_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dev/mailbox", get(page))
        .route("/dev/mailbox/events", get(events))
        .route("/dev/mailbox/clear", post(clear_form))
        .route(
            "/dev/mailbox/api/messages",
            get(messages).delete(clear_json),
        )
        .route("/dev/mailbox/messages/{id}/html", get(mail_html))
        .route("/dev/mailbox/api/v2/messages", get(mailhog_messages))
        .route("/api/v2/messages", get(mailhog_messages))
        .route(
            "/dev/mail-server",
            get(mail_server).post(change_mail_server),
        )
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

fn clear(state: &AppState) {
    if let Some(inbox) = &state.inbox {
        inbox.clear();
    }
}

async fn clear_json(State(state): State<AppState>) -> StatusCode {
    clear(&state);
    StatusCode::NO_CONTENT
}

/// The page's "Clear" button, a plain form: back to the (empty) inbox.
async fn clear_form(State(state): State<AppState>) -> Redirect {
    clear(&state);
    Redirect::to("/dev/mailbox")
}

/// One mail as the page shows it: the JSON fields, the headers, and where its HTML part is.
#[derive(Serialize)]
struct ShownMail<'a> {
    #[serde(flatten)]
    mail: &'a CaughtMail,
    headers: &'a [(String, String)],
    html_url: Option<String>,
}

impl<'a> ShownMail<'a> {
    fn of(mail: &'a CaughtMail) -> ShownMail<'a> {
        ShownMail {
            mail,
            headers: &mail.headers,
            html_url: (!mail.html.is_empty())
                .then(|| format!("/dev/mailbox/messages/{}/html", mail.id)),
        }
    }
}

#[derive(Template)]
#[template(path = "mailbox.html")]
struct MailboxPage<'a> {
    mails: Vec<ShownMail<'a>>,
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
    let all = caught(&state);
    let mails = all
        .iter()
        .filter(|m| {
            to.as_ref()
                .is_none_or(|t| m.to.iter().any(|a| a.to_lowercase().contains(t)))
        })
        .map(ShownMail::of)
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

/// New mails as Server-Sent Events (`mail`, the page's JSON of one mail), as they arrive. Takes a
/// slot of the stream limits and lives at most `STREAM_LIFETIME`, like every live stream.
async fn events(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let inbox = state.inbox.clone().ok_or(AppError::NotFound("route"))?;
    let slot = state.streams.open(client.ip())?;
    let mut arrivals = inbox.subscribe();
    let shutdown = state.shutdown.clone();
    let stream = async_stream::stream! {
        let _slot = slot;
        let ends = tokio::time::Instant::now() + STREAM_LIFETIME;
        // A first event at once, so the page knows the stream is open.
        yield Ok(Event::default().event("ready").retry(RECONNECT).data("{}"));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(ends) => break,
                arrival = arrivals.recv() => match arrival {
                    Ok(mail) => {
                        yield Ok(Event::default()
                            .event("mail")
                            .retry(RECONNECT)
                            .json_data(ShownMail::of(&mail))
                            .unwrap_or_default());
                    }
                    // Fell behind: the page reloads the list.
                    Err(RecvError::Lagged(_)) => {
                        yield Ok(Event::default().event("lagged").data("{}"));
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A mail's HTML part on its own, for a sandboxed `<iframe>` on the inbox page: its own CSP lets
/// it use inline styles and nothing else, and puts it in a sandbox (no script, unique origin).
async fn mail_html(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(mail) = caught(&state).into_iter().find(|m| m.id == id) else {
        return AppError::NotFound("mail").into_response();
    };
    let mut response = Html(mail.html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(MAIL_HTML_CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The caught mails in MailHog's `GET /api/v2/messages` shape (the fields scripts use), so
/// scripts written for MailHog work against the embedded inbox.
async fn mailhog_messages(State(state): State<AppState>) -> Json<serde_json::Value> {
    let mails = caught(&state);
    let path = |address: &str| {
        let bare = address
            .rsplit_once('<')
            .map_or(address, |(_, a)| a.trim_end_matches('>'));
        let (mailbox, domain) = bare.split_once('@').unwrap_or((bare, ""));
        serde_json::json!({"Relays": null, "Mailbox": mailbox, "Domain": domain, "Params": ""})
    };
    let items: Vec<_> = mails
        .iter()
        .map(|m| {
            let mut headers = serde_json::Map::new();
            for (k, v) in &m.headers {
                headers.insert(k.clone(), serde_json::json!([v]));
            }
            headers
                .entry("Subject")
                .or_insert_with(|| serde_json::json!([m.subject]));
            serde_json::json!({
                "ID": m.id,
                "From": path(&m.from),
                "To": m.to.iter().map(|t| path(t)).collect::<Vec<_>>(),
                "Content": {"Headers": headers, "Body": m.text, "Size": m.text.len() + m.html.len(), "MIME": null},
                "Created": m.received_at,
                "MIME": null,
                "Raw": {"From": m.from, "To": m.to, "Data": m.text, "Helo": ""},
            })
        })
        .collect();
    Json(serde_json::json!({
        "total": items.len(),
        "count": items.len(),
        "start": 0,
        "items": items,
    }))
}

async fn mail_server(State(state): State<AppState>) -> Result<Json<MailServerState>, AppError> {
    let inbox = state.inbox.as_ref().ok_or(AppError::NotFound("route"))?;
    Ok(Json(inbox.control().get()))
}

/// The page's form: every field present (an unchecked box is absent: not down).
#[derive(serde::Deserialize)]
struct MailServerForm {
    latency_ms: Option<String>,
    down: Option<String>,
    flaky_share: Option<String>,
}

/// `POST /dev/mail-server`: JSON `{"latency_ms", "down", "flaky_share"}` (absent fields unchanged)
/// answered with the new state, or the page's form, answered with a redirect back to the page.
async fn change_mail_server(State(state): State<AppState>, request: Request) -> Response {
    let Some(inbox) = state.inbox.clone() else {
        return AppError::NotFound("route").into_response();
    };
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let change = if is_form {
        match Form::<MailServerForm>::from_request(request, &()).await {
            Ok(Form(form)) => {
                let number = |field: &'static str, raw: Option<String>| {
                    raw.filter(|r| !r.trim().is_empty())
                        .map(|r| {
                            r.trim().parse::<f64>().map_err(|_| {
                                AppError::Invalid(FieldError {
                                    field,
                                    message: format!("is not a number: {r:?}"),
                                })
                            })
                        })
                        .transpose()
                };
                let latency = match number("latency_ms", form.latency_ms) {
                    Ok(v) => v,
                    Err(e) => return e.into_response(),
                };
                let flaky = match number("flaky_share", form.flaky_share) {
                    Ok(v) => v,
                    Err(e) => return e.into_response(),
                };
                MailServerChange {
                    latency_ms: latency.map(|v| v.max(0.0) as u64),
                    down: Some(form.down.is_some()),
                    flaky_share: flaky,
                }
            }
            Err(e) => return AppError::Malformed(e.body_text()).into_response(),
        }
    } else {
        match Json::<MailServerChange>::from_request(request, &()).await {
            Ok(Json(change)) => change,
            Err(e) => return AppError::Malformed(e.body_text()).into_response(),
        }
    };
    if let Err((field, message)) = change.check() {
        return AppError::Invalid(FieldError { field, message }).into_response();
    }
    let now = inbox.control().apply(&change);
    // The status panels show the new state at their next update, not after the probe's cache.
    state.mail_probe.forget().await;
    if is_form {
        Redirect::to("/#mail-server").into_response()
    } else {
        Json(now).into_response()
    }
}
