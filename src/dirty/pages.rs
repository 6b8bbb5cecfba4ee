//! A write transaction's pages as one whole: the allocator, the buffers and
//! the failed flag, and how the B+tree and the free-list chain reach them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::btree::PageStore;
use crate::error::{Error, Result, corrupted};
use crate::format::heap::packs;
use crate::format::meta::Meta;
use crate::format::node::{Keys, LongKey, Node, ValueRef};
use crate::format::page::{
    OVERFLOW_DATA, PageId, header_mut, init_overflow, overflow_pages, written_by,
};
use crate::freelist::{ChainStore, FreeList, TxnFreeList};
use crate::pager::{Map, Pager};
use crate::view::{DirtyView, MapView, PageSource};

use super::alloc::{AllocSaved, Allocator};
use super::buffers::Buffers;
use super::heap::{Change, Heap, HeapSaved};

/// The pages a write transaction owns.
pub(crate) struct Dirty {
    txn_id: u64,
    /// The commit the transaction started from (`txn_id - 1`, or
    /// `txn_id - 2` after a commit that is not durable).
    base_txn: u64,
    /// High-water mark of the snapshot the transaction started from: the map
    /// below it is that snapshot.
    base_high_water: u64,
    /// A map that covers that snapshot, kept for the transaction's life.
    map: Arc<Map>,
    alloc: Allocator,
    bufs: Buffers,
    heap: Heap,
    /// Set when a change failed part-way: the pages may hold a half-applied
    /// change, so nothing reads or writes them again and the transaction
    /// cannot commit. Every mutation and every read of the transaction passes
    /// through here.
    failed: bool,
}

impl Dirty {
    /// The pages of transaction `txn_id`, which starts from commit `base`.
    pub(crate) fn new(
        page_size: usize,
        txn_id: u64,
        base: &Meta,
        max_pages: u64,
        file_pages: u64,
        free: FreeList,
        map: Arc<Map>,
    ) -> Dirty {
        let base_high_water = base.high_water;
        Dirty {
            txn_id,
            base_txn: base.txn_id,
            base_high_water,
            map,
            alloc: Allocator::new(page_size, base_high_water, max_pages, file_pages, free),
            bufs: Buffers::new(page_size),
            heap: Heap::default(),
            failed: false,
        }
    }

    /// `Err(TxnFailed)` once a change of the transaction has failed.
    #[inline]
    pub(crate) fn live(&self) -> Result<()> {
        if self.failed {
            return Err(Error::TxnFailed);
        }
        Ok(())
    }

    /// Passes on the result of a change to the transaction; an error fails
    /// the transaction (the change may have been half-applied), so that every
    /// later call gets `Error::TxnFailed`.
    pub(crate) fn outcome<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    pub(crate) fn txn_id(&self) -> u64 {
        self.txn_id
    }

    /// High-water mark including this transaction's allocations.
    pub(crate) fn high_water(&self) -> u64 {
        self.alloc.high_water()
    }

    /// The buffers, for the commit to write out.
    pub(crate) fn buffers(&self) -> &Buffers {
        &self.bufs
    }

    /// The buffers, for the commit to stamp.
    pub(crate) fn buffers_mut(&mut self) -> &mut Buffers {
        &mut self.bufs
    }

    /// The snapshot the transaction started from, in `pager`'s map.
    #[inline]
    fn base<'a>(&'a self, pager: &'a Pager) -> MapView<'a> {
        MapView::new(pager, &self.map, self.base_high_water, self.base_txn)
    }

    /// Copies the committed pages `id..id + n` (a page, or a whole overflow
    /// run), read through the base's checks, into a buffer of this
    /// transaction at the pages `place` allocates, and frees the old ones
    /// (a copy, not a zeroed page written over). Returns the new first page.
    fn copy_out(
        &mut self,
        pager: &Pager,
        id: PageId,
        n: u64,
        place: impl FnOnce(&mut Allocator) -> Result<PageId>,
    ) -> Result<PageId> {
        // The fields, not `base`: the allocator is borrowed below while
        // `src` lives.
        let base = MapView::new(pager, &self.map, self.base_high_water, self.base_txn);
        let src = base.run_bytes(id, n)?;
        let new = place(&mut self.alloc)?;
        let buf = self.bufs.insert(new, Box::from(src));
        header_mut(buf).txn_id = self.txn_id.into();
        self.alloc.free(id, n, Some(written_by(src)))?;
        Ok(new)
    }

