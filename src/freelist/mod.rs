//! The free list: free pages by the transactions that wrote and freed them,
//! the reuse rule, and the chain of pages that holds the list in the file.
//!
//! - `list`: the list in memory ([`FreeList`]) and a write transaction's
//!   changes to it ([`TxnFreeList`]);
//! - `rules`: the rules every persisted list obeys (`ListRules`), which the
//!   reader and the commit check alike;
//! - `chain`: reading a snapshot's chain ([`read_chain`], [`load`]) and
//!   writing the one a commit leaves ([`write_chain`]).

mod chain;
mod list;
mod rules;

pub(crate) use chain::{ChainStore, Persisted, header, load, read_chain, write_chain};
pub(crate) use list::{Entry, FreeList, Pins, TxnFreeList, pinned_alone};
