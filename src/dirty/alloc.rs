//! The write transaction's page allocator.

use crate::error::{Error, Result, corrupted};
use crate::format::page::PageId;
use crate::freelist::{FreeList, TxnFreeList};

/// What a savepoint keeps of the allocator besides the free list's undo
/// log: its counters.
pub(crate) struct AllocSaved {
    high_water: u64,
    file_pages: u64,
    allocated: u64,
    lowest_first: bool,
}

/// Hands out the transaction's page ids: reusable pages from the free list
/// first, else pages past the high-water mark, up to `Options::max_size`.
pub(crate) struct Allocator {
    page_size: usize,
    /// Every page id in use lies below it, this transaction's included.
    high_water: u64,
    /// Pages the file may hold: the high-water mark never passes it.
    max_pages: u64,
    /// Pages the file held when the transaction started (grown ahead of
    /// use): a value segment may take them without growing the file.
    file_pages: u64,
    /// The free list, and what this transaction took from it and freed.
    free: TxnFreeList,
    /// Whether single pages are the lowest reusable ones (compaction)
    /// rather than ones that keep the writes together (`alloc`).
    lowest_first: bool,
    /// Single pages this transaction allocated so far.
    allocated: u64,
}

/// Single pages a transaction allocates before `alloc` starts keeping its
/// writes together: a smaller commit makes few writes however its pages lie,
/// and takes the pages without a free neighbour that larger ones leave.
const GROUPED_AFTER: u64 = 64;

impl Allocator {
    /// An allocator over a snapshot whose high-water mark is `high_water`.
    pub(crate) fn new(
        page_size: usize,
        high_water: u64,
        max_pages: u64,
        file_pages: u64,
        free: FreeList,
    ) -> Self {
        Allocator {
            page_size,
            high_water,
            max_pages,
            file_pages,
            free: TxnFreeList::new(free),
            lowest_first: false,
            allocated: 0,
        }
    }

    /// From now on, single pages are the lowest reusable ones: compaction
    /// wants every free page low in the file filled.
    pub(crate) fn lowest_first(&mut self) {
        self.lowest_first = true;
    }

    /// The high-water mark, this transaction's allocations included.
    pub(crate) fn high_water(&self) -> u64 {
        self.high_water
    }

    /// One page id: the lowest reusable page for the first `GROUPED_AFTER`
    /// pages of a transaction (and in compaction). After that, pages that
    /// keep the writes together: a commit's pages are written in runs of
    /// consecutive pages, one system call and one stretch of the disk each,
    /// so a page continues the run of the last one where it can, or starts
    /// on the lowest run of free pages; only then a page without a free
    /// neighbour, lowest first, and past the high-water mark last.
    pub(crate) fn alloc(&mut self) -> Result<PageId> {
        self.allocated += 1;
        let grouped = !self.lowest_first && self.allocated > GROUPED_AFTER;
        if grouped && let Some(p) = self.free.take_grouped() {
            return Ok(p);
        }
        match self.free.take() {
            Some(p) => Ok(p),
            None => self.extend(1),
        }
    }

