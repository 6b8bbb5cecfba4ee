//! The header every non-meta page starts with, and the overflow and free-list
//! page layouts.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Result, corrupted};

/// A page number; page `n` starts at byte `n * page_size`.
pub(crate) type PageId = u64;

/// Hashes page ids by multiplication: they are already well spread integers,
/// and the writer's maps and sets of them are on every write path.
#[derive(Default)]
pub(crate) struct PageIdHasher(u64);

impl Hasher for PageIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

/// A set of page ids, hashed by [`PageIdHasher`].
pub(crate) type PageSet = HashSet<PageId, BuildHasherDefault<PageIdHasher>>;

/// A map keyed by page id, hashed by [`PageIdHasher`].
pub(crate) type PageMap<V> = HashMap<PageId, V, BuildHasherDefault<PageIdHasher>>;

/// Smallest and largest page sizes the format allows.
pub(crate) const MIN_PAGE_SIZE: usize = 512;
pub(crate) const MAX_PAGE_SIZE: usize = 65536;

/// Page kinds (the header's first byte).
pub(crate) const KIND_BRANCH: u8 = 1;
pub(crate) const KIND_LEAF: u8 = 2;
pub(crate) const KIND_OVERFLOW: u8 = 3;
pub(crate) const KIND_FREELIST: u8 = 4;
pub(crate) const KIND_SEGMENT: u8 = 5;
pub(crate) const KIND_FREEDIR: u8 = 6;

/// The header of every branch, leaf, overflow and free-list page.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct PageHeader {
    /// One of the `KIND_*` constants.
    pub kind: u8,
    /// Reserved, 0.
    pub flags: u8,
    /// Entries on the page (cells of a node, ids of a free-list page).
    pub count: U16,
    /// crc32 of the page (of the whole run, for an overflow run) with this
    /// field read as zero; stamped when the page is written.
    pub checksum: U32,
    /// Transaction that wrote the page.
    pub txn_id: U64,
}

/// crc32 of a page or overflow run, its header's checksum field read as zero.
pub(crate) fn page_checksum(buf: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[..4]);
    h.update(&[0; 4]);
    h.update(&buf[8..]);
    h.finalize()
}

/// The checksum a page or run's header claims.
pub(crate) fn stored_checksum(buf: &[u8]) -> u32 {
    u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]])
}

/// Stamps the checksum of the page or run in `buf` into its header and
/// returns it.
pub(crate) fn stamp_checksum(buf: &mut [u8]) -> u32 {
    let crc = page_checksum(buf);
    header_mut(buf).checksum = U32::new(crc);
    crc
}

/// The transaction that wrote the page (or the run) starting with `page`,
/// from its header; 0 for a slice too short to hold one.
#[inline]
pub(crate) fn written_by(page: &[u8]) -> u64 {
    match page.get(8..16) {
        Some(b) => u64::from_le_bytes(b.try_into().expect("eight bytes")),
        None => 0,
    }
}

/// Mutable access to the common header of a page buffer.
pub(crate) fn header_mut(page: &mut [u8]) -> &mut PageHeader {
    // Page buffers are always at least MIN_PAGE_SIZE long.
    PageHeader::mut_from_prefix(page)
        .expect("page buffer holds a header")
        .0
}

/// Header of the first page of an overflow run: the common header, then the
/// number of pages in the run. The value follows at `OVERFLOW_DATA`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct OverflowHeader {
    pub page: PageHeader,
    /// Pages in the run, this one included.
    pub pages: U32,
    /// Reserved, 0.
    pub reserved: U32,
}

/// Offset of the value in the first page of an overflow run.
pub(crate) const OVERFLOW_DATA: usize = size_of::<OverflowHeader>();

/// Pages needed for an overflow run holding `len` bytes (a length read from
/// a cell: computed in `u64`, so it cannot wrap where `usize` is 32 bits).
pub(crate) fn overflow_pages(len: usize, page_size: usize) -> u64 {
    (OVERFLOW_DATA as u64 + len as u64).div_ceil(page_size as u64)
}

/// Writes the header of an overflow run of `pages` pages into `buf`.
pub(crate) fn init_overflow(buf: &mut [u8], pages: u32, txn_id: u64) {
    init_run(buf, KIND_OVERFLOW, pages, txn_id);
}

/// Writes the header of a value segment of `pages` pages into `buf`: the
/// overflow run's header, kind `KIND_SEGMENT`.
pub(crate) fn init_segment(buf: &mut [u8], pages: u32, txn_id: u64) {
    init_run(buf, KIND_SEGMENT, pages, txn_id);
}

