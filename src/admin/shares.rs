//! `/api/v1/shares`: an operator makes, lists and revokes share links for
//! any user of the config file, with the same checks as the user's page
//! ([`crate::web::shares::links`]). Off without `[web]`, where links open.

use super::access::Caller;
use super::api::{Answer, Call, Console, error};
use crate::web::shares::links::{NewLink, Refused, make};
use http::StatusCode;
use serde_json::json;

fn answer(status: StatusCode, body: serde_json::Value) -> Answer {
    Answer {
        status,
        body,
        cookie: None,
    }
}

fn unavailable(e: impl std::fmt::Display) -> Answer {
    tracing::error!(error = %e, "share links unavailable");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "share links cannot be reached now",
    )
}

impl Console {
    fn web(&self) -> Result<&crate::web::Web, Answer> {
        self.web.as_deref().ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "share links need the web client: configure [web]",
            )
        })
    }

    pub(super) async fn shares(&self, call: &Call<'_>) -> Answer {
        let web = match self.web() {
            Ok(web) => web,
            Err(e) => return e,
        };
        match web.shares.list(call.param("user")).await {
            Ok(links) => {
                let links: Vec<_> = links.iter().map(|s| s.view()).collect();
                answer(StatusCode::OK, json!({ "shares": links }))
            }
            Err(e) => unavailable(e),
        }
    }

    pub(super) async fn make_share(&self, caller: &Caller, call: &Call<'_>) -> Answer {
        let web = match self.web() {
            Ok(web) => web,
            Err(e) => return e,
        };
        let new: NewLink = match serde_json::from_slice(call.body) {
            Ok(new) => new,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a link: {e}")),
        };
        let Some(name) = new.user.clone() else {
            return error(
                StatusCode::BAD_REQUEST,
                "user is required: whose files the link shares",
            );
        };
        let (users, _) = self.shared.users.listed();
        let Some(user) = users.into_iter().find(|u| u.name == name) else {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "no user {name:?} in the config file (LDAP and hook users make their links in the web client)"
                ),
            );
        };
        let vfs = match crate::vfs::UserVfs::for_user(&user, &self.shared.storage).await {
            Ok(vfs) => vfs,
            Err(e) => return error(StatusCode::BAD_GATEWAY, e.client_message()),
        };
        let creator = format!("admin:{}", caller.name);
        let longest = web.config.share_max_time;
        match make(
            &web.shares,
            &vfs,
            user.permissions,
            &name,
            &creator,
            new,
            longest,
        )
        .await
        {
            Ok(made) => answer(
                StatusCode::CREATED,
                crate::web::shares::mine::made(web, &made),
            ),
            Err(Refused::Invalid(m)) => error(StatusCode::BAD_REQUEST, m),
            Err(Refused::Files(e)) => {
                let api = crate::web::ApiError::from(e);
                error(api.0, api.1)
            }
            Err(Refused::Store(e)) => unavailable(e),
        }
    }

    pub(super) async fn revoke_share(&self, caller: &Caller, id: &str) -> Answer {
        let web = match self.web() {
            Ok(web) => web,
            Err(e) => return e,
        };
        match web.shares.revoke(id, None).await {
            Ok(true) => {
                tracing::info!(
                    admin = caller.name,
                    link = id,
                    "share link revoked from the console"
                );
                answer(StatusCode::OK, json!({ "revoked": id }))
            }
            Ok(false) => error(StatusCode::NOT_FOUND, format!("no link {id:?}")),
            Err(e) => unavailable(e),
        }
    }
}
