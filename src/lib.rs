//! larch: an embedded key-value store. A copy-on-write B+tree in one
//! memory-mapped file, with any number of readers beside one writer and
//! crash-safe commits.
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
//!
//! # The rules
//!
//! - **Opening.** [`Database::open`] and [`Options::open`] are `unsafe`: the
//!   file is mapped, and nothing but larch may modify or truncate it while it
//!   is open. Any number of handles, in this process or others, open one
//!   file at once and share its pages through the page cache; a lock file
//!   beside it (`<path>-lock`) is where they see each other's readers and
//!   take turns writing. A [`Database`] is a cheap handle: clone it (or
//!   share it by reference) between threads and async tasks.
//! - **Ownership.** Transactions hold the open file themselves, not a borrow
//!   of the [`Database`]: a struct may keep a handle and its open
//!   transaction together, and both kinds of transaction may move to another
//!   thread (a write transaction may begin on one and commit on another; see
//!   `examples/tokio.rs`). [`Table::range_owned`] gives an iterator that
//!   owns its snapshot and outlives the table and the transaction, and still
//!   hands out keys and values without copying them ([`OwnedEntry`]).
//! - **Readers.** [`Database::begin_read`] returns a [`ReadTxn`]: a snapshot
//!   of the last commit of any process, never waiting for the writer. Values are `&[u8]`
//!   borrowed straight from the map and live as long as the transaction; the
//!   borrow checker enforces it. Pages a reader can see are not reused while
//!   it lives, so long-lived readers make the file grow.
//! - **The writer.** [`Database::begin_write`] returns the one [`WriteTxn`]
//!   of every process, waiting while another is running
//!   ([`Database::try_begin_write`] does not wait). Its changes are visible to itself at
//!   once ([`TableMut`] reads them back), to nobody else until
//!   [`WriteTxn::commit`] returns, and then durable: a crash or power loss
//!   afterwards keeps them, a crash before leaves the previous commit whole.
//!   Dropping the transaction discards it. Several tables may be open at
//!   once ([`WriteTxn::open_table`] borrows the transaction shared): values
//!   read through a [`TableMut`] borrow it and end at the next change of
//!   that table, not of the others. A change that fails
//!   (say [`Error::MapFull`]) fails the whole transaction: every later call
//!   on it returns [`Error::TxnFailed`] and it cannot commit; abort and
//!   retry. Only a key, value or table name rejected up front
//!   ([`Error::KeyTooLarge`], [`Error::ValueTooLarge`]) leaves it usable.
//! - **Savepoints.** [`WriteTxn::savepoint`] marks a point of the write
//!   transaction and [`WriteTxn::restore_savepoint`] goes back to it and on,
//!   undoing tables created and deleted too; several may be alive, restoring
//!   an older one discards the newer. One costs the pages changed after it,
//!   not a copy of the transaction. A restore also revives a transaction
//!   that failed after the savepoint.
//! - **Keys and values.** Keys are compared bytewise, up to 64 KiB
//!   ([`Error::KeyTooLarge`]; one longer than a quarter page keeps its first
//!   bytes in its node and the rest beside its value); values up to 4 GiB,
//!   big ones out of their leaf. Both are handed out as one `&[u8]`.
//!   Tables are named and keep an O(1) entry count.
//! - **Typed tables.** A [`TableDefinition`] names a table with its key and
//!   value types (integers, `bool`, strings, byte strings, arrays, `Option`
//!   and tuples, or types of your own through [`Value`] and [`Key`]);
//!   [`WriteTxn::open_typed`] and [`ReadTxn::open_typed`] open it. Keys are
//!   encoded so that their bytes sort as the values do (`-1 < 0 < 1`,
//!   tuples field by field), `&str` and `&[u8]` read back borrowed from the
//!   map, and opening a table with other types than it was created with is
//!   [`Error::TableTypeMismatch`].
//!
//!   ```
//!   # let dir = tempfile::tempdir().unwrap();
//!   # // SAFETY: the file is this example's own.
//!   # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
//!   use larch::TableDefinition;
//!   const SCORES: TableDefinition<(&str, i32), u64> = TableDefinition::new("scores");
//!
//!   let mut w = db.begin_write()?;
//!   {
//!       let mut scores = w.open_typed(SCORES)?;
//!       scores.insert(("ada", 3), 30)?;
//!       scores.insert(("ada", -1), 10)?;
//!       scores.insert(("bob", 0), 20)?;
//!   }
//!   w.commit()?;
//!   let r = db.begin_read()?;
//!   let scores = r.open_typed(SCORES)?;
//!   let ada: Vec<(i32, u64)> = scores
//!       .range(("ada", i32::MIN)..=("ada", i32::MAX))?
//!       .map(|e| e.map(|((_, n), v)| (n, v)))
//!       .collect::<larch::Result<_>>()?;
//!   assert_eq!(ada, [(-1, 10), (3, 30)]);
//!   # Ok::<(), larch::Error>(())
//!   ```
//! - **Multimap tables.** [`WriteTxn::open_multimap`] gives a table that
//!   maps each key to a sorted set of values (LMDB's dupsort): add and remove
//!   a value, remove all of a key's, read a key's values in order from
//!   either end (zero-copy), count them in one lookup, range over keys and
//!   pairs, list keys with their counts from either end. A key may have
//!   millions of values; a value may be up to 64 KiB with its key. A
//!   [`MultimapTableDefinition`] makes one typed
//!   ([`WriteTxn::open_typed_multimap`]): a key's values come in their
//!   type's order, and the types are kept with the table.
//!
//!   ```
//!   # let dir = tempfile::tempdir().unwrap();
//!   # // SAFETY: the file is this example's own.
//!   # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
//!   let mut w = db.begin_write()?;
//!   {
//!       let mut tags = w.open_multimap("tags")?;
//!       tags.insert(b"post:1", b"rust")?;
//!       tags.insert(b"post:1", b"db")?;
//!       tags.insert(b"post:2", b"rust")?;
//!   }
//!   w.commit()?;
//!   let r = db.begin_read()?;
//!   let tags = r.open_multimap("tags")?;
//!   let of_1: Vec<&[u8]> = tags.get(b"post:1")?.collect::<larch::Result<_>>()?;
//!   assert_eq!(of_1, [&b"db"[..], b"rust"]);
//!   assert_eq!(tags.count(b"post:1")?, 2);
//!   # Ok::<(), larch::Error>(())
//!   ```
//! - **Corruption** is never a panic: damaged bytes give
//!   [`Error::Corrupted`], and [`Database::check`] walks every page.
//!
//! # Tools
//!
//! [`Database::stat`] and [`Table::stat`] report sizes and page counts;
//! [`ReadTxn::copy_to`] writes a hot backup (optionally compacted) while
//! writers go on. The `larch` command-line tool (package `larch-cli`) wraps
//! them and moves data to and from LMDB in the `mdb_dump` text format.
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
mod multimap;
mod pager;
mod registry;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
mod txn;
mod typed;
mod view;

pub use check::{CheckError, CheckReport};
pub use db::{DEFAULT_MAP_SIZE, Database, Options};
pub use error::{Error, Result};
pub use multimap::{
    Multimap, MultimapKeys, MultimapMut, MultimapPair, MultimapPairs, MultimapValues,
};
pub use registry::ReaderInfo;
pub use table::{Cursor, CursorMut, Drain, Entry, Range, Table, TableMut, TableStat};
pub use txn::{
    Durability, EVENTUAL_PERIOD, ReadTxn, Savepoint, SetAside, Stat, TableKind, WriteTxn,
};
pub use txn::{OwnedEntry, OwnedRange};
pub use typed::{
    Key, MultimapKey, MultimapTableDefinition, TableDefinition, TypedMultimap, TypedMultimapKeys,
    TypedMultimapMut, TypedMultimapPairs, TypedMultimapValues, TypedRange, TypedTable,
    TypedTableMut, Value, decode_escaped, encode_escaped,
};

/// The longest key (and table name) a database accepts, at every page size:
/// 64 KiB. A longer one is [`Error::KeyTooLarge`].
pub const MAX_KEY_LEN: usize = format::node::MAX_KEY;