/// Sets the length in pages of the run (or segment) whose header `buf` holds.
pub(crate) fn set_run_pages(buf: &mut [u8], pages: u32) {
    let (h, _) = OverflowHeader::mut_from_prefix(buf).expect("page buffer holds a header");
    h.pages = U32::new(pages);
}

fn init_run(buf: &mut [u8], kind: u8, pages: u32, txn_id: u64) {
    let (h, _) = OverflowHeader::mut_from_prefix(buf).expect("page buffer holds a header");
    *h = OverflowHeader {
        page: PageHeader {
            kind,
            flags: 0,
            count: U16::new(0),
            checksum: U32::new(0),
            txn_id: U64::new(txn_id),
        },
        pages: U32::new(pages),
        reserved: U32::new(0),
    };
}

/// Reads the header of an overflow run starting at page `id` and returns its
/// length in pages.
pub(crate) fn overflow_run(page: &[u8], id: PageId) -> Result<u64> {
    run_pages(page, id, KIND_OVERFLOW, "expected an overflow page")
}

/// Reads the header of a value segment starting at page `id` and returns
/// its length in pages.
pub(crate) fn segment_run(page: &[u8], id: PageId) -> Result<u64> {
    run_pages(page, id, KIND_SEGMENT, "expected a value segment")
}

fn run_pages(page: &[u8], id: PageId, kind: u8, wrong: &'static str) -> Result<u64> {
    let Ok((h, _)) = OverflowHeader::ref_from_prefix(page) else {
        return corrupted(id, "overflow page shorter than its header");
    };
    if h.page.kind != kind {
        return corrupted(id, wrong);
    }
    let pages = u64::from(h.pages.get());
    if pages == 0 {
        return corrupted(id, "overflow run of zero pages");
    }
    Ok(pages)
}

/// Header of a free-list page (a leaf of the list, or a page of its
/// directory): the common header, then the next page of the directory
/// chain (0 in a leaf). A leaf's `count` entries of `FreeEntry` follow, a
/// directory page's `count` leaf ids.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct FreeListHeader {
    pub page: PageHeader,
    /// Next page of the chain, 0 at the end.
    pub next: U64,
}

/// One free-list entry: a free page, the transaction that freed it (0 when it
/// was already reusable) and the one that wrote it (0 when reusable). Only
/// snapshots `written_by..freed_by` reach a pending page.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct FreeEntry {
    pub freed_by: U64,
    pub written_by: U64,
    pub page: U64,
}

const FREELIST_ENTRIES: usize = size_of::<FreeListHeader>();

/// How many entries one free-list page holds.
pub(crate) fn freelist_capacity(page_size: usize) -> usize {
    (page_size - FREELIST_ENTRIES) / size_of::<FreeEntry>()
}

/// How many leaf ids one page of the free list's directory holds.
pub(crate) fn freedir_capacity(page_size: usize) -> usize {
    (page_size - FREELIST_ENTRIES) / size_of::<U64>()
}

/// Parses a leaf of the free list: returns its `next` (0 in a valid leaf)
/// and the entries.
pub(crate) fn read_freelist(page: &[u8], id: PageId) -> Result<(PageId, &[FreeEntry])> {
    read_list_page(page, id, KIND_FREELIST)
}

/// Parses a page of the free list (a leaf or a directory page, of `kind`):
/// its `next` and its `count` items, each checked to lie in the page.
fn read_list_page<T: FromBytes + KnownLayout + Immutable>(
    page: &[u8],
    id: PageId,
    kind: u8,
) -> Result<(PageId, &[T])> {
    let Ok((h, rest)) = FreeListHeader::ref_from_prefix(page) else {
        return corrupted(id, "free-list page shorter than its header");
    };
    if h.page.kind != kind {
        return corrupted(
            id,
            match kind {
                KIND_FREELIST => "expected a free-list leaf",
                _ => "expected a free-list directory page",
            },
        );
    }
    let count = usize::from(h.page.count.get());
    match <[T]>::ref_from_prefix_with_elems(rest, count) {
        Ok((items, _)) => Ok((h.next.get(), items)),
        Err(_) => corrupted(id, "free-list count runs past the page end"),
    }
}

/// Fills `buf` as a leaf of the free list holding `entries` (at most
/// `freelist_capacity`).
pub(crate) fn write_freelist(buf: &mut [u8], entries: &[FreeEntry], txn_id: u64) {
    fill_freelist(
        buf,
        KIND_FREELIST,
        0,
        entries.len(),
        entries.as_bytes(),
        txn_id,
    );
}

