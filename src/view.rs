//! Reading pages: how the tree, the checker, the free-list reader and the
//! copy see the pages of a snapshot, or of the running write transaction.
//!
//! [`PageSource`] is what they read through. Its views differ only in where
//! the bytes lie (a [`Backing`]): the map ([`MapView`]), a whole-file image
//! ([`SliceView`], for the suites), or a buffer of the writer's. Every one of
//! them reads through the same checked functions: [`read_page`] for a page,
//! [`read_overflow`] for the value in an overflow run, [`read_packed`] for a
//! value packed into a segment, [`read_run`] for a run's whole pages. [`run_len`], the one check of an overflow run's header
//! against its value, serves them and the code that frees or checks a run.
//! [`DirtyView`] puts the writer's buffers over the map, and [`View`] is
//! either a snapshot or the writer's view.
//!
//! These are the read path of point reads and scans: everything here is
//! small and `#[inline]`, and a slice is handed out, never copied.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result, corrupted};
use crate::format::heap::SEGMENT_DATA;
use crate::format::node::{Keys, LeafValue, LongKey, ValueRef};
use crate::format::page::{
    OVERFLOW_DATA, PageId, PageMap, overflow_pages, overflow_run, segment_run, written_by,
};
use crate::pager::{Map, Pager};

/// Read access to the pages of one snapshot. Slices live for `'a`.
pub(crate) trait PageSource<'a>: Copy + Keys {
    /// The whole page `id`.
    fn page(&self, id: PageId) -> Result<&'a [u8]>;
    /// The `len` value bytes of the overflow run starting at `id`.
    fn overflow_value(&self, id: PageId, len: usize) -> Result<&'a [u8]>;
    /// The `len` value bytes `off` bytes into the value segment at `seg`.
    fn packed_value(&self, seg: PageId, off: u32, len: usize) -> Result<&'a [u8]>;
    /// The `n` whole pages starting at `id` (an overflow run, header included).
    fn run_bytes(&self, id: PageId, n: u64) -> Result<&'a [u8]>;

    /// The bytes of a leaf value, following an overflow reference.
    #[inline]
    fn value(&self, value: LeafValue<'a>) -> Result<&'a [u8]> {
        match value {
            LeafValue::Inline(v) => Ok(v),
            LeafValue::Spilled { at, len, key } => match self.spilled_value(at, len)?.get(key..) {
                Some(v) => Ok(v),
                None => corrupted(at.page(), "long key longer than its place"),
            },
        }
    }

    /// The whole key and the value of a leaf entry as `Node::entry` reads
    /// it: a long key's bytes and its value's read from their one place.
    #[inline(always)]
    fn entry(&self, key: &'a [u8], value: LeafValue<'a>) -> Result<(&'a [u8], &'a [u8])> {
        match value {
            LeafValue::Spilled { at, len, key: n } if n > 0 => {
                match self.spilled_value(at, len)?.split_at_checked(n) {
                    Some(both) => Ok(both),
                    None => corrupted(at.page(), "long key longer than its place"),
                }
            }
            value => Ok((key, self.value(value)?)),
        }
    }

    /// The bytes of the long key `key`, which start its place.
    fn long_key_of(&self, key: LongKey) -> Result<&'a [u8]> {
        match self.spilled_value(key.at, key.blob)?.get(..key.len) {
            Some(k) => Ok(k),
            None => corrupted(key.at.page(), "long key longer than its place"),
        }
    }

    /// The `len` bytes of a value out of its leaf, at `at`.
    #[inline]
    fn spilled_value(&self, at: ValueRef, len: usize) -> Result<&'a [u8]> {
        match at {
            ValueRef::Run(page) => self.overflow_value(page, len),
            ValueRef::Packed { seg, off } => self.packed_value(seg, off, len),
        }
    }
}

/// Every view reads long keys as it reads values.
macro_rules! keys_of_view {
    ($($view:ident),*) => {$(
        impl Keys for $view<'_> {
            #[inline]
            fn long_key(&self, key: LongKey) -> Result<&[u8]> {
                self.long_key_of(key)
            }
        }
    )*};
}
keys_of_view!(MapView, DirtyView, View);
#[cfg(feature = "testing")]
keys_of_view!(SliceView);

/// Where a view's bytes lie: the one thing that tells the views apart. Only
/// the checked reads below call it.
trait Backing<'a>: Copy {
    fn page_size(&self) -> usize;
    /// The high-water mark: the view holds pages `2..end` and no other.
    fn end(&self) -> u64;
    /// The snapshot the view shows: no page of it was written by a later
    /// transaction.
    fn snapshot(&self) -> u64;
    /// `len` bytes from the start of page `id`. The caller has checked that
    /// the pages they span lie below `end`.
    fn bytes(&self, id: PageId, len: usize) -> Result<&'a [u8]>;
}

