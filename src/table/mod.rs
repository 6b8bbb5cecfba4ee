//! Tables, their cursors and ranges, and the catalog that names them.

mod write_cursor;

pub use write_cursor::{CursorMut, Drain};

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use parking_lot::{ArcMutexGuard, RawMutex};

use crate::btree;
use crate::dirty::{Dirty, Part, TxnPages};
use crate::error::{Error, Result, corrupted};
use crate::format::catalog::{CatalogEntry, TableTypes};
use crate::format::meta::TableDesc;
use crate::format::node::MAX_KEY;
use crate::format::page::OVERFLOW_DATA;
use crate::pager::Pager;
use crate::txn::Snapshot;
use crate::view::{MapView, View};

/// The longest value the format stores (its length is a `u32`, and the run
/// holds a header too).
pub(crate) const MAX_VALUE: usize = u32::MAX as usize - OVERFLOW_DATA;

/// Looks up table `name` in the catalog: its descriptor and types.
pub(crate) fn catalog_get(
    view: View<'_>,
    catalog: &TableDesc,
    name: &str,
) -> Result<Option<CatalogEntry>> {
    match btree::get(view, catalog, name.as_bytes())? {
        None => Ok(None),
        Some(bytes) => match CatalogEntry::decode(bytes) {
            Some(entry) => Ok(Some(entry)),
            None => corrupted(catalog.root, "invalid table descriptor in the catalog"),
        },
    }
}

/// What a table is opened as: what it must be, and what it is created as
/// when missing.
#[derive(Clone, Copy)]
pub(crate) enum Shape<'a> {
    /// The byte API: any table but a multimap (typed ones included, whose
    /// encoded bytes it sees); created untyped.
    Bytes,
    /// A typed table of exactly these types; created so.
    Typed(&'a TableTypes),
    /// A multimap table of the byte API (not a typed one); created so.
    Multimap,
    /// A typed multimap of exactly these types; created so.
    TypedMultimap(&'a TableTypes),
    /// Any multimap, typed or not, as the byte multimap sees its tree (read
    /// transactions only: never created).
    AnyMultimap,
    /// Whatever the table is; created as this entry says (a copy's).
    As(&'a CatalogEntry),
}

impl Shape<'_> {
    /// `Ok` if table `name`, as the catalog holds it (`found`), may be
    /// opened so; else a `TableTypeMismatch`, which changes nothing.
    pub(crate) fn check(&self, name: &str, found: &CatalogEntry) -> Result<()> {
        let types = found.types.as_ref();
        let fits = match self {
            Shape::Bytes => !found.multimap,
            Shape::Typed(want) => !found.multimap && types == Some(*want),
            Shape::Multimap => found.multimap && types.is_none(),
            Shape::TypedMultimap(want) => found.multimap && types == Some(*want),
            Shape::AnyMultimap => found.multimap,
            Shape::As(_) => true,
        };
        if fits {
            return Ok(());
        }
        let show = |types: Option<&TableTypes>, multimap: bool| {
            let kind = if multimap { "multimap " } else { "" };
            match types {
                Some(t) => format!("{kind}({}, {})", t.key, t.value),
                None => format!("{kind}bytes (untyped)"),
            }
        };
        let expected = match self {
            Shape::Typed(want) => show(Some(want), false),
            Shape::TypedMultimap(want) => show(Some(want), true),
            Shape::AnyMultimap => "multimap (typed or not)".to_owned(),
            _ => show(None, matches!(self, Shape::Multimap)),
        };
        Err(Error::TableTypeMismatch {
            table: name.to_owned(),
            expected,
            found: show(types, found.multimap),
        })
    }

    /// The catalog entry of a new, empty table opened so.
    pub(crate) fn create(&self) -> CatalogEntry {
        let (types, multimap) = match self {
            Shape::Bytes => (None, false),
            Shape::Typed(types) => (Some((*types).clone()), false),
            Shape::Multimap | Shape::AnyMultimap => (None, true),
            Shape::TypedMultimap(types) => (Some((*types).clone()), true),
            Shape::As(entry) => (entry.types.clone(), entry.multimap),
        };
        CatalogEntry {
            desc: TableDesc::default(),
            types,
            multimap,
        }
    }
}

/// Names of all tables in the catalog, in order.
pub(crate) fn catalog_names(view: View<'_>, catalog: &TableDesc) -> Result<Vec<String>> {
    let mut cursor = btree::Cursor::new(view, *catalog);
    let mut names = Vec::new();
    while let Some((key, _)) = cursor.next()? {
        match std::str::from_utf8(key) {
            Ok(name) => names.push(name.to_owned()),
            Err(_) => return corrupted(catalog.root, "table name is not UTF-8"),
        }
    }
    Ok(names)
}

/// Checks a key's length against the longest a database accepts.
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    let max = MAX_KEY;
    if key.len() > max {
        return Err(Error::KeyTooLarge {
            len: key.len(),
            max,
        });
    }
    Ok(())
}

