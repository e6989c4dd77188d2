//! `[server]` → [`ServerConfig`].

use super::*;

pub(super) fn validate_server(cx: &mut Ctx<'_>, s: &RawServer) -> ServerConfig {
    ServerConfig {
        keys_dir: cx.text(&s.keys_dir, "keys").into(),
        state_dir: cx.text(&s.state_dir, "state").into(),
        idle_timeout: cx.duration(
            &s.idle_timeout,
            "server.idle_timeout",
            Duration::from_secs(600),
        ),
        max_sessions: cx.count(&s.max_sessions, "server.max_sessions", 1000, 1..=1_000_000),
        shutdown_grace: cx.duration(
            &s.shutdown_grace,
            "server.shutdown_grace",
            Duration::from_secs(30),
        ),
        shutdown_drain: cx.duration(&s.shutdown_drain, "server.shutdown_drain", Duration::ZERO),
        login_timeout: cx.duration(
            &s.login_timeout,
            "server.login_timeout",
            Duration::from_secs(30),
        ),
        max_unauthenticated: cx.count(
            &s.max_unauthenticated,
            "server.max_unauthenticated",
            512,
            1..=1_000_000,
        ),
        max_unauthenticated_per_source: cx.count(
            &s.max_unauthenticated_per_source,
            "server.max_unauthenticated_per_source",
            16,
            1..=1_000_000,
        ),
        memory_budget: match &s.memory_budget {
            Some(v) if v.get_ref() == "auto" => default_memory_budget(),
            v => {
                let budget = cx.size(v, "server.memory_budget", default_memory_budget());
                if let (Some(v), true) = (v, budget < MIN_MEMORY_BUDGET) {
                    cx.at(
                        v,
                        "server.memory_budget",
                        format!(
                            "is below the smallest workable budget, {} (one part of each kind)",
                            units::format_size(MIN_MEMORY_BUDGET)
                        ),
                    );
                }
                budget
            }
        },
        bandwidth: Bandwidth {
            up: cx.rate(&s.bandwidth_up, "server.bandwidth_up"),
            down: cx.rate(&s.bandwidth_down, "server.bandwidth_down"),
        },
        quota_scan: cx.duration(
            &s.quota_scan,
            "server.quota_scan",
            Duration::from_secs(3600),
        ),
    }
}
