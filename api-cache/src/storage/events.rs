//! What replicas tell each other through the shared store:
//! - a fill is over (stored or not): replicas waiting for it look again;
//! - entries were purged: replicas drop their local copies.
//!
//! On Redis each is one pub/sub message, `filled <key>` or `invalidated <key>
//! ...` with the keys as stored: on `<prefix>:events` on one node, by sharded
//! pub/sub on a cluster (see `redis::keyspace`).

use crate::cache::key::EntryKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Filled(EntryKey),
    Invalidated(Vec<EntryKey>),
}