/// A table in a read transaction.
///
/// Values borrow the transaction (`'txn`): they point straight into the map and
/// stay valid until the [`ReadTxn`](crate::ReadTxn) is dropped.
pub struct Table<'txn> {
    /// The snapshot, for ranges that own it ([`Table::range_owned`]).
    snap: &'txn Arc<Snapshot>,
    view: MapView<'txn>,
    desc: TableDesc,
}

/// The shape and size of one table's tree, from [`Table::stat`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStat {
    /// Levels of the tree: 0 for an empty table, 1 for a single leaf.
    pub depth: u32,
    /// Branch (interior) pages.
    pub branch_pages: u64,
    /// Leaf pages.
    pub leaf_pages: u64,
    /// Pages of overflow runs: values of their own pages (longer than 16
    /// pages less 24 bytes).
    pub overflow_pages: u64,
    /// Values packed into the value heap's segments, which all tables share
    /// (values too long for a leaf, too short for a run of their own).
    pub packed_values: u64,
    /// Bytes of those values.
    pub packed_bytes: u64,
    /// Entries (key-value pairs).
    pub entries: u64,
}

impl TableStat {
    pub(crate) fn of<'a>(view: MapView<'a>, desc: &TableDesc) -> Result<TableStat> {
        let counts = btree::count_pages(view, desc, view.high_water())?;
        Ok(TableStat {
            depth: desc.depth,
            branch_pages: counts.branch,
            leaf_pages: counts.leaf,
            overflow_pages: counts.overflow,
            packed_values: counts.packed,
            packed_bytes: counts.packed_bytes,
            entries: desc.entries,
        })
    }
}

impl<'txn> Table<'txn> {
    pub(crate) fn new(snap: &'txn Arc<Snapshot>, desc: TableDesc) -> Table<'txn> {
        Table {
            snap,
            view: snap.map_view(),
            desc,
        }
    }

    /// The snapshot and the table's descriptor.
    pub(crate) fn parts(&self) -> (&'txn Arc<Snapshot>, TableDesc) {
        (self.snap, self.desc)
    }

    fn source(&self) -> View<'txn> {
        View::Map(self.view)
    }

    /// Counts the table's pages by kind. Walks the whole tree (every branch
    /// and leaf page is read), so it costs about as much as a scan of the keys.
    pub fn stat(&self) -> Result<TableStat> {
        TableStat::of(self.view, &self.desc)
    }

