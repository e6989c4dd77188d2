//! The bytes clients move, by protocol, into the gateway's metrics
//! (`bytes_received_total`, `bytes_sent_total`).

use super::{Layer, Op};
use crate::base::FsResult;
use crate::metrics::{Metrics, ProtocolLabel};
use crate::vfs::Vfs;
use crate::vfs::transfers::{Ended, Progress};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;

/// The layer that counts a session's transfer bytes.
#[derive(Debug)]
pub struct Counted {
    up: Counter,
    down: Counter,
}

impl Counted {
    pub fn new(metrics: &Metrics, protocol: &'static str) -> Self {
        let label = ProtocolLabel { protocol };
        Counted {
            up: metrics.bytes_up.get_or_create(&label).clone(),
            down: metrics.bytes_down.get_or_create(&label).clone(),
        }
    }
}

impl Layer for Counted {
    type Ticket = ();

    fn before(&self, _below: &dyn Vfs, _op: &Op) -> FsResult<()> {
        super::nothing_before()
    }

    fn after(&self, _op: &Op, _: Option<()>, _ended: Ended<'_>) -> BoxFuture<'static, ()> {
        super::nothing_to_wait()
    }

    fn progress(&self, op: &Op, _size: Option<u64>) -> Option<Progress> {
        let counter = match op.name {
            "upload" => self.up.clone(),
            _ => self.down.clone(),
        };
        Some(Arc::new(move |n| {
            counter.inc_by(n);
        }))
    }
}
