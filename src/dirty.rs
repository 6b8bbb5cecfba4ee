//! The writer's private page buffers and its page allocator.
//!
//! Every page a write transaction modifies is a fresh allocation held here
//! until commit: the readers' map is never written through. [`TxnPages`] lends
//! the buffers to the B+tree as a [`PageStore`]; [`Dirty::view`] reads the
//! transaction's own state (dirty pages first, then the map) as a
//! [`DirtyView`]; the commit writes the free-list chain into them as a
//! [`ChainStore`]. Which pages are free is `freelist`'s ([`TxnFreeList`]).

use zerocopy::little_endian::{U32, U64};

use crate::btree::PageStore;
use crate::error::{Error, Result, corrupted};
use crate::format::meta::SealEntry;
use crate::format::page::{
    OVERFLOW_DATA, PageId, PageMap, header_mut, init_overflow, overflow_pages, stamp_checksum,
};
use crate::freelist::{ChainStore, FreeList, TxnFreeList};
use crate::pager::Pager;
use crate::view::{DirtyView, MapView, PageSource};

/// The pages a write transaction owns.
pub(crate) struct Dirty {
    page_size: usize,
    txn_id: u64,
    /// High-water mark of the snapshot the transaction started from.
    base_pages: u64,
    /// High-water mark including this transaction's allocations.
    pages: u64,
    /// Pages the map can hold.
    max_pages: u64,
    /// Dirty pages; an overflow run is one buffer under its first page.
    bufs: PageMap<Box<[u8]>>,
    /// The free list, and what this transaction took from it and freed.
    free: TxnFreeList,
    /// Set when a change failed part-way: the pages may hold a half-applied
    /// change, so nothing reads or writes them again and the transaction
    /// cannot commit. Every mutation and every read of the transaction passes
    /// through here.
    failed: bool,
}