    /// The value stored under `key`, borrowed from the map for the life of the
    /// transaction.
    pub fn get(&self, key: &[u8]) -> Result<Option<&'txn [u8]>> {
        btree::get(self.view, &self.desc, key)
    }

    /// The entries whose keys lie in `range`, in key order (and in reverse with
    /// `.rev()` or `next_back`).
    pub fn range<'a>(&self, range: impl RangeBounds<&'a [u8]>) -> Result<Range<'txn>> {
        Ok(Range::new(self.source(), self.desc, range))
    }

    /// The entries whose keys start with `prefix`, in key order (and in
    /// reverse with `.rev()`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # // SAFETY: the file is this example's own.
    /// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
    /// # let mut w = db.begin_write()?;
    /// # let mut t = w.open_table("users")?;
    /// # for k in [&b"user:1"[..], b"user:2", b"userx", b"group:1"] { t.insert(k, b"")?; }
    /// # drop(t);
    /// # w.commit()?;
    /// let r = db.begin_read()?;
    /// let users = r.open_table("users")?;
    /// let keys: Vec<&[u8]> = users.prefix(b"user:")?.map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    /// assert_eq!(keys, [&b"user:1"[..], b"user:2"]);
    /// # Ok::<(), larch::Error>(())
    /// ```
    pub fn prefix(&self, prefix: &[u8]) -> Result<Range<'txn>> {
        let end = prefix_end(prefix);
        self.range((Bound::Included(prefix), borrowed(&end)))
    }

    /// All entries in key order.
    pub fn iter(&self) -> Result<Range<'txn>> {
        self.range(..)
    }

    /// Number of entries, O(1).
    pub fn len(&self) -> u64 {
        self.desc.entries
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.desc.entries == 0
    }

    /// A cursor over the table, not yet positioned.
    pub fn cursor(&self) -> Cursor<'txn> {
        Cursor::new(self.source(), self.desc)
    }
}

/// A table opened in a write transaction: its partition of the
/// transaction's pages and its catalog entry as the transaction changed it.
/// The transaction keeps it behind a mutex of its own, which a [`TableMut`]
/// holds for its life: the table's pages and descriptor are reached through
/// one handle at a time, and a handle that is leaked (`mem::forget`) keeps
/// them locked, so the transaction refuses what needs them (it never loses
/// their changes half-way).
pub(crate) struct OpenTable {
    pub(crate) part: Part,
    /// What the catalog is to hold for it at commit: its descriptor as
    /// this transaction changed it, its types and kind as they were.
    pub(crate) entry: CatalogEntry,
    /// Whether the descriptor must be written to the catalog at commit.
    pub(crate) changed: bool,
}

/// An [`OpenTable`] locked by its holder.
pub(crate) type Held = ArcMutexGuard<RawMutex, OpenTable>;

/// A table in a write transaction.
///
/// Reads see the transaction's own changes. Values borrow `&self`, so the next
/// mutation of this table (which needs `&mut self`) ends them: the compiler
/// enforces that a value is never used after the page under it changed.
/// Several tables may be open at once in one transaction, each through its
/// own handle (see [`WriteTxn::open_table`](crate::WriteTxn::open_table)): a
/// change to one never moves bytes a value of another borrows.
///
/// When a change fails (see [`insert`](TableMut::insert)), the whole
/// transaction has failed: every later call through this handle, another
/// handle or the [`WriteTxn`](crate::WriteTxn) returns [`Error::TxnFailed`],
/// ranges and cursors under way included.
pub struct TableMut<'txn> {
    pager: &'txn Pager,
    dirty: &'txn Dirty,
    table: Held,
    hint: btree::InsertHint,
}

/// The parts of a [`TableMut`] a change works on at once.
struct Changing<'a> {
    pages: TxnPages<'a>,
    desc: &'a mut TableDesc,
    changed: &'a mut bool,
    hint: &'a mut btree::InsertHint,
}

