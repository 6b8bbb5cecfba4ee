//! A write transaction's pages: the state its partitions share (the
//! allocator, the heap's records, the failed flag), the partitions of the
//! buffers, and how the B+tree and the free list's pages reach them.
//!
//! Every dirty buffer belongs to one partition ([`Part`]): the one of the
//! tree that reaches it. Each table open in the transaction has its own (its
//! nodes, its overflow runs, the segments its values are packed into), and
//! the transaction has one for the catalog, the heap's tree and the
//! free list's pages. A change through one partition takes the shared state
//! for a moment ([`Dirty::with`]) and writes only its own buffers, so the
//! bytes another partition hands out never move (DESIGN.md, "The write
//! transaction"). The commit gathers the partitions into one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::btree::PageStore;
use crate::error::{Error, Result, corrupted};
use crate::format::heap::packs;
use crate::format::meta::Meta;
use crate::format::node::{Keys, LongKey, Node, ValueRef};
use crate::format::page::{
    OVERFLOW_DATA, PageId, header_mut, init_overflow, overflow_pages, written_by,
};
use crate::freelist::{FreeList, ListStore, TxnFreeList};
use crate::pager::{Map, Pager};
use crate::view::{DirtyView, MapView, PageSource};

use super::alloc::{AllocSaved, Allocator};
use super::buffers::Buffers;
use super::heap::{Change, Records, Segments};

/// What the partitions share, taken for the length of one step of a change
/// (an allocation, a free, a value packed), never across a caller's code.
struct Shared {
    alloc: Allocator,
    heap: Records,
}

/// The pages a write transaction owns, but for its partitions' buffers.
pub(crate) struct Dirty {
    txn_id: u64,
    /// The commit the transaction started from (`txn_id - 1`, or
    /// `txn_id - 2` after a commit that is not durable).
    base_txn: u64,
    page_size: usize,
    /// High-water mark of the snapshot the transaction started from: the map
    /// below it is that snapshot.
    base_high_water: u64,
    /// A map that covers that snapshot, kept for the transaction's life.
    map: Arc<Map>,
    shared: Mutex<Shared>,
    /// The allocator's high-water mark as of its last change, for views.
    high_water: AtomicU64,
    /// Set when a change failed part-way: the pages may hold a half-applied
    /// change, so nothing reads or writes them again and the transaction
    /// cannot commit. Every mutation and every read of the transaction, in
    /// every partition, passes through here (a view reads it at each read).
    failed: AtomicBool,
}

/// One partition of the transaction's buffers: those of one open table,
/// or the transaction's own trees. Reached through one owner at a time.
pub(crate) struct Part {
    bufs: Buffers,
    segs: Segments,
}

/// What a savepoint keeps of a partition besides its journal.
pub(crate) struct PartSaved {
    segs: Segments,
}

impl Part {
    /// A savepoint of the partition: its segments as they are, and a
    /// journal of its buffers from now on.
    pub(crate) fn savepoint(&mut self) -> PartSaved {
        self.bufs.savepoint();
        PartSaved {
            segs: self.segs.clone(),
        }
    }

    /// Puts the partition back as it was at the savepoint of `level`
    /// (`saved`); see [`Dirty::restore`].
    pub(crate) fn restore(&mut self, level: usize, saved: &PartSaved) {
        self.bufs.restore(level);
        self.segs = saved.segs.clone();
    }

    /// Forgets the savepoint of `level`, keeping the changes since.
    pub(crate) fn release(&mut self, level: usize) {
        self.bufs.release(level);
    }

    /// Forgets every savepoint (the commit begins).
    pub(crate) fn drop_savepoints(&mut self) {
        self.bufs.drop_journals();
    }

    /// Bytes the savepoints keep of this partition's buffers.
    pub(crate) fn savepoint_bytes(&self) -> usize {
        self.bufs.journal_bytes()
    }

    /// Whether the partition holds no buffer.
    pub(crate) fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// The buffers, for the commit to write out.
    pub(crate) fn buffers(&self) -> &Buffers {
        &self.bufs
    }

