//! `[web]` → [`WebConfig`]: the web client's listener, its TLS or the proxy
//! in front of it, and how long logins, share links and unfinished uploads
//! last.

use super::*;

const DAY: u64 = 86_400;

pub(super) fn validate_web(cx: &mut Ctx<'_>, spanned: &Spanned<RawWeb>) -> WebConfig {
    let t = spanned.get_ref();
    let line = cx.lines.of(spanned);
    let tls = cx.tls_pair(&t.tls_cert, &t.tls_key, "web", line);
    let public_url = t
        .public_url
        .as_ref()
        .and_then(|_| cx.http_url(&t.public_url, "web.public_url", line, "the"));
    WebConfig {
        listen: cx.listen(&t.listen, "web.listen", "127.0.0.1:8080"),
        tls,
        public_url,
        proxy_allowed: cx.cidrs(&t.proxy_allowed, "web.proxy_allowed"),
        session_time: cx.duration(
            &t.session_time,
            "web.session_time",
            Duration::from_secs(8 * 3600),
        ),
        share_max_time: cx.duration(
            &t.share_max_time,
            "web.share_max_time",
            Duration::from_secs(30 * DAY),
        ),
        upload_expiry: cx.duration(
            &t.upload_expiry,
            "web.upload_expiry",
            Duration::from_secs(DAY),
        ),
    }
}
