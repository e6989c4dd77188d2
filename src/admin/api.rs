//! `/api/v1`: what the console shows, as JSON, for the page and for
//! scripts. Every answer is an object (lists under a name), so fields can
//! be added; `openapi.json` documents each one and the tests check the
//! answers against it.

use super::access::{Access, Caller, LoginFailure};
use super::health::Health;
use crate::auth::Source;
use crate::config::AdminRole;
use crate::remote::Remotes;
use crate::session::SessionContext;
use crate::sync::schedule::{Jobs, RunNowError};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What `POST /api/v1/users/reload` does: what SIGHUP does, with its
/// outcome in words.
pub type Reload = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Everything the API reads and acts on.
pub struct Console {
    pub access: Access,
    pub shared: Arc<SessionContext>,
    pub jobs: Jobs,
    pub remotes: Remotes,
    pub health: Health,
    pub reload: Reload,
    /// With `[cluster]`: the fleet, whose sessions every node shows.
    pub cluster: Option<crate::cluster::Cluster>,
    /// With `[web]`: where share links are made and open.
    pub web: Option<Arc<crate::web::Web>>,
}

/// An answer: status and JSON body, and a cookie to set.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub cookie: Option<String>,
}

fn ok(body: Value) -> Answer {
    Answer {
        status: StatusCode::OK,
        body,
        cookie: None,
    }
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    Answer {
        status,
        body: json!({ "error": message.into() }),
        cookie: None,
    }
}

/// One API request, taken apart.
pub struct Call<'a> {
    pub method: &'a Method,
    /// The path after `/api/v1/`, split at `/` and percent-decoded.
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
    pub peer: IpAddr,
}