    /// The pages as this transaction sees them: its dirty buffers, then the
    /// snapshot it started from in `pager`'s map.
    #[inline]
    pub(crate) fn view<'a>(&'a self, pager: &'a Pager) -> DirtyView<'a> {
        DirtyView::new(
            self.base(pager),
            self.bufs.map(),
            self.alloc.high_water(),
            self.failed,
        )
    }

    /// From now on, single pages are the lowest reusable ones
    /// (`Allocator::lowest_first`).
    pub(crate) fn lowest_first(&mut self) {
        self.alloc.lowest_first();
    }

    /// Pages the transaction may still take without growing the file.
    pub(crate) fn room(&self) -> u64 {
        self.alloc.room()
    }

    /// The file was grown to `pages` pages during the transaction: value
    /// segments may take them.
    pub(crate) fn file_grew(&mut self, pages: u64) {
        self.alloc.file_grew(pages);
    }

    /// Entries the free list holds now, this transaction's changes included.
    pub(crate) fn free_len(&self) -> usize {
        self.alloc.free_len()
    }

    /// Closes the segment the transaction fills and hands over its changes
    /// to the heap's segments, in page order, for the commit to apply.
    pub(crate) fn take_heap_changes(&mut self) -> Result<BTreeMap<PageId, Change>> {
        self.heap.take_changes(&mut self.alloc, &mut self.bufs)
    }

    /// Whether the transaction wrote and freed nothing.
    pub(crate) fn is_clean(&self) -> bool {
        self.bufs.is_empty() && self.alloc.freed_none()
    }

    /// Lends the pages to the B+tree, reading what they do not hold from
    /// `pager`'s map.
    pub(crate) fn lend<'a>(&'a mut self, pager: &'a Pager) -> TxnPages<'a> {
        TxnPages { pager, dirty: self }
    }

    /// A savepoint of the pages: the allocator and the heap's state as they
    /// are, and a journal of the buffers from now on (DESIGN.md,
    /// "Savepoints"). Refused once the transaction failed.
    /// The savepoints are numbered from 0, oldest first, by their level.
    pub(crate) fn savepoint(&mut self) -> Result<DirtySaved> {
        self.live()?;
        self.bufs.savepoint();
        Ok(DirtySaved {
            alloc: self.alloc.savepoint(),
            heap: self.heap.savepoint(),
        })
    }

    /// Puts the pages back as they were at the savepoint of `level`
    /// (`saved`), which stays usable; savepoints above it are gone. A
    /// transaction that failed since is whole again: what the failed change
    /// half did is undone with the rest.
    pub(crate) fn restore(&mut self, level: usize, saved: &DirtySaved) {
        self.bufs.restore(level);
        self.alloc.restore(level, &saved.alloc);
        self.heap.restore(level, &saved.heap);
        self.failed = false;
    }

    /// Forgets the savepoint of `level`, keeping the changes since; those
    /// above it move down a level.
    pub(crate) fn release(&mut self, level: usize) {
        self.bufs.release(level);
        self.alloc.release(level);
        self.heap.release_savepoint(level);
    }

    /// Forgets every savepoint (the commit begins).
    pub(crate) fn drop_savepoints(&mut self) {
        self.bufs.drop_journals();
        self.alloc.drop_savepoints();
        self.heap.drop_savepoints();
    }

    /// Bytes the savepoints keep of buffers changed since.
    pub(crate) fn savepoint_bytes(&self) -> usize {
        self.bufs.journal_bytes()
    }

    /// Gives back everything this transaction took and returns the free list
    /// as it was (with the released groups kept reusable).
    pub(crate) fn abort(&mut self) -> FreeList {
        self.alloc.abort()
    }

    /// Frees the `n` pages from `id`, dropping their buffer if the
    /// transaction wrote them; a committed page (or run) is recorded with
    /// the transaction its header names as its writer, which the checked
    /// read vouches is no newer than the base.
    fn free(&mut self, id: PageId, n: u64, pager: &Pager) -> Result<()> {
        let by = if self.bufs.contains(id) {
            None
        } else {
            Some(written_by(self.base(pager).page(id)?))
        };
        // A range outside the file is refused before any buffer goes.
        self.alloc.free(id, n, by)?;
        self.bufs.remove(id);
        Ok(())
    }
}

