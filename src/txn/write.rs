//! The write transaction: its tables and their changes. Its commit is
//! `commit`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{ArcMutexGuard, RawMutex};

use super::core::{Core, OnDisk, WriterState};
use crate::btree;
use crate::dirty::{Dirty, DirtySaved, TxnPages};
use crate::error::Result;
use crate::format::catalog::CatalogEntry;
use crate::format::heap::HeapDesc;
use crate::format::meta::{Meta, TableDesc};
use crate::freelist::{self, Pins};
use crate::pager::Map;
use crate::table::{Shape, TableMut, catalog_get, catalog_names, check_key};
use crate::view::{MapView, View};

/// A table opened in this transaction.
#[derive(Clone)]
pub(super) struct Open {
    /// What the catalog is to hold for it at commit: its descriptor as this
    /// transaction changed it, its types and kind as they were.
    pub(super) entry: CatalogEntry,
    /// Whether the descriptor must be written to the catalog at commit.
    pub(super) changed: bool,
}

impl Open {
    /// A table as the catalog holds it, unchanged so far.
    pub(super) fn found(entry: CatalogEntry) -> Open {
        Open {
            entry,
            changed: false,
        }
    }
}

/// The one write transaction. Only one exists at a time, across every process
/// that has the database open: `begin_write` waits for the previous one to end.
///
/// Changes are private until [`commit`](WriteTxn::commit) returns; dropping the
/// transaction, or [`abort`](WriteTxn::abort), discards them.
///
/// # Errors fail the transaction
///
/// A change that fails may have been half-applied (an insert that ran out of
/// map space in the middle of a split), so an error from a call that changes
/// the transaction fails it: [`open_table`](WriteTxn::open_table),
/// [`delete_table`](WriteTxn::delete_table), [`TableMut::insert`],
/// [`TableMut::remove`]. From then on every call on the transaction and on its
/// table handles, reads included, returns [`Error::TxnFailed`], and so does
/// `commit`; nothing of it reaches the file. Abort it (or drop it) and retry
/// in a new transaction, or restore a [`Savepoint`] taken before the failure
/// and go on from there. (LMDB does the same: `MDB_TXN_ERROR`.)
///
/// The exceptions are the errors that reject an argument before anything
/// changes, which leave the transaction as it was: [`Error::KeyTooLarge`]
/// from `insert` and `open_table`, and [`Error::ValueTooLarge`] from
/// `insert`. (`remove` and `delete_table` answer a key or name too long to
/// exist with `Ok(false)`.) Errors from reads (`get`, `range`, `iter`, a
/// cursor, `list_tables`) change nothing and leave it as it was too.
///
/// [`Error::TxnFailed`]: crate::Error::TxnFailed
/// [`Error::KeyTooLarge`]: crate::Error::KeyTooLarge
/// [`Error::ValueTooLarge`]: crate::Error::ValueTooLarge
pub struct WriteTxn {
    pub(super) core: Arc<Core>,
    /// The writer lock, and the free list as of the last commit.
    pub(super) guard: ArcMutexGuard<RawMutex, WriterState>,
    pub(super) dirty: Dirty,
    /// The commit this transaction started from.
    pub(super) base: Meta,
    /// The metas on disk when it started: what a power loss falls back to.
    pub(super) disk: OnDisk,
    /// How durable its commit is to be.
    pub(super) durability: Durability,
    /// The catalog as this transaction changed it.
    pub(super) catalog: TableDesc,
    /// The value heap as this transaction changed it (at commit).
    pub(super) heap: HeapDesc,
    pub(super) tables: BTreeMap<String, Open>,
    /// Commit even when nothing changed: the free list is written anew, so
    /// the pages the metas kept pending move on, and the tail may be cut.
    pub(super) rewrite: bool,
    finished: bool,
    /// Tells this transaction's savepoints from every other's.
    instance: u64,
    /// The live savepoints, oldest first (the level of each is its index).
    pub(super) savepoints: Vec<Saved>,
    /// The id the next savepoint gets.
    next_savepoint: u64,
}

