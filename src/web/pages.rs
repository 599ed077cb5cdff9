//! `GET /`: the registration page, and the static files under `/static`.

use askama::Template;
use axum::{
    Router,
    extract::State,
    http::{HeaderValue, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use tower_http::{services::ServeDir, set_header::SetResponseHeaderLayer};

use crate::web::{AppState, error::AppError};

pub fn router() -> Router<AppState> {
    let static_files = Router::new()
        .fallback_service(ServeDir::new(static_dir()))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ));
    Router::new()
        .route("/", get(index))
        .nest("/static", static_files)
}

/// `static/` beside Cargo.toml when run from the source tree, else beside the working directory.
fn static_dir() -> std::path::PathBuf {
    let source_tree = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    if source_tree.is_dir() {
        source_tree
    } else {
        std::path::PathBuf::from("static")
    }
}

struct Side {
    mode: &'static str,
    title: &'static str,
    hint: &'static str,
    action: &'static str,
    button: &'static str,
}

const SIDES: [Side; 2] = [
    Side {
        mode: "sync",
        title: "Synchronous: waits for the mail server",
        hint: "POST /register/sync: insert the user, then run every consumer inside the request (welcome mail, audit row, coupon and its mail), then answer.",
        action: "/register/sync",
        button: "Register and wait for the mail",
    },
    Side {
        mode: "async",
        title: "Asynchronous: enqueues and returns",
        hint: "POST /register/async: insert the user and one job per consumer in one transaction, answer at once; workers do the same work a moment later.",
        action: "/register/async",
        button: "Register through the queue",
    },
];

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    sides: &'a [Side],
    mailbox_url: &'a str,
    /// The development mail server's switches, with the embedded inbox only.
    mail_server: Option<crate::dev_inbox::gate::MailServerState>,
    /// Each consumer queue and whether it is switched to fail (development only).
    consumers: Option<Vec<(&'static str, bool)>>,
    burst_max: u32,
}

async fn index(State(state): State<AppState>) -> Response {
    match (IndexPage {
        sides: &SIDES,
        mailbox_url: &state.mailbox_url,
        mail_server: state.inbox.as_ref().map(|i| i.control().get()),
        consumers: state.faults.as_ref().map(|faults| {
            let failing = faults.failing();
            state
                .signup
                .queues()
                .iter()
                .map(|q| (*q, failing.iter().any(|f| f == q)))
                .collect()
        }),
        burst_max: crate::web::dev::BURST_MAX,
    })
    .render()
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => AppError::Internal(e.into()).into_response(),
    }
}
