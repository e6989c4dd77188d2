//! `GET /healthz` for load balancers and orchestrators. Health is answered from what a background prober last saw — one cheap
//! request per remote every [`PROBE_EVERY`] — so a health check never waits
//! on S3 and a flood of checks never reaches it.

use crate::remote::{Remotes, refused_code};
use hyper::StatusCode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often each remote is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// A probe that takes longer than this has failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A remote whose last good probe is older than this is unhealthy.
const STALE: Duration = Duration::from_secs(15);
/// While a store refuses a remote's credentials, an ERROR line this often.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Probe {
    last_ok: Option<Instant>,
    error: Option<String>,
    /// How long the last probe took.
    took: Option<Duration>,
    /// While the store refuses the credentials: the code, and when that
    /// was last logged.
    refused: Option<(&'static str, Instant)>,
}

/// What the prober has seen of each remote.
#[derive(Debug, Clone, Default)]
pub struct Health {
    remotes: Arc<Mutex<BTreeMap<String, Probe>>>,
    /// Set at SIGTERM during `shutdown_drain`: the balancer should stop
    /// sending new connections here.
    draining: Arc<AtomicBool>,
    /// Shown, never judged: a receiver that is down is not the gateway's failure.
    events: Arc<crate::events::Events>,
    /// Shown, never judged either: with its database down a node serves
    /// on its own state, and a balancer must not take every node out
    /// because the database blinked.
    cluster: Option<crate::cluster::Cluster>,
}

impl Health {
    /// Starts probing every remote until `stop` completes.
    pub fn start(
        remotes: &Remotes,
        events: Arc<crate::events::Events>,
        cluster: Option<crate::cluster::Cluster>,
        draining: Arc<AtomicBool>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        let health = Health {
            draining,
            events,
            cluster,
            ..Health::default()
        };
        for r in remotes.iter() {
            crate::base::lock(&health.remotes).insert(
                r.name().to_string(),
                Probe {
                    last_ok: None,
                    error: Some("not probed yet".into()),
                    took: None,
                    refused: None,
                },
            );
        }
        let (remotes, state) = (remotes.clone(), health.clone());
        tokio::spawn(async move {
            tokio::pin!(stop);
            let mut tick = tokio::time::interval(PROBE_EVERY);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tick.tick() => {}
                }
                let probes = remotes.iter().map(|r| async move {
                    let started = Instant::now();
                    let result = tokio::time::timeout(PROBE_TIMEOUT, r.namespace().probe()).await;
                    let took = started.elapsed();
                    let error = match result {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
                    };
                    let refused = error.as_deref().and_then(refused_code);
                    r.metrics()
                        .remote_credentials_refused
                        .get_or_create(&crate::metrics::RemoteLabel {
                            remote: r.name().to_string(),
                        })
                        .set(refused.is_some() as i64);
                    (r.name().to_string(), error, took, refused)
                });
                for (name, error, took, refused) in futures::future::join_all(probes).await {
                    let mut seen = crate::base::lock(&state.remotes);
                    let probe = seen.entry(name.clone()).or_insert(Probe {
                        last_ok: None,
                        error: None,
                        took: None,
                        refused: None,
                    });
                    probe.took = Some(took);
                    probe.refused = match (refused, probe.refused) {
                        (None, _) => None,
                        (Some(code), Some((_, logged))) if logged.elapsed() < REFUSED_LOG_EVERY => {
                            Some((code, logged))
                        }
                        (Some(code), _) => {
                            tracing::error!(
                                remote = name,
                                code,
                                "credentials refused: the store does not take this remote's key; put the right one in the config and reload (SIGHUP)"
                            );
                            Some((code, Instant::now()))
                        }
                    };
                    match error {
                        None => {
                            if probe.error.is_some() && probe.last_ok.is_some() {
                                tracing::info!(remote = name, "remote answers again");
                            }
                            *probe = Probe {
                                last_ok: Some(Instant::now()),
                                error: None,
                                took: Some(took),
                                refused: None,
                            };
                        }
                        Some(e) => {
                            if probe.error.is_none() && probe.refused.is_none() {
                                tracing::warn!(remote = name, error = %e, "remote does not answer its health probe");
                            }
                            probe.error = Some(e);
                        }
                    }
                }
            }
        });
        health
    }

    /// Each remote as the prober last saw it: healthy, seconds since its
    /// last good probe, how long the last probe took, its error.
    pub fn remotes(&self) -> BTreeMap<String, serde_json::Value> {
        crate::base::lock(&self.remotes)
            .iter()
            .map(|(name, p)| {
                let fresh = p.last_ok.is_some_and(|t| t.elapsed() < STALE);
                let mut v = serde_json::json!({ "ok": fresh && p.error.is_none() });
                if let Some(t) = p.last_ok {
                    v["last_ok_seconds_ago"] = t.elapsed().as_secs().into();
                }
                if let Some(took) = p.took {
                    v["probe_ms"] = (took.as_millis() as u64).into();
                }
                if let Some(e) = &p.error {
                    v["error"] = e.clone().into();
                }
                if let Some((code, _)) = p.refused {
                    v["credentials"] = format!("credentials refused ({code})").into();
                }
                (name.clone(), v)
            })
            .collect()
    }

    /// The webhooks' backlogs, by name.
    pub fn webhooks(&self) -> Vec<(String, crate::events::Backlog)> {
        self.events.backlog()
    }

    /// 200 with every remote healthy, else 503 (and while draining); the
    /// body names each remote.
    pub fn report(&self) -> (StatusCode, String) {
        let draining = self.draining.load(Ordering::Relaxed);
        let remotes = self.remotes();
        let healthy = !draining && remotes.values().all(|v| v["ok"] == true);
        let mut body = serde_json::json!({
            "status": if draining { "draining" } else if healthy { "ok" } else { "unhealthy" },
            "listeners": if draining { "draining" } else { "up" },
            "remotes": remotes,
            "webhooks": self.events.backlog().into_iter().collect::<BTreeMap<_, _>>(),
        });
        if let Some(c) = &self.cluster {
            body["cluster"] = serde_json::json!({ "node": c.node(), "state": c.standing().name() });
        }
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, body.to_string())
    }
}