/// Whether the `n` pages from `id` lie in `2..end`: the one bounds check.
#[inline]
fn check_bounds(id: PageId, n: u64, end: u64) -> Result<()> {
    match id.checked_add(n) {
        Some(last) if id >= 2 && last <= end => Ok(()),
        _ => corrupted(id, "page id outside the snapshot"),
    }
}

/// Whether the page (or run) `page` at `id` was written no later than the
/// view's snapshot. A page written later is not the snapshot's: its slot was
/// reused, or the file was damaged or crafted. The writer relies on this
/// (DESIGN.md, "The page reuse rule"): a snapshot that reads a page is never
/// older than the transaction that wrote it.
#[inline]
fn check_writer(page: &[u8], id: PageId, snapshot: u64) -> Result<()> {
    if written_by(page) > snapshot {
        return corrupted(id, "page written after the snapshot that reaches it");
    }
    Ok(())
}

/// Page `id`, checked to lie in the view and to be no newer than it.
#[inline]
fn read_page<'a>(b: impl Backing<'a>, id: PageId) -> Result<&'a [u8]> {
    check_bounds(id, 1, b.end())?;
    let page = b.bytes(id, b.page_size())?;
    check_writer(page, id, b.snapshot())?;
    Ok(page)
}

/// The `len` value bytes of the overflow run at `id`: its header checked
/// against the value ([`run_len`]), the whole run checked to lie in the view.
#[inline]
fn read_overflow<'a>(b: impl Backing<'a>, id: PageId, len: usize) -> Result<&'a [u8]> {
    let run = run_len(read_page(b, id)?, id, len, b.page_size())?;
    check_bounds(id, run, b.end())?;
    // The run holds the value (checked above), so this cannot wrap; the
    // length came from a cell all the same.
    let Some(end) = OVERFLOW_DATA.checked_add(len) else {
        return corrupted(id, "overflow value too long");
    };
    Ok(&b.bytes(id, end)?[OVERFLOW_DATA..])
}

/// The `len` value bytes `off` bytes into the value segment at `seg`: the
/// segment's header read as a page of the view (so no newer than it), the
/// whole segment checked to lie in the view, and the value inside it, past
/// its header.
#[inline]
fn read_packed<'a>(b: impl Backing<'a>, seg: PageId, off: u32, len: usize) -> Result<&'a [u8]> {
    let pages = segment_run(read_page(b, seg)?, seg)?;
    check_bounds(seg, pages, b.end())?;
    let start = off as usize;
    let end = start.checked_add(len);
    let room = usize::try_from(pages)
        .ok()
        .and_then(|n| n.checked_mul(b.page_size()));
    match (end, room) {
        (Some(end), Some(room)) if start >= SEGMENT_DATA && end <= room => {
            Ok(&b.bytes(seg, end)?[start..])
        }
        _ => corrupted(seg, "packed value outside its segment"),
    }
}

/// The `n` whole pages from `id`, checked to lie in the view and, by the
/// header of the first, to be no newer than it.
#[inline]
fn read_run<'a>(b: impl Backing<'a>, id: PageId, n: u64) -> Result<&'a [u8]> {
    check_bounds(id, n, b.end())?;
    let len = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(b.page_size()));
    let run = match len {
        Some(len) => b.bytes(id, len)?,
        None => return corrupted(id, "page run too long"),
    };
    check_writer(run, id, b.snapshot())?;
    Ok(run)
}

/// The length in pages of the overflow run at `id`, read from `first`, its
/// first page, and checked to hold a value of `len` bytes. The one check of a
/// run's header: reads, the checker and freeing a run all go through it.
#[inline]
pub(crate) fn run_len(first: &[u8], id: PageId, len: usize, page_size: usize) -> Result<u64> {
    let run = overflow_run(first, id)?;
    // Exactly as long as its value needs, as the writer makes every run: a
    // longer one would have freeing the run free pages beyond it.
    if run != overflow_pages(len, page_size) {
        return corrupted(id, "overflow run not the length of its value");
    }
    Ok(run)
}

/// The committed pages of a snapshot, read from a map that covers them.
#[derive(Clone, Copy)]
pub(crate) struct MapView<'a> {
    pager: &'a Pager,
    map: &'a Map,
    /// The snapshot's high-water mark: no page at or above it belongs to it.
    high_water: u64,
    /// The snapshot's transaction: no page of it was written later.
    snapshot: u64,
}

impl<'a> MapView<'a> {
    /// The snapshot of transaction `snapshot`, with high-water mark
    /// `high_water`, read through `map` (which [`Pager::map_for`] made cover
    /// it).
    pub(crate) fn new(
        pager: &'a Pager,
        map: &'a Map,
        high_water: u64,
        snapshot: u64,
    ) -> MapView<'a> {
        MapView {
            pager,
            map,
            high_water,
            snapshot,
        }
    }

    /// The snapshot's high-water mark.
    pub(crate) fn high_water(&self) -> u64 {
        self.high_water
    }
}