    /// The buffers, for the commit to stamp.
    pub(crate) fn buffers_mut(&mut self) -> &mut Buffers {
        &mut self.bufs
    }
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
            page_size,
            base_high_water,
            map,
            shared: Mutex::new(Shared {
                alloc: Allocator::new(page_size, base_high_water, max_pages, file_pages, free),
                heap: Records::default(),
            }),
            high_water: AtomicU64::new(base_high_water),
            failed: AtomicBool::new(false),
        }
    }

    /// A new, empty partition, made under `levels` live savepoints.
    pub(crate) fn part(&self, levels: usize) -> Part {
        Part {
            bufs: Buffers::new(self.page_size, levels),
            segs: Segments::default(),
        }
    }

    /// Runs `f` on the shared state, held for its length only.
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        let mut shared = self.shared.lock();
        let r = f(&mut shared);
        (self.high_water).store(shared.alloc.high_water(), Ordering::Relaxed);
        r
    }

    /// `Err(TxnFailed)` once a change of the transaction has failed.
    #[inline]
    pub(crate) fn live(&self) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Error::TxnFailed);
        }
        Ok(())
    }

    /// Passes on the result of a change to the transaction; an error fails
    /// the transaction (the change may have been half-applied), so that every
    /// later call, through any handle, gets `Error::TxnFailed`.
    pub(crate) fn outcome<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        r
    }

    pub(crate) fn txn_id(&self) -> u64 {
        self.txn_id
    }

    /// High-water mark including this transaction's allocations.
    pub(crate) fn high_water(&self) -> u64 {
        self.high_water.load(Ordering::Relaxed)
    }

    /// The snapshot the transaction started from, in `pager`'s map.
    #[inline]
    fn base<'a>(&'a self, pager: &'a Pager) -> MapView<'a> {
        MapView::new(pager, &self.map, self.base_high_water, self.base_txn)
    }

    /// Copies the committed pages `id..id + n` (a page, or a whole overflow
    /// run), read through the base's checks, into a buffer of `part` at the
    /// pages `place` allocates, and frees the old ones (a copy, not a
    /// zeroed page written over). Returns the new first page.
    fn copy_out(
        &self,
        pager: &Pager,
        part: &mut Part,
        id: PageId,
        n: u64,
        place: impl FnOnce(&mut Allocator) -> Result<PageId>,
    ) -> Result<PageId> {
        let src = self.base(pager).run_bytes(id, n)?;
        let new = self.with(|s| {
            let new = place(&mut s.alloc)?;
            s.alloc.free(id, n, Some(written_by(src)))?;
            Ok::<_, Error>(new)
        })?;
        let buf = part.bufs.insert(new, Box::from(src));
        header_mut(buf).txn_id = self.txn_id.into();
        Ok(new)
    }

    /// The pages as the partition `part` sees them: its dirty buffers, then
    /// the snapshot the transaction started from in `pager`'s map.
    #[inline]
    pub(crate) fn view<'a>(&'a self, pager: &'a Pager, part: &'a Part) -> DirtyView<'a> {
        DirtyView::new(
            self.base(pager),
            part.bufs.map(),
            self.high_water(),
            &self.failed,
        )
    }

    /// From now on, single pages are the lowest reusable ones
    /// (`Allocator::lowest_first`).
    pub(crate) fn lowest_first(&self) {
        self.with(|s| s.alloc.lowest_first());
    }

    /// Pages the transaction may still take without growing the file.
    pub(crate) fn room(&self) -> u64 {
        self.with(|s| s.alloc.room())
    }

    /// The file was grown to `pages` pages during the transaction: value
    /// segments may take them.
    pub(crate) fn file_grew(&self, pages: u64) {
        self.with(|s| s.alloc.file_grew(pages));
    }

    /// Entries the free list holds now, this transaction's changes included.
    pub(crate) fn free_len(&self) -> usize {
        self.with(|s| s.alloc.free_len())
    }

    /// Moves every buffer of `from` into `into`, closing `from`'s segments
    /// first (the commit gathers the partitions; savepoints are gone).
    pub(crate) fn gather(&self, into: &mut Part, from: &mut Part) -> Result<()> {
        self.with(|s| s.heap.finish(&mut from.segs, &mut s.alloc, &mut from.bufs))?;
        into.bufs.absorb(&mut from.bufs);
        into.segs.absorb(&from.segs);
        Ok(())
    }

    /// Settles the segments of `part`, which no handle holds now (its
    /// handle dropped, or its table was deleted): a spare, or an open
    /// segment left without values, is freed; the open one is cut to the
    /// pages its values reach. What goes back is the shared allocator's,
    /// for any partition to take (DESIGN.md, "The value heap"). Nothing
    /// to do (the common case) takes no lock.
    pub(crate) fn settle(&self, part: &mut Part) -> Result<()> {
        if part.segs.settled(self.page_size) {
            return Ok(());
        }
        self.with(|s| s.heap.settle(&mut part.segs, &mut s.alloc, &mut part.bufs))
    }

    /// Fails the transaction: nothing reads or writes its pages again, and
    /// it cannot commit (a change was cut short part-way).
    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Closes the segments of `part`, which holds every buffer now, and
    /// hands over the changes to the heap's segments, in page order, for
    /// the commit to apply.
    pub(crate) fn take_heap_changes(&self, part: &mut Part) -> Result<BTreeMap<PageId, Change>> {
        self.with(|s| {
            s.heap
                .take_changes(&mut part.segs, &mut s.alloc, &mut part.bufs)
        })
    }

    /// Whether the transaction wrote and freed nothing; `part` holds every
    /// buffer (gathered).
    pub(crate) fn is_clean(&self, part: &Part) -> bool {
        part.bufs.is_empty() && self.with(|s| s.alloc.freed_none())
    }

    /// Lends the pages of partition `part` to the B+tree, reading what they
    /// do not hold from `pager`'s map.
    #[inline]
    pub(crate) fn lend<'a>(&'a self, pager: &'a Pager, part: &'a mut Part) -> TxnPages<'a> {
        TxnPages {
            pager,
            dirty: self,
            part,
        }
    }

    /// The pages of `part` as the commit writes the free list's pages into
    /// them.
    pub(crate) fn list_pages<'a>(
        &'a mut self,
        pager: &'a Pager,
        part: &'a mut Part,
    ) -> ListPages<'a> {
        ListPages {
            pager,
            dirty: self,
            part,
        }
    }

    /// A savepoint of the shared state: the allocator's and the heap
    /// records' (DESIGN.md, "Savepoints"); each partition keeps its own
    /// (`Part::savepoint`). Refused once the transaction failed.
    /// The savepoints are numbered from 0, oldest first, by their level.
    pub(crate) fn savepoint(&self) -> Result<DirtySaved> {
        self.live()?;
        Ok(self.with(|s| {
            s.heap.savepoint();
            DirtySaved {
                alloc: s.alloc.savepoint(),
            }
        }))
    }

    /// Puts the shared state back as it was at the savepoint of `level`
    /// (`saved`), which stays usable; savepoints above it are gone. With
    /// every partition put back too, a transaction that failed since is
    /// whole again: what the failed change half did is undone with the
    /// rest.
    pub(crate) fn restore(&self, level: usize, saved: &DirtySaved) {
        self.with(|s| {
            s.alloc.restore(level, &saved.alloc);
            s.heap.restore(level);
        });
        self.failed.store(false, Ordering::Relaxed);
    }

    /// Forgets the savepoint of `level`, keeping the changes since; those
    /// above it move down a level.
    pub(crate) fn release(&self, level: usize) {
        self.with(|s| {
            s.alloc.release(level);
            s.heap.release_savepoint(level);
        });
    }

    /// Forgets every savepoint (the commit begins).
    pub(crate) fn drop_savepoints(&self) {
        self.with(|s| {
            s.alloc.drop_savepoints();
            s.heap.drop_savepoints();
        });
    }

    /// Gives back everything this transaction took and returns the free list
    /// as it was (with the released groups kept reusable).
    pub(crate) fn abort(&self) -> FreeList {
        self.with(|s| s.alloc.abort())
    }

    /// Takes back the free list a failed commit was to leave
    /// (`TxnFreeList::give_back`), before the abort.
    pub(crate) fn give_back(&self, list: FreeList) {
        self.with(|s| s.alloc.free_list().give_back(list))
    }

    /// Frees the `n` pages from `id`, dropping their buffer if `part`
    /// wrote them; a committed page (or run) is recorded with the
    /// transaction its header names as its writer, which the checked read
    /// vouches is no newer than the base.
    fn free(&self, id: PageId, n: u64, pager: &Pager, part: &mut Part) -> Result<()> {
        let by = if part.bufs.contains(id) {
            None
        } else {
            Some(written_by(self.base(pager).page(id)?))
        };
        // A range outside the file is refused before any buffer goes.
        self.with(|s| s.alloc.free(id, n, by))?;
        part.bufs.remove(id);
        Ok(())
    }
}