/// What a savepoint of the pages keeps besides its journal: the allocator
/// and heap state to put back.
pub(crate) struct DirtySaved {
    alloc: AllocSaved,
    heap: HeapSaved,
}

/// The running transaction's pages lent to the B+tree as a [`PageStore`] (and
/// to a table handle, which reads and changes through it).
pub(crate) struct TxnPages<'a> {
    pager: &'a Pager,
    dirty: &'a mut Dirty,
}

impl<'a> TxnPages<'a> {
    /// `Err(TxnFailed)` once a change of the transaction has failed.
    #[inline]
    pub(crate) fn live(&self) -> Result<()> {
        self.dirty.live()
    }

    /// Passes on the result of a change; an error fails the transaction.
    pub(crate) fn outcome<T>(&mut self, r: Result<T>) -> Result<T> {
        self.dirty.outcome(r)
    }

    /// Whether the dirty buffer starting at page `id` holds bytes `range`.
    pub(crate) fn holds(&self, id: PageId, range: &std::ops::Range<usize>) -> bool {
        (self.dirty.bufs.get(id)).is_some_and(|b| range.start <= range.end && range.end <= b.len())
    }

    /// Bytes `range` of the dirty buffer starting at page `id` (a run or a
    /// segment this transaction wrote), for writing in place; corruption
    /// if there is no such buffer or it is shorter.
    pub(crate) fn buffer_mut(
        &mut self,
        id: PageId,
        range: std::ops::Range<usize>,
    ) -> Result<&mut [u8]> {
        match self.dirty.bufs.range_mut(id, range) {
            Some(bytes) => Ok(bytes),
            None => corrupted(id, "a value past its transaction's buffer"),
        }
    }

    /// The pages as the transaction sees them.
    #[inline]
    pub(crate) fn view(&self) -> DirtyView<'_> {
        self.dirty.view(self.pager)
    }
}

impl Keys for TxnPages<'_> {
    fn long_key(&self, key: LongKey) -> Result<&[u8]> {
        self.dirty.view(self.pager).long_key_of(key)
    }
}

