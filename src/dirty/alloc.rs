//! The write transaction's page allocator.

use crate::error::{Error, Result, corrupted};
use crate::format::page::PageId;
use crate::freelist::{FreeList, TxnFreeList};

/// Hands out the transaction's page ids: reusable pages from the free list
/// first, else pages past the high-water mark, up to `Options::max_size`.
pub(crate) struct Allocator {
    page_size: usize,
    /// Every page id in use lies below it, this transaction's included.
    high_water: u64,
    /// Pages the file may hold: the high-water mark never passes it.
    max_pages: u64,
    /// The free list, and what this transaction took from it and freed.
    free: TxnFreeList,
}

impl Allocator {
    /// An allocator over a snapshot whose high-water mark is `high_water`.
    pub(crate) fn new(page_size: usize, high_water: u64, max_pages: u64, free: FreeList) -> Self {
        Allocator {
            page_size,
            high_water,
            max_pages,
            free: TxnFreeList::new(free),
        }
    }

    /// The high-water mark, this transaction's allocations included.
    pub(crate) fn high_water(&self) -> u64 {
        self.high_water
    }

    /// One page id.
    pub(crate) fn alloc(&mut self) -> Result<PageId> {
        match self.free.take() {
            Some(p) => Ok(p),
            None => self.extend(1),
        }
    }

    /// The first of `n` consecutive page ids.
    pub(crate) fn alloc_run(&mut self, n: u64) -> Result<PageId> {
        match self.free.take_run(n) {
            Some(p) => Ok(p),
            None => self.extend(n),
        }
    }

    /// The first page `alloc_run(n)` would take from the free list, if any.
    pub(crate) fn peek_run(&self, n: u64) -> Option<PageId> {
        self.free.peek_run(n)
    }

    /// Entries the free list holds now, this transaction's changes included.
    pub(crate) fn free_len(&self) -> usize {
        self.free.len()
    }

    /// Pages an allocation can take now without growing the file.
    pub(crate) fn spare(&self) -> usize {
        self.free.spare()
    }

    /// Takes `n` pages past the high-water mark.
    fn extend(&mut self, n: u64) -> Result<PageId> {
        let end = self
            .high_water
            .checked_add(n)
            .filter(|&e| e <= self.max_pages);
        let Some(end) = end else {
            let ps = self.page_size as u64;
            return Err(Error::MapFull {
                needed: self.high_water.saturating_add(n).saturating_mul(ps),
                limit: self.max_pages * ps,
                reason: "the file would grow past Options::max_size",
            });
        };
        let p = self.high_water;
        self.high_water = end;
        Ok(p)
    }

    /// Frees the `n` pages from `id`: reusable at once when this transaction
    /// allocated them (`written_by` `None`), otherwise pending until the
    /// reuse rule allows; `Some(a)` names the transaction that wrote them.
    pub(crate) fn free(&mut self, id: PageId, n: u64, written_by: Option<u64>) -> Result<()> {
        match id.checked_add(n) {
            Some(end) if id >= 2 && end <= self.high_water => {}
            _ => return corrupted(id, "freed pages lie outside the file"),
        }
        match written_by {
            None => self.free.free_own(id, n),
            Some(a) => self.free.free_committed(id, n, a),
        }
        Ok(())
    }

    /// Lowers the high-water mark past the reusable pages at the end of the
    /// file, which leave the free list (`TxnFreeList::trim_tail`).
    pub(crate) fn trim_tail(&mut self) {
        self.high_water = self.free.trim_tail(self.high_water);
    }

    /// Whether the transaction freed no committed page.
    pub(crate) fn freed_none(&self) -> bool {
        self.free.freed_none()
    }

    /// The transaction's changes to the free list, for writing its chain.
    pub(crate) fn free_list(&mut self) -> &mut TxnFreeList {
        &mut self.free
    }

    /// Gives back everything this transaction took and returns the free list
    /// as it was (with the released groups kept reusable).
    pub(crate) fn abort(&mut self) -> FreeList {
        self.free.abort()
    }
}