    /// A page id, the lowest reusable one first (`TxnFreeList::take_lowest`).
    pub(crate) fn alloc_lowest(&mut self) -> Result<PageId> {
        match self.free.take_lowest() {
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

    /// The first page and length of a new value segment of `want` pages,
    /// of `need` at least, lying below page `below` (compaction moves a value
    /// only down the file), in this order:
    ///
    /// 1. the lowest free run at least eight times `need` long (or `want`,
    ///    if shorter), up to `want` of it: a value that does not fit closes
    ///    a segment, so a segment that long wastes at most an eighth of it;
    /// 2. for a transaction's first segment (`first`), the lowest free run
    ///    of `need` pages or more, up to `want` of it: a commit that packs a
    ///    value or two refills the runs freed below instead of raising the
    ///    high-water mark commit after commit while they wait;
    /// 3. `want` pages past the high-water mark, if the file already holds
    ///    them (it grows ahead of use): the later segments of a transaction
    ///    that packs much stay long and dense;
    /// 4. the lowest free run of `need` pages or more, up to `want` of it:
    ///    the free pages go before the file grows, so a full disk or
    ///    `Options::max_size` refuses no value the free pages can hold;
    /// 5. pages past the end of the file, `want` or as many as `max_size`
    ///    leaves room for, `need` at least (else `MapFull`).
    ///
    /// `None` when nothing of this lies below `below`.
    pub(crate) fn alloc_segment(
        &mut self,
        need: u64,
        want: u64,
        below: PageId,
        first: bool,
    ) -> Result<Option<(PageId, u64)>> {
        let shortest = need.saturating_mul(8).min(want).max(need);
        if let Some(got) = self.take_segment_run(shortest, want, below)? {
            return Ok(Some(got));
        }
        if first && let Some(got) = self.take_segment_run(need, want, below)? {
            return Ok(Some(got));
        }
        let held = self.file_pages.min(self.max_pages);
        let end = self.high_water.saturating_add(want);
        if end <= held && end <= below {
            return Ok(Some((self.extend(want)?, want)));
        }
        if let Some(got) = self.take_segment_run(need, want, below)? {
            return Ok(Some(got));
        }
        let n = want
            .min(self.max_pages.saturating_sub(self.high_water))
            .max(need);
        if self.high_water.saturating_add(n) <= below {
            return Ok(Some((self.extend(n)?, n)));
        }
        Ok(None)
    }

    /// The lowest free run of `n` pages or more lying below `below`, up to
    /// `max` pages of it.
    fn take_segment_run(
        &mut self,
        n: u64,
        max: u64,
        below: PageId,
    ) -> Result<Option<(PageId, u64)>> {
        match self.free.peek_long_run(n, max) {
            Some((p, len)) if p.saturating_add(len) <= below => {
                Ok(Some((self.alloc_run(len)?, len)))
            }
            Some((p, _)) if p.saturating_add(n) <= below => Ok(Some((self.alloc_run(n)?, n))),
            _ => Ok(None),
        }
    }

    /// Takes the `n` pages from `at` when `at` is the high-water mark, and
    /// either the file already holds them or no free run could hold the
    /// `need` pages of the value that asks (so the file would grow for it
    /// anyway), within `max_size`; returns whether it did.
    pub(crate) fn extend_at(&mut self, at: PageId, n: u64, need: u64) -> Result<bool> {
        let end = self.high_water.saturating_add(n);
        let held = self.file_pages.min(self.max_pages);
        let fits = end <= held || (end <= self.max_pages && self.free.peek_run(need).is_none());
        if at != self.high_water || !fits {
            return Ok(false);
        }
        self.extend(n)?;
        Ok(true)
    }

    /// Whether the transaction could take page `p` (or took it): it was
    /// past the snapshot's high-water mark or reusable when the
    /// transaction started.
    pub(crate) fn could_take(&self, p: PageId, base_high_water: u64) -> bool {
        p >= base_high_water || self.free.was_reusable(p)
    }

    /// The file holds `pages` pages now (grown during the transaction).
    pub(crate) fn file_grew(&mut self, pages: u64) {
        self.file_pages = self.file_pages.max(pages);
    }

    /// Pages this transaction may still take without growing the file:
    /// the reusable free pages and those the file holds past the mark.
    pub(crate) fn room(&self) -> u64 {
        let held = self.file_pages.min(self.max_pages);
        self.free.spare() as u64 + held.saturating_sub(self.high_water)
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

    /// Gives back the `n` pages from `at`, which this transaction took and
    /// no longer needs: to the high-water mark when they end there (the
    /// mark drops, so pages the commit takes next come from the free list,
    /// not from the top of the file), else to the free list.
    pub(crate) fn give_back(&mut self, at: PageId, n: u64) -> Result<()> {
        if at.checked_add(n) == Some(self.high_water) && at >= 2 {
            self.high_water = at;
            return Ok(());
        }
        self.free(at, n, None)
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

    /// A savepoint: the counters as they are; the free list logs its
    /// changes from now on.
    pub(crate) fn savepoint(&mut self) -> AllocSaved {
        self.free.savepoint();
        AllocSaved {
            high_water: self.high_water,
            file_pages: self.file_pages,
            allocated: self.allocated,
            lowest_first: self.lowest_first,
        }
    }

    /// Back to the savepoint of `level` (`saved`).
    pub(crate) fn restore(&mut self, level: usize, saved: &AllocSaved) {
        self.free.restore(level);
        self.high_water = saved.high_water;
        // The file stays as long as it grew: only more room.
        self.file_pages = self.file_pages.max(saved.file_pages);
        self.allocated = saved.allocated;
        self.lowest_first = saved.lowest_first;
    }

    /// Forgets the savepoint of `level`.
    pub(crate) fn release(&mut self, level: usize) {
        self.free.release(level);
    }

    /// Forgets every savepoint.
    pub(crate) fn drop_savepoints(&mut self) {
        self.free.drop_savepoints();
    }

    /// The transaction's changes to the free list, for writing it.
    pub(crate) fn free_list(&mut self) -> &mut TxnFreeList {
        &mut self.free
    }

    /// Gives back everything this transaction took and returns the free list
    /// as it was (with the released groups kept reusable).
    pub(crate) fn abort(&mut self) -> FreeList {
        self.free.abort()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An allocator over `high_water` pages, whose pool holds 80 pages
    /// without a free neighbour (2, 4, .., 160) and the runs 1000..1004
    /// and 2000..2003.
    fn fragmented(high_water: u64, max_pages: u64) -> Allocator {
        let mut free = FreeList::default();
        for p in (1..=80).map(|i| 2 * i).chain(1000..1004).chain(2000..2003) {
            free.insert_reusable(p);
        }
        Allocator::new(4096, high_water, max_pages, high_water, free)
    }

    fn allocs(a: &mut Allocator, n: usize) -> Vec<PageId> {
        (0..n).map(|_| a.alloc().unwrap()).collect()
    }

    #[test]
    fn a_large_transaction_keeps_its_pages_together() {
        let mut a = fragmented(4000, u64::MAX);
        // A small transaction's pages: the lowest.
        let first = allocs(&mut a, GROUPED_AFTER as usize);
        assert_eq!(first, (1..=64).map(|i| 2 * i).collect::<Vec<_>>());
        // Then runs, each taken whole, then the pages left without a
        // neighbour, lowest first, and only then the end of the file.
        let next = allocs(&mut a, 7);
        assert_eq!(next, [1000, 1001, 1002, 1003, 2000, 2001, 2002]);
        let alone: Vec<PageId> = (65..=80).map(|i| 2 * i).chain([4000, 4001]).collect();
        assert_eq!(allocs(&mut a, 18), alone);
        assert_eq!(a.high_water(), 4002);
    }

    #[test]
    fn pages_without_a_neighbour_are_taken_before_the_file_grows() {
        // At the ceiling too: taken rather than `MapFull`.
        let mut a = fragmented(4000, 4000);
        allocs(&mut a, GROUPED_AFTER as usize + 7);
        assert_eq!(allocs(&mut a, 2), [130, 132]);
        assert_eq!(a.high_water(), 4000);
    }

    #[test]
    fn a_segment_below_a_page_never_lies_past_it() {
        // Page 10 is free in the list; page 500, freed by this transaction,
        // is the one a single page would be taken from first.
        let mut free = FreeList::default();
        free.insert_reusable(10);
        let mut a = Allocator::new(4096, 1000, u64::MAX, 1000, free);
        a.free(500, 1, None).unwrap();
        if let Some((p, n)) = a.alloc_segment(1, 1, 100, false).unwrap() {
            assert!(p + n <= 100, "a segment at {p} of {n} pages");
        }
    }

    #[test]
    fn compaction_takes_the_lowest_pages() {
        let mut a = fragmented(4000, u64::MAX);
        a.lowest_first();
        let pages = allocs(&mut a, 86);
        let lowest: Vec<PageId> = (1..=80)
            .map(|i| 2 * i)
            .chain(1000..1004)
            .chain(2000..2002)
            .collect();
        assert_eq!(pages, lowest);
        assert_eq!(a.high_water(), 4000);
    }
}