impl<'txn> TableMut<'txn> {
    pub(crate) fn new(pager: &'txn Pager, dirty: &'txn Dirty, table: Held) -> TableMut<'txn> {
        TableMut {
            pager,
            dirty,
            table,
            hint: btree::InsertHint::default(),
        }
    }

    /// The table's pages lent to the tree, with its descriptor.
    #[inline]
    fn changing(&mut self) -> Changing<'_> {
        let t = &mut *self.table;
        Changing {
            pages: self.dirty.lend(self.pager, &mut t.part),
            desc: &mut t.entry.desc,
            changed: &mut t.changed,
            hint: &mut self.hint,
        }
    }

    /// The table's descriptor as the transaction changed it.
    #[inline]
    fn desc(&self) -> &TableDesc {
        &self.table.entry.desc
    }

    #[inline]
    fn view(&self) -> View<'_> {
        View::Dirty(self.dirty.view(self.pager, &self.table.part))
    }

    /// Stores `value` under `key`, replacing any previous value. Other
    /// transactions see it once [`WriteTxn::commit`](crate::WriteTxn::commit)
    /// returns, and it is durable from then on.
    ///
    /// Keys are at most 65,536 bytes ([`Error::KeyTooLarge`]); one longer than
    /// a quarter page is stored out of its leaf with its value. Values larger
    /// than about a quarter page are stored out of their leaf.
    ///
    /// Returns whether the key was there before (its old value replaced).
    ///
    /// [`Error::KeyTooLarge`] and [`Error::ValueTooLarge`] are checked before
    /// anything changes and leave the transaction as it was. Any other error
    /// ([`Error::MapFull`], [`Error::Corrupted`], ...) may come after the
    /// tree began to change, so it fails the transaction: from then on every
    /// call on it returns [`Error::TxnFailed`], and it cannot commit.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<bool> {
        self.dirty.live()?;
        check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE,
            });
        }
        let c = self.changing();
        *c.changed = true;
        // The hint is taken by every insert and given back only by one that
        // split nothing.
        let before = *c.desc;
        let mut pages = c.pages;
        let r = btree::insert(&mut pages, c.desc, c.hint, key, value);
        let r = self.dirty.outcome(r);
        if r.is_err() {
            self.failed(before);
        }
        r
    }

    /// Stores a value of `len` bytes under `key` (replacing any old one) and
    /// hands out its bytes, zeroed, to be filled in place: the value is
    /// written once, where it will stay, with no buffer of the caller's
    /// (LMDB's `MDB_RESERVE`). The slice lives until the next call on the
    /// table; the value is committed as it is then. Errors as for
    /// [`insert`](TableMut::insert).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # // SAFETY: the file is this example's own.
    /// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
    /// let mut w = db.begin_write()?;
    /// let mut t = w.open_table("blobs")?;
    /// let out = t.insert_reserve(b"squares", 100)?;
    /// for (i, b) in out.iter_mut().enumerate() {
    ///     *b = (i * i) as u8;
    /// }
    /// assert_eq!(t.get(b"squares")?.unwrap()[9], 81);
    /// # drop(t);
    /// # w.commit()?;
    /// # Ok::<(), larch::Error>(())
    /// ```
    pub fn insert_reserve(&mut self, key: &[u8], len: usize) -> Result<&mut [u8]> {
        self.dirty.live()?;
        check_key(key)?;
        if len > MAX_VALUE {
            return Err(Error::ValueTooLarge {
                len,
                max: MAX_VALUE,
            });
        }
        let before = *self.desc();
        // Zeroed pages from the allocator, copied once into the buffers.
        self.insert(key, &vec![0u8; len])?;
        let dirty = self.dirty;
        let c = self.changing();
        let found = match btree::value_place(&c.pages, c.desc, key) {
            Ok(Some(place)) => {
                let range = match place.at.checked_add(place.len) {
                    Some(end) => place.at..end,
                    None => place.at..usize::MAX,
                };
                if c.pages.holds(place.first, &range) {
                    Ok((place.first, range))
                } else {
                    corrupted(place.first, "a value past its transaction's buffer")
                }
            }
            Ok(None) => corrupted(c.desc.root, "a key just inserted is not there"),
            Err(e) => Err(e),
        };
        match found {
            Ok((first, range)) => self.changing().pages.buffer_mut(first, range),
            Err(e) => {
                self.failed(before);
                dirty.outcome(Err(e))
            }
        }
    }

    /// Removes `key` and returns its value, copied out (the place it had is
    /// freed with it); `None` when it was not there. Errors as for
    /// [`remove`](TableMut::remove).
    pub fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(value) = self.get(key)?.map(<[u8]>::to_vec) else {
            return Ok(None);
        };
        self.remove(key)?;
        Ok(Some(value))
    }

    /// Removes the entry with the least key and returns it, copied out;
    /// `None` when the table is empty. Errors as for
    /// [`remove`](TableMut::remove).
    pub fn pop_first(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.dirty.live()?;
        let first = copied(self.iter()?.next());
        let first = self.dirty.outcome(first)?;
        self.pop(first)
    }

    /// Removes the entry with the greatest key and returns it, copied out;
    /// `None` when the table is empty.
    pub fn pop_last(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.dirty.live()?;
        let last = copied(self.iter()?.next_back());
        let last = self.dirty.outcome(last)?;
        self.pop(last)
    }

    fn pop(&mut self, entry: Option<(Vec<u8>, Vec<u8>)>) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some((key, value)) = entry else {
            return Ok(None);
        };
        if !self.remove(&key)? {
            let e = corrupted(self.desc().root, "an entry found was not there to remove");
            return self.dirty.outcome(e);
        }
        Ok(Some((key, value)))
    }

    /// Keeps only the entries for which `keep` returns true, in key order;
    /// returns how many were removed. Memory stays bounded, as for
    /// [`remove_range`](TableMut::remove_range): the walk holds one key.
    /// Any error fails the transaction, and `len` reports the count from
    /// before the call.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) -> Result<u64> {
        self.dirty.live()?;
        let before = *self.desc();
        let r = self.remove_where(Bound::Unbounded, Bound::Unbounded, &mut keep);
        if r.is_err() {
            self.failed(before);
        }
        r
    }

    /// Removes `key`; returns whether it was present. Like `insert`, the
    /// change is seen by others, and durable, once the transaction commits.
    ///
    /// A key longer than any the table can hold is simply not present. Any
    /// error fails the transaction, as for [`insert`](TableMut::insert).
    pub fn remove(&mut self, key: &[u8]) -> Result<bool> {
        self.dirty.live()?;
        if key.len() > MAX_KEY {
            return Ok(false);
        }
        let dirty = self.dirty;
        let c = self.changing();
        c.hint.clear();
        let before = *c.desc;
        let mut pages = c.pages;
        let r = btree::remove(&mut pages, c.desc, key);
        let r = dirty.outcome(r);
        match r {
            Ok(removed) => *c.changed |= removed,
            Err(_) => self.failed(before),
        }
        r
    }

    /// Removes every entry whose key lies in `range`; returns how many (0
    /// for an empty range, inverted bounds included).
    ///
    /// Memory stays bounded however many entries go: they are found and
    /// removed one at a time, each a descent of the tree, and only the last
    /// key removed is held. Like [`remove`](TableMut::remove), any error
    /// fails the transaction (entries already removed are not put back).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # // SAFETY: the file is this example's own.
    /// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
    /// let mut w = db.begin_write()?;
    /// let mut t = w.open_table("events")?;
    /// for day in [b"2026-11-30", b"2026-12-01", b"2026-12-02"] {
    ///     t.insert(day, b"...")?;
    /// }
    /// // Everything before December.
    /// assert_eq!(t.remove_range(..&b"2026-12"[..])?, 1);
    /// assert_eq!(t.len(), 2);
    /// # drop(t);
    /// # w.commit()?;
    /// # Ok::<(), larch::Error>(())
    /// ```
    pub fn remove_range<'a>(&mut self, range: impl RangeBounds<&'a [u8]>) -> Result<u64> {
        self.dirty.live()?;
        let before = *self.desc();
        let (start, end) = (owned(range.start_bound()), owned(range.end_bound()));
        let r = self.remove_where(start, end, &mut |_, _| false);
        if r.is_err() {
            self.failed(before);
        }
        r
    }

    /// The walk of `remove_range` and `retain`: from `start` to `end`, the
    /// first entry `keep` refuses is found (its key copied out) and
    /// removed, until none is left; returns how many went.
    fn remove_where(
        &mut self,
        mut start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        keep: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<u64> {
        let mut removed = 0;
        loop {
            let next = {
                let bounds = (borrowed(&start), borrowed(&end));
                let mut found = Ok(None);
                for entry in Range::new(self.view(), *self.desc(), bounds) {
                    match entry {
                        Ok((k, v)) if keep(k, v) => {}
                        Ok((k, _)) => {
                            found = Ok(Some(k.to_vec()));
                            break;
                        }
                        Err(e) => {
                            found = Err(e);
                            break;
                        }
                    }
                }
                found
            };
            let Some(key) = self.dirty.outcome(next)? else {
                return Ok(removed);
            };
            if !self.remove(&key)? {
                let e = corrupted(self.desc().root, "an entry found was not there to remove");
                return self.dirty.outcome(e);
            }
            removed += 1;
            start = Bound::Excluded(key);
        }
    }

    /// A cursor that can remove or replace the entry under it and go on
    /// (see [`CursorMut`]).
    pub fn cursor_mut(&mut self) -> CursorMut<'_, 'txn> {
        CursorMut::new(self)
    }

    /// The entries whose keys lie in `range`, each removed as the iterator
    /// takes it and handed out copied (see [`Drain`]: what it has not taken
    /// when dropped stays). Errors as for [`remove`](TableMut::remove).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # // SAFETY: the file is this example's own.
    /// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
    /// let mut w = db.begin_write()?;
    /// let mut queue = w.open_table("queue")?;
    /// for i in 0u8..10 {
    ///     queue.insert(&[i], b"job")?;
    /// }
    /// let batch: Vec<(Vec<u8>, Vec<u8>)> = queue.drain(..).take(4).collect::<Result<_, _>>()?;
    /// assert_eq!(batch.len(), 4);
    /// assert_eq!(queue.len(), 6);
    /// # Ok::<(), larch::Error>(())
    /// ```
    pub fn drain<'k>(&mut self, range: impl RangeBounds<&'k [u8]>) -> Drain<'_, 'txn> {
        Drain::new(self, range)
    }

    /// Removes every entry whose key starts with `prefix`; returns how many
    /// (see [`remove_range`](TableMut::remove_range)).
    pub fn remove_prefix(&mut self, prefix: &[u8]) -> Result<u64> {
        let end = prefix_end(prefix);
        self.remove_range((Bound::Included(prefix), borrowed(&end)))
    }

    /// The entries whose keys start with `prefix`, in key order, valid
    /// until the next mutation.
    pub fn prefix(&self, prefix: &[u8]) -> Result<Range<'_>> {
        let end = prefix_end(prefix);
        self.range((Bound::Included(prefix), borrowed(&end)))
    }

    /// Fails the transaction with `e`, found after a change of this table
    /// began (a layer above the tree that changes it in several steps):
    /// from then on every call refuses, as after a failed change.
    pub(crate) fn fail_with<T>(&mut self, e: Error) -> Result<T> {
        self.hint.clear();
        self.dirty.outcome(Err(e))
    }

    /// After a failed change: no hint survives it, and `len` goes on
    /// reporting the count from before the call (everything else refuses).
    fn failed(&mut self, before: TableDesc) {
        self.hint.clear();
        self.table.entry.desc = before;
    }

    /// The value stored under `key`, valid until the next mutation of this
    /// table.
    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>> {
        self.dirty.live()?;
        btree::get(self.view(), self.desc(), key)
    }

    /// The entries whose keys lie in `range`, valid until the next mutation
    /// of this table.
    pub fn range<'a>(&self, range: impl RangeBounds<&'a [u8]>) -> Result<Range<'_>> {
        self.dirty.live()?;
        Ok(Range::new(self.view(), *self.desc(), range))
    }

    /// All entries in key order, valid until the next mutation.
    pub fn iter(&self) -> Result<Range<'_>> {
        self.range(..)
    }

    /// Number of entries, O(1). After the transaction failed, the count
    /// before the change that failed.
    pub fn len(&self) -> u64 {
        self.desc().entries
    }

    /// Whether the table holds no entry (after the transaction failed, as
    /// for [`len`](TableMut::len)).
    pub fn is_empty(&self) -> bool {
        self.desc().entries == 0
    }

    /// A cursor over the table, valid until the next mutation of this
    /// table. After the transaction failed, every move returns
    /// [`Error::TxnFailed`].
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor::new(self.view(), *self.desc())
    }
}

