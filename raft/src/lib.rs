//! larch as the storage of [openraft](https://docs.rs/openraft) 0.9: a log
//! store ([`LogStore`], openraft's `RaftLogStorage`) and a key-value state
//! machine ([`StateMachine`], `RaftStateMachine`) over one larch database.
//!
//! Both live in one file, in their own tables:
//!
//! | table        | key                     | value                                   |
//! |--------------|-------------------------|-----------------------------------------|
//! | `raft.log`   | log index (`u64`, big-endian, so key ranges are index ranges) | the entry, JSON |
//! | `raft.meta`  | `vote`, `committed`, `purged` | JSON                              |
//! | `kv.data`    | the key (`&str`)        | the value (`&str`)                      |
//! | `kv.meta`    | `applied`, `membership` | JSON                                    |
//! | `kv.snapshot`| `meta`, `data`          | the last snapshot built or installed    |
//!
//! One file means one order of commits: larch keeps a prefix of them on a
//! power loss, whatever each commit's durability. Appends commit without a
//! sync of their own and are reported flushed by a thread that syncs once
//! for every append queued meanwhile (group commit); the vote,
//! truncations, purges and snapshot installs commit
//! [`Durability::Immediate`]; the committed marker, the state machine's
//! applies and the snapshots it builds commit [`Durability::Eventual`]. A
//! crash may take back the newest of those, but never one without the ones
//! before it, and never the snapshot that allowed a purge once the purge is
//! durable. openraft applies again from the log what a crash took back.
//!
//! ```no_run
//! use larch::Database;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // SAFETY: only larch writes to this file while it is open.
//! let db = unsafe { Database::open("node-1.larch") }?;
//! let (log, sm) = larch_raft::stores(db);
//! // openraft::Raft::new(1, config, network, log, sm).await?
//! # Ok(())
//! # }
//! ```

// openraft's `StorageError` is the error of its storage traits, so the
// helpers that build it return it too, large as it is.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::sync::Arc;

use larch::{Database, Durability};
use serde::{Deserialize, Serialize};

pub mod cluster;
mod codec;
mod flush;
mod log_store;
pub mod net;
mod order;
pub mod snapshot;
mod state_machine;

pub use log_store::LogStore;
pub use snapshot::SnapshotData;
pub use state_machine::StateMachine;

/// The log store and the state machine of one node over `db`, paired: a
/// purge openraft sends with a snapshot install waits until the install is
/// durable.
pub fn stores(db: Database) -> (LogStore<TypeConfig>, StateMachine) {
    let gate = Arc::new(order::InstallGate::default());
    let sm = StateMachine::new(db.clone(), gate.clone());
    // What the file holds applied already: purges up to it never wait.
    gate.applied(sm.applied_in_file());
    (LogStore::with_gate(db, Some(gate)), sm)
}

openraft::declare_raft_types!(
    /// The types of the replicated key-value store: string keys and values.
    pub TypeConfig:
        D = Request,
        R = Response,
        SnapshotData = SnapshotData,
);

/// A change to the key-value map, the payload of a normal log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Stores `value` under `key`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
}

/// What applying a [`Request`] gave: the value the key held before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The key's previous value, if it had one.
    pub previous: Option<String>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Set { key, value } => write!(f, "set {key}={value}"),
            Request::Delete { key } => write!(f, "delete {key}"),
        }
    }
}

/// Runs `f`, which may wait for the disk (a commit's sync), without
/// stalling the other tasks of a multi-threaded tokio runtime: their worker
/// hands them to another thread meanwhile (heartbeats go on during a sync).
/// Elsewhere (a current-thread runtime, no runtime) `f` just runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// How the vote, truncations and purges are made durable: before openraft
/// hears of them.
const LOG_DURABILITY: Durability = Durability::Immediate;
/// How the state machine's commits and the committed marker are made
/// durable: with the next log commit, a `sync`, or within larch's
/// `EVENTUAL_PERIOD`.
const STATE_DURABILITY: Durability = Durability::Eventual;
