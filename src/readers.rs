//! The reader table: the committed meta and the snapshots still alive.
//!
//! `begin` copies the meta and registers its transaction id under one lock, so
//! a commit cannot publish between the two and the writer always sees every
//! snapshot a reader may hold.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::format::meta::Meta;

pub(crate) struct ReaderTable {
    state: Mutex<State>,
}

struct State {
    /// The last committed meta.
    meta: Meta,
    /// Live snapshots: transaction id -> number of readers holding it.
    live: BTreeMap<u64, usize>,
}

impl ReaderTable {
    pub(crate) fn new(meta: Meta) -> ReaderTable {
        ReaderTable {
            state: Mutex::new(State {
                meta,
                live: BTreeMap::new(),
            }),
        }
    }

    /// Registers a reader of the current snapshot and returns its meta.
    pub(crate) fn begin(&self) -> Meta {
        let mut s = self.state.lock();
        let meta = s.meta;
        *s.live.entry(meta.txn_id).or_default() += 1;
        meta
    }

    /// Unregisters a reader of snapshot `txn_id`.
    pub(crate) fn end(&self, txn_id: u64) {
        let mut s = self.state.lock();
        if let Some(n) = s.live.get_mut(&txn_id) {
            *n -= 1;
            if *n == 0 {
                s.live.remove(&txn_id);
            }
        }
    }

    /// The last committed meta.
    pub(crate) fn committed(&self) -> Meta {
        self.state.lock().meta
    }

    /// The oldest live snapshot, if any reader is alive.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.state.lock().live.keys().next().copied()
    }

    /// Number of live readers.
    pub(crate) fn count(&self) -> usize {
        self.state.lock().live.values().sum()
    }

    /// Makes `meta` the snapshot new readers see.
    pub(crate) fn publish(&self, meta: Meta) {
        self.state.lock().meta = meta;
    }
}