/// A key and value, borrowed from the transaction.
pub type Entry<'txn> = (&'txn [u8], &'txn [u8]);

/// A position in a table that moves entry by entry in either direction.
///
/// A fresh cursor is unpositioned: `next` goes to the first entry and `prev`
/// to the last. Moving past either end returns `None`; moving back from there
/// returns the entry at that end.
pub struct Cursor<'txn> {
    inner: btree::Cursor<'txn, View<'txn>>,
    /// What it reads through: on a write transaction that failed, every
    /// move refuses.
    view: View<'txn>,
}

impl<'txn> Cursor<'txn> {
    fn new(view: View<'txn>, desc: TableDesc) -> Cursor<'txn> {
        Cursor {
            inner: btree::Cursor::new(view, desc),
            view,
        }
    }

    #[inline]
    fn live(&self) -> Result<()> {
        self.view.live()
    }

    /// Moves to the first entry.
    pub fn first(&mut self) -> Result<Option<Entry<'txn>>> {
        self.live()?;
        self.inner.first()
    }

    /// Moves to the last entry.
    pub fn last(&mut self) -> Result<Option<Entry<'txn>>> {
        self.live()?;
        self.inner.last()
    }

    /// Moves to the first entry whose key is `>= key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<Entry<'txn>>> {
        self.live()?;
        self.inner.seek(key)
    }

    /// Moves to the last entry whose key is `<= key` (`< key` when not
    /// `inclusive`): the start of a walk backwards from a bound.
    pub(crate) fn seek_back(&mut self, key: &[u8], inclusive: bool) -> Result<Option<Entry<'txn>>> {
        self.live()?;
        self.inner.seek_back(key, inclusive)
    }

    /// Moves to the next entry.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'txn>>> {
        self.live()?;
        self.inner.next()
    }

    /// Moves to the previous entry.
    pub fn prev(&mut self) -> Result<Option<Entry<'txn>>> {
        self.live()?;
        self.inner.prev()
    }
}