impl PageStore for TxnPages<'_> {
    fn page_size(&self) -> usize {
        self.dirty.bufs.page_size()
    }

    fn txn_id(&self) -> u64 {
        self.dirty.txn_id
    }

    // Forced, as is `DirtyView::page`: the tree's descent reads every level
    // through here, and left to itself the compiler calls it out of line
    // (about 130 more instructions per insert, callgrind).
    #[inline(always)]
    fn page(&self, id: PageId) -> Result<&[u8]> {
        self.dirty.view(self.pager).page(id)
    }

    fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        self.dirty.bufs.page_mut(id)
    }

    fn cow(&mut self, id: PageId) -> Result<PageId> {
        if self.dirty.bufs.contains(id) {
            return Ok(id);
        }
        let base = self.dirty.base(self.pager);
        self.check_committed(id, &Node::parse_any(base.page(id)?, id)?)?;
        self.dirty.copy_out(self.pager, id, 1, Allocator::alloc)
    }

    fn check_committed(&self, id: PageId, node: &Node<'_>) -> Result<()> {
        if self.dirty.bufs.contains(id) {
            return Ok(());
        }
        // In a sound file a committed page points only at pages in use in
        // its snapshot, never at one this transaction can take.
        let (alloc, end) = (&self.dirty.alloc, self.dirty.base_high_water);
        node.for_each_target(|page| {
            if alloc.could_take(page, end) {
                return corrupted(id, "a committed page points at a free page");
            }
            Ok(())
        })
    }

    fn alloc_node(&mut self, page: Box<[u8]>) -> Result<PageId> {
        if page.len() != self.dirty.bufs.page_size() {
            return corrupted(0, "a node page of the wrong size");
        }
        let id = self.dirty.alloc.alloc()?;
        self.dirty.bufs.insert(id, page);
        Ok(id)
    }

    fn alloc_value(&mut self, value: &[u8]) -> Result<ValueRef> {
        let ps = self.dirty.bufs.page_size();
        if packs(value.len(), ps) {
            let d = &mut *self.dirty;
            let at = d.heap.pack(
                &mut d.alloc,
                &mut d.bufs,
                d.txn_id,
                value,
                PageId::MAX,
                u64::MAX,
            )?;
            return match at {
                Some(at) => Ok(at),
                None => corrupted(0, "no segment below the end of the file"),
            };
        }
        let n = overflow_pages(value.len(), ps);
        let id = self.dirty.alloc.alloc_run(n)?;
        let mut buf = vec![0u8; n as usize * ps].into_boxed_slice();
        init_overflow(&mut buf, n as u32, self.dirty.txn_id);
        buf[OVERFLOW_DATA..OVERFLOW_DATA + value.len()].copy_from_slice(value);
        self.dirty.bufs.insert(id, buf);
        Ok(ValueRef::Run(id))
    }

    fn free_packed(&mut self, seg: PageId, off: u32, len: usize) -> Result<()> {
        // A value of this transaction's segments must be one it packed; any
        // other must be readable where the cell says in the snapshot the
        // transaction started from (not in its own buffers, which a crafted
        // reference past that snapshot would reach).
        let d = &mut *self.dirty;
        if !d.heap.owns(seg, off) {
            d.base(self.pager)
                .spilled_value(ValueRef::Packed { seg, off }, len)?;
        }
        d.heap.release(&mut d.alloc, &mut d.bufs, seg, off, len)
    }

    fn repack(&mut self, at: ValueRef, len: usize, below: PageId, pages: u64) -> Result<ValueRef> {
        let ValueRef::Packed { seg, off } = at else {
            return Ok(at);
        };
        // A value of a committed segment is packed straight from the map
        // (through a map handle of its own, so the buffers may change
        // meanwhile); one of this transaction's segments is copied out
        // first, as the segment filled next may be that very buffer.
        let d = &mut *self.dirty;
        let map = Arc::clone(&d.map);
        let base = MapView::new(self.pager, &map, d.base_high_water, d.base_txn);
        let own;
        let value = if d.bufs.contains(seg) {
            own = d.view(self.pager).spilled_value(at, len)?.to_vec();
            &own[..]
        } else {
            base.spilled_value(at, len)?
        };
        match d
            .heap
            .pack(&mut d.alloc, &mut d.bufs, d.txn_id, value, below, pages)?
        {
            Some(new) => {
                self.free_packed(seg, off, len)?;
                Ok(new)
            }
            None => Ok(at),
        }
    }

    fn free(&mut self, id: PageId, n: u64) -> Result<()> {
        self.dirty.free(id, n, self.pager)
    }

    fn lowest_free(&self, n: u64) -> Option<PageId> {
        self.dirty.alloc.peek_run(n)
    }

    fn spare_pages(&self) -> u64 {
        self.dirty.alloc.spare() as u64
    }

    fn move_run(&mut self, id: PageId, n: u64) -> Result<PageId> {
        if self.dirty.bufs.contains(id) {
            return Ok(id);
        }
        self.dirty
            .copy_out(self.pager, id, n, |a: &mut Allocator| a.alloc_run(n))
    }
}

/// The commit writes the free-list chain straight into the buffers.
impl ChainStore for TxnPages<'_> {
    fn page_size(&self) -> usize {
        self.dirty.bufs.page_size()
    }

    fn txn_id(&self) -> u64 {
        self.dirty.txn_id
    }

    fn high_water(&self) -> u64 {
        self.dirty.alloc.high_water()
    }

    fn free_list(&mut self) -> &mut TxnFreeList {
        self.dirty.alloc.free_list()
    }

    fn trim_tail(&mut self) {
        self.dirty.alloc.trim_tail();
    }

    fn written_by(&self, id: PageId) -> Result<u64> {
        Ok(written_by(self.dirty.base(self.pager).page(id)?))
    }

    fn alloc_page(&mut self) -> Result<PageId> {
        let id = self.dirty.alloc.alloc()?;
        let page = vec![0u8; self.dirty.bufs.page_size()].into_boxed_slice();
        self.dirty.bufs.insert(id, page);
        Ok(id)
    }

    fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        self.dirty.bufs.page_mut(id)
    }
}
