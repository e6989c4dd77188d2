//! `[remotes.NAME]` → [`RemoteConfig`]: each kind's keys, and the keys
//! that only one kind takes.

use super::*;

pub(super) fn validate_remote(
    cx: &mut Ctx<'_>,
    name: &str,
    spanned: &Spanned<RawRemote>,
) -> Option<RemoteConfig> {
    let line = cx.lines.of(spanned);
    let r = spanned.get_ref();
    let key = |k: &str| format!("remotes.{name}.{k}");
    let Some(kind_text) = &r.kind else {
        cx.problem(line, &key("kind"), "is required: filesystem, s3 or memory");
        return None;
    };
    let part_size = cx.size(&r.part_size, &key("part_size"), 8 * MIB);
    let upload_concurrency = cx.count(&r.upload_concurrency, &key("upload_concurrency"), 4, 1..=64);
    let preserve_mtime = Ctx::flag(&r.preserve_mtime, false);
    let checksums = match &r.checksums {
        None => Checksums::DEFAULT,
        Some(list) => {
            list.get_ref()
                .iter()
                .enumerate()
                .fold(Checksums::default(), |acc, (i, name)| {
                    match acc.with(name.get_ref()) {
                        Ok(set) => set,
                        Err(e) => {
                            cx.at(name, &format!("{}[{i}]", key("checksums")), e);
                            acc
                        }
                    }
                })
        }
    };

    // Keys that only mean something for S3.
    let s3_only: [(&str, bool); 16] = [
        ("endpoint", r.endpoint.is_some()),
        ("bucket", r.bucket.is_some()),
        ("region", r.region.is_some()),
        ("access_key_id", r.access_key_id.is_some()),
        ("secret_access_key", r.secret_access_key.is_some()),
        ("path_style", r.path_style.is_some()),
        ("outbound_ips", !r.outbound_ips.is_empty()),
        ("use_dedicated_ips", r.use_dedicated_ips.is_some()),
        ("max_connections", r.max_connections.is_some()),
        ("connect_timeout", r.connect_timeout.is_some()),
        ("request_timeout", r.request_timeout.is_some()),
        ("retries", r.retries.is_some()),
        ("wire_checksums", r.wire_checksums.is_some()),
        ("keep_digests_by_copy", r.keep_digests_by_copy.is_some()),
        (
            "multipart_copy_threshold",
            r.multipart_copy_threshold.is_some(),
        ),
        ("assume_role_arn", r.assume_role_arn.is_some()),
    ];
    let kind = match kind_text.get_ref().as_str() {
        "s3" => {
            let mut required = |v: &S<String>, k: &str| match v {
                Some(s) if !s.get_ref().is_empty() => s.get_ref().clone(),
                _ => {
                    cx.problem(line, &key(k), "is required for an s3 remote");
                    String::new()
                }
            };
            let endpoint = required(&r.endpoint, "endpoint");
            let bucket = required(&r.bucket, "bucket");
            if let Some(arn) = &r.assume_role_arn
                && !arn.get_ref().starts_with("arn:")
            {
                cx.at(
                    arn,
                    &key("assume_role_arn"),
                    "is a role's ARN: arn:aws:iam::ACCOUNT:role/NAME",
                );
            }
            let keys = match (&r.access_key_id, &r.secret_access_key) {
                (None, None) => None,
                (Some(id), Some(secret)) => Some(crate::config::S3Keys {
                    access_key_id: id.get_ref().clone(),
                    secret_access_key: secret.get_ref().clone(),
                }),
                (one, _) => {
                    let missing = match one {
                        Some(_) => "secret_access_key",
                        None => "access_key_id",
                    };
                    cx.problem(
                        line,
                        &key(missing),
                        "is required with the other key (or leave both out for the credential chain)",
                    );
                    None
                }
            };
            if let Some(e) = &r.endpoint
                && url::Url::parse(e.get_ref())
                    .map(|u| !matches!(u.scheme(), "http" | "https"))
                    .unwrap_or(true)
            {
                cx.at(
                    e,
                    &key("endpoint"),
                    format!("{:?} is not an http:// or https:// URL", e.get_ref()),
                );
            }
            cx.within(
                (&r.part_size, line),
                &key("part_size"),
                part_size,
                S3_MIN_PART..=S3_MAX_PART,
                "S3 parts must be between 5 MiB and 5 GiB",
            );
            let outbound_ips = r
                .outbound_ips
                .iter()
                .enumerate()
                .filter_map(|(i, ip)| match ip.get_ref().parse::<IpAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        cx.at(
                            ip,
                            &format!("{}[{i}]", key("outbound_ips")),
                            format!("{:?} is not an IP address", ip.get_ref()),
                        );
                        None
                    }
                })
                .collect::<Vec<_>>();
            let region = cx.text(&r.region, "");
            let multipart_copy_threshold = cx.size(
                &r.multipart_copy_threshold,
                &key("multipart_copy_threshold"),
                S3_MAX_PART,
            );
            cx.within(
                (&r.multipart_copy_threshold, line),
                &key("multipart_copy_threshold"),
                multipart_copy_threshold,
                S3_MIN_PART..=S3_MAX_PART,
                "must be between 5 MiB and 5 GiB (one CopyObject copies at most 5 GiB)",
            );
            RemoteKind::S3(Box::new(S3Config {
                endpoint: endpoint.trim_end_matches('/').to_string(),
                bucket,
                region: if region.is_empty() {
                    "us-east-1".into()
                } else {
                    region
                },
                keys,
                path_style: Ctx::flag(&r.path_style, true),
                use_dedicated_ips: Ctx::flag(&r.use_dedicated_ips, !outbound_ips.is_empty()),
                outbound_ips,
                max_connections: cx.count(
                    &r.max_connections,
                    &key("max_connections"),
                    0,
                    0..=100_000,
                ),
                connect_timeout: cx.duration(
                    &r.connect_timeout,
                    &key("connect_timeout"),
                    Duration::from_secs(5),
                ),
                request_timeout: cx.duration(
                    &r.request_timeout,
                    &key("request_timeout"),
                    Duration::from_secs(60),
                ),
                retries: cx.count(&r.retries, &key("retries"), 5, 0..=100),
                wire_checksums: Ctx::flag(&r.wire_checksums, true),
                keep_digests_by_copy: Ctx::flag(&r.keep_digests_by_copy, false),
                multipart_copy_threshold,
                assume_role_arn: r.assume_role_arn.as_ref().map(|a| a.get_ref().clone()),
            }))
        }
        other @ ("filesystem" | "memory") => {
            for (k, set) in s3_only {
                if set {
                    cx.problem(
                        line,
                        &key(k),
                        format!("only applies to kind = \"s3\", not {other:?}"),
                    );
                }
            }
            if other == "memory" {
                if let Some(root) = &r.root {
                    cx.at(root, &key("root"), "a memory remote has no root");
                }
                RemoteKind::Memory
            } else {
                let Some(root) = &r.root else {
                    cx.problem(line, &key("root"), "is required for a filesystem remote");
                    return None;
                };
                RemoteKind::Filesystem {
                    root: root.get_ref().into(),
                    case_insensitive: r.case_insensitive.as_ref().map(|b| *b.get_ref()),
                }
            }
        }
        other => {
            cx.at(
                kind_text,
                &key("kind"),
                format!("{other:?} is not one of filesystem, s3, memory"),
            );
            return None;
        }
    };
    if r.case_insensitive.is_some() && !matches!(kind, RemoteKind::Filesystem { .. }) {
        cx.problem(
            line,
            &key("case_insensitive"),
            "only applies to kind = \"filesystem\"",
        );
    }
    Some(RemoteConfig {
        name: name.to_string(),
        kind,
        part_size,
        upload_concurrency,
        preserve_mtime,
        checksums,
        checksum_read_limit: cx.size(&r.checksum_read_limit, &key("checksum_read_limit"), 4 << 30),
        prefetch_window: cx.duration_at_most(
            &r.prefetch_window,
            &key("prefetch_window"),
            Duration::from_secs(5),
            Duration::from_secs(60),
        ),
    })
}
