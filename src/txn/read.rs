//! Read transactions: a snapshot of the last commit.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::core::Core;
use crate::check::{self, CheckReport};
use crate::error::{Error, Result};
use crate::format::catalog::CatalogEntry;
use crate::format::meta::Meta;
use crate::freelist::{Entry, Pins, pinned_alone, read_list};
use crate::pager::{Map, MapBytes};
use crate::registry::{ReaderInfo, SlotId};
use crate::table::{Shape, Table, TableStat, catalog_get, catalog_names};
use crate::view::{MapView, View};

/// Figures of a database snapshot, from [`ReadTxn::stat`] or
/// [`Database::stat`](crate::Database::stat).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Bytes per page.
    pub page_size: u32,
    /// The transaction whose commit the snapshot shows.
    pub txn_id: u64,
    /// The snapshot's high-water mark: pages in use or free, the two meta
    /// pages included. The file may be longer (it grows ahead of use).
    pub pages: u64,
    /// Length of the file in bytes.
    pub file_size: u64,
    /// Bytes of address space this handle's newest map reserves: new
    /// transactions read through it. It doubles when the file outgrows it.
    pub map_size: u64,
    /// Pages on the free list: reusable, or pending.
    pub free_pages: u64,
    /// Of the free pages, those an older snapshot may still see (a live
    /// reader's, or the other meta page's): a page written by transaction
    /// `A` and freed by `T` is reusable once no such snapshot lies in
    /// `A..T`. [`Database::readers`](crate::Database::readers) tells which
    /// reader alone holds how many.
    pub pending_free_pages: u64,
    /// Pages holding the free list itself.
    pub freelist_pages: u64,
    /// Number of tables.
    pub tables: u64,
    /// The catalog's tree (the table of tables).
    pub catalog: TableStat,
    /// The value heap's tree (one entry per value segment).
    pub heap_tree: TableStat,
    /// Value segments: where values too long for a leaf and at most 16
    /// pages long are packed, shared by all tables.
    pub segments: u64,
    /// Their pages.
    pub segment_pages: u64,
    /// Bytes of the values packed into them: the rest of their pages is
    /// headers, dead values and the unfilled end of each segment's last page.
    pub packed_bytes: u64,
    /// Read transactions alive when the figures were taken.
    pub live_readers: usize,
    /// Those readers, in every process: each one's snapshot, age and the
    /// pages its snapshot alone keeps from reuse. From
    /// [`ReadTxn::stat`] this transaction is among them; from
    /// [`Database::stat`](crate::Database::stat) the transaction that took
    /// the figures is not.
    pub readers: Vec<ReaderInfo>,
    /// A meta open found newer than the commit it used, or could not read,
    /// and set aside; `None` when open used the newest meta and both slots
    /// were valid, and again once a commit has overwritten that slot.
    pub set_aside: Option<SetAside>,
}

/// What a table is, from [`ReadTxn::table_kind`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableKind {
    /// A table of the byte API ([`ReadTxn::open_table`]).
    Bytes,
    /// A typed table ([`ReadTxn::open_typed`]), with the names of its key
    /// and value types.
    Typed {
        /// The key type's name.
        key: String,
        /// The value type's name.
        value: String,
    },
    /// A multimap table of the byte API ([`ReadTxn::open_multimap`]).
    Multimap,
    /// A typed multimap
    /// ([`ReadTxn::open_typed_multimap`](crate::ReadTxn::open_typed_multimap)),
    /// with the names of its key and value types. Its tree is a multimap's:
    /// [`ReadTxn::open_untyped_multimap`](crate::ReadTxn::open_untyped_multimap)
    /// reads its pairs as the encoded bytes.
    TypedMultimap {
        /// The key type's name.
        key: String,
        /// The value type's name.
        value: String,
    },
}

impl TableKind {
    /// Whether the table is a multimap, typed or not: its tree holds the
    /// multimap layout, which
    /// [`ReadTxn::open_untyped_multimap`](crate::ReadTxn::open_untyped_multimap)
    /// reads and the byte API does not open.
    pub fn is_multimap(&self) -> bool {
        matches!(self, TableKind::Multimap | TableKind::TypedMultimap { .. })
    }
}

/// A meta slot that open did not use: it was newer than the commit open
/// used but failed validation (a torn commit, a free list that cannot be
/// read, a failed integrity check under [`Options::verify`]), or it did not
/// hold a valid meta at all. What the database held in that slot is not
/// readable through larch; the next commit overwrites it, and from then on
/// [`Stat::set_aside`] is `None`.
///
/// [`Options::verify`]: crate::Options::verify
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetAside {
    /// The slot: 0 or 1.
    pub slot: u64,
    /// The transaction of the meta in the slot, when its checksum held.
    pub txn_id: Option<u64>,
    /// Why open set it aside.
    pub reason: &'static str,
}

