//! Transactions: read snapshots, the write transaction and its commit protocol.

mod commit;
mod compact;
mod core;
mod heap;
mod owned;
mod read;
mod write;

pub(crate) use self::core::{Core, HighWaters, WriterState, publish_snapshot, read_meta};
pub use owned::{OwnedEntry, OwnedRange};
pub(crate) use read::Snapshot;
pub use read::{ReadTxn, SetAside, Stat, TableKind};
pub use write::{Durability, EVENTUAL_PERIOD, Savepoint, WriteTxn};
