//! The write transaction's private page buffers.

use crate::error::{Result, corrupted};
use crate::format::page::{PageId, PageMap};

/// The private copy of every page the transaction wrote, by page id. An
/// overflow run is one buffer under its first page; every other buffer is
/// one page.
pub(crate) struct Buffers {
    page_size: usize,
    map: PageMap<Box<[u8]>>,
}

impl Buffers {
    pub(crate) fn new(page_size: usize) -> Buffers {
        Buffers {
            page_size,
            map: PageMap::default(),
        }
    }

    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether the transaction holds a buffer starting at page `id`.
    pub(crate) fn contains(&self, id: PageId) -> bool {
        self.map.contains_key(&id)
    }

    /// The buffers, for reading through (`view::DirtyView`).
    pub(crate) fn map(&self) -> &PageMap<Box<[u8]>> {
        &self.map
    }

    /// The buffer starting at page `id`, whole.
    pub(crate) fn get(&self, id: PageId) -> Option<&[u8]> {
        self.map.get(&id).map(|buf| &buf[..])
    }

    /// The buffer starting at page `id`, whole, for stamping.
    pub(crate) fn get_mut(&mut self, id: PageId) -> Option<&mut [u8]> {
        self.map.get_mut(&id).map(|buf| &mut buf[..])
    }

    /// Every buffer's first page and length in pages, in no particular order.
    pub(crate) fn spans(&self) -> impl Iterator<Item = (PageId, usize)> + '_ {
        self.map
            .iter()
            .map(|(&id, buf)| (id, buf.len() / self.page_size))
    }

    /// Puts `buf` (whole pages) at page `id`; returns the buffer.
    pub(crate) fn insert(&mut self, id: PageId, buf: Box<[u8]>) -> &mut [u8] {
        debug_assert!(!buf.is_empty() && buf.len().is_multiple_of(self.page_size));
        self.map.entry(id).insert_entry(buf).into_mut()
    }

    /// Makes the buffer at page `id` `pages` pages long: shortened, or
    /// lengthened with zeros.
    pub(crate) fn resize(&mut self, id: PageId, pages: usize) {
        if let Some(buf) = self.map.get_mut(&id) {
            let mut v = std::mem::take(buf).into_vec();
            v.resize(pages * self.page_size, 0);
            *buf = v.into_boxed_slice();
        }
    }

    /// Drops the buffer at page `id`; returns whether there was one.
    pub(crate) fn remove(&mut self, id: PageId) -> bool {
        self.map.remove(&id).is_some()
    }

    /// The first page of the buffer at `id`, for writing.
    pub(crate) fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        let ps = self.page_size;
        match self.map.get_mut(&id) {
            Some(buf) => Ok(&mut buf[..ps]),
            None => corrupted(id, "write to a page the transaction does not own"),
        }
    }
}
