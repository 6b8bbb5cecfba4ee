//! The running write transaction's pages, in parts with one job each:
//!
//! - `alloc`: [`Allocator`] hands out page ids (from the free list, else
//!   from the end of the file) and takes freed ones back; it keeps the
//!   high-water mark and the transaction's changes to the free list;
//! - `buffers`: [`Buffers`] holds the private copy of every page the
//!   transaction wrote (an overflow run or a value segment is one buffer
//!   under its first page);
//! - `heap`: the value segments the transaction fills, and its changes to
//!   the live counts of segments ([`Change`]);
//! - `pages`: [`Dirty`] is what the transaction's partitions share (the
//!   allocator, the heap's records, the failed flag), [`Part`] one
//!   partition of the buffers (an open table's, or the transaction's own
//!   trees'), and [`TxnPages`] lends a partition to the B+tree as its
//!   `PageStore`; a savepoint ([`DirtySaved`], [`PartSaved`]) keeps the
//!   allocator, heap and segment state, and the buffers journal what
//!   changes after it.
//!
//! The readers' map is never written through. Stamping the buffers'
//! checksums and writing them to the file are steps of the commit
//! (`txn::commit`).

mod alloc;
mod buffers;
mod heap;
mod journal;
mod pages;

pub(crate) use buffers::Buffers;
pub(crate) use heap::Change;
pub(crate) use pages::{Dirty, DirtySaved, Part, PartSaved, TxnPages};
