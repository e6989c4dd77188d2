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

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(|| async { page(files()) }))
        .route(
            "/static/web.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/static/web.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
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

/// A page of the gateway's look around `body`.
pub fn page(body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Files" }
                link rel="stylesheet" href="/static/web.css";
                script src="/static/web.js" defer {}
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
    let mut r = page(html! {
        main.notice {
            h1 { (message) }
        }
    });
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
        }
    }
}