/// An iterator over the entries of a key range, from both ends.
///
/// Each item is a `Result`: a corrupt page ends the iteration with an error.
pub struct Range<'txn> {
    /// What it reads through: once a write transaction failed, the next
    /// step refuses, even on a page it holds.
    view: View<'txn>,
    front: btree::Cursor<'txn, View<'txn>>,
    back: btree::Cursor<'txn, View<'txn>>,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    front_started: bool,
    back_started: bool,
    /// Last keys handed out from each end: the ends must not cross.
    last_front: Option<&'txn [u8]>,
    last_back: Option<&'txn [u8]>,
    done: bool,
}

/// An entry a range gave, copied out, or its error.
fn copied(entry: Option<Result<Entry<'_>>>) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    match entry {
        Some(Ok((k, v))) => Ok(Some((k.to_vec(), v.to_vec()))),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}

/// Whether `key` lies before a range's end `end`.
pub(crate) fn before_end(end: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match end {
        Bound::Included(e) => key <= e.as_slice(),
        Bound::Excluded(e) => key < e.as_slice(),
        Bound::Unbounded => true,
    }
}

/// Whether `key` lies after a range's start `start`.
pub(crate) fn after_start(start: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match start {
        Bound::Included(s) => key >= s.as_slice(),
        Bound::Excluded(s) => key > s.as_slice(),
        Bound::Unbounded => true,
    }
}

