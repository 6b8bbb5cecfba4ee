//! How the tree reaches pages: [`PageSource`] to read, [`PageStore`] to copy,
//! allocate and free.

use crate::error::{Result, corrupted};
use crate::format::node::{LeafValue, Node};
use crate::format::page::{OVERFLOW_DATA, PageId, overflow_pages, overflow_run};
use crate::pager::Pager;

/// Read access to the pages of one snapshot. Slices live for `'a`.
pub(crate) trait PageSource<'a>: Copy {
    /// The whole page `id`.
    fn page(&self, id: PageId) -> Result<&'a [u8]>;
    /// The `len` value bytes of the overflow run starting at `id`.
    fn run(&self, id: PageId, len: usize) -> Result<&'a [u8]>;
    /// The `n` whole pages starting at `id` (an overflow run, header included).
    fn pages(&self, id: PageId, n: u64) -> Result<&'a [u8]>;

    /// The bytes of a leaf value, following an overflow reference.
    #[inline]
    fn value(&self, value: LeafValue<'a>) -> Result<&'a [u8]> {
        match value {
            LeafValue::Inline(v) => Ok(v),
            LeafValue::Overflow { page, len } => self.run(page, len),
        }
    }
}

/// Read and write access for the writer. Only pages allocated by the running
/// transaction are writable; `cow` makes such a copy of any other page.
pub(crate) trait PageStore {
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
    /// A new overflow run holding `value`.
    fn alloc_value(&mut self, value: &[u8]) -> Result<PageId>;
    /// Frees `pages` pages starting at `id`.
    fn free(&mut self, id: PageId, pages: u64) -> Result<()>;

    /// Frees the overflow run holding a value of `len` bytes at `id`.
    fn free_value(&mut self, id: PageId, len: usize) -> Result<()> {
        let pages = overflow_run(self.page(id)?, id)?;
        if pages < overflow_pages(len, self.page_size()) {
            return corrupted(id, "overflow run shorter than its value");
        }
        self.free(id, pages)
    }
}

/// The committed pages of a snapshot, read from the map.
#[derive(Clone, Copy)]
pub(crate) struct MapView<'a> {
    pager: &'a Pager,
    /// The snapshot's high-water mark: no page at or above it belongs to it.
    pages: u64,
}

impl<'a> MapView<'a> {
    pub(crate) fn new(pager: &'a Pager, pages: u64) -> MapView<'a> {
        MapView { pager, pages }
    }

    /// The snapshot's high-water mark.
    pub(crate) fn high_water(&self) -> u64 {
        self.pages
    }

    #[inline]
    fn check(&self, id: PageId, n: u64) -> Result<()> {
        match id.checked_add(n) {
            Some(end) if id >= 2 && end <= self.pages => Ok(()),
            _ => corrupted(id, "page id outside the snapshot"),
        }
    }
}

impl<'a> PageSource<'a> for MapView<'a> {
    #[inline]
    fn page(&self, id: PageId) -> Result<&'a [u8]> {
        self.check(id, 1)?;
        self.pager.bytes(id, self.pager.page_size())
    }

    fn run(&self, id: PageId, len: usize) -> Result<&'a [u8]> {
        let pages = overflow_run(self.page(id)?, id)?;
        if pages < overflow_pages(len, self.pager.page_size()) {
            return corrupted(id, "overflow run shorter than its value");
        }
        self.check(id, pages)?;
        // The run holds the value (checked above), so this cannot wrap; the
        // length came from a cell all the same.
        let Some(end) = OVERFLOW_DATA.checked_add(len) else {
            return corrupted(id, "overflow value too long");
        };
        Ok(&self.pager.bytes(id, end)?[OVERFLOW_DATA..])
    }

    fn pages(&self, id: PageId, n: u64) -> Result<&'a [u8]> {
        self.check(id, n)?;
        let len = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(self.pager.page_size()));
        match len {
            Some(len) => self.pager.bytes(id, len),
            None => corrupted(id, "page run too long"),
        }
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

/// The pages of a snapshot held in a byte slice (a whole file image).
#[cfg(feature = "testing")]
#[derive(Clone, Copy)]
pub(crate) struct SliceView<'a> {
    image: &'a [u8],
    page_size: usize,
    pages: u64,
}

#[cfg(feature = "testing")]
impl<'a> SliceView<'a> {
    pub(crate) fn new(image: &'a [u8], page_size: usize, pages: u64) -> SliceView<'a> {
        SliceView {
            image,
            page_size,
            pages,
        }
    }

    fn bytes(&self, id: PageId, n: u64, len: usize) -> Result<&'a [u8]> {
        let start = usize::try_from(id)
            .ok()
            .and_then(|id| id.checked_mul(self.page_size));
        let range = start.and_then(|start| Some(start..start.checked_add(len)?));
        match (id.checked_add(n), range) {
            (Some(end), Some(range)) if id >= 2 && end <= self.pages => {
                match self.image.get(range) {
                    Some(bytes) => Ok(bytes),
                    None => corrupted(id, "page id outside the snapshot"),
                }
            }
            _ => corrupted(id, "page id outside the snapshot"),
        }
    }
}

#[cfg(feature = "testing")]
impl<'a> PageSource<'a> for SliceView<'a> {
    fn page(&self, id: PageId) -> Result<&'a [u8]> {
        self.bytes(id, 1, self.page_size)
    }

    fn run(&self, id: PageId, len: usize) -> Result<&'a [u8]> {
        let pages = overflow_run(self.page(id)?, id)?;
        if pages < overflow_pages(len, self.page_size) {
            return corrupted(id, "overflow run shorter than its value");
        }
        let Some(end) = OVERFLOW_DATA.checked_add(len) else {
            return corrupted(id, "overflow value too long");
        };
        Ok(&self.bytes(id, pages, end)?[OVERFLOW_DATA..])
    }

    fn pages(&self, id: PageId, n: u64) -> Result<&'a [u8]> {
        let len = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(self.page_size));
        match len {
            Some(len) => self.bytes(id, n, len),
            None => corrupted(id, "page run too long"),
        }
    }
}
