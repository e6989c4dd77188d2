//! Digests computed while bytes stream through, off the async threads and
//! in order: each chunk's hashing waits for the one before it, so a
//! transfer never waits for a hash until it asks for the result.

use crate::base::{Checksums, Digests, Hashers};
use object_store::PutPayload;
use tokio::task::JoinHandle;

/// Up to this many bytes are hashed on the async thread that has them.
const INLINE_HASH: usize = 256 << 10;

/// An upload's digests, computed off the async threads a part at a time,
/// in order: each part's hashing waits for the one before it.
pub(crate) enum Hashing {
    Off,
    Ready(Box<Hashers>),
    Running(JoinHandle<Option<Box<Hashers>>>),
}

impl Hashing {
    pub(crate) fn start(set: Checksums) -> Self {
        match set.any() {
            true => Hashing::Ready(Box::new(Hashers::new(set))),
            false => Hashing::Off,
        }
    }

    /// Whether the digests are still being computed.
    pub(crate) fn is_on(&self) -> bool {
        !matches!(self, Hashing::Off)
    }

    /// Hashes `payload` after what came before it.
    pub(crate) fn feed(&mut self, payload: PutPayload) {
        let small = payload.content_length() <= INLINE_HASH;
        let update = move |mut h: Box<Hashers>| {
            payload.iter().for_each(|b| h.update(b));
            h
        };
        *self = match std::mem::replace(self, Hashing::Off) {
            Hashing::Off => Hashing::Off,
            // A small file's bytes are hashed at once: cheaper than a thread hop.
            Hashing::Ready(h) if small => Hashing::Ready(update(h)),
            Hashing::Ready(h) => {
                Hashing::Running(tokio::task::spawn_blocking(move || Some(update(h))))
            }
            Hashing::Running(before) => Hashing::Running(tokio::spawn(async move {
                let h = before.await.ok().flatten()?;
                tokio::task::spawn_blocking(move || update(h)).await.ok()
            })),
        };
    }

    /// The digests of everything fed; empty when off.
    pub(crate) async fn finish(&mut self) -> Digests {
        match std::mem::replace(self, Hashing::Off) {
            Hashing::Off => Digests::default(),
            Hashing::Ready(h) => h.finish(),
            Hashing::Running(last) => last
                .await
                .ok()
                .flatten()
                .map(|h| h.finish())
                .unwrap_or_default(),
        }
    }
}