/// What a savepoint keeps of the shared state besides the undo logs: the
/// allocator's counters.
pub(crate) struct DirtySaved {
    alloc: AllocSaved,
}

/// One partition of the running transaction's pages lent to the B+tree as
/// a [`PageStore`] (and to a table handle, which reads and changes through
/// it).
pub(crate) struct TxnPages<'a> {
    pager: &'a Pager,
    dirty: &'a Dirty,
    part: &'a mut Part,
}

impl<'a> TxnPages<'a> {
    /// Whether the dirty buffer starting at page `id` holds bytes `range`.
    pub(crate) fn holds(&self, id: PageId, range: &std::ops::Range<usize>) -> bool {
        (self.part.bufs.get(id)).is_some_and(|b| range.start <= range.end && range.end <= b.len())
    }

    /// Bytes `range` of the dirty buffer starting at page `id` (a run or a
    /// segment of this partition), for writing in place; corruption if
    /// there is no such buffer or it is shorter.
    pub(crate) fn buffer_mut(
        self,
        id: PageId,
        range: std::ops::Range<usize>,
    ) -> Result<&'a mut [u8]> {
        match self.part.bufs.range_mut(id, range) {
            Some(bytes) => Ok(bytes),
            None => corrupted(id, "a value past its transaction's buffer"),
        }
    }

    /// The pages as the partition sees them.
    #[inline]
    pub(crate) fn view(&self) -> DirtyView<'_> {
        self.dirty.view(self.pager, self.part)
    }
}

