//! The write transaction: its tables and their changes. Its commit is
//! `commit`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{ArcMutexGuard, Mutex, RawMutex};

use super::core::{Core, OnDisk, WriterState};
use crate::btree;
use crate::dirty::{Dirty, DirtySaved, Part, PartSaved};
use crate::error::{Error, Result};
use crate::format::catalog::CatalogEntry;
use crate::format::heap::HeapDesc;
use crate::format::meta::{Meta, TableDesc};
use crate::freelist::{self, Pins};
use crate::pager::Map;
use crate::table::{Held, OpenTable, Shape, TableMut, catalog_get, catalog_names, check_key};
use crate::view::{MapView, View};

/// The tables opened in this transaction.
#[derive(Default)]
pub(super) struct Tables {
    /// Each table open in the transaction (opened or created, and not
    /// deleted since), by name: its index in `all`.
    names: BTreeMap<String, usize>,
    /// Every table state made in the transaction, oldest first, those of
    /// tables deleted since that a savepoint taken before the delete puts
    /// back, or whose partition still holds a buffer, included (a deleted
    /// table's state goes otherwise: `forget_table`).
    all: Vec<Arc<Mutex<OpenTable>>>,
}

/// The one write transaction. Only one exists at a time, across every process
/// that has the database open: `begin_write` waits for the previous one to end.
///
/// Changes are private until [`commit`](WriteTxn::commit) returns; dropping the
/// transaction, or [`abort`](WriteTxn::abort), discards them.
///
/// # Several tables at once
///
/// [`open_table`](WriteTxn::open_table), [`open_typed`](WriteTxn::open_typed)
/// and [`open_multimap`](WriteTxn::open_multimap) borrow the transaction
/// shared, so any number of tables may be open at once, each through one
/// handle; a value read from one stays valid while the others change.
/// What needs the whole transaction ([`delete_table`](WriteTxn::delete_table),
/// savepoints, [`commit`](WriteTxn::commit)) borrows it mutably or takes it,
/// so the compiler proves no handle is open then. A handle leaked with
/// `mem::forget` keeps its table for good: those calls then refuse with
/// [`Error::TableAlreadyOpen`], and the transaction can only be aborted
/// (nothing of it reaches the file).
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
/// A table handle dropped while its thread panics fails the transaction
/// too: the panic may have cut a change short.
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
/// [`Error::TableAlreadyOpen`]: crate::Error::TableAlreadyOpen
pub struct WriteTxn {
    pub(super) core: Arc<Core>,
    /// The writer lock, and the free list as of the last commit.
    pub(super) guard: ArcMutexGuard<RawMutex, WriterState>,
    pub(super) dirty: Dirty,
    /// The transaction's own partition of the pages: the catalog's, the
    /// heap tree's and the free list's; from the commit on, every
    /// buffer (`gather`).
    pub(super) part: Part,
    /// Whether the commit gathered every partition into `part`.
    pub(super) gathered: bool,
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
    pub(super) tables: Mutex<Tables>,
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
    /// Until then a power loss falls back to the last durable commit, so
    /// every page it reaches is kept from reuse: a long run of `None`
    /// commits grows the file by about the pages each one replaces, and the
    /// next sync lets them go.
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
/// (`DirtySaved`, and each partition's with its buffers' journal) and the
/// transaction's own.
pub(super) struct Saved {
    id: u64,
    dirty: DirtySaved,
    part: PartSaved,
    /// Each table state made before it, in order: its partition's state,
    /// its catalog entry and whether it changed.
    tables: Vec<(PartSaved, CatalogEntry, bool)>,
    names: BTreeMap<String, usize>,
    catalog: TableDesc,
    heap: HeapDesc,
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
        let dirty = Dirty::new(ps, txn_id, &base, max_pages, file_pages, free, map);
        Ok(WriteTxn {
            core,
            guard,
            part: dirty.part(0),
            gathered: false,
            dirty,
            base,
            disk,
            durability: Durability::Immediate,
            catalog: base.catalog,
            heap: base.heap,
            tables: Mutex::default(),
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
        View::Dirty(self.dirty.view(&self.core.pager, &self.part))
    }

    /// Opens table `name`, creating it (empty) if it does not exist. A created
    /// table exists from this commit on, even if nothing is inserted.
    ///
    /// The transaction is borrowed shared: several tables may be open at
    /// once, each through one handle, and a value read from one stays
    /// valid while the others change (see [`WriteTxn`]). A table open
    /// already in this transaction is
    /// [`Error::TableAlreadyOpen`](crate::Error::TableAlreadyOpen), which
    /// leaves the transaction as it was: drop the other handle first.
    ///
    /// A name longer than the longest key gives
    /// [`Error::KeyTooLarge`](crate::Error::KeyTooLarge), which leaves the
    /// transaction as it was; any other error fails it (see [`WriteTxn`]).
    ///
    /// A transfer between two tables, both open at once:
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # // SAFETY: the file is this example's own.
    /// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
    /// # let w = db.begin_write()?;
    /// # w.open_table("accounts")?.insert(b"ada", b"100")?;
    /// # w.commit()?;
    /// let w = db.begin_write()?;
    /// let mut accounts = w.open_table("accounts")?;
    /// let mut ledger = w.open_table("ledger")?;
    /// let balance = accounts.get(b"ada")?.unwrap();
    /// // A change to another table leaves `balance` valid.
    /// ledger.insert(b"0001", balance)?;
    /// assert_eq!(balance, b"100");
    /// accounts.insert(b"ada", b"0")?; // ends `balance`
    /// drop((accounts, ledger));
    /// w.commit()?;
    ///
    /// let r = db.begin_read()?;
    /// assert_eq!(r.open_table("ledger")?.get(b"0001")?, Some(&b"100"[..]));
    /// # Ok::<(), larch::Error>(())
    /// ```
    pub fn open_table(&self, name: &str) -> Result<TableMut<'_>> {
        self.open_table_as(name, Shape::Bytes)
    }