/// How durable a commit is when [`WriteTxn::commit`] returns, set with
/// [`WriteTxn::set_durability`].
///
/// Whatever the mode, a commit is visible at once to every reader of every
/// process, and a crash or power loss leaves a database that opens to a
/// complete commit and passes [`Database::check`](crate::Database::check):
/// the last durable one or a later durable one, never a mix. A commit that
/// is not durable writes its pages but no meta to the data file; its meta
/// lives in the lock file, beside the metas on disk, which it never
/// overwrites (DESIGN.md, "Durability"). Until it is durable it survives
/// the crash of its process while another process has the database open
/// (whose next sync or close makes it durable); a power loss, or the crash
/// of every process that has the database open, takes it back, with every
/// commit after the last durable one.
/// [`Database::durable_txn_id`](crate::Database::durable_txn_id) says which
/// commit is durable.
///
/// ```
/// use larch::Durability;
/// # let dir = tempfile::tempdir().unwrap();
/// # // SAFETY: the file is this example's own.
/// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
/// for i in 0..100u32 {
///     let mut w = db.begin_write()?;
///     w.set_durability(Durability::Eventual);
///     w.open_table("log")?.insert(&i.to_be_bytes(), b"entry")?;
///     w.commit()?; // visible now; durable at the next sync
/// }
/// db.sync()?; // all 100 are durable
/// # Ok::<(), larch::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Durable when `commit` returns: its pages and its meta are synced
    /// (with every commit before it). The default.
    #[default]
    Immediate,
    /// No sync of its own: durable at the next [`Database::sync`], the next
    /// `Immediate` commit, or when a handle of the database closes. An
    /// `Eventual` commit made once the oldest commit that is not durable is
    /// [`EVENTUAL_PERIOD`] old syncs instead (as `Immediate`), so a steady
    /// stream of them stays within about that long of the disk.
    ///
    /// [`Database::sync`]: crate::Database::sync
    Eventual,
    /// No sync of its own, ever: durable at the next [`Database::sync`], the
    /// next `Immediate` commit, or when a handle of the database closes.
    ///
    /// [`Database::sync`]: crate::Database::sync
    None,
}

/// How old the oldest commit that is not durable may grow before an
/// [`Durability::Eventual`] commit syncs.
pub const EVENTUAL_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Numbers the write transactions of the process, for their savepoints.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// What a savepoint keeps of the transaction: the pages' state
/// (`DirtySaved`, with the buffers' journal) and the transaction's own.
pub(super) struct Saved {
    id: u64,
    dirty: DirtySaved,
    catalog: TableDesc,
    heap: HeapDesc,
    tables: BTreeMap<String, Open>,
    rewrite: bool,
}

/// A point in a write transaction to come back to, from
/// [`WriteTxn::savepoint`]: [`WriteTxn::restore_savepoint`] undoes every
/// change made since, and the transaction goes on.
///
/// A savepoint costs what changes after it: a copy of each page the
/// transaction changes for the first time after it (of a value segment,
/// only the pages a value lands on), and a log entry per page taken or
/// freed and per value packed; not a copy of the dirty pages or of the free
/// list. Restoring an older
/// savepoint discards the newer ones; a savepoint stays usable after it is
/// restored; [`WriteTxn::release_savepoint`] forgets one and frees what it
/// kept. All of them end with the transaction.
#[derive(Debug)]
pub struct Savepoint {
    instance: u64,
    id: u64,
}

