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

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    mailbox_url: &'a str,
}

async fn index(State(state): State<AppState>) -> Response {
    match (IndexPage {
        mailbox_url: &state.mailbox_url,
    })
    .render()
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => AppError::Internal(e.into()).into_response(),
    }
}