impl Keys for TxnPages<'_> {
    fn long_key(&self, key: LongKey) -> Result<&[u8]> {
        self.view().long_key_of(key)
    }
}

impl PageStore for TxnPages<'_> {
    fn page_size(&self) -> usize {
        self.dirty.page_size
    }

    fn txn_id(&self) -> u64 {
        self.dirty.txn_id
    }

    // Forced, as is `DirtyView::page`: the tree's descent reads every level
    // through here, and left to itself the compiler calls it out of line
    // (about 130 more instructions per insert, callgrind).
    #[inline(always)]
    fn page(&self, id: PageId) -> Result<&[u8]> {
        self.view().page(id)
    }

    fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        self.part.bufs.page_mut(id)
    }

    fn cow(&mut self, id: PageId) -> Result<PageId> {
        if self.part.bufs.contains(id) {
            return Ok(id);
        }
        let base = self.dirty.base(self.pager);
        self.check_committed(id, &Node::parse_any(base.page(id)?, id)?)?;
        (self.dirty).copy_out(self.pager, self.part, id, 1, Allocator::alloc)
    }

    fn check_committed(&self, id: PageId, node: &Node<'_>) -> Result<()> {
        if self.part.bufs.contains(id) {
            return Ok(());
        }
        // In a sound file a committed page points only at pages in use in
        // its snapshot, never at one this transaction can take.
        let end = self.dirty.base_high_water;
        self.dirty.with(|s| {
            node.for_each_target(|page| {
                if s.alloc.could_take(page, end) {
                    return corrupted(id, "a committed page points at a free page");
                }
                Ok(())
            })
        })
    }

    fn alloc_node(&mut self, page: Box<[u8]>) -> Result<PageId> {
        if page.len() != self.dirty.page_size {
            return corrupted(0, "a node page of the wrong size");
        }
        let id = self.dirty.with(|s| s.alloc.alloc())?;
        self.part.bufs.insert(id, page);
        Ok(id)
    }

    fn alloc_value(&mut self, value: &[u8]) -> Result<ValueRef> {
        let (d, part) = (self.dirty, &mut *self.part);
        let ps = d.page_size;
        if packs(value.len(), ps) {
            let at = d.with(|s| {
                (s.heap).pack(
                    &mut part.segs,
                    &mut s.alloc,
                    &mut part.bufs,
                    d.txn_id,
                    value,
                    PageId::MAX,
                    u64::MAX,
                )
            })?;
            return match at {
                Some(at) => Ok(at),
                None => corrupted(0, "no segment below the end of the file"),
            };
        }
        let n = overflow_pages(value.len(), ps);
        let id = d.with(|s| s.alloc.alloc_run(n))?;
        let mut buf = vec![0u8; n as usize * ps].into_boxed_slice();
        init_overflow(&mut buf, n as u32, d.txn_id);
        buf[OVERFLOW_DATA..OVERFLOW_DATA + value.len()].copy_from_slice(value);
        part.bufs.insert(id, buf);
        Ok(ValueRef::Run(id))
    }

    fn free_packed(&mut self, seg: PageId, off: u32, len: usize) -> Result<()> {
        // A value of this transaction's segments must be one it packed; any
        // other must be readable where the cell says in the snapshot the
        // transaction started from (not in its own buffers, which a crafted
        // reference past that snapshot would reach).
        let (d, part) = (self.dirty, &mut *self.part);
        let base = d.base(self.pager);
        d.with(|s| {
            if !s.heap.owns(seg, off) {
                base.spilled_value(ValueRef::Packed { seg, off }, len)?;
            }
            (s.heap).release(&mut part.segs, &mut s.alloc, &mut part.bufs, seg, off, len)
        })
    }

    fn repack(&mut self, at: ValueRef, len: usize, below: PageId, pages: u64) -> Result<ValueRef> {
        let ValueRef::Packed { seg, off } = at else {
            return Ok(at);
        };
        // A value of a committed segment is packed straight from the map
        // (the buffers may change meanwhile); one of this partition's
        // segments is copied out first, as the segment filled next may be
        // that very buffer.
        let d = self.dirty;
        let base = d.base(self.pager);
        let own;
        let value = if self.part.bufs.contains(seg) {
            own = self.view().spilled_value(at, len)?.to_vec();
            &own[..]
        } else {
            base.spilled_value(at, len)?
        };
        let part = &mut *self.part;
        let packed = d.with(|s| {
            (s.heap).pack(
                &mut part.segs,
                &mut s.alloc,
                &mut part.bufs,
                d.txn_id,
                value,
                below,
                pages,
            )
        })?;
        match packed {
            Some(new) => {
                self.free_packed(seg, off, len)?;
                Ok(new)
            }
            None => Ok(at),
        }
    }

    fn free(&mut self, id: PageId, n: u64) -> Result<()> {
        self.dirty.free(id, n, self.pager, self.part)
    }

    fn lowest_free(&self, n: u64) -> Option<PageId> {
        self.dirty.with(|s| s.alloc.peek_run(n))
    }

    fn spare_pages(&self) -> u64 {
        self.dirty.with(|s| s.alloc.spare() as u64)
    }

    fn move_run(&mut self, id: PageId, n: u64) -> Result<PageId> {
        if self.part.bufs.contains(id) {
            return Ok(id);
        }
        (self.dirty).copy_out(self.pager, self.part, id, n, |a: &mut Allocator| {
            a.alloc_run(n)
        })
    }
}