/// A consistent snapshot of the database as of the last commit before
/// [`Database::begin_read`](crate::Database::begin_read).
///
/// Any number may be open at once, in any threads and any processes, beside
/// the writer; none of them waits for it. It owns what it reads through (it
/// does not borrow the [`Database`](crate::Database)), is `Send` and `Sync`,
/// and a clone shares the snapshot: the snapshot ends when the last clone,
/// and the last [`OwnedRange`](crate::OwnedRange) or
/// [`OwnedEntry`](crate::OwnedEntry) made from it, is gone.
///
/// Values read through a [`Table`] borrow the transaction and point into the
/// map. A child process made by `fork` must not use a transaction (or a
/// value) it inherited: the snapshot is the parent's, which the parent may
/// end at any time; it opens the database again instead. Pages the snapshot can see are not reused while it lives, so drop
/// long-lived readers when done or the file grows.
#[derive(Clone)]
pub struct ReadTxn {
    snap: Arc<Snapshot>,
}

/// What a read transaction and its clones hold.
pub(crate) struct Snapshot {
    core: Arc<Core>,
    meta: Meta,
    /// A map that covers the snapshot, kept while the transaction lives: a
    /// writer that grows the file past it maps anew for later transactions.
    map: Arc<Map>,
    /// Its slot in the registry, where its snapshot is published.
    slot: SlotId,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.core.registry.end(self.slot);
    }
}

impl Snapshot {
    /// `Err(Forked)` in a child made by `fork`, which must not read its
    /// parent's snapshot.
    pub(crate) fn same_process(&self) -> Result<()> {
        self.core.same_process()
    }

    /// The snapshot's pages in its map.
    pub(crate) fn map_view(&self) -> MapView<'_> {
        MapView::new(
            &self.core.pager,
            &self.map,
            self.meta.high_water,
            self.meta.txn_id,
        )
    }

    /// `bytes`, a slice of this snapshot's map, kept by its place so that it
    /// can outlive the borrow (`None` if it is not in the map).
    pub(crate) fn pin(&self, bytes: &[u8]) -> Option<MapBytes> {
        MapBytes::of(&self.map, bytes)
    }

    /// The bytes `pin` kept.
    pub(crate) fn bytes(&self, at: &MapBytes) -> &[u8] {
        at.get(&self.map)
    }
}

impl ReadTxn {
    pub(crate) fn new(core: Arc<Core>) -> Result<ReadTxn> {
        let (slot, meta) = core.snapshot()?;
        match core.pager.map_for(meta.high_water) {
            Ok(map) => Ok(ReadTxn {
                snap: Arc::new(Snapshot {
                    core,
                    meta,
                    map,
                    slot,
                }),
            }),
            Err(e) => {
                core.registry.end(slot);
                Err(e)
            }
        }
    }

    pub(crate) fn core(&self) -> &Core {
        &self.snap.core
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.snap.meta
    }

