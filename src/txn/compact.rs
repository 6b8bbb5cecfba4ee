//! One step of compaction: the write transaction moves the pages near the
//! end of the file to free pages nearer its start (DESIGN.md, "Shrinking
//! the file").

use super::write::WriteTxn;
use crate::error::Result;
use crate::format::page::{PageSet, freedir_capacity, freelist_capacity};

impl WriteTxn {
    /// Moves up to `budget` pages of the catalog and of every table from the
    /// end of the file to free pages below the pages in use, copy-on-write,
    /// and makes the transaction commit even if nothing moved (its free list
    /// is written anew, so pages the metas held pending move on and the tail
    /// may be cut). Returns the pages moved. An error fails the transaction.
    pub(crate) fn relocate_tail(&mut self, budget: u64) -> Result<u64> {
        self.dirty.live()?;
        let r = self.relocate_inner(budget);
        self.dirty.outcome(r)
    }

    fn relocate_inner(&mut self, budget: u64) -> Result<u64> {
        self.rewrite = true;
        self.dirty.lowest_first();
        // The pages in use (the metas and the free list's included),
        // were they packed from page 0 on: a page past this mark has a free
        // page waiting for it lower down, or will have.
        let free = self.dirty.free_len() as u64;
        let in_use = self.dirty.high_water().saturating_sub(free).max(2);
        // Moves take reusable pages and free as many (pending): the list keeps
        // its length, and as they touch every leaf, the commit rewrites it
        // packed: this many leaves and a directory for them.
        let ps = self.core.pager.page_size();
        let leaves = free.div_ceil(freelist_capacity(ps) as u64);
        let dir = leaves.div_ceil(freedir_capacity(ps) as u64);
        // Moving a packed value changes two entries of the heap's tree at
        // the commit: room for copies of their paths too.
        let heap_paths = 2 * (u64::from(self.heap.tree.depth) + 1);
        let keep = leaves + dir + 1 + heap_paths;
        self.move_values(in_use, budget, keep, &PageSet::default())
    }
}
