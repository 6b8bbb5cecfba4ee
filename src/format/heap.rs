//! The value heap: where values too long to stay in their leaf but short
//! enough to share pages are packed (value segments), the tree that counts
//! what each segment still holds, and the limits that decide where a value
//! goes.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::meta::{DescRaw, TableDesc};
use super::page::{OVERFLOW_DATA, PageId};

/// Pages a transaction takes for a new value segment; what it does not fill
/// goes back to the free list when the segment is closed.
pub(crate) const SEGMENT_PAGES: u64 = 64;

/// The longest a segment grows: a value that starts in its first
/// `SEGMENT_PAGES` pages may run on past them, when the pages after the
/// segment are the end of the file.
pub(crate) const SEGMENT_MAX_PAGES: u64 = SEGMENT_PAGES + PACK_PAGES;

/// A value is packed into a segment when the run of its own would span at
/// most this many pages; a longer one gets its own overflow run, whose last
/// page wastes less than a thirty-second of it.
pub(crate) const PACK_PAGES: u64 = 32;

/// Offset of the first value in a segment (after the run header).
pub(crate) const SEGMENT_DATA: usize = OVERFLOW_DATA;

/// Whether a value of `len` bytes that does not stay inline is packed into
/// a segment (rather than given an overflow run of its own).
pub(crate) fn packs(len: usize, page_size: usize) -> bool {
    (SEGMENT_DATA as u64 + len as u64) <= PACK_PAGES * page_size as u64
}

/// The heap's tree and totals, as the meta stores them.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct HeapRaw {
    pub tree: DescRaw,
    pub pages: U64,
    pub live: U64,
}

/// The heap of a snapshot: the tree of its segments (keyed by first page)
/// and two totals over them, so the commit can tell how much of the heap is
/// dead without walking it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeapDesc {
    pub tree: TableDesc,
    /// Pages of all segments.
    pub pages: u64,
    /// Bytes of all live values in them.
    pub live: u64,
}

impl HeapDesc {
    pub(crate) fn to_raw(self) -> HeapRaw {
        HeapRaw {
            tree: DescRaw::read_from_bytes(&self.tree.encode()).expect("descriptor size"),
            pages: U64::new(self.pages),
            live: U64::new(self.live),
        }
    }

    /// `None` when the tree's descriptor is inconsistent, or the totals
    /// disagree with an empty tree.
    pub(crate) fn from_raw(raw: &HeapRaw) -> Option<HeapDesc> {
        let heap = HeapDesc {
            tree: TableDesc::decode(raw.tree.as_bytes())?,
            pages: raw.pages.get(),
            live: raw.live.get(),
        };
        let empty = heap.tree.root == 0;
        (!empty || (heap.pages == 0 && heap.live == 0)).then_some(heap)
    }
}

/// Key of a segment in the heap tree: its first page, big-endian, so the
/// tree is in page order.
pub(crate) fn segment_key(first: PageId) -> [u8; 8] {
    first.to_be_bytes()
}

/// The first page a heap-tree key names; `None` for a key of another length.
pub(crate) fn segment_of_key(key: &[u8]) -> Option<PageId> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
struct SegmentRaw {
    pages: U32,
    values: U32,
    live: U64,
}

/// Bytes of a heap-tree value.
pub(crate) const SEGMENT_ENTRY: usize = size_of::<SegmentRaw>();

/// What the heap tree records of one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Pages of the segment (its header says the same).
    pub pages: u64,
    /// Live values in it: leaf cells that refer to it.
    pub values: u64,
    /// Their bytes.
    pub live: u64,
}

impl Segment {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_ENTRY] {
        let raw = SegmentRaw {
            pages: U32::new(self.pages as u32),
            values: U32::new(self.values as u32),
            live: U64::new(self.live),
        };
        let mut out = [0u8; SEGMENT_ENTRY];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// `None` for bytes that cannot be an entry: the wrong length, no pages
    /// or more than `SEGMENT_MAX_PAGES`, no values, or more live bytes than the
    /// segment holds.
    pub(crate) fn decode(bytes: &[u8], page_size: usize) -> Option<Segment> {
        let raw = SegmentRaw::read_from_bytes(bytes).ok()?;
        let seg = Segment {
            pages: u64::from(raw.pages.get()),
            values: u64::from(raw.values.get()),
            live: raw.live.get(),
        };
        let room = (seg.pages * page_size as u64).checked_sub(SEGMENT_DATA as u64)?;
        let fits = (1..=SEGMENT_MAX_PAGES).contains(&seg.pages) && seg.live <= room;
        (fits && seg.values >= 1).then_some(seg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_entry_round_trip_and_bounds() {
        let s = Segment {
            pages: 3,
            values: 7,
            live: 3 * 4096 - 24,
        };
        assert_eq!(Segment::decode(&s.encode(), 4096), Some(s));
        let over = Segment {
            live: s.live + 1,
            ..s
        };
        assert_eq!(Segment::decode(&over.encode(), 4096), None);
        let none = Segment { values: 0, ..s };
        assert_eq!(Segment::decode(&none.encode(), 4096), None);
        let long = Segment {
            pages: SEGMENT_MAX_PAGES + 1,
            ..s
        };
        assert_eq!(Segment::decode(&long.encode(), 4096), None);
        let empty = Segment {
            pages: 0,
            live: 0,
            ..s
        };
        assert_eq!(Segment::decode(&empty.encode(), 4096), None);
        assert_eq!(Segment::decode(&s.encode()[..15], 4096), None);
    }

    #[test]
    fn packing_limit_is_thirty_two_pages() {
        assert!(packs(32 * 4096 - 24, 4096));
        assert!(!packs(32 * 4096 - 23, 4096));
        assert_eq!(segment_of_key(&segment_key(0x0102)), Some(0x0102));
    }
}
