//! The free list: free pages by the transactions that wrote and freed them,
//! the reuse rule, and the pages that hold the list in the file.
//!
//! - `list`: the list in memory ([`FreeList`]) and a write transaction's
//!   changes to it ([`TxnFreeList`]);
//! - `rules`: the rules every persisted list obeys (`ListRules`), which the
//!   reader and the commit check alike;
//! - `layout`: the list in the file, leaves under a directory: reading a
//!   snapshot's ([`read_list`], [`load`]) and writing the one a commit
//!   leaves, only what changed ([`write_list`]).

mod layout;
mod list;
mod rules;

pub(crate) use layout::{ListStore, Persisted, header, load, read_list, write_list};
pub(crate) use list::{Entry, FreeList, Pins, TxnFreeList, pinned_alone};