impl Dirty {
    pub(crate) fn new(
        page_size: usize,
        txn_id: u64,
        base_pages: u64,
        max_pages: u64,
        free: FreeList,
    ) -> Dirty {
        Dirty {
            page_size,
            txn_id,
            base_pages,
            pages: base_pages,
            max_pages,
            bufs: PageMap::default(),
            free: TxnFreeList::new(free),
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
    pub(crate) fn pages(&self) -> u64 {
        self.pages
    }

    /// The pages as this transaction sees them: its dirty buffers, then the
    /// snapshot it started from in `pager`'s map.
    #[inline]
    pub(crate) fn view<'a>(&'a self, pager: &'a Pager) -> DirtyView<'a> {
        DirtyView::new(
            MapView::new(pager, self.base_pages),
            &self.bufs,
            self.pages,
            self.failed,
        )
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.bufs.is_empty() && self.free.freed_none()
    }

    /// Allocates one page id (no buffer).
    fn alloc_id(&mut self) -> Result<PageId> {
        match self.free.take() {
            Some(p) => Ok(p),
            None => self.extend(1),
        }
    }

    /// Allocates `n` consecutive page ids (no buffer).
    fn alloc_run_id(&mut self, n: u64) -> Result<PageId> {
        match self.free.take_run(n) {
            Some(p) => Ok(p),
            None => self.extend(n),
        }
    }

    /// Takes `n` pages from the end of the file.
    fn extend(&mut self, n: u64) -> Result<PageId> {
        let end = self.pages.checked_add(n).filter(|&e| e <= self.max_pages);
        let Some(end) = end else {
            return Err(Error::MapFull {
                needed: self
                    .pages
                    .saturating_add(n)
                    .saturating_mul(self.page_size as u64),
                map_size: self.max_pages * self.page_size as u64,
            });
        };
        let p = self.pages;
        self.pages = end;
        Ok(p)
    }

    /// Allocates a dirty page holding a copy of `src` (one page): no zeroing
    /// first, as `alloc_page` would do.
    fn alloc_page_copy(&mut self, src: &[u8]) -> Result<(PageId, &mut [u8])> {
        debug_assert_eq!(src.len(), self.page_size);
        let id = self.alloc_id()?;
        let buf = self.bufs.entry(id).insert_entry(Box::from(src));
        Ok((id, buf.into_mut()))
    }

    /// The dirty page `id`, for writing.
    fn buffer_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        let ps = self.page_size;
        match self.bufs.get_mut(&id) {
            Some(buf) => Ok(&mut buf[..ps]),
            None => corrupted(id, "write to a page the transaction does not own"),
        }
    }

    /// Frees `n` pages starting at `id`.
    fn free_pages(&mut self, id: PageId, n: u64) {
        if self.bufs.remove(&id).is_some() {
            self.free.free_own(id, n);
        } else {
            self.free.free_committed(id, n);
        }
    }

    /// Gives back everything this transaction took and returns the free list
    /// as it was (with the released groups kept reusable).
    pub(crate) fn abort(&mut self) -> FreeList {
        self.free.abort()
    }

    /// Stamps every dirty buffer with its checksum; returns the seal list: one
    /// entry per buffer, in page order.
    pub(crate) fn seal(&mut self) -> Vec<SealEntry> {
        let ps = self.page_size;
        let mut seal: Vec<SealEntry> = self
            .bufs
            .iter_mut()
            .map(|(&id, buf)| SealEntry {
                page: U64::new(id),
                pages: U32::new((buf.len() / ps) as u32),
                checksum: U32::new(stamp_checksum(buf)),
            })
            .collect();
        seal.sort_unstable_by_key(|e| e.page.get());
        // Buffers never share a page, so the entries do not overlap: a meta
        // whose list did would be invalid (`Meta::decode`).
        debug_assert!(
            seal.windows(2)
                .all(|w| w[0].page.get() + u64::from(w[0].pages.get()) <= w[1].page.get())
        );
        seal
    }

    /// Writes the buffers `seal` lists (in page order), consecutive ones merged
    /// into one vectored write of at most `chunk` bytes (and at most
    /// `MAX_SLICES` buffers), straight from the buffers.
    pub(crate) fn write_all(&self, pager: &Pager, seal: &[SealEntry], chunk: usize) -> Result<()> {
        const MAX_SLICES: usize = 512;
        // A lone buffer is one `pwrite`; a run, a seek and a `writev`.
        let flush = |start: PageId, run: &[&[u8]]| match run {
            [one] => pager.write(start, one),
            _ => pager.write_vectored(start, run),
        };
        let mut run: Vec<&[u8]> = Vec::new();
        let (mut run_start, mut run_end, mut run_bytes) = (0, 0, 0);
        for e in seal {
            let id = e.page.get();
            let buf = &self.bufs[&id][..];
            let joins = id == run_end && run_bytes + buf.len() <= chunk && run.len() < MAX_SLICES;
            if !run.is_empty() && !joins {
                flush(run_start, &run)?;
                run.clear();
                run_bytes = 0;
            }
            if run.is_empty() {
                run_start = id;
            }
            run.push(buf);
            run_bytes += buf.len();
            run_end = id + (buf.len() / self.page_size) as u64;
        }
        if !run.is_empty() {
            flush(run_start, &run)?;
        }
        Ok(())
    }
}

/// The running transaction's pages as a [`PageStore`] for the B+tree.
pub(crate) struct TxnPages<'a> {
    pub pager: &'a Pager,
    pub dirty: &'a mut Dirty,
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
        self.dirty.view(self.pager).page(id)
    }

    fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        self.dirty.buffer_mut(id)
    }

    fn cow(&mut self, id: PageId) -> Result<PageId> {
        if self.dirty.bufs.contains_key(&id) {
            return Ok(id);
        }
        let src = MapView::new(self.pager, self.dirty.base_pages).page(id)?;
        let txn_id = self.dirty.txn_id;
        let (new, buf) = self.dirty.alloc_page_copy(src)?;
        header_mut(buf).txn_id = txn_id.into();
        self.dirty.free.free_committed(id, 1);
        Ok(new)
    }

    fn alloc_node(&mut self, page: Box<[u8]>) -> Result<PageId> {
        if page.len() != self.dirty.page_size {
            return corrupted(0, "a node page of the wrong size");
        }
        let id = self.dirty.alloc_id()?;
        self.dirty.bufs.insert(id, page);
        Ok(id)
    }

    fn alloc_value(&mut self, value: &[u8]) -> Result<PageId> {
        let ps = self.dirty.page_size;
        let n = overflow_pages(value.len(), ps);
        let id = self.dirty.alloc_run_id(n)?;
        let mut buf = vec![0u8; n as usize * ps].into_boxed_slice();
        init_overflow(&mut buf, n as u32, self.dirty.txn_id);
        buf[OVERFLOW_DATA..OVERFLOW_DATA + value.len()].copy_from_slice(value);
        self.dirty.bufs.insert(id, buf);
        Ok(id)
    }

    fn free(&mut self, id: PageId, n: u64) -> Result<()> {
        match id.checked_add(n) {
            Some(end) if id >= 2 && end <= self.dirty.pages => {
                self.dirty.free_pages(id, n);
                Ok(())
            }
            _ => corrupted(id, "freed pages lie outside the file"),
        }
    }
}

/// The commit writes the free-list chain straight into the buffers.
impl ChainStore for Dirty {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn txn_id(&self) -> u64 {
        self.txn_id
    }

    fn high_water(&self) -> u64 {
        self.pages
    }

    fn free_list(&mut self) -> &mut TxnFreeList {
        &mut self.free
    }

    fn alloc_page(&mut self) -> Result<PageId> {
        let id = self.alloc_id()?;
        self.bufs
            .insert(id, vec![0u8; self.page_size].into_boxed_slice());
        Ok(id)
    }

    fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        self.buffer_mut(id)
    }
}
