//! The page people use, and its script and style, compiled into the
//! binary: nothing to build or host beside the gateway, nothing loaded
//! from elsewhere (the CSP says so). The page is a shell; its script
//! fills it from `/api`, always as text, never as HTML.

use super::Web;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use maud::{DOCTYPE, Markup, html};
use std::sync::Arc;

const SCRIPT: &str = include_str!("assets/web.js");
const STYLE: &str = include_str!("assets/web.css");
const SHARE_SCRIPT: &str = include_str!("assets/share.js");

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(|| async { page(Some("web.js"), files()) }))
        .route(
            "/static/web.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/static/web.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/static/share.js",
            get(|| async { asset("text/javascript; charset=utf-8", SHARE_SCRIPT) }),
        )
        // Browsers ask for it; there is none.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "Not found.") })
}

fn asset(kind: &'static str, text: &'static str) -> Response {
    let mut r = text.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

/// A page of the gateway's look around `body`, with its script (a name
/// under `/static/`).
pub fn page(script: Option<&str>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Files" }
                link rel="stylesheet" href="/static/web.css";
                @if let Some(script) = script {
                    script src=(format!("/static/{script}")) defer {}
                }
            }
            body { (body) }
        }
    };
    let mut r = markup.into_string().into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A page that only says something (an expired link, a missing page).
pub fn plain(status: StatusCode, message: &str) -> Response {
    let mut r = page(
        None,
        html! {
            main.notice {
                h1 { (message) }
            }
        },
    );
    *r.status_mut() = status;
    r
}

/// The file view and its login form; the script shows one of them.
fn files() -> Markup {
    html! {
        main #login hidden {
            h1 { "Sign in to your files" }
            form #login-form {
                label for="user" { "User name" }
                input #user name="user" autocomplete="username" required;
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
                label for="code" { "Verification code, if your account has one" }
                input #code name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}";
                button #login-button type="submit" { "Sign in" }
                p #login-error role="alert" {}
            }
        }
        main #files hidden {
            header {
                span #who {}
                button #logout type="button" { "Sign out" }
            }
            nav #crumbs aria-label="Folders" {}
            div #actions {
                label #upload-label hidden {
                    "Upload files"
                    input #upload type="file" multiple;
                }
                button #new-folder type="button" hidden { "New folder" }
                a #zip href="#" { "Download this folder (zip)" }
            }
            div #drop hidden { "Drop files here to upload them to this folder" }
            ul #progress {}
            p #status role="status" {}
            dialog #share-dialog {
                form #share-form method="dialog" {
                    h2 { "Share " span #share-name {} }
                    fieldset #share-kind {
                        legend { "People with the link may" }
                        label { input type="radio" name="kind" value="download" checked; " see and download" }
                        label #share-upload-choice { input type="radio" name="kind" value="upload"; " upload only (a drop box)" }
                    }
                    label for="share-expires" { "Expires in" }
                    select #share-expires {
                        option value="1d" { "1 day" }
                        option value="7d" selected { "7 days" }
                        option value="30d" { "30 days" }
                    }
                    label for="share-password" { "Password (optional)" }
                    input #share-password type="password" autocomplete="new-password";
                    label for="share-uses" { "Most uses (optional)" }
                    input #share-uses type="number" min="1";
                    p #share-made hidden {
                        label for="share-url" { "The link" }
                        input #share-url readonly;
                    }
                    p #share-error role="alert" {}
                    div.buttons {
                        button #share-create type="button" { "Create link" }
                        button #share-close type="button" { "Close" }
                    }
                }
            }
            table #listing {
                thead {
                    tr {
                        th { button type="button" data-sort="name" { "Name" } }
                        th.size { button type="button" data-sort="size" { "Size" } }
                        th.when { button type="button" data-sort="modified" { "Modified" } }
                        th { span.hidden-label { "Actions" } }
                    }
                }
                tbody {}
            }
            section #links hidden {
                h2 { "Your links" }
                table #links-table {
                    thead { tr { th { "Path" } th { "Kind" } th { "Expires" } th { "Uses" } th { span.hidden-label { "Actions" } } } }
                    tbody {}
                }
            }
        }
    }
}