impl Call<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Console {
    pub async fn answer(&self, call: Call<'_>) -> Answer {
        let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
        // Logging in needs no caller; everything else does.
        match (call.method, segments.as_slice()) {
            (&Method::POST, ["login"]) => return self.login(&call).await,
            (&Method::GET, ["openapi.json"]) => return ok(openapi()),
            _ => {}
        }
        let Some(caller) = self.access.caller(call.headers).await else {
            return error(
                StatusCode::UNAUTHORIZED,
                "log in (POST /api/v1/login) or send Authorization: Bearer <token>",
            );
        };
        if call.method != Method::GET {
            if let Some(csrf) = &caller.csrf {
                let sent = call
                    .headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok());
                if sent != Some(csrf.as_str()) {
                    return error(
                        StatusCode::FORBIDDEN,
                        "the X-CSRF-Token header does not match this session's",
                    );
                }
            }
            let logout = matches!(segments.as_slice(), ["logout"]);
            if caller.role == AdminRole::ReadOnly && !logout {
                return error(
                    StatusCode::FORBIDDEN,
                    "a read-only admin cannot change anything",
                );
            }
        }
        match (call.method, segments.as_slice()) {
            (&Method::GET, ["me"]) => ok(me(&caller)),
            (&Method::POST, ["logout"]) => {
                self.access.logout(call.headers).await;
                Answer {
                    cookie: Some(self.access.set_cookie(None)),
                    ..ok(json!({ "logged_out": true }))
                }
            }
            (&Method::GET, ["sessions"]) => ok(self.sessions().await),
            (&Method::DELETE, ["sessions", id]) => {
                self.end_session(&caller, id, call.param("node")).await
            }
            (&Method::GET, ["operations"]) => ok(self.operations(&call)),
            (&Method::GET, ["syncs"]) => ok(self.syncs().await),
            (&Method::POST, ["syncs", name, "run"]) => self.run_sync(&caller, name, &call).await,
            (&Method::GET, ["bans"]) => ok(json!({ "bans": self.shared.limits.bans().list() })),
            (&Method::DELETE, ["bans", source]) => self.lift(&caller, source),
            (&Method::GET, ["remotes"]) => ok(self.remotes()),
            (&Method::GET, ["usage"]) => ok(json!({ "usage": self.shared.quotas.shown() })),
            (&Method::GET, ["users"]) => ok(self.users()),
            (&Method::POST, ["users", "reload"]) => match (self.reload)() {
                Ok(summary) => {
                    tracing::info!(admin = caller.name, "users reloaded from the console");
                    ok(json!({ "reloaded": summary }))
                }
                Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
            },
            (&Method::GET, ["shares"]) => self.shares(&call).await,
            (&Method::POST, ["shares"]) => self.make_share(&caller, &call).await,
            (&Method::DELETE, ["shares", id]) => self.revoke_share(&caller, id).await,
            (&Method::GET, ["webhooks"]) => ok(self.webhooks()),
            (&Method::POST, ["webhooks", name, "retry"]) => {
                match self.shared.events.retry(name).await {
                    None => error(StatusCode::NOT_FOUND, format!("no webhook named {name:?}")),
                    Some(Ok(n)) => {
                        tracing::info!(
                            admin = caller.name,
                            webhook = *name,
                            events = n,
                            "given-up events retried from the console"
                        );
                        ok(json!({ "retried": n }))
                    }
                    Some(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "no such endpoint: see /api/v1/openapi.json",
            ),
        }
    }

    async fn login(&self, call: &Call<'_>) -> Answer {
        // JSON only: a cross-site form cannot send it without the
        // browser asking this server first, which it never allows.
        let json_body = call
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        #[derive(serde::Deserialize)]
        struct Login {
            name: String,
            password: String,
        }
        let login: Login = match serde_json::from_slice(call.body) {
            Ok(l) if json_body => l,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "send JSON {\"name\": …, \"password\": …} as application/json",
                );
            }
        };
        match self
            .access
            .login(call.peer, &login.name, &login.password)
            .await
        {
            Ok((cookie, caller)) => Answer {
                cookie: Some(self.access.set_cookie(Some(&cookie))),
                ..ok(me(&caller))
            },
            Err(LoginFailure::Wrong) => error(StatusCode::UNAUTHORIZED, "wrong name or password"),
            Err(LoginFailure::Banned(left)) => error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed logins from this address: try again in {} s",
                    left.as_secs().max(1)
                ),
            ),
            Err(LoginFailure::Busy) => error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many logins from this address at once: try again",
            ),
        }
    }

    /// This node's sessions and, with `[cluster]`, the other live nodes'
    /// (each with its `node`); when those cannot be read, this node's
    /// alone, and `incomplete` says why.
    async fn sessions(&self) -> Value {
        let here = self.cluster.as_ref().map(|c| c.node());
        let mut sessions: Vec<Value> = self
            .shared
            .live
            .sessions()
            .iter()
            .map(|s| {
                let mut view = s.view();
                if let Some(node) = here {
                    view["node"] = node.into();
                }
                view
            })
            .collect();
        let mut answer = json!({});
        if let Some(cluster) = &self.cluster {
            match crate::cluster::live::elsewhere(cluster).await {
                Ok(more) => sessions.extend(more),
                Err(e) => {
                    answer["incomplete"] =
                        format!("the other nodes' sessions cannot be read: {e}").into()
                }
            }
        }
        answer["sessions"] = sessions.into();
        answer
    }

    /// Ends session `id` of this node, or of `node` of the fleet: that
    /// node ends it as it hears of it.
    async fn end_session(&self, caller: &Caller, id: &str, node: Option<&str>) -> Answer {
        let Ok(id) = id.parse::<u64>() else {
            return error(StatusCode::NOT_FOUND, format!("no session {id}"));
        };
        let elsewhere = match (&self.cluster, node) {
            (Some(cluster), Some(node)) if node != cluster.node() => Some((cluster, node)),
            (None, Some(node)) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no node {node:?}: this gateway is not in a cluster"),
                );
            }
            _ => None,
        };
        let ended = match elsewhere {
            None => Ok(self.shared.live.end(id)),
            Some((cluster, node)) => crate::cluster::live::end(cluster, node, id).await,
        };
        match ended {
            Ok(true) => {
                let node = node.or(self.cluster.as_ref().map(|c| c.node()));
                tracing::info!(
                    admin = caller.name,
                    session = id,
                    node,
                    "session ended from the console"
                );
                let mut answer = json!({ "ended": id });
                if let Some(node) = node {
                    answer["node"] = node.into();
                }
                ok(answer)
            }
            Ok(false) => error(StatusCode::NOT_FOUND, format!("no session {id}")),
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the cluster's database cannot be reached to end it: {e}"),
            ),
        }
    }

    fn operations(&self, call: &Call<'_>) -> Value {
        let user = call.param("user").filter(|u| !u.is_empty());
        let path = call.param("path").filter(|p| !p.is_empty());
        let limit = call
            .param("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100)
            .clamp(1, crate::live::RECENT);
        let ops = self.shared.live.recent(
            |op| user.is_none_or(|u| op.user == u) && path.is_none_or(|p| op.path.contains(p)),
            limit,
        );
        json!({ "operations": ops })
    }

    async fn syncs(&self) -> Value {
        let mut syncs = Vec::new();
        for s in self.jobs.iter() {
            let reports = s.reports(10).await;
            syncs.push({
                let c = &s.job.config;
                let running = s.progress().map(|p| {
                    json!({
                        "started": p.started,
                        "by": p.by,
                        "actions": p.actions.load(Ordering::Relaxed),
                        "done": p.done.load(Ordering::Relaxed),
                        "bytes": p.bytes.load(Ordering::Relaxed),
                        "copied_bytes": p.copied_bytes.load(Ordering::Relaxed),
                    })
                });
                json!({
                    "name": c.name,
                    "local": c.local.to_string(),
                    "remote": c.remote.to_string(),
                    "direction": c.direction.name(),
                    "after_copy": if c.delete_after_copy { "delete" } else { "keep" },
                    "interval_seconds": c.interval.map(|i| i.as_secs()),
                    "running": running,
                    "reports": reports,
                })
            });
        }
        json!({ "syncs": syncs })
    }

    async fn run_sync(&self, caller: &Caller, name: &str, call: &Call<'_>) -> Answer {
        let dry_run = match call.body {
            [] => false,
            body => match serde_json::from_slice::<Value>(body) {
                Ok(v) => v["dry_run"].as_bool().unwrap_or(false),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "the body is JSON {\"dry_run\": bool}, or empty",
                    );
                }
            },
        };
        if dry_run {
            let Some(s) = self.jobs.get(name) else {
                return error(StatusCode::NOT_FOUND, format!("no sync job named {name:?}"));
            };
            return match s.job.dry_run(false).await {
                Ok(plan) => ok(json!({ "dry_run": plan })),
                Err(reason) => error(
                    StatusCode::CONFLICT,
                    format!("the run would stop: {reason}"),
                ),
            };
        }
        match self.jobs.run_now(name) {
            Ok(()) => {
                tracing::info!(
                    admin = caller.name,
                    job = name,
                    "sync run started from the console"
                );
                Answer {
                    status: StatusCode::ACCEPTED,
                    ..ok(json!({ "started": name }))
                }
            }
            Err(e @ RunNowError::Unknown(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
            Err(e @ RunNowError::Running(_)) => error(StatusCode::CONFLICT, e.to_string()),
        }
    }

    fn lift(&self, caller: &Caller, source: &str) -> Answer {
        let parsed: Source = match source.parse() {
            Ok(s) => s,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        if self.shared.limits.bans().lift(parsed) {
            tracing::info!(admin = caller.name, source, "ban lifted from the console");
            ok(json!({ "lifted": source }))
        } else {
            error(StatusCode::NOT_FOUND, format!("{source} is not banned"))
        }
    }

    fn remotes(&self) -> Value {
        let health = self.health.remotes();
        let remotes: Vec<Value> = self
            .remotes
            .iter()
            .map(|r| {
                json!({
                    "name": r.name(),
                    "store": r.store().to_string(),
                    "bucket": r.bucket(),
                    "health": health.get(r.name()).cloned().unwrap_or(Value::Null),
                    "calls": r.calls().by_operation(),
                })
            })
            .collect();
        json!({ "remotes": remotes })
    }

    fn users(&self) -> Value {
        let (users, sources) = self.shared.users.listed();
        let users: Vec<Value> = users
            .iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "home": u.home.to_string(),
                    "permissions": u.permissions.names(),
                    "max_sessions": u.max_sessions,
                    "allowed_ips": u.allowed_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                    "password": u.password_hash.is_some(),
                    "keys": u.authorized_keys.len(),
                    "mounts": u.mounts.iter().map(|m| json!({
                        "path": m.path,
                        "target": m.target.to_string(),
                        "read_only": m.read_only,
                        "quota_bytes": m.quota.bytes,
                        "quota_files": m.quota.files,
                    })).collect::<Vec<_>>(),
                    "limits": {
                        "quota_bytes": u.limits.quota.bytes,
                        "quota_files": u.limits.quota.files,
                        "max_file_size": u.limits.max_file_size,
                        "bandwidth_up": u.limits.bandwidth.up,
                        "bandwidth_down": u.limits.bandwidth.down,
                        "filters": u.filters.len(),
                    },
                })
            })
            .collect();
        let sources: Vec<&str> = sources.iter().map(|s| s.name()).collect();
        json!({ "users": users, "sources": sources })
    }

    fn webhooks(&self) -> Value {
        let hooks: Vec<Value> = self
            .health
            .webhooks()
            .into_iter()
            .map(|(name, b)| {
                json!({
                    "name": name,
                    "pending": b.pending,
                    "oldest_seconds": b.oldest_seconds,
                    "given_up": b.given_up,
                })
            })
            .collect();
        json!({ "webhooks": hooks })
    }
}

fn me(caller: &Caller) -> Value {
    let mut v = json!({ "name": caller.name, "role": caller.role });
    if let Some(csrf) = &caller.csrf {
        v["csrf"] = csrf.clone().into();
    }
    v
}

/// The OpenAPI document, served as the gateway was built.
pub fn openapi() -> Value {
    serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is valid JSON")
}
