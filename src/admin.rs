//! The admin listener (`[admin].listen`): `GET /healthz` for load
//! balancers and orchestrators, `GET /metrics` for Prometheus.
//!
//! Health is answered from what a background prober last saw — one cheap
//! request per remote every [`PROBE_EVERY`] — so a health check never waits
//! on S3 and a flood of checks never reaches it.

use crate::remote::Remotes;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How often each remote is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// A probe that takes longer than this has failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A remote whose last good probe is older than this is unhealthy.
const STALE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
struct Probe {
    last_ok: Option<Instant>,
    error: Option<String>,
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
}

impl Health {
    /// Starts probing every remote until `stop` completes.
    pub fn start(
        remotes: &Remotes,
        events: Arc<crate::events::Events>,
        draining: Arc<AtomicBool>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        let health = Health {
            draining,
            events,
            ..Health::default()
        };
        for r in remotes.iter() {
            crate::base::lock(&health.remotes).insert(
                r.name().to_string(),
                Probe {
                    last_ok: None,
                    error: Some("not probed yet".into()),
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
                    let result = tokio::time::timeout(PROBE_TIMEOUT, r.namespace().probe()).await;
                    let error = match result {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
                    };
                    (r.name().to_string(), error)
                });
                for (name, error) in futures::future::join_all(probes).await {
                    let mut seen = crate::base::lock(&state.remotes);
                    let probe = seen.entry(name.clone()).or_insert(Probe {
                        last_ok: None,
                        error: None,
                    });
                    match error {
                        None => {
                            if probe.error.is_some() && probe.last_ok.is_some() {
                                tracing::info!(remote = name, "remote answers again");
                            }
                            *probe = Probe {
                                last_ok: Some(Instant::now()),
                                error: None,
                            };
                        }
                        Some(e) => {
                            if probe.error.is_none() {
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

    /// 200 with every remote healthy, else 503 (and while draining); the
    /// body names each remote.
    fn report(&self) -> (StatusCode, String) {
        let seen = crate::base::lock(&self.remotes);
        let draining = self.draining.load(Ordering::Relaxed);
        let mut healthy = !draining;
        let remotes: serde_json::Map<String, serde_json::Value> = seen
            .iter()
            .map(|(name, p)| {
                let fresh = p.last_ok.is_some_and(|t| t.elapsed() < STALE);
                let ok = fresh && p.error.is_none();
                healthy &= ok;
                let mut v = serde_json::json!({ "ok": ok });
                if let Some(t) = p.last_ok {
                    v["last_ok_seconds_ago"] = t.elapsed().as_secs().into();
                }
                if let Some(e) = &p.error {
                    v["error"] = e.clone().into();
                }
                (name.clone(), v)
            })
            .collect();
        let body = serde_json::json!({
            "status": if draining { "draining" } else if healthy { "ok" } else { "unhealthy" },
            "listeners": if draining { "draining" } else { "up" },
            "remotes": remotes,
            "webhooks": self.events.backlog().into_iter().collect::<BTreeMap<_, _>>(),
        });
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, body.to_string())
    }
}

/// The admin listener, bound.
pub struct AdminListener {
    listener: TcpListener,
    health: Health,
}

impl AdminListener {
    pub async fn bind(addr: SocketAddr, health: Health) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("[admin] listen = {addr}: {e}"))?;
        tracing::info!(listen = %listener.local_addr()?, "admin endpoint listening (/healthz, /metrics)");
        Ok(AdminListener { listener, health })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers until `stop` completes.
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        let health = self.health;
        crate::listen::accept_until(&self.listener, "admin", stop, |socket, _| {
            let health = health.clone();
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let health = health.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&health, &req)) }
                });
                let io = hyper_util::rt::TokioIo::new(socket);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            }
        })
        .await;
    }
}

fn answer<B>(health: &Health, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/healthz") => {
            let (status, body) = health.report();
            (status, "application/json", body)
        }
        (&hyper::Method::GET, "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            crate::metrics::get().render(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "GET /healthz or /metrics\n".to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}
