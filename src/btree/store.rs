//! How the tree writes pages: [`PageStore`] to copy, allocate and free them
//! (reads go through `view::PageSource`); and [`load_node`], which parses a
//! page found at a given level of a tree.

use crate::error::{Result, corrupted};
use crate::format::node::{Keys, LongKey, Node, ValueRef};
use crate::format::page::PageId;
use crate::view::run_len;

/// Read and write access for the writer. Only pages allocated by the running
/// transaction are writable; `cow` makes such a copy of any other page. Long
/// keys are read through [`Keys`].
pub(crate) trait PageStore: Keys {
    fn page_size(&self) -> usize;
    /// Id of the running transaction (stamped into every page it writes).
    fn txn_id(&self) -> u64;
    /// The whole page `id` (dirty or not).
    fn page(&self, id: PageId) -> Result<&[u8]>;
    /// A dirty page, for modification.
    fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]>;
    /// Returns a dirty copy of `id`: `id` itself if it is already dirty,
    /// otherwise a new page holding its bytes, with `id` freed.
    fn cow(&mut self, id: PageId) -> Result<PageId>;
    /// A new node holding `page`, a whole page built by `node::build`.
    fn alloc_node(&mut self, page: Box<[u8]>) -> Result<PageId>;
    /// A new home for `value`, which does not stay inline: an overflow run
    /// of its own, or a place in a value segment.
    fn alloc_value(&mut self, value: &[u8]) -> Result<ValueRef>;
    /// Frees `n` pages starting at `id`.
    fn free(&mut self, id: PageId, n: u64) -> Result<()>;

    /// Checks that `node`, page `id`, points only at pages of the snapshot
    /// the transaction started from when that snapshot holds it: a committed
    /// node that pointed past it (a crafted file) would have the writer take
    /// its own new pages for the snapshot's, and free or count them.
    fn check_committed(&self, id: PageId, node: &Node<'_>) -> Result<()> {
        let _ = (id, node);
        Ok(())
    }

    /// The first of the `n` consecutive free pages the next allocation of
    /// `n` pages would take, if the free list holds them (compaction moves a
    /// page only to a lower one). A store without a free list has none.
    fn lowest_free(&self, n: u64) -> Option<PageId> {
        let _ = n;
        None
    }

    /// Free pages an allocation can take now without growing the file.
    fn spare_pages(&self) -> u64 {
        0
    }

    /// Moves the `n`-page overflow run at `id` to newly allocated pages, as
    /// `cow` does a node: returns `id` itself if it is already dirty. A
    /// store without a free list keeps it where it is.
    fn move_run(&mut self, id: PageId, n: u64) -> Result<PageId> {
        let _ = n;
        Ok(id)
    }

    /// Frees the value of `len` bytes at `at`: its overflow run, or its
    /// place in a segment.
    fn free_value(&mut self, at: ValueRef, len: usize) -> Result<()> {
        match at {
            ValueRef::Run(id) => {
                let run = run_len(self.page(id)?, id, len, self.page_size())?;
                self.free(id, run)
            }
            ValueRef::Packed { seg, off } => self.free_packed(seg, off, len),
        }
    }

    /// Frees the place of a long separator, which holds its bytes alone.
    fn free_key(&mut self, key: LongKey) -> Result<()> {
        self.free_value(key.at, key.blob)
    }

    /// Frees the place of a value of `len` bytes packed into the segment at
    /// `seg`. A store without a heap holds no packed value.
    fn free_packed(&mut self, seg: PageId, off: u32, len: usize) -> Result<()> {
        let _ = (off, len);
        corrupted(seg, "a packed value where no heap is kept")
    }

    /// Packs the value of `len` bytes at `at`, a place in a segment, into
    /// a segment of this transaction that starts below page `below`, a new
    /// one of at most `pages` pages if it needs one, and frees the old
    /// place; returns the new one, or `at` itself when no such segment can
    /// be had (compaction and the heap's cleaning move values this way). A
    /// store without a heap keeps it where it is.
    fn repack(&mut self, at: ValueRef, len: usize, below: PageId, pages: u64) -> Result<ValueRef> {
        let _ = (len, below, pages);
        Ok(at)
    }
}

/// Parses page `id` found at `level` of a tree of `depth` levels, checking that
/// it is a leaf exactly at the last level.
#[inline]
pub(crate) fn load_node(page: &[u8], id: PageId, level: usize, depth: u32) -> Result<Node<'_>> {
    let node = Node::parse(page, id)?;
    if node.is_leaf() != (level + 1 == depth as usize) {
        return corrupted(id, "node kind does not match its depth in the tree");
    }
    Ok(node)
}
