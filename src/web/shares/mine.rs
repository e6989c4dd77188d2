//! A user's own links, from the page: `/api/shares` (make, list) and
//! `/api/shares/{id}` (revoke). Making one needs the `share` permission.

use super::links::{NewLink, Refused, make};
use crate::config::Permission;
use crate::web::{ApiError, Shared, Web};
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/shares", get(list).post(create))
        .route("/shares/{id}", delete(revoke))
}

impl From<Refused> for ApiError {
    fn from(e: Refused) -> Self {
        match e {
            Refused::Invalid(m) => ApiError(StatusCode::BAD_REQUEST, m),
            Refused::Files(e) => e.into(),
            Refused::Store(e) => {
                tracing::error!(error = %e, "share links unavailable");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "links cannot be made now".into(),
                )
            }
        }
    }
}

fn unavailable(e: super::ShareError) -> ApiError {
    tracing::error!(error = %e, "share links unavailable");
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "links cannot be reached now".into(),
    )
}

/// A link as its maker sees it at creation: with its URL, shown once.
pub fn made(web: &Web, made: &super::links::Made) -> serde_json::Value {
    let mut view = made.share.view();
    view["url"] = json!(format!("{}/s/{}", web.base_url, made.token));
    view
}

async fn create(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    axum::Json(new): axum::Json<NewLink>,
) -> Result<Response, ApiError> {
    let session = web.session(&method, &headers)?;
    let user = &session.user.name;
    if !session.permissions().allows(Permission::Share) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("permission denied: share is not allowed for user {user}"),
        ));
    }
    if new.user.as_ref().is_some_and(|u| u != user) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "a link shares your own files".into(),
        ));
    }
    let longest = web.config.share_max_time;
    let made_now = make(
        &web.shares,
        &**session.vfs,
        session.permissions(),
        user,
        user,
        new,
        longest,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(made(&web, &made_now))).into_response())
}

async fn list(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = web.session(&method, &headers)?;
    let links = web
        .shares
        .list(Some(&session.user.name))
        .await
        .map_err(unavailable)?;
    let links: Vec<_> = links.iter().map(super::Share::view).collect();
    Ok(axum::Json(json!({ "shares": links })).into_response())
}

async fn revoke(
    State(web): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = web.session(&method, &headers)?;
    match web
        .shares
        .revoke(&id, Some(&session.user.name))
        .await
        .map_err(unavailable)?
    {
        true => Ok(axum::Json(json!({ "revoked": id })).into_response()),
        false => Err(ApiError(
            StatusCode::NOT_FOUND,
            "no such link of yours".into(),
        )),
    }
}