/// The commit writes the free list's pages straight into the buffers of the
/// transaction's own partition, with the whole transaction in hand.
pub(crate) struct ListPages<'a> {
    pager: &'a Pager,
    dirty: &'a mut Dirty,
    part: &'a mut Part,
}

impl ListPages<'_> {
    /// The shared state, with no other owner left: no lock is taken.
    fn shared(&mut self) -> &mut Shared {
        self.dirty.shared.get_mut()
    }

    /// Keeps the views' high-water mark after the allocator changed.
    fn note_high_water(&mut self) {
        let hw = self.shared().alloc.high_water();
        self.dirty.high_water.store(hw, Ordering::Relaxed);
    }
}

impl ListStore for ListPages<'_> {
    fn page_size(&self) -> usize {
        self.dirty.page_size
    }

    fn txn_id(&self) -> u64 {
        self.dirty.txn_id
    }

    fn high_water(&self) -> u64 {
        self.dirty.high_water()
    }

    fn free_list(&mut self) -> &mut TxnFreeList {
        self.shared().alloc.free_list()
    }

    fn trim_tail(&mut self) {
        self.shared().alloc.trim_tail();
        self.note_high_water();
    }

    fn written_by(&self, id: PageId) -> Result<u64> {
        Ok(written_by(self.dirty.base(self.pager).page(id)?))
    }

    fn alloc_page(&mut self) -> Result<PageId> {
        let id = self.shared().alloc.alloc_lowest();
        self.note_high_water();
        let id = id?;
        let page = vec![0u8; self.dirty.page_size].into_boxed_slice();
        self.part.bufs.insert(id, page);
        Ok(id)
    }

    fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        self.part.bufs.page_mut(id)
    }
}
