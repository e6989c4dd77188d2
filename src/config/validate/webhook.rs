//! `[[webhooks]]` → [`WebhookConfig`].

use super::*;

pub(super) fn validate_webhook(
    cx: &mut Ctx<'_>,
    i: usize,
    spanned: &Spanned<RawWebhook>,
) -> Option<WebhookConfig> {
    let line = cx.lines.of(spanned);
    let w = spanned.get_ref();
    let key = |k: &str| format!("webhooks[{i}].{k}");
    let name = match &w.name {
        Some(n) if crate::base::check_segment(n.get_ref()).is_ok() => n.get_ref().clone(),
        Some(n) => {
            cx.at(
                n,
                &key("name"),
                "must be a plain name (it names the webhook's spool folder)",
            );
            return None;
        }
        None => {
            cx.problem(line, &key("name"), "is required");
            return None;
        }
    };
    let url = cx.http_url(&w.url, &key("url"), line, "the receiver's");
    let events = match &w.events {
        None => vec![EventKind::Upload],
        Some(list) => {
            let mut events = Vec::new();
            for (j, e) in list.get_ref().iter().enumerate() {
                match EventKind::parse(e.get_ref()) {
                    Some(kind) if !events.contains(&kind) => events.push(kind),
                    Some(_) => {}
                    None => {
                        let names: Vec<_> = EventKind::ALL.iter().map(|k| k.name()).collect();
                        cx.at(
                            e,
                            &format!("{}[{j}]", key("events")),
                            format!("{:?} is not one of {}", e.get_ref(), names.join(", ")),
                        );
                    }
                }
            }
            if events.is_empty() && list.get_ref().is_empty() {
                cx.at(
                    list,
                    &key("events"),
                    "names no event: leave it out for [\"upload\"]",
                );
            }
            events
        }
    };
    let mut globs = globset::GlobSetBuilder::new();
    for (j, p) in w.paths.iter().enumerate() {
        let pattern = p.get_ref();
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build();
        match glob {
            Ok(g) if pattern.starts_with('/') => {
                globs.add(g);
            }
            Ok(_) => cx.at(
                p,
                &format!("{}[{j}]", key("paths")),
                "a path glob starts with /",
            ),
            Err(e) => cx.at(p, &format!("{}[{j}]", key("paths")), e.kind().to_string()),
        }
    }
    let paths = match w.paths.is_empty() {
        true => None,
        false => globs.build().ok(),
    };
    let secret = cx.secret(
        &w.secret,
        &key("secret"),
        line,
        "is required: the key receivers check the signature with (use env:NAME)",
    );
    let ca_file = cx.file(&w.ca_file, &key("ca_file"));
    Some(WebhookConfig {
        name,
        url: url?,
        events,
        users: w.users.iter().map(|u| u.get_ref().clone()).collect(),
        paths,
        secret,
        timeout: cx.duration(&w.timeout, &key("timeout"), Duration::from_secs(10)),
        retry_for: cx.duration(
            &w.retry_for,
            &key("retry_for"),
            Duration::from_secs(72 * 3600),
        ),
        concurrency: cx.count(&w.concurrency, &key("concurrency"), 4, 1..=64),
        spool_limit: cx.size(&w.spool_limit, &key("spool_limit"), 64 * MIB),
        ca_file,
    })
}
