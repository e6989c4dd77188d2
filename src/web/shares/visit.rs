//! What a visitor of `/s/{token}` gets, without an account: a page for
//! the file or folder (a password form first, where the link has one), its
//! downloads and zip, or an upload link's drop box. Each visit opens the
//! link's folder alone, read-only for a download link, through the same
//! policy layers as a session: audited, evented (`share_download`,
//! `share_upload`, with the link and its creator), on the console.
//!
//! A link that expired, was used up or revoked answers 410 with a plain
//! page; an unknown token, 404.

use super::{Kind, Share};
use crate::base::{FsError, digest};
use crate::config::units::format_amount;
use crate::config::{Permission, Permissions};
use crate::events::{Origin, ShareOrigin};
use crate::listen::http::cookie;
use crate::live::SessionEntry;
use crate::policy::SessionVfs;
use crate::vfs::{UserPath, UserVfs, Vfs, WriteMode};
use crate::web::files::send_file;
use crate::web::pages::{page, plain};
use crate::web::{ApiError, Shared, Web};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use maud::html;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The cookie a right password sets, for the link's path alone.
const UNLOCKED: &str = "bg_share";

/// How long a wrong password waits before its answer.
const FAILURE_DELAY: Duration = Duration::from_secs(1);

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/s/{token}", get(show).post(unlock))
        .route("/s/{token}/get", get(download))
        .route("/s/{token}/zip", get(zip))
        .route("/s/{token}/put", post(upload))
}

/// One visit: the link, and its folder through every policy layer.
struct Visit {
    share: Share,
    vfs: Arc<SessionVfs>,
    span: tracing::Span,
    live: SessionEntry,
}

/// Why a visit ends before it starts: the plain page to show.
struct Stop(StatusCode, String);

impl Stop {
    fn new(status: StatusCode, message: &str) -> Stop {
        Stop(status, message.to_string())
    }
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Stop(e.0, e.1)
    }
}

impl IntoResponse for Stop {
    fn into_response(self) -> Response {
        plain(self.0, &self.1)
    }
}

/// The link `token` opens for `client`, if it may: known, not gone, from
/// an allowed network, and unlocked where it has a password (`None`:
/// the password is still to be given).
async fn link(
    web: &Web,
    token: &str,
    client: SocketAddr,
    headers: &HeaderMap,
) -> Result<(Share, bool), Stop> {
    let found = web.shares.find(token).await.map_err(|e| {
        tracing::error!(error = %e, "share links unavailable");
        Stop::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Links cannot be opened now.",
        )
    })?;
    let Some(share) = found else {
        return Err(Stop::new(StatusCode::NOT_FOUND, "No such link."));
    };
    if let Some(why) = share.gone(chrono::Utc::now()) {
        return Err(Stop::new(StatusCode::GONE, why));
    }
    if !share.allowed_ips.is_empty() && !share.allowed_ips.iter().any(|n| n.contains(&client.ip()))
    {
        return Err(Stop::new(
            StatusCode::FORBIDDEN,
            "This link cannot be opened from your network.",
        ));
    }
    let unlocked = match &share.password {
        None => true,
        Some(hash) => cookie(headers, UNLOCKED).is_some_and(|c| c == unlock_value(token, hash)),
    };
    Ok((share, unlocked))
}

/// What the cookie of an unlocked link holds: nothing a visitor could
/// make without the password, and void when the password changes.
fn unlock_value(token: &str, hash: &str) -> String {
    digest(&format!("unlocked:{token}:{hash}"))
}

impl Web {
    /// Opens the link's folder for one visit.
    fn visit(&self, share: Share, client: SocketAddr) -> Result<Visit, Stop> {
        let shared = &self.shared;
        let permissions: Permissions = match share.kind {
            Kind::Download => [Permission::List, Permission::Download]
                .into_iter()
                .collect(),
            Kind::Upload => [Permission::Upload].into_iter().collect(),
        };
        let vfs = UserVfs::for_share(&share.user, &share.folder, permissions, &shared.storage)
            .map_err(ApiError::from)?;
        let live = shared
            .live
            .register(&share.user, "https", client, shared.ending.child_token());
        let origin = Origin {
            protocol: "https",
            user: share.user.clone(),
            ip: client.ip(),
            share: Some(ShareOrigin {
                id: share.id.clone(),
                creator: share.creator.clone(),
            }),
        };
        // The owner's file rules and largest file, where the config has the owner.
        let (owner, _) = shared.users.listed();
        let owner = owner.into_iter().find(|u| u.name == share.user);
        let filters = owner
            .as_ref()
            .map(|u| u.filters.clone())
            .unwrap_or_default();
        let governance = crate::policy::Governance {
            filters: &filters,
            max_file_size: owner.as_ref().and_then(|u| u.limits.max_file_size),
            quotas: shared.quotas.clone(),
            rates: shared.bandwidth.for_user(
                &share.user,
                owner
                    .as_ref()
                    .map(|u| u.limits.bandwidth)
                    .unwrap_or_default(),
            ),
        };
        let vfs = SessionVfs::new(
            vfs,
            governance,
            shared.events.clone(),
            origin,
            live.0.clone(),
            &shared.metrics,
        );
        let span = tracing::info_span!("share", protocol = "https", peer = %client, user = %share.user, link = %share.id, creator = %share.creator);
        Ok(Visit {
            share,
            vfs: Arc::new(vfs),
            span,
            live,
        })
    }