impl<'a> Backing<'a> for MapView<'a> {
    #[inline]
    fn page_size(&self) -> usize {
        self.pager.page_size()
    }

    #[inline]
    fn end(&self) -> u64 {
        self.high_water
    }

    #[inline]
    fn snapshot(&self) -> u64 {
        self.snapshot
    }

    #[inline]
    fn bytes(&self, id: PageId, len: usize) -> Result<&'a [u8]> {
        self.pager.bytes(self.map, id, len)
    }
}

impl<'a> PageSource<'a> for MapView<'a> {
    #[inline]
    fn page(&self, id: PageId) -> Result<&'a [u8]> {
        read_page(*self, id)
    }

    fn overflow_value(&self, id: PageId, len: usize) -> Result<&'a [u8]> {
        read_overflow(*self, id, len)
    }

    fn packed_value(&self, seg: PageId, off: u32, len: usize) -> Result<&'a [u8]> {
        read_packed(*self, seg, off, len)
    }

    fn run_bytes(&self, id: PageId, n: u64) -> Result<&'a [u8]> {
        read_run(*self, id, n)
    }
}

/// The pages of a snapshot held in a byte slice (a whole file image).
#[cfg(feature = "testing")]
#[derive(Clone, Copy)]
pub(crate) struct SliceView<'a> {
    image: &'a [u8],
    page_size: usize,
    high_water: u64,
    snapshot: u64,
}

#[cfg(feature = "testing")]
impl<'a> SliceView<'a> {
    pub(crate) fn new(
        image: &'a [u8],
        page_size: usize,
        high_water: u64,
        snapshot: u64,
    ) -> SliceView<'a> {
        SliceView {
            image,
            page_size,
            high_water,
            snapshot,
        }
    }
}

#[cfg(feature = "testing")]
impl<'a> Backing<'a> for SliceView<'a> {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn end(&self) -> u64 {
        self.high_water
    }

    fn snapshot(&self) -> u64 {
        self.snapshot
    }

    /// The image may be shorter than its meta claims.
    fn bytes(&self, id: PageId, len: usize) -> Result<&'a [u8]> {
        let start = usize::try_from(id)
            .ok()
            .and_then(|id| id.checked_mul(self.page_size));
        let range = start.and_then(|start| Some(start..start.checked_add(len)?));
        match range.and_then(|range| self.image.get(range)) {
            Some(bytes) => Ok(bytes),
            None => corrupted(id, "page id outside the snapshot"),
        }
    }
}

#[cfg(feature = "testing")]
impl<'a> PageSource<'a> for SliceView<'a> {
    fn page(&self, id: PageId) -> Result<&'a [u8]> {
        read_page(*self, id)
    }

    fn overflow_value(&self, id: PageId, len: usize) -> Result<&'a [u8]> {
        read_overflow(*self, id, len)
    }

    fn packed_value(&self, seg: PageId, off: u32, len: usize) -> Result<&'a [u8]> {
        read_packed(*self, seg, off, len)
    }

    fn run_bytes(&self, id: PageId, n: u64) -> Result<&'a [u8]> {
        read_run(*self, id, n)
    }
}

/// One of the write transaction's dirty buffers: a page, or a whole overflow
/// run under its first page. Read only from the start of that page.
#[derive(Clone, Copy)]
struct Buffer<'a> {
    buf: &'a [u8],
    page_size: usize,
    /// The transaction's high-water mark; every buffer lies below it.
    high_water: u64,
}

impl<'a> Backing<'a> for Buffer<'a> {
    #[inline]
    fn page_size(&self) -> usize {
        self.page_size
    }

    #[inline]
    fn end(&self) -> u64 {
        self.high_water
    }

    /// The transaction's own pages, stamped by it.
    #[inline]
    fn snapshot(&self) -> u64 {
        u64::MAX
    }

    #[inline]
    fn bytes(&self, id: PageId, len: usize) -> Result<&'a [u8]> {
        match self.buf.get(..len) {
            Some(bytes) => Ok(bytes),
            None => corrupted(id, "read past the end of a dirty buffer"),
        }
    }
}

impl<'a> Buffer<'a> {
    /// The buffer as a run of `n` pages: exactly its length, or corruption.
    fn run(self, id: PageId, n: u64) -> Result<&'a [u8]> {
        let bytes = read_run(self, id, n)?;
        if bytes.len() != self.buf.len() {
            return corrupted(id, "run length differs from the dirty buffer");
        }
        Ok(bytes)
    }
}