    /// Opens table `name` if it may be opened as `shape`, creating it so if
    /// it does not exist. A table of another shape is
    /// [`Error::TableTypeMismatch`](crate::Error::TableTypeMismatch), and
    /// one open already [`Error::TableAlreadyOpen`], both of which leave the
    /// transaction as it was.
    pub(crate) fn open_table_as(&self, name: &str, shape: Shape<'_>) -> Result<TableMut<'_>> {
        self.dirty.live()?;
        check_key(name.as_bytes())?;
        let table = {
            let mut tables = self.tables.lock();
            match tables.names.get(name) {
                Some(&i) => Arc::clone(&tables.all[i]),
                None => {
                    let found = catalog_get(self.view(), &self.catalog, name);
                    let (entry, changed) = match self.dirty.outcome(found)? {
                        Some(entry) => (entry, false),
                        None => (shape.create(), true),
                    };
                    let table = Arc::new(Mutex::new(OpenTable {
                        part: self.dirty.part(self.savepoints.len()),
                        entry,
                        changed,
                    }));
                    let i = tables.all.len();
                    tables.all.push(Arc::clone(&table));
                    tables.names.insert(name.to_owned(), i);
                    table
                }
            }
        };
        let Some(held) = table.try_lock_arc() else {
            return Err(Error::TableAlreadyOpen {
                table: name.to_owned(),
            });
        };
        shape.check(name, &held.entry)?;
        Ok(TableMut::new(&self.core.pager, &self.dirty, held))
    }

    /// Every table state of the transaction, locked (none is open: the
    /// caller has the transaction mutably); a handle leaked with
    /// `mem::forget` keeps its table locked, which is
    /// [`Error::TableAlreadyOpen`] and nothing changed.
    fn hold_all(&mut self) -> Result<Vec<Held>> {
        let tables = self.tables.get_mut();
        let mut held = Vec::with_capacity(tables.all.len());
        for table in &tables.all {
            match table.try_lock_arc() {
                Some(t) => held.push(t),
                None => return Err(leaked(&tables.names, &tables.all, table)),
            }
        }
        Ok(held)
    }

    /// The state of table `name`, locked, if it is open in the
    /// transaction (see [`hold_all`](WriteTxn::hold_all)).
    fn hold(&mut self, name: &str) -> Result<Option<Held>> {
        let tables = self.tables.get_mut();
        let Some(&i) = tables.names.get(name) else {
            return Ok(None);
        };
        match tables.all[i].try_lock_arc() {
            Some(t) => Ok(Some(t)),
            None => Err(leaked(&tables.names, &tables.all, &tables.all[i])),
        }
    }

    /// The catalog entry of table `name` as the transaction holds it, and
    /// its state locked if it is open in it. `None` when there is no such
    /// table.
    pub(super) fn entry_of(&mut self, name: &str) -> Result<Option<(CatalogEntry, Option<Held>)>> {
        if let Some(held) = self.hold(name)? {
            return Ok(Some((held.entry.clone(), Some(held))));
        }
        Ok(catalog_get(self.view(), &self.catalog, name)?.map(|entry| (entry, None)))
    }

    /// Opens table `name` in the transaction with `entry` (as the catalog
    /// holds it), changed, once the commit or compaction moved its pages.
    pub(super) fn adopt(&mut self, name: String, entry: CatalogEntry, part: Part) {
        let tables = self.tables.get_mut();
        let i = tables.all.len();
        tables.all.push(Arc::new(Mutex::new(OpenTable {
            part,
            entry,
            changed: true,
        })));
        tables.names.insert(name, i);
    }

    /// A new partition, for a table the transaction has not opened.
    pub(super) fn new_part(&self) -> Part {
        self.dirty.part(self.savepoints.len())
    }

    /// The commit begins: the savepoints go, and every partition is
    /// gathered into the transaction's own, which the commit's steps
    /// change and write out. A leaked handle's table is
    /// [`Error::TableAlreadyOpen`]: its changes cannot be reached.
    pub(super) fn gather(&mut self) -> Result<()> {
        let held = self.hold_all()?;
        // Nothing is undone from here on: the journals would only copy
        // every buffer the commit stamps.
        self.savepoints.clear();
        self.dirty.drop_savepoints();
        self.part.drop_savepoints();
        for mut t in held {
            t.part.drop_savepoints();
            self.dirty.gather(&mut self.part, &mut t.part)?;
        }
        self.gathered = true;
        Ok(())
    }

    /// Whether a table open in the transaction changed.
    pub(super) fn tables_changed(&self) -> bool {
        let tables = self.tables.lock();
        (tables.names.values()).any(|&i| tables.all[i].try_lock().is_none_or(|t| t.changed))
    }

    /// The tables changed in the transaction, by name, with what the
    /// catalog is to hold for each.
    pub(super) fn changed_tables(&mut self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut changed = Vec::new();
        let names: Vec<String> = self.tables.get_mut().names.keys().cloned().collect();
        for name in names {
            if let Some(t) = self.hold(&name)?
                && t.changed
            {
                changed.push((name, t.entry.encode()));
            }
        }
        Ok(changed)
    }

    /// Whether table `name` exists: committed, or created in this
    /// transaction and not deleted since. Nothing is created.
    pub fn table_exists(&self, name: &str) -> Result<bool> {
        self.dirty.live()?;
        if self.tables.lock().names.contains_key(name) {
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
    pub fn open_existing_table(&self, name: &str) -> Result<TableMut<'_>> {
        if !self.table_exists(name)? {
            return Err(crate::Error::TableNotFound(name.to_owned()));
        }
        self.open_table(name)
    }

    /// Deletes table `name` and frees all its pages. Returns whether it existed.
    /// An error fails the transaction (see [`WriteTxn`]), but for
    /// [`Error::TableAlreadyOpen`](crate::Error::TableAlreadyOpen) (a
    /// handle of the table leaked), which changes nothing.
    pub fn delete_table(&mut self, name: &str) -> Result<bool> {
        self.dirty.live()?;
        if check_key(name.as_bytes()).is_err() {
            return Ok(false);
        }
        let held = self.hold(name)?;
        let r = self.delete_table_inner(name, held);
        self.dirty.outcome(r)
    }

    fn delete_table_inner(&mut self, name: &str, mut held: Option<Held>) -> Result<bool> {
        let mut desc = match &held {
            Some(t) => t.entry.desc,
            None => match catalog_get(self.view(), &self.catalog, name)? {
                Some(entry) => entry.desc,
                None => return Ok(false),
            },
        };
        // The name no longer leads to the table's state.
        let index = self.tables.get_mut().names.remove(name);
        let mut catalog = self.catalog;
        let pager = &self.core.pager;
        let part = match held.as_mut() {
            Some(t) => &mut t.part,
            None => &mut self.part,
        };
        btree::drop_tree(&mut self.dirty.lend(pager, part), &mut desc)?;
        if let Some(t) = held.as_mut() {
            // Its values are gone with its tree: the segments it packed
            // into hold none now, and go back to the allocator for the
            // other tables (and the table made again under this name).
            self.dirty.settle(&mut t.part)?;
        }
        let mut w = self.dirty.lend(pager, &mut self.part);
        btree::remove(&mut w, &mut catalog, name.as_bytes())?;
        self.catalog = catalog;
        if let (Some(t), Some(i)) = (held, index) {
            self.forget_table(t, i);
        }
        Ok(true)
    }

    /// Drops the state at `i` in the transaction's tables, of a table just
    /// deleted (`held`), when nothing needs it any more: its partition
    /// holds no buffer, and no savepoint knows it (one made before it would
    /// bring it back). So a table created and deleted over and over leaves
    /// no state behind. Otherwise it stays until the commit.
    fn forget_table(&mut self, held: Held, i: usize) {
        let known = self.savepoints.last().map_or(0, |s| s.tables.len());
        if i < known || !held.part.is_empty() {
            return;
        }
        drop(held);
        let tables = self.tables.get_mut();
        tables.all.remove(i);
        for j in tables.names.values_mut() {
            if *j > i {
                *j -= 1;
            }
        }
    }

    /// Names of all tables, including those created in this transaction.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        self.dirty.live()?;
        let mut names: BTreeSet<String> = catalog_names(self.view(), &self.catalog)?
            .into_iter()
            .collect();
        names.extend(self.tables.lock().names.keys().cloned());
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
        if self.core.closed.load(Ordering::Acquire) {
            // Its handle closed meanwhile, unable to sync what this writer
            // held the lock over: nothing would later.
            self.durability = Durability::Immediate;
        }
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
    /// A handle leaked with `mem::forget` keeps its table for good:
    /// [`Error::TableAlreadyOpen`](crate::Error::TableAlreadyOpen), and no
    /// savepoint is taken.
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
        self.dirty.live()?;
        let mut held = self.hold_all()?;
        let dirty = self.dirty.savepoint()?;
        let part = self.part.savepoint();
        let tables = (held.iter_mut())
            .map(|t| (t.part.savepoint(), t.entry.clone(), t.changed))
            .collect();
        let id = self.next_savepoint;
        self.next_savepoint += 1;
        self.savepoints.push(Saved {
            id,
            dirty,
            part,
            tables,
            names: self.tables.get_mut().names.clone(),
            catalog: self.catalog,
            heap: self.heap,
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
    /// nothing changes; so is a leaked handle's table
    /// ([`Error::TableAlreadyOpen`](crate::Error::TableAlreadyOpen)).
    pub fn restore_savepoint(&mut self, savepoint: &Savepoint) -> Result<()> {
        let level = self.level_of(savepoint)?;
        let mut held = self.hold_all()?;
        self.savepoints.truncate(level + 1);
        let saved = &self.savepoints[level];
        self.dirty.restore(level, &saved.dirty);
        self.part.restore(level, &saved.part);
        // The tables made since go with their partitions, whose pages the
        // allocator took back.
        for (t, (part, entry, changed)) in held.iter_mut().zip(&saved.tables) {
            t.part.restore(level, part);
            t.entry = entry.clone();
            t.changed = *changed;
        }
        drop(held);
        let tables = self.tables.get_mut();
        tables.all.truncate(saved.tables.len());
        tables.names = saved.names.clone();
        self.catalog = saved.catalog;
        self.heap = saved.heap;
        self.rewrite = saved.rewrite;
        Ok(())
    }

    /// Forgets `savepoint`, keeping the changes made since, and frees the
    /// copies it kept; the others stay usable. An invalid one (see
    /// [`restore_savepoint`](WriteTxn::restore_savepoint)) is
    /// [`Error::InvalidSavepoint`](crate::Error::InvalidSavepoint).
    pub fn release_savepoint(&mut self, savepoint: Savepoint) -> Result<()> {
        let level = self.level_of(&savepoint)?;
        let mut held = self.hold_all()?;
        self.savepoints.remove(level);
        self.dirty.release(level);
        self.part.release(level);
        for t in &mut held {
            t.part.release(level);
        }
        Ok(())
    }

    /// Bytes of page copies the live savepoints keep (but for a table whose
    /// handle was leaked, which cannot be reached).
    pub fn savepoint_bytes(&mut self) -> usize {
        let tables = self.tables.get_mut();
        let held =
            (tables.all.iter()).filter_map(|t| t.try_lock().map(|t| t.part.savepoint_bytes()));
        self.part.savepoint_bytes() + held.sum::<usize>()
    }

    /// The level of a live savepoint of this transaction.
    fn level_of(&self, savepoint: &Savepoint) -> Result<usize> {
        let found = (savepoint.instance == self.instance)
            .then(|| self.savepoints.iter().position(|s| s.id == savepoint.id))
            .flatten();
        found.ok_or(crate::Error::InvalidSavepoint)
    }
}

/// The error for `table`, locked by a handle leaked with `mem::forget`.
/// (A table deleted since is never locked: deleting it needed its lock.)
fn leaked(
    names: &BTreeMap<String, usize>,
    all: &[Arc<Mutex<OpenTable>>],
    table: &Arc<Mutex<OpenTable>>,
) -> Error {
    let name = (names.iter())
        .find(|&(_, &i)| Arc::ptr_eq(&all[i], table))
        .map_or_else(String::new, |(name, _)| name.clone());
    Error::TableAlreadyOpen { table: name }
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
            // Its handle closed while this held the writer lock, so the
            // close could not make the commits that are not durable durable:
            // this does, as the last writer of the handle (best effort, as
            // the close's).
            if self.core.closed.load(Ordering::Acquire)
                && !self.core.poisoned.load(Ordering::Acquire)
            {
                let _ = self.make_durable();
            }
            self.guard.free.list = self.dirty.abort();
        }
        // Before `guard` drops: another thread of this handle taking the
        // writer lock would otherwise take the registry's too (a handle's own
        // byte lock does not exclude it) and lose it to this unlock.
        self.core.unlock_writer();
    }
}