/// Parses a page of the free list's directory: returns the next page of
/// the directory and the leaf ids.
pub(crate) fn read_freedir(page: &[u8], id: PageId) -> Result<(PageId, &[U64])> {
    read_list_page(page, id, KIND_FREEDIR)
}

/// Fills `buf` as a page of the free list's directory holding `leaves` (at
/// most `freedir_capacity`) and pointing at `next`.
pub(crate) fn write_freedir(buf: &mut [u8], next: PageId, leaves: &[U64], txn_id: u64) {
    fill_freelist(
        buf,
        KIND_FREEDIR,
        next,
        leaves.len(),
        leaves.as_bytes(),
        txn_id,
    );
}

fn fill_freelist(buf: &mut [u8], kind: u8, next: PageId, count: usize, body: &[u8], txn: u64) {
    buf.fill(0);
    let (h, rest) = FreeListHeader::mut_from_prefix(buf).expect("page buffer holds a header");
    h.page.kind = kind;
    h.page.count = U16::new(count as u16);
    h.page.txn_id = U64::new(txn);
    h.next = U64::new(next);
    rest[..body.len()].copy_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_sixteen_bytes() {
        assert_eq!(size_of::<PageHeader>(), 16);
        assert_eq!(OVERFLOW_DATA, 24);
        assert_eq!(size_of::<FreeEntry>(), 24);
    }

    #[test]
    fn checksum_covers_everything_but_itself() {
        let mut buf = vec![0u8; 512];
        init_overflow(&mut buf, 1, 3);
        buf[300] = 9;
        let crc = stamp_checksum(&mut buf);
        assert_eq!(stored_checksum(&buf), crc);
        assert_eq!(page_checksum(&buf), crc);
        for at in (0..512).filter(|at| !(4..8).contains(at)) {
            let mut b = buf.clone();
            b[at] ^= 0x40;
            assert_ne!(page_checksum(&b), crc, "byte {at} not covered");
        }
    }

    #[test]
    fn freelist_round_trip() {
        let mut buf = vec![0u8; 512];
        let entries: Vec<FreeEntry> = (0..freelist_capacity(512) as u64)
            .map(|i| FreeEntry {
                freed_by: U64::new(i * 3),
                written_by: U64::new(i),
                page: U64::new(i + 2),
            })
            .collect();
        write_freelist(&mut buf, &entries, 9);
        let (next, got) = read_freelist(&buf, 5).unwrap();
        assert_eq!(next, 0);
        assert_eq!(got.len(), entries.len());
        assert_eq!(got[3].page.get(), 5);
        assert_eq!(got[3].freed_by.get(), 9);
        assert_eq!(got[3].written_by.get(), 3);
        assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), 9);
        // A leaf is not a directory page, nor the other way round.
        assert!(read_freedir(&buf, 5).is_err());
    }

    #[test]
    fn freedir_round_trip() {
        let mut buf = vec![0u8; 512];
        let ids: Vec<U64> = (0..freedir_capacity(512) as u64)
            .map(|i| U64::new(i + 2))
            .collect();
        write_freedir(&mut buf, 77, &ids, 9);
        let (next, got) = read_freedir(&buf, 5).unwrap();
        assert_eq!(next, 77);
        assert_eq!(got.len(), 61);
        assert_eq!(got[60].get(), 62);
        assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), 9);
        assert!(read_freelist(&buf, 5).is_err());
    }

    #[test]
    fn freelist_count_past_end_is_corrupted() {
        let mut buf = vec![0u8; 512];
        write_freelist(&mut buf, &[], 1);
        header_mut(&mut buf).count = U16::new(1000);
        assert!(matches!(
            read_freelist(&buf, 5),
            Err(crate::Error::Corrupted { page: 5, .. })
        ));
        write_freedir(&mut buf, 0, &[], 1);
        header_mut(&mut buf).count = U16::new(62);
        assert!(matches!(
            read_freedir(&buf, 5),
            Err(crate::Error::Corrupted { page: 5, .. })
        ));
    }

    #[test]
    fn overflow_header_checks_kind_and_length() {
        let mut buf = vec![0u8; 512];
        init_overflow(&mut buf, 3, 1);
        assert_eq!(overflow_run(&buf, 4).unwrap(), 3);
        buf[0] = KIND_LEAF;
        assert!(overflow_run(&buf, 4).is_err());
        assert_eq!(overflow_pages(0, 512), 1);
        assert_eq!(overflow_pages(488, 512), 1);
        assert_eq!(overflow_pages(489, 512), 2);
    }
}