/// A bound held by value, as one of its key.
pub(crate) fn borrowed(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The end of the keys that start with `prefix`: the first key past them,
/// which is `prefix` with its last byte below 255 raised by one and the
/// bytes after it dropped; none when every byte is 255 (or there is none).
pub(crate) fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    match prefix.iter().rposition(|&b| b != u8::MAX) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            Bound::Excluded(end)
        }
        None => Bound::Unbounded,
    }
}

pub(crate) fn owned(b: Bound<&&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl<'txn> Range<'txn> {
    pub(crate) fn new<'a>(
        view: View<'txn>,
        desc: TableDesc,
        range: impl RangeBounds<&'a [u8]>,
    ) -> Self {
        let start = owned(range.start_bound());
        let end = owned(range.end_bound());
        let empty = match (&start, &end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        };
        Range {
            view,
            front: btree::Cursor::new(view, desc),
            back: btree::Cursor::new(view, desc),
            start,
            end,
            front_started: false,
            back_started: false,
            last_front: None,
            last_back: None,
            done: empty,
        }
    }

    fn before_end(&self, key: &[u8]) -> bool {
        before_end(&self.end, key)
    }

    fn after_start(&self, key: &[u8]) -> bool {
        after_start(&self.start, key)
    }

    fn step_front(&mut self) -> Result<Option<Entry<'txn>>> {
        if self.front_started {
            return self.front.next();
        }
        self.front_started = true;
        match &self.start {
            Bound::Unbounded => self.front.first(),
            Bound::Included(k) => self.front.seek(k),
            Bound::Excluded(k) => match self.front.seek(k)? {
                Some((key, _)) if key == k.as_slice() => self.front.next(),
                other => Ok(other),
            },
        }
    }

    fn step_back(&mut self) -> Result<Option<Entry<'txn>>> {
        if self.back_started {
            return self.back.prev();
        }
        self.back_started = true;
        match &self.end {
            Bound::Unbounded => self.back.last(),
            Bound::Included(k) => self.back.seek_back(k, true),
            Bound::Excluded(k) => self.back.seek_back(k, false),
        }
    }
}

