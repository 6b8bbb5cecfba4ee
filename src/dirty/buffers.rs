//! The write transaction's private page buffers.

use std::ops::Range;

use super::journal::Journal;
use crate::error::{Result, corrupted};
use crate::format::page::{PageId, PageMap};

/// The private copy of every page the transaction wrote, by page id. An
/// overflow run is one buffer under its first page; every other buffer is
/// one page.
pub(crate) struct Buffers {
    page_size: usize,
    map: PageMap<Box<[u8]>>,
    /// One journal per savepoint of the transaction, oldest first: for each
    /// buffer changed since that savepoint (and before the next), what it
    /// held at the savepoint. Only the newest journal records; restoring a
    /// savepoint plays the journals back from the newest down to its own.
    journals: Vec<Journal>,
}

impl Buffers {
    /// No buffers, under `levels` live savepoints: a partition made after
    /// them journals from the start, so that restoring any of them drops
    /// all it holds.
    pub(crate) fn new(page_size: usize, levels: usize) -> Buffers {
        Buffers {
            page_size,
            map: PageMap::default(),
            journals: (0..levels).map(|_| Journal::default()).collect(),
        }
    }

    /// Moves every buffer of `other` here (the commit gathers the
    /// partitions). Only without savepoints: nothing journals the move.
    pub(crate) fn absorb(&mut self, other: &mut Buffers) {
        debug_assert!(self.journals.is_empty() && other.journals.is_empty());
        // The smaller map goes into the larger: with one table open, the
        // transaction's own partition is still empty at the commit, and
        // this is a swap.
        if self.map.len() < other.map.len() {
            std::mem::swap(&mut self.map, &mut other.map);
        }
        self.map.extend(other.map.drain());
    }

    /// Before buffer `id` changes as a whole: the newest journal keeps what
    /// it holds now, the first time only.
    #[inline]
    fn note(&mut self, id: PageId) {
        if let Some(journal) = self.journals.last_mut() {
            journal.whole(id, self.map.get(&id).map(|b| &b[..]), self.page_size);
        }
    }

    /// A savepoint: changes from now on are journaled, so that
    /// `restore(level)` undoes them; returns its level (journals below it).
    pub(crate) fn savepoint(&mut self) -> usize {
        self.journals.push(Journal::default());
        self.journals.len() - 1
    }

    /// Puts every buffer back as it was at the savepoint of `level`; the
    /// savepoints above it are gone, its own stays (empty, for another
    /// restore).
    pub(crate) fn restore(&mut self, level: usize) {
        while self.journals.len() > level {
            let journal = self.journals.pop().expect("above the level");
            journal.undo(&mut self.map, self.page_size);
        }
        self.journals.push(Journal::default());
    }

    /// Forgets the savepoint of `level` without undoing anything: its
    /// journal merges into the one below (whose older copies win), or goes
    /// if it is the oldest.
    pub(crate) fn release(&mut self, level: usize) {
        if level >= self.journals.len() {
            return;
        }
        let journal = self.journals.remove(level);
        if let Some(below) = level.checked_sub(1).map(|l| &mut self.journals[l]) {
            journal.merge_into(below, self.page_size);
        }
    }

    /// Forgets every savepoint (at commit: nothing is undone after it).
    pub(crate) fn drop_journals(&mut self) {
        self.journals.clear();
    }

    /// Bytes the journals keep.
    pub(crate) fn journal_bytes(&self) -> usize {
        self.journals.iter().map(Journal::bytes).sum()
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
        self.note(id);
        self.map.get_mut(&id).map(|buf| &mut buf[..])
    }

    /// Bytes `range` of the buffer starting at page `id`, for writing in
    /// place: a savepoint's journal keeps only the pages they lie on.
    /// `None` when there is no such buffer or it is shorter.
    pub(crate) fn range_mut(&mut self, id: PageId, range: Range<usize>) -> Option<&mut [u8]> {
        let buf = self.map.get_mut(&id)?;
        if range.start > range.end || range.end > buf.len() {
            return None;
        }
        if let Some(journal) = self.journals.last_mut() {
            journal.part(id, buf, range.clone(), self.page_size);
        }
        Some(&mut buf[range])
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
        self.note(id);
        self.map.entry(id).insert_entry(buf).into_mut()
    }

    /// Makes the buffer at page `id` `pages` pages long: shortened, or
    /// lengthened with zeros.
    pub(crate) fn resize(&mut self, id: PageId, pages: usize) {
        if let Some(buf) = self.map.get(&id)
            && let Some(journal) = self.journals.last_mut()
        {
            journal.resized(id, buf, pages * self.page_size, self.page_size);
        }
        if let Some(buf) = self.map.get_mut(&id) {
            let mut v = std::mem::take(buf).into_vec();
            v.resize(pages * self.page_size, 0);
            *buf = v.into_boxed_slice();
        }
    }

    /// Drops the buffer at page `id`; returns whether there was one.
    pub(crate) fn remove(&mut self, id: PageId) -> bool {
        let Some(buf) = self.map.remove(&id) else {
            return false;
        };
        // The journal takes the buffer itself: no copy.
        if let Some(journal) = self.journals.last_mut() {
            journal.removed(id, buf, self.page_size);
        }
        true
    }

    /// The first page of the buffer at `id`, for writing.
    pub(crate) fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        self.note(id);
        let ps = self.page_size;
        match self.map.get_mut(&id) {
            Some(buf) => Ok(&mut buf[..ps]),
            None => corrupted(id, "write to a page the transaction does not own"),
        }
    }
}