impl WriteTxn {
    /// Starts a write transaction; `guard` is this handle's writer lock, and
    /// the caller holds the registry's (released when this ends, or here on
    /// an error).
    pub(crate) fn new(
        core: Arc<Core>,
        mut guard: ArcMutexGuard<RawMutex, WriterState>,
    ) -> Result<WriteTxn> {
        let mut start = || -> Result<(Meta, OnDisk, BTreeSet<u64>, Arc<Map>)> {
            let (base, disk) = core.adopt(&mut guard)?;
            let map = core.pager.map_for(base.high_water)?;
            Ok((base, disk, core.registry.snapshots()?, map))
        };
        let (base, disk, mut live, map) = match start() {
            Ok(started) => started,
            Err(e) => {
                core.unlock_writer();
                return Err(e);
            }
        };
        // The id has the parity of the slot the next durable commit writes,
        // the one the newest durable meta is not in: so this commit can be
        // made durable whatever it turns out to be, and a commit that is not
        // durable never takes the parity of the meta a power loss falls back
        // to. With every commit durable that is `base + 1`; after one that
        // is not, `base + 2` (DESIGN.md, "Durability").
        // A valid meta's id is at most MAX_TXN_ID, so this does not saturate;
        // `commit` refuses an id past MAX_TXN_ID.
        let durable = disk.newest.txn_id;
        let mut txn_id = base.txn_id.saturating_add(1);
        if txn_id % 2 == durable % 2 {
            txn_id = txn_id.saturating_add(1);
        }
        // The reuse rule (DESIGN.md): a page written by A and freed by T is
        // reusable once no pinned snapshot lies in A..T. Pinned are both
        // metas on disk, which a power loss falls back to, like the live
        // readers of every process; and every snapshot from the base on:
        // a reader publishing after the registry's scan sees the base or
        // newer.
        live.insert(durable);
        live.insert(disk.oldest_id());
        // No snapshot older than both the base and every live one can
        // start again: their high-water marks are not needed any more, but
        // for the metas still on disk (`cut_on_close`).
        let oldest = live
            .first()
            .map_or(disk.oldest_id(), |&o| o.min(disk.oldest_id()));
        core.high_waters.lock().forget_before(oldest);
        let mut free = std::mem::take(&mut guard.free.list);
        let view = MapView::new(&core.pager, &map, base.high_water, base.txn_id);
        free.release(Pins::new(&live, base.txn_id), |id| {
            freelist::header(view, id)
        });
        let ps = core.pager.page_size();
        let max_pages = core.pager.max_size() / ps as u64;
        let file_pages = core.pager.writer_len() / ps as u64;
        Ok(WriteTxn {
            core,
            guard,
            dirty: Dirty::new(ps, txn_id, &base, max_pages, file_pages, free, map),
            base,
            disk,
            durability: Durability::Immediate,
            catalog: base.catalog,
            heap: base.heap,
            tables: BTreeMap::new(),
            rewrite: false,
            finished: false,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            savepoints: Vec::new(),
            next_savepoint: 0,
        })
    }

    /// The high-water mark of the commit this transaction started from.
    pub(crate) fn base_high_water(&self) -> u64 {
        self.base.high_water
    }

    /// The id this transaction commits as. Ids grow with every commit, by
    /// one, or by two after a commit that is not durable.
    pub fn id(&self) -> u64 {
        self.dirty.txn_id()
    }

