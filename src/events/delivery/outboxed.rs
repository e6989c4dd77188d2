//! With `[cluster]`: a webhook's deliveries from the fleet's outbox, and
//! the move of what its spool holds into it.

use super::super::outbox::{Claimed, Outbox, Row};
use super::{Webhook, backoff};
use crate::base::lock;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// How often a node looks for due events in the fleet's outbox (retries,
/// other nodes' events) when nothing woke it sooner.
const OUTBOX_LOOK: Duration = Duration::from_secs(1);

/// Delivered events are deleted from the outbox together, those of this
/// long: a node killed meanwhile sends them again.
const ACK_GATHER: Duration = Duration::from_millis(200);

/// A claimed event's lease outlasts its attempt's `timeout` by this.
pub(super) const LEASE_MARGIN: Duration = Duration::from_secs(10);

impl Webhook {
    /// With `[cluster]`, what the spool holds (events that could not reach
    /// the outbox when they happened, or left from before the cluster)
    /// moves there as soon as it can, for ever.
    pub(super) async fn move_to_outbox(self: Arc<Webhook>, outbox: Outbox) {
        loop {
            let (id, body, _) = self.queue.next_due().await;
            let born = lock(&self.queue.state)
                .items
                .get(&id)
                .map_or_else(Utc::now, |i| i.born);
            let mut batch = vec![(id, body, born)];
            batch.extend(self.queue.due_now(511));
            let rows: Vec<_> = batch
                .iter()
                .map(|(id, body, born)| Row {
                    webhook: self.name(),
                    id,
                    body,
                    born: *born,
                    lease: None,
                })
                .collect();
            match outbox.insert(&rows).await {
                Ok(()) => {
                    for (id, _, _) in batch {
                        self.queue.remove(&id);
                        self.spool.ack(id);
                    }
                    self.committed.notify_one();
                }
                Err(_) => {
                    // The outbox's writer says when the database is away.
                    for (id, _, _) in batch {
                        self.queue.later(id, Duration::from_secs(1));
                    }
                }
            }
        }
    }

    /// With `[cluster]`: claims this webhook's due events from the fleet's
    /// outbox, `concurrency` at a time, and posts them, for ever. An event
    /// is held under a lease while it is posted; one whose node died is
    /// claimed again when its lease ends.
    pub(super) async fn deliver_outbox(self: Arc<Webhook>, outbox: Outbox) {
        let Some(mut handed) = lock(&self.handed).take() else {
            return;
        };
        let (done, acks) = mpsc::unbounded_channel();
        tokio::spawn(self.clone().ack_outbox(outbox.clone(), acks));
        let slots = Arc::new(Semaphore::new(self.config().concurrency));
        let post = |event: Claimed, slot: tokio::sync::OwnedSemaphorePermit| {
            let (hook, outbox, done) = (self.clone(), outbox.clone(), done.clone());
            tokio::spawn(async move {
                hook.attempt_outbox(&outbox, event, &done).await;
                drop(slot);
            });
        };
        let mut outage = crate::cluster::Outage::default();
        let mut look = tokio::time::interval(OUTBOX_LOOK);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(event) = handed.recv() => {
                    let Ok(slot) = slots.clone().acquire_owned().await else { return };
                    post(event, slot);
                    continue;
                }
                _ = look.tick() => {}
                _ = self.committed.notified() => {}
            }
            // Claims as long as they come back full, a slot at least free
            // for each.
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let free = 1 + slots.available_permits();
                let lease = self.config().timeout + LEASE_MARGIN;
                let claimed = outbox.claim(self.name(), free, lease).await;
                outage.note(
                    &claimed,
                    "cannot claim events from the cluster's outbox; trying again",
                    "claiming events from the cluster's outbox again",
                );
                let claimed = claimed.unwrap_or_default();
                let full = claimed.len() == free;
                let mut slot = Some(slot);
                for event in claimed {
                    let slot = match slot.take() {
                        Some(s) => s,
                        None => match slots.clone().acquire_owned().await {
                            Ok(s) => s,
                            Err(_) => return,
                        },
                    };
                    post(event, slot);
                }
                if !full {
                    break;
                }
            }
        }
    }

    /// Deletes delivered events from the outbox, all those delivered
    /// meanwhile in one statement. One not deleted (the database away)
    /// is sent again when its lease ends: at least once.
    async fn ack_outbox(
        self: Arc<Webhook>,
        outbox: Outbox,
        mut acks: tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        while let Some(first) = acks.recv().await {
            // Those delivered within the next moment go with it: each
            // delete is a commit, which the uploads' commits wait behind.
            let mut ids = vec![first];
            let gather = tokio::time::sleep(ACK_GATHER);
            tokio::pin!(gather);
            while ids.len() < 512 {
                tokio::select! {
                    id = acks.recv() => match id {
                        Some(id) => ids.push(id),
                        None => break,
                    },
                    _ = &mut gather => break,
                }
            }
            let _ = outbox.delivered(self.name(), &ids).await;
        }
    }

    async fn attempt_outbox(
        &self,
        outbox: &Outbox,
        event: Claimed,
        done: &tokio::sync::mpsc::UnboundedSender<String>,
    ) {
        let config = self.config();
        let id = &event.id;
        let Some(why) = self.post(&config, id, &event.body).await else {
            self.note_delivered(id, event.attempts);
            let _ = done.send(event.id);
            return;
        };
        self.metrics
            .event_attempts_failed
            .get_or_create(&self.label)
            .inc();
        let attempt = event.attempts + 1;
        let age = (Utc::now() - event.born).to_std().unwrap_or_default();
        let delay = (age <= config.retry_for).then(|| backoff(attempt));
        let _ = outbox.failed(self.name(), id, delay, &why).await;
        match delay {
            Some(_) => self.note_failed(&config, id, attempt, &why),
            None => self.note_given_up(&config, id, &why, "kept in the cluster's outbox"),
        }
    }
}
