//! larch: an embedded key-value store. A copy-on-write B+tree in one
//! memory-mapped file, with any number of readers beside one writer and
//! crash-safe commits.
//!
//! - Readers see a snapshot and get values as `&[u8]` borrowed straight from
//!   the map: no copy, valid while the [`ReadTxn`] lives.
//! - The writer copies the pages it changes into private buffers; at commit it
//!   writes them to unused pages, syncs, and only then writes the meta page
//!   that switches readers to the new tree. A crash leaves the previous commit.
//! - Keys are compared bytewise. Tables are named; each keeps its entry count.
//!
//! ```
//! # fn main() -> larch::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! // SAFETY: nothing else touches the file while it is open.
//! let db = unsafe { larch::Database::open(dir.path().join("db.larch")) }?;
//!
//! let mut txn = db.begin_write()?;
//! {
//!     let mut fruit = txn.open_table("fruit")?;
//!     fruit.insert(b"apple", b"red")?;
//!     fruit.insert(b"banana", b"yellow")?;
//! }
//! txn.commit()?; // durable once this returns
//!
//! let read = db.begin_read()?;
//! let fruit = read.open_table("fruit")?;
//! assert_eq!(fruit.get(b"apple")?, Some(&b"red"[..]));
//! let keys: Vec<&[u8]> = fruit.iter()?.map(|e| e.map(|(k, _)| k)).collect::<larch::Result<_>>()?;
//! assert_eq!(keys, [&b"apple"[..], &b"banana"[..]]);
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod btree;
mod check;
mod copy;
mod db;
mod dirty;
mod error;
mod format;
mod freelist;
mod freelist_io;
mod pager;
mod readers;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
mod txn;

pub use check::{CheckError, CheckReport};
pub use db::{DEFAULT_MAP_SIZE, Database, Options};
pub use error::{Error, Result};
pub use table::{Cursor, Entry, Range, Table, TableMut, TableStat};
pub use txn::{ReadTxn, Stat, WriteTxn};
