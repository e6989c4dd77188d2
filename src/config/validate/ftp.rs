//! `[ftp]` → [`FtpConfig`].

use super::*;

pub(super) fn validate_ftp(cx: &mut Ctx<'_>, t: &Spanned<RawFtp>) -> FtpConfig {
    let t = t.get_ref();
    let passive_ports = match &t.passive_ports {
        None => 50000..=50100,
        Some(s) => parse_port_range(s.get_ref()).unwrap_or_else(|e| {
            cx.at(s, "ftp.passive_ports", e);
            50000..=50100
        }),
    };
    let passive_host = match &t.passive_host {
        None => PassiveHost::Auto,
        Some(s) if s.get_ref() == "auto" => PassiveHost::Auto,
        Some(s) if s.get_ref().trim().is_empty() => {
            cx.at(
                s,
                "ftp.passive_host",
                "is empty: use \"auto\", an IP address or a DNS name",
            );
            PassiveHost::Auto
        }
        Some(s) => PassiveHost::Given(s.get_ref().clone()),
    };
    let tls = match (&t.tls_cert, &t.tls_key) {
        (Some(c), Some(k)) => Some((c.get_ref().into(), k.get_ref().into())),
        (None, None) => None,
        (Some(c), None) => {
            cx.at(
                c,
                "ftp.tls_cert",
                "is set without ftp.tls_key: FTPS needs both",
            );
            None
        }
        (None, Some(k)) => {
            cx.at(
                k,
                "ftp.tls_key",
                "is set without ftp.tls_cert: FTPS needs both",
            );
            None
        }
    };
    let tls_required = Ctx::flag(&t.tls_required, false);
    if tls_required && tls.is_none() {
        let at = t.tls_required.as_ref().expect("set when true");
        cx.at(at, "ftp.tls_required", "needs ftp.tls_cert and ftp.tls_key");
    }
    let implicit_listen = t.implicit_listen.as_ref().map(|s| {
        if tls.is_none() {
            cx.at(
                s,
                "ftp.implicit_listen",
                "needs ftp.tls_cert and ftp.tls_key",
            );
        }
        cx.listen(&Some(s.clone()), "ftp.implicit_listen", "127.0.0.1:9990")
    });
    let (proxy_protocol, proxy_allowed) =
        cx.proxy_rules(&t.proxy_protocol, &t.proxy_allowed, "ftp");
    FtpConfig {
        listen: cx.listen(&t.listen, "ftp.listen", "127.0.0.1:2121"),
        passive_ports,
        passive_host,
        tls,
        tls_required,
        implicit_listen,
        proxy_protocol,
        proxy_allowed,
    }
}