    /// A visit that uses the link once (a download, a zip, an upload).
    async fn use_link(
        &self,
        token: &str,
        client: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<Visit, Stop> {
        let (share, unlocked) = link(self, token, client, headers).await?;
        if !unlocked {
            return Err(Stop::new(
                StatusCode::FORBIDDEN,
                "This link asks for its password first.",
            ));
        }
        let taken = self.shares.take_use(&share.id).await.map_err(|e| {
            tracing::error!(error = %e, "share links unavailable");
            Stop::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Links cannot be opened now.",
            )
        })?;
        if !taken {
            return Err(Stop::new(
                StatusCode::GONE,
                "This link has been used as many times as it may be.",
            ));
        }
        self.visit(share, client)
    }
}

#[derive(Deserialize)]
struct Inside {
    #[serde(default)]
    path: Option<String>,
}

/// The link's page.
async fn show(
    State(web): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Query(inside): Query<Inside>,
) -> Result<Response, Stop> {
    let client = web.client(peer, &headers);
    let (share, unlocked) = link(&web, &token, client, &headers).await?;
    if !unlocked {
        return Ok(password_page(&token, None));
    }
    let title = share
        .path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("Shared files")
        .to_string();
    let until = share.expires.format("%Y-%m-%d %H:%M UTC").to_string();
    let base = format!("/s/{token}");
    if share.kind == Kind::Upload {
        return Ok(page(
            Some("share.js"),
            html! {
                main.share #dropbox data-put=(format!("{base}/put")) {
                    h1 { "Upload files to " (title) }
                    p { "Files you send here go to " (share.user) ". You will not see what others sent. This link works until " (until) "." }
                    label #share-upload-label {
                        "Choose files"
                        input #share-upload type="file" multiple;
                    }
                    ul #share-progress {}
                }
            },
        ));
    }
    if let Some(file) = &share.file {
        let visit = web.visit(share.clone(), client)?;
        let stat = visit
            .vfs
            .stat(&UserPath::parse_file(&format!("/{file}")).map_err(ApiError::from)?)
            .await
            .map_err(ApiError::from)?;
        return Ok(page(
            None,
            html! {
                main.share {
                    h1 { (file) }
                    p { (format_amount(stat.size)) " · shared by " (share.user) " until " (until) }
                    a.button #share-download href=(format!("{base}/get")) download=(file) { "Download" }
                }
            },
        ));
    }
    let visit = web.visit(share.clone(), client)?;
    let dir = UserPath::parse(inside.path.as_deref().unwrap_or("/")).map_err(ApiError::from)?;
    let mut entries = Vec::new();
    let mut listing = visit
        .vfs
        .list(&dir)
        .instrument(visit.span.clone())
        .await
        .map_err(ApiError::from)?;
    while let Some(entry) = listing.next().await {
        entries.push(entry.map_err(ApiError::from)?);
        if entries.len() >= 10_000 {
            break;
        }
    }
    let enc = |p: &str| {
        percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    Ok(page(
        None,
        html! {
            main.share {
                h1 { (title) (dir.as_str().trim_end_matches('/')) }
                p { "Shared by " (share.user) " until " (until) ". " a #share-zip href=(format!("{base}/zip")) { "Download everything (zip)" } }
                @if !dir.is_root() {
                    p { a href=(format!("{base}?path={}", enc(dir.parent().as_str()))) { "↑ Up" } }
                }
                table #share-listing {
                    thead { tr { th { "Name" } th.size { "Size" } } }
                    tbody {
                        @for e in &entries {
                            @let path = UserPath::resolve(&dir, &e.name).map(|p| p.as_str().to_string()).unwrap_or_default();
                            tr data-name=(e.name) {
                                @if e.is_dir {
                                    td { a href=(format!("{base}?path={}", enc(&path))) { (e.name) "/" } }
                                    td.size {}
                                } @else {
                                    td { a href=(format!("{base}/get?path={}", enc(&path))) download=(e.name) { (e.name) } }
                                    td.size { (format_amount(e.size)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

fn password_page(token: &str, error: Option<&str>) -> Response {
    let mut r = page(
        None,
        html! {
            main.share {
                h1 { "This link has a password" }
                form #share-password method="post" action=(format!("/s/{token}")) {
                    label for="password" { "Password" }
                    input #password name="password" type="password" autocomplete="off" required autofocus;
                    button type="submit" { "Open" }
                    @if let Some(e) = error { p #share-error role="alert" { (e) } }
                }
            }
        },
    );
    if error.is_some() {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
    }
    r
}

#[derive(Deserialize)]
struct Password {
    password: String,
}

/// The password form: a right one sets the cookie that unlocks the link;
/// wrong ones count toward the source's ban, as failed logins do.
async fn unlock(
    State(web): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    axum::Form(form): axum::Form<Password>,
) -> Result<Response, Stop> {
    let client = web.client(peer, &headers);
    let started = tokio::time::Instant::now();
    let (share, _) = link(&web, &token, client, &headers).await?;
    let Some(hash) = share.password.clone() else {
        return Ok(see_other(&format!("/s/{token}")));
    };
    // A banned source is not checked (the slot is only the ban's test).
    if let Err(e) = web.shared.limits.connection(client.ip(), "https") {
        return Err(Stop::new(StatusCode::TOO_MANY_REQUESTS, &e.to_string()));
    }
    let password = form.password;
    let right = tokio::task::spawn_blocking(move || crate::auth::verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    if !right {
        {
            let _enter = tracing::info_span!("share", peer = %client, link = %share.id).entered();
            tracing::warn!("wrong password for a share link");
        }
        web.shared.limits.login_failed(client.ip());
        tokio::time::sleep_until(started + FAILURE_DELAY).await;
        return Ok(password_page(&token, Some("Wrong password.")));
    }
    let value = unlock_value(&token, share.password.as_deref().unwrap_or(""));
    let secure = if web.secure_cookies() { "; Secure" } else { "" };
    let cookie = format!("{UNLOCKED}={value}; HttpOnly; SameSite=Strict; Path=/s/{token}{secure}");
    let mut r = see_other(&format!("/s/{token}"));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn download(
    State(web): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
    Query(inside): Query<Inside>,
) -> Result<Response, Stop> {
    let client = web.client(peer, &headers);
    let visit = web.use_link(&token, client, &headers).await?;
    if visit.share.kind != Kind::Download {
        return Err(Stop::new(
            StatusCode::FORBIDDEN,
            "This link only takes files.",
        ));
    }
    let path = match &visit.share.file {
        Some(file) => format!("/{file}"),
        None => inside.path.unwrap_or_default(),
    };
    let path = UserPath::parse_file(&path).map_err(ApiError::from)?;
    let response = send_file(&visit.vfs, &path, &method, &headers)
        .instrument(visit.span.clone())
        .await?;
    // The console shows the visit while the file streams.
    let live = visit.live;
    Ok(response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _ = &live;
            chunk
        }))
    }))
}

async fn zip(
    State(web): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, Stop> {
    let client = web.client(peer, &headers);
    let visit = web.use_link(&token, client, &headers).await?;
    if visit.share.kind != Kind::Download || visit.share.file.is_some() {
        return Err(Stop::new(
            StatusCode::BAD_REQUEST,
            "Only a shared folder downloads as a zip.",
        ));
    }
    let name = visit
        .share
        .path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("shared")
        .to_string();
    let response =
        crate::web::zip::send_zip(visit.vfs, UserPath::root(), &name, visit.span, visit.live)
            .await?;
    Ok(response)
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// One file into an upload link's folder, streamed; a name already there
/// is refused (a visitor replaces nothing), and a cut upload stores
/// nothing.
async fn upload(
    State(web): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Query(named): Query<Named>,
    body: Body,
) -> Result<Response, ApiError> {
    // A header a cross-site form cannot send.
    if headers.get("x-share-upload").is_none() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "send X-Share-Upload: 1".into(),
        ));
    }
    if named.name.is_empty() || named.name.contains('/') || named.name == "." || named.name == ".."
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "name is one file name".into(),
        ));
    }
    let client = web.client(peer, &headers);
    let visit = match web.use_link(&token, client, &headers).await {
        Ok(v) => v,
        Err(Stop(status, why)) => return Err(ApiError(status, why)),
    };
    if visit.share.kind != Kind::Upload {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "this link does not take files".into(),
        ));
    }
    let path = UserPath::parse_file(&format!("/{}", named.name))?;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
    {
        visit.vfs.room(&UserPath::root(), len).await?;
    }
    let stored = write(&visit.vfs, &path, body)
        .instrument(visit.span.clone())
        .await?;
    drop(visit.live);
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "name": named.name, "size": stored })),
    )
        .into_response())
}

async fn write(vfs: &SessionVfs, path: &UserPath, body: Body) -> Result<u64, ApiError> {
    let mut upload = vfs.open_write(path, WriteMode::CreateNew).await?;
    let mut body = body.into_data_stream();
    let mut offset = 0u64;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(60), body.next()).await;
        match next {
            Ok(Some(Ok(data))) => {
                let len = data.len() as u64;
                upload.write_at(offset, data).await?;
                offset += len;
            }
            Ok(None) => break,
            // Cut or stalled: dropping the upload aborts it.
            Ok(Some(Err(_))) | Err(_) => {
                return Err(FsError::Aborted("the upload was cut short".into()).into());
            }
        }
    }
    Ok(upload.close().await?)
}
