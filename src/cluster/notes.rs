//! Hearing the fleet: a connection of its own (notifications arrive on
//! the connection that asked) that `LISTEN`s on one channel, connected
//! again after a loss. What was said while a node was not listening is
//! read back by `resync` (on a pooled connection), which runs after each
//! `LISTEN`, so nothing falls between the two.

use super::{Cluster, ClusterError, within};
use futures::StreamExt;
use futures::future::BoxFuture;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Listens on `channel` until `stop`, calling `heard` with each
/// notification's payload; `what` names it in the one WARN a loss logs.
pub async fn listen(
    cluster: &Cluster,
    channel: &'static str,
    what: &'static str,
    every: Duration,
    stop: &CancellationToken,
    resync: impl Fn() -> BoxFuture<'static, Result<(), ClusterError>>,
    heard: impl Fn(&str) + Send + Clone + 'static,
) {
    let mut told = false;
    while !stop.is_cancelled() {
        if let Err(e) = listen_once(cluster, channel, stop, &resync, heard.clone()).await
            && !told
        {
            told = true;
            tracing::warn!(error = %e, "not hearing the cluster's {what}; this node's own hold, trying again every heartbeat");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// One connection's life, until it ends or `stop`.
async fn listen_once(
    cluster: &Cluster,
    channel: &'static str,
    stop: &CancellationToken,
    resync: &impl Fn() -> BoxFuture<'static, Result<(), ClusterError>>,
    heard: impl Fn(&str) + Send + 'static,
) -> Result<(), ClusterError> {
    let (client, mut connection) = cluster.dedicated().await?;
    let mut messages = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message? {
                heard(n.payload());
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    within(client.batch_execute(&format!("LISTEN {channel}"))).await?;
    resync().await?;
    tokio::select! {
        ended = &mut messages => {
            drop(client);
            match ended {
                Ok(Err(e)) => Err(e.into()),
                _ => Err(ClusterError::Connect("the listening connection ended".into())),
            }
        }
        _ = stop.cancelled() => {
            messages.abort();
            Ok(())
        }
    }
}