    fn map_view(&self) -> MapView<'_> {
        self.snap.map_view()
    }

    fn view(&self) -> View<'_> {
        View::Map(self.map_view())
    }

    /// The id of the transaction whose commit this snapshot shows.
    pub fn id(&self) -> u64 {
        self.snap.meta.txn_id
    }

    /// Opens table `name`, or [`Error::TableNotFound`].
    pub fn open_table(&self, name: &str) -> Result<Table<'_>> {
        self.open_table_as(name, Shape::Bytes)
    }

    /// Opens table `name` if it may be opened as `shape`, else
    /// [`Error::TableTypeMismatch`].
    pub(crate) fn open_table_as(&self, name: &str, shape: Shape<'_>) -> Result<Table<'_>> {
        let Some(entry) = self.table_entry(name)? else {
            return Err(Error::TableNotFound(name.to_owned()));
        };
        shape.check(name, &entry)?;
        Ok(Table::new(&self.snap, entry.desc))
    }

    /// What the catalog holds for table `name` (a name too long to be a
    /// table's is none).
    pub(crate) fn table_entry(&self, name: &str) -> Result<Option<CatalogEntry>> {
        if crate::table::check_key(name.as_bytes()).is_err() {
            return Ok(None);
        }
        catalog_get(self.view(), &self.snap.meta.catalog, name)
    }

    /// What kind of table `name` is, `None` if it does not exist: a table
    /// of the byte API, a typed table (with its types' names), a multimap
    /// or a typed multimap (with its types' names). Tools that walk every
    /// table ask before opening each with its API.
    pub fn table_kind(&self, name: &str) -> Result<Option<TableKind>> {
        Ok(self
            .table_entry(name)?
            .map(|e| match (e.types, e.multimap) {
                (Some(t), true) => TableKind::TypedMultimap {
                    key: t.key,
                    value: t.value,
                },
                (None, true) => TableKind::Multimap,
                (Some(t), false) => TableKind::Typed {
                    key: t.key,
                    value: t.value,
                },
                (None, false) => TableKind::Bytes,
            }))
    }

    /// Opens table `name` whatever its kind, as the byte API sees its tree
    /// (the suites' raw view).
    #[cfg(feature = "testing")]
    pub(crate) fn open_any(&self, name: &str) -> Result<Table<'_>> {
        let Some(entry) = self.table_entry(name)? else {
            return Err(Error::TableNotFound(name.to_owned()));
        };
        self.open_table_as(name, Shape::As(&entry))
    }

    /// Whether table `name` exists in this snapshot.
    pub fn table_exists(&self, name: &str) -> Result<bool> {
        Ok(self.table_entry(name)?.is_some())
    }

    /// Walks the whole snapshot and accounts for every page: each is reachable
    /// exactly once, or free; keys are sorted; leaves sit at one depth; overflow
    /// runs lie in bounds; entry counts match. The first problem found is an
    /// [`Error::Corrupted`] naming its page.
    pub fn check(&self) -> Result<CheckReport> {
        check::strict(self.check_report())
    }

    /// Walks the snapshot like [`check`](ReadTxn::check) but goes on past
    /// problems: the report lists every one found (`errors`, with pages) and
    /// counts leaked pages.
    pub fn check_report(&self) -> CheckReport {
        check::report(&self.snap.core.pager, &self.snap.map, &self.snap.meta)
    }

    /// Figures of this snapshot: its size, its free pages, the catalog's tree.
    /// Reads the free list and walks the catalog (not the tables: see
    /// [`Table::stat`](crate::Table::stat) for one table's pages).
    /// `live_readers` counts this transaction too.
    pub fn stat(&self) -> Result<Stat> {
        self.stat_with(self.snap.core.registry.readers()?)
    }

    /// The figures of [`stat`](ReadTxn::stat), with `readers` as the live
    /// readers (their pins counted here, on the one read of the chain).
    pub(crate) fn stat_with(&self, mut readers: Vec<ReaderInfo>) -> Result<Stat> {
        let chain = read_list(self.map_view(), &self.snap.meta)?;
        self.count_pins_in(&chain.entries, &mut readers);
        let pending = chain.entries.iter().filter(|e| e.freed_by != 0).count();
        Ok(Stat {
            page_size: self.snap.core.pager.page_size() as u32,
            txn_id: self.snap.meta.txn_id,
            pages: self.snap.meta.high_water,
            // Now (`fstat`): another process may have grown or cut it.
            file_size: self.snap.core.pager.real_len()?,
            map_size: self.snap.core.pager.map_len(),
            free_pages: chain.entries.len() as u64,
            pending_free_pages: pending as u64,
            freelist_pages: chain.pages.len() as u64,
            tables: self.snap.meta.catalog.entries,
            catalog: TableStat::of(self.map_view(), &self.snap.meta.catalog)?,
            heap_tree: TableStat::of(self.map_view(), &self.snap.meta.heap.tree)?,
            segments: self.snap.meta.heap.tree.entries,
            segment_pages: self.snap.meta.heap.pages,
            packed_bytes: self.snap.meta.heap.live,
            live_readers: readers.len(),
            readers,
            set_aside: *self.snap.core.set_aside.lock(),
        })
    }

    /// Counts, for each of `readers`, the pages of this snapshot's free
    /// list that its snapshot alone keeps from reuse.
    pub(crate) fn count_pins(&self, readers: &mut [ReaderInfo]) -> Result<()> {
        let chain = read_list(self.map_view(), &self.snap.meta)?;
        self.count_pins_in(&chain.entries, readers);
        Ok(())
    }

    /// [`count_pins`](ReadTxn::count_pins) on `entries`, this snapshot's
    /// free list: a reader's count is the pending pages no other reader's
    /// snapshot reaches, and nothing a writer following this snapshot pins
    /// either: the metas on disk, and the snapshots from this one on.
    fn count_pins_in(&self, entries: &[Entry], readers: &mut [ReaderInfo]) {
        let mut pinned: BTreeSet<u64> = readers.iter().map(|r| r.txn_id).collect();
        let metas = self.snap.core.metas_on_disk();
        pinned.extend(&metas);
        let alone = pinned_alone(
            entries.iter().copied(),
            Pins::new(&pinned, self.snap.meta.txn_id),
        );
        for r in readers {
            // What a meta on disk reaches is kept whatever the reader does.
            r.pinned_pages = match metas.contains(&r.txn_id) {
                true => 0,
                false => alone.get(&r.txn_id).copied().unwrap_or(0),
            };
        }
    }

    /// Names of all tables, in order.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        catalog_names(self.view(), &self.snap.meta.catalog)
    }
}