    /// Sets how durable this transaction's commit is to be (by default
    /// [`Durability::Immediate`]).
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// How durable this transaction's commit is to be.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub(super) fn view(&self) -> View<'_> {
        View::Dirty(self.dirty.view(&self.core.pager))
    }

    /// The transaction's pages, lent to the B+tree.
    fn txn_pages(&mut self) -> TxnPages<'_> {
        self.dirty.lend(&self.core.pager)
    }

    /// Opens table `name`, creating it (empty) if it does not exist. A created
    /// table exists from this commit on, even if nothing is inserted.
    ///
    /// A name longer than the longest key gives
    /// [`Error::KeyTooLarge`](crate::Error::KeyTooLarge), which leaves the
    /// transaction as it was; any other error fails it (see [`WriteTxn`]).
    pub fn open_table(&mut self, name: &str) -> Result<TableMut<'_>> {
        self.open_table_as(name, Shape::Bytes)
    }

    /// Opens table `name` if it may be opened as `shape`, creating it so if
    /// it does not exist. A table of another shape is
    /// [`Error::TableTypeMismatch`](crate::Error::TableTypeMismatch), which
    /// leaves the transaction as it was.
    pub(crate) fn open_table_as(&mut self, name: &str, shape: Shape<'_>) -> Result<TableMut<'_>> {
        self.dirty.live()?;
        check_key(name.as_bytes())?;
        if !self.tables.contains_key(name) {
            let found = catalog_get(self.view(), &self.catalog, name);
            let open = match self.dirty.outcome(found)? {
                Some(entry) => Open::found(entry),
                None => Open {
                    changed: true,
                    ..Open::found(shape.create())
                },
            };
            self.tables.insert(name.to_owned(), open);
        }
        let open = self.tables.get_mut(name).expect("inserted above");
        shape.check(name, &open.entry)?;
        let pages = self.dirty.lend(&self.core.pager);
        Ok(TableMut::new(
            pages,
            &mut open.entry.desc,
            &mut open.changed,
        ))
    }

    /// Whether table `name` exists: committed, or created in this
    /// transaction and not deleted since. Nothing is created.
    pub fn table_exists(&self, name: &str) -> Result<bool> {
        self.dirty.live()?;
        if self.tables.contains_key(name) {
            return Ok(true);
        }
        if check_key(name.as_bytes()).is_err() {
            return Ok(false);
        }
        Ok(catalog_get(self.view(), &self.catalog, name)?.is_some())
    }

    /// Opens table `name` if it exists, or [`Error::TableNotFound`] and
    /// nothing created: a read of a table that may be missing leaves no
    /// empty table behind at commit (as [`open_table`](WriteTxn::open_table)
    /// would). A name longer than any table can have is not found.
    ///
    /// [`Error::TableNotFound`]: crate::Error::TableNotFound
    pub fn open_existing_table(&mut self, name: &str) -> Result<TableMut<'_>> {
        if !self.table_exists(name)? {
            return Err(crate::Error::TableNotFound(name.to_owned()));
        }
        self.open_table(name)
    }

    /// Deletes table `name` and frees all its pages. Returns whether it existed.
    /// An error fails the transaction (see [`WriteTxn`]).
    pub fn delete_table(&mut self, name: &str) -> Result<bool> {
        self.dirty.live()?;
        if check_key(name.as_bytes()).is_err() {
            return Ok(false);
        }
        let r = self.delete_table_inner(name);
        self.dirty.outcome(r)
    }

    fn delete_table_inner(&mut self, name: &str) -> Result<bool> {
        let mut desc = match self.tables.remove(name) {
            Some(open) => open.entry.desc,
            None => match catalog_get(self.view(), &self.catalog, name)? {
                Some(entry) => entry.desc,
                None => return Ok(false),
            },
        };
        let mut catalog = self.catalog;
        let mut w = self.txn_pages();
        btree::drop_tree(&mut w, &mut desc)?;
        btree::remove(&mut w, &mut catalog, name.as_bytes())?;
        self.catalog = catalog;
        Ok(true)
    }

    /// Names of all tables, including those created in this transaction.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        self.dirty.live()?;
        let mut names: BTreeSet<String> = catalog_names(self.view(), &self.catalog)?
            .into_iter()
            .collect();
        names.extend(self.tables.keys().cloned());
        Ok(names.into_iter().collect())
    }

    /// Makes the transaction's changes durable and visible to new readers.
    ///
    /// When this returns `Ok`, the transaction survives a crash or power loss.
    /// A transaction that failed earlier (see [`WriteTxn`]) is refused with
    /// [`Error::TxnFailed`](crate::Error::TxnFailed). Any other error before
    /// the commit's writes begin (`MapFull` while writing the catalog or the
    /// free list, `Corrupted`) leaves the file and the database as they were.
    /// On an I/O error the database is poisoned: later write transactions fail
    /// with [`Error::Poisoned`](crate::Error::Poisoned) until it is reopened,
    /// and the file holds the previous commit (or, when only the final sync
    /// failed, possibly this one). In a child made by `fork` that inherited
    /// the transaction it fails with [`Error::Forked`](crate::Error::Forked)
    /// and writes nothing.
    pub fn commit(mut self) -> Result<()> {
        // A child made by `fork` that inherited the transaction writes
        // nothing: the parent's writer lock is not its own.
        self.core.same_process()?;
        self.dirty.live()?;
        let r = self.protocol();
        self.dirty.outcome(r)?;
        self.finished = true;
        Ok(())
    }

    /// Discards the transaction's changes (as dropping it does).
    pub fn abort(self) {}

    /// A savepoint: the transaction as it is now, to come back to with
    /// [`restore_savepoint`](WriteTxn::restore_savepoint) (see
    /// [`Savepoint`] for what it costs). Refused with
    /// [`Error::TxnFailed`](crate::Error::TxnFailed) once the transaction
    /// failed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # // SAFETY: the file is this example's own.
    /// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
    /// let mut w = db.begin_write()?;
    /// w.open_table("t")?.insert(b"kept", b"1")?;
    /// let sp = w.savepoint()?;
    /// w.open_table("t")?.insert(b"undone", b"2")?;
    /// w.restore_savepoint(&sp)?;
    /// w.open_table("t")?.insert(b"after", b"3")?;
    /// w.commit()?;
    /// let r = db.begin_read()?;
    /// let t = r.open_table("t")?;
    /// assert_eq!(t.get(b"undone")?, None);
    /// assert_eq!(t.len(), 2);
    /// # Ok::<(), larch::Error>(())
    /// ```
    pub fn savepoint(&mut self) -> Result<Savepoint> {
        let dirty = self.dirty.savepoint()?;
        let id = self.next_savepoint;
        self.next_savepoint += 1;
        self.savepoints.push(Saved {
            id,
            dirty,
            catalog: self.catalog,
            heap: self.heap,
            tables: self.tables.clone(),
            rewrite: self.rewrite,
        });
        Ok(Savepoint {
            instance: self.instance,
            id,
        })
    }

    /// Undoes every change since `savepoint` (tables created or deleted
    /// included) and goes on from there; `savepoint` stays usable, and the
    /// savepoints taken after it are discarded. A transaction that failed
    /// after the savepoint (see [`WriteTxn`]) is usable again: what the
    /// failed change did is undone with the rest.
    ///
    /// A savepoint of another transaction, or one discarded (by restoring
    /// an older one, or by [`release_savepoint`](WriteTxn::release_savepoint)),
    /// is [`Error::InvalidSavepoint`](crate::Error::InvalidSavepoint), and
    /// nothing changes.
    pub fn restore_savepoint(&mut self, savepoint: &Savepoint) -> Result<()> {
        let level = self.level_of(savepoint)?;
        self.savepoints.truncate(level + 1);
        let saved = &self.savepoints[level];
        self.dirty.restore(level, &saved.dirty);
        self.catalog = saved.catalog;
        self.heap = saved.heap;
        self.tables = saved.tables.clone();
        self.rewrite = saved.rewrite;
        Ok(())
    }

    /// Forgets `savepoint`, keeping the changes made since, and frees the
    /// copies it kept; the others stay usable. An invalid one (see
    /// [`restore_savepoint`](WriteTxn::restore_savepoint)) is
    /// [`Error::InvalidSavepoint`](crate::Error::InvalidSavepoint).
    pub fn release_savepoint(&mut self, savepoint: Savepoint) -> Result<()> {
        let level = self.level_of(&savepoint)?;
        self.savepoints.remove(level);
        self.dirty.release(level);
        Ok(())
    }

    /// Bytes of page copies the live savepoints keep.
    pub fn savepoint_bytes(&self) -> usize {
        self.dirty.savepoint_bytes()
    }

    /// The level of a live savepoint of this transaction.
    fn level_of(&self, savepoint: &Savepoint) -> Result<usize> {
        let found = (savepoint.instance == self.instance)
            .then(|| self.savepoints.iter().position(|s| s.id == savepoint.id))
            .flatten();
        found.ok_or(crate::Error::InvalidSavepoint)
    }
}

impl Drop for WriteTxn {
    fn drop(&mut self) {
        // A child made by `fork` that inherited the transaction shares the
        // parent's open file description, and with it the writer lock:
        // releasing it would let a second writer beside the parent's.
        if self.core.same_process().is_err() {
            return;
        }
        if !self.finished {
            self.guard.free.list = self.dirty.abort();
        }
        // Before `guard` drops: another thread of this handle taking the
        // writer lock would otherwise take the registry's too (a handle's own
        // byte lock does not exclude it) and lose it to this unlock.
        self.core.unlock_writer();
    }
}