impl<'txn> Iterator for Range<'txn> {
    type Item = Result<Entry<'txn>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Err(e) = self.view.live() {
            self.done = true;
            return Some(Err(e));
        }
        match self.step_front() {
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
            Ok(Some((k, v))) if self.before_end(k) && self.last_back.is_none_or(|b| k < b) => {
                self.last_front = Some(k);
                Some(Ok((k, v)))
            }
            Ok(_) => {
                self.done = true;
                None
            }
        }
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Err(e) = self.view.live() {
            self.done = true;
            return Some(Err(e));
        }
        match self.step_back() {
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
            Ok(Some((k, v))) if self.after_start(k) && self.last_front.is_none_or(|f| k > f) => {
                self.last_back = Some(k);
                Some(Ok((k, v)))
            }
            Ok(_) => {
                self.done = true;
                None
            }
        }
    }
}

/// A handle holds its table until it is dropped, not only until its last
/// use: this `Drop` makes the borrow checker keep the transaction borrowed
/// as long, so that a call needing the whole transaction (`commit`,
/// `savepoint`, `delete_table`) while a handle is still in scope is a
/// compile error, not `Error::TableAlreadyOpen` at run time. (Releasing the
/// table's lock is the field's own drop.)
///
/// Dropping the handle also settles its table's value segments
/// (`Dirty::settle`): the pages its open segment does not fill, and a
/// spare, go back to the allocator for the other tables, so a transaction
/// that opens many tables one after another takes no more than one
/// table would. A handle dropped while its thread panics fails the
/// transaction instead: the panic may have cut a change short (a split
/// half-made), and nothing of that may commit.
impl Drop for TableMut<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dirty.fail();
            return;
        }
        if self.dirty.live().is_err() {
            return;
        }
        let r = self.dirty.settle(&mut self.table.part);
        // An error here means the segment's buffer is gone (corruption):
        // the transaction fails as after any change that failed.
        let _ = self.dirty.outcome(r);
    }
}