/// Reads as the running write transaction sees it: the dirty buffers of one
/// partition (see `Dirty`), then the snapshot it started from.
///
/// A failed transaction's view refuses every read with `Error::TxnFailed`:
/// its pages may hold a half-applied change. The view borrows the
/// partition's buffers, so they cannot change while it lives; the
/// transaction can still fail through another partition, so the flag is
/// read at every read.
#[derive(Clone, Copy)]
pub(crate) struct DirtyView<'a> {
    base: MapView<'a>,
    bufs: &'a PageMap<Box<[u8]>>,
    /// High-water mark including the transaction's allocations.
    high_water: u64,
    failed: &'a AtomicBool,
}

impl<'a> DirtyView<'a> {
    pub(crate) fn new(
        base: MapView<'a>,
        bufs: &'a PageMap<Box<[u8]>>,
        high_water: u64,
        failed: &'a AtomicBool,
    ) -> DirtyView<'a> {
        DirtyView {
            base,
            bufs,
            high_water,
            failed,
        }
    }

    #[inline]
    fn live(&self) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Error::TxnFailed);
        }
        Ok(())
    }

    /// The dirty buffer starting at page `id`, if the transaction wrote one.
    #[inline]
    fn buffer(&self, id: PageId) -> Option<Buffer<'a>> {
        self.bufs.get(&id).map(|buf| Buffer {
            buf,
            page_size: self.base.page_size(),
            high_water: self.high_water,
        })
    }
}

impl<'a> PageSource<'a> for DirtyView<'a> {
    // Forced: the writer's descent reads every level through here (see
    // `TxnPages::page`).
    #[inline(always)]
    fn page(&self, id: PageId) -> Result<&'a [u8]> {
        self.live()?;
        match self.buffer(id) {
            Some(buf) => read_page(buf, id),
            None => self.base.page(id),
        }
    }

    fn overflow_value(&self, id: PageId, len: usize) -> Result<&'a [u8]> {
        self.live()?;
        match self.buffer(id) {
            Some(buf) => read_overflow(buf, id, len),
            None => self.base.overflow_value(id, len),
        }
    }

    fn packed_value(&self, seg: PageId, off: u32, len: usize) -> Result<&'a [u8]> {
        self.live()?;
        match self.buffer(seg) {
            Some(buf) => read_packed(buf, seg, off, len),
            None => self.base.packed_value(seg, off, len),
        }
    }

    fn run_bytes(&self, id: PageId, n: u64) -> Result<&'a [u8]> {
        self.live()?;
        match self.buffer(id) {
            Some(buf) => buf.run(id, n),
            None => self.base.run_bytes(id, n),
        }
    }
}

/// Where a table's pages are read from: a snapshot in the map, or the running
/// write transaction.
#[derive(Clone, Copy)]
pub(crate) enum View<'a> {
    Map(MapView<'a>),
    Dirty(DirtyView<'a>),
}

impl View<'_> {
    /// `Err(TxnFailed)` once the write transaction read through has failed
    /// (a snapshot never fails): cursors and ranges ask at every step, as
    /// an entry of a page they hold needs no read.
    #[inline]
    pub(crate) fn live(&self) -> Result<()> {
        match self {
            View::Map(_) => Ok(()),
            View::Dirty(d) => d.live(),
        }
    }
}

impl<'a> PageSource<'a> for View<'a> {
    #[inline]
    fn page(&self, id: PageId) -> Result<&'a [u8]> {
        match self {
            View::Map(m) => m.page(id),
            View::Dirty(d) => d.page(id),
        }
    }

    fn overflow_value(&self, id: PageId, len: usize) -> Result<&'a [u8]> {
        match self {
            View::Map(m) => m.overflow_value(id, len),
            View::Dirty(d) => d.overflow_value(id, len),
        }
    }

    fn packed_value(&self, seg: PageId, off: u32, len: usize) -> Result<&'a [u8]> {
        match self {
            View::Map(m) => m.packed_value(seg, off, len),
            View::Dirty(d) => d.packed_value(seg, off, len),
        }
    }

    fn run_bytes(&self, id: PageId, n: u64) -> Result<&'a [u8]> {
        match self {
            View::Map(m) => m.run_bytes(id, n),
            View::Dirty(d) => d.run_bytes(id, n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dirty buffer is a page or a whole run: reading it as a run of any
    /// other length is corruption, as it is in the map (where the run's
    /// header is checked), not a prefix or a read past it.
    #[test]
    fn a_dirty_buffer_reads_only_as_its_whole_run() {
        let bytes = vec![0u8; 3 * 512];
        let buf = Buffer {
            buf: &bytes,
            page_size: 512,
            high_water: 100,
        };
        assert_eq!(buf.run(10, 3).unwrap().len(), 3 * 512);
        for n in [1, 2, 4] {
            assert!(buf.run(10, n).is_err(), "{n} pages of a 3-page buffer");
        }
    }
}
