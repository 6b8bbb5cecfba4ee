//! The meta page: the root of everything, written last by each commit.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::heap::{HeapDesc, HeapRaw};
use super::page::{MAX_PAGE_SIZE, MIN_PAGE_SIZE, PageId};

/// Version of the on-disk format; bumped whenever the bytes change.
pub(crate) const FORMAT_VERSION: u32 = 8;

/// First eight bytes of each meta slot.
pub(crate) const MAGIC: [u8; 8] = *b"larch\0db";

/// Bytes of the fixed part of a meta slot; the seal list follows.
pub(crate) const META_HEADER: usize = size_of::<MetaRaw>();

/// The highest transaction id a meta may carry. Ids grow by one per commit,
/// so no file reaches it (2^62 commits take over 100,000 years at a million a
/// second); a meta above it is invalid, and no commit goes past it. So the
/// next transaction's id, and every sum of ids, stays far from wrapping.
pub(crate) const MAX_TXN_ID: u64 = 1 << 62;

/// Meta flag: the commit's pages were durable before this meta was written,
/// so recovery trusts them without reading them (the seal list is empty).
pub(crate) const FLAG_PAGES_SYNCED: u32 = 1;

/// One entry of a meta's seal list: a buffer the commit wrote (a page, or a
/// whole overflow run) and the crc32 it must have.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct SealEntry {
    pub page: U64,
    /// Pages the buffer spans (1, or the length of an overflow run).
    pub pages: U32,
    /// crc32 of the buffer with its header's checksum field read as zero.
    pub checksum: U32,
}

/// How many seal entries fit in a meta slot of `page_size` bytes: the largest
/// commit that may be made durable with a single sync.
pub(crate) fn seal_capacity(page_size: usize) -> usize {
    (page_size - META_HEADER) / size_of::<SealEntry>()
}

/// A table descriptor as stored: in the catalog for tables, in the meta for the
/// catalog itself.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct DescRaw {
    root: U64,
    entries: U64,
    depth: U32,
    flags: U32,
}

pub(crate) const DESC_SIZE: usize = size_of::<DescRaw>();

/// The most levels a descriptor may state, and so the deepest tree a descent
/// accepts. Trees this deep cannot exist (each branch holds at least two
/// children), so the bound only stops cycles and crafted depths.
pub(crate) const MAX_DEPTH: usize = 64;

/// Where a tree lives and how big it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TableDesc {
    /// Root page, 0 for an empty tree.
    pub root: PageId,
    /// Number of keys.
    pub entries: u64,
    /// Levels: 0 when empty, 1 for a single leaf.
    pub depth: u32,
}

impl TableDesc {
    pub(crate) fn encode(&self) -> [u8; DESC_SIZE] {
        self.encode_with(0)
    }

    /// The descriptor with `flags` (`format::catalog`'s, for a table).
    pub(crate) fn encode_with(&self, flags: u32) -> [u8; DESC_SIZE] {
        let raw = DescRaw {
            root: U64::new(self.root),
            entries: U64::new(self.entries),
            depth: U32::new(self.depth),
            flags: U32::new(flags),
        };
        let mut out = [0u8; DESC_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Decodes a descriptor; `None` when the bytes cannot be one (wrong length,
    /// depth out of range, or root and depth disagreeing about emptiness).
    pub(crate) fn decode(bytes: &[u8]) -> Option<TableDesc> {
        let raw = DescRaw::read_from_bytes(bytes).ok()?;
        Self::from_raw(&raw)
    }

    /// [`decode`](TableDesc::decode), with the flags it leaves to the caller.
    pub(crate) fn decode_with_flags(bytes: &[u8]) -> Option<(TableDesc, u32)> {
        let raw = DescRaw::read_from_bytes(bytes).ok()?;
        Some((Self::from_raw(&raw)?, raw.flags.get()))
    }

    fn from_raw(raw: &DescRaw) -> Option<TableDesc> {
        let desc = TableDesc {
            root: raw.root.get(),
            entries: raw.entries.get(),
            depth: raw.depth.get(),
        };
        let consistent = (desc.root == 0) == (desc.depth == 0)
            && (desc.root != 0 || desc.entries == 0)
            && desc.depth as usize <= MAX_DEPTH;
        consistent.then_some(desc)
    }
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
struct MetaRaw {
    magic: [u8; 8],
    version: U32,
    page_size: U32,
    txn_id: U64,
    high_water: U64,
    freelist_head: U64,
    freelist_entries: U64,
    catalog: DescRaw,
    flags: U32,
    seal_len: U32,
    checksum: U32,
    reserved: U32,
    heap: HeapRaw,
}

/// Where the checksum sits in a meta slot.
pub(crate) const CHECKSUM_AT: usize = 80;

/// crc32 of a meta slot: its fixed part with the checksum field read as zero,
/// then `seal_len` seal entries. `None` when the entries run past `slot`.
pub(crate) fn meta_checksum(slot: &[u8], seal_len: usize) -> Option<u32> {
    let end = META_HEADER.checked_add(seal_len.checked_mul(size_of::<SealEntry>())?)?;
    let bytes = slot.get(..end)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..CHECKSUM_AT]);
    h.update(&[0; 4]);
    h.update(&bytes[CHECKSUM_AT + 4..]);
    Some(h.finalize())
}

/// The decoded contents of a meta slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub page_size: u32,
    pub txn_id: u64,
    /// High-water mark: every page id in use is below it.
    pub high_water: u64,
    pub freelist_head: PageId,
    pub freelist_entries: u64,
    pub catalog: TableDesc,
    /// The value heap: its segments' tree and totals.
    pub heap: HeapDesc,
}

/// How a meta slot vouches for the pages its commit wrote. It is the slot's
/// alone: the same snapshot may be sealed either way (a commit lists its
/// buffers; a copy, or a slot's twin, was synced whole).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seal<'s> {
    /// The pages were durable before the meta was written
    /// (`FLAG_PAGES_SYNCED`): recovery trusts them without reading them.
    Synced,
    /// Recovery takes the meta only when every listed buffer holds its
    /// checksum.
    Listed(&'s [SealEntry]),
}

impl<'s> Seal<'s> {
    /// The buffers recovery must check (none for `Synced`).
    pub(crate) fn entries(&self) -> &'s [SealEntry] {
        match *self {
            Seal::Synced => &[],
            Seal::Listed(entries) => entries,
        }
    }
}

/// Why a meta slot was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetaError {
    Short,
    Magic,
    Version,
    Checksum,
    PageSize,
    Geometry,
    Flags,
    TxnId,
    Slot,
}

impl MetaError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            MetaError::Short => "meta slot lies past the end of the file",
            MetaError::Magic => "not a larch database (bad magic)",
            MetaError::Version => "unsupported format version",
            MetaError::Checksum => "meta checksum mismatch",
            MetaError::PageSize => "invalid page size in meta",
            MetaError::Geometry => "meta points outside the file",
            MetaError::Flags => "meta flags or seal list invalid",
            MetaError::TxnId => "meta transaction id out of range",
            MetaError::Slot => "meta in the slot of the other parity",
        }
    }
}

impl Meta {
    /// Encodes the meta of a snapshot whose pages are durable
    /// (`Seal::Synced`).
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_sealed(Seal::Synced)
    }

    /// Encodes the meta followed by its seal list, if any, checksum included.
    /// The result fits a meta slot when the list holds at most
    /// `seal_capacity` entries.
    pub(crate) fn encode_sealed(&self, seal: Seal<'_>) -> Vec<u8> {
        let (flags, seal) = match seal {
            Seal::Synced => (FLAG_PAGES_SYNCED, &[][..]),
            Seal::Listed(entries) => (0, entries),
        };
        let raw = MetaRaw {
            magic: MAGIC,
            version: U32::new(FORMAT_VERSION),
            page_size: U32::new(self.page_size),
            txn_id: U64::new(self.txn_id),
            high_water: U64::new(self.high_water),
            freelist_head: U64::new(self.freelist_head),
            freelist_entries: U64::new(self.freelist_entries),
            catalog: DescRaw::read_from_bytes(&self.catalog.encode()).expect("descriptor size"),
            flags: U32::new(flags),
            seal_len: U32::new(seal.len() as u32),
            checksum: U32::new(0),
            reserved: U32::new(0),
            heap: self.heap.to_raw(),
        };
        let mut out = raw.as_bytes().to_vec();
        out.extend_from_slice(seal.as_bytes());
        let crc = meta_checksum(&out, seal.len()).expect("entries were just written");
        out[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// How a meta slot that `decode` accepted seals its commit (for any
    /// other bytes, an empty list).
    pub(crate) fn seal(slot: &[u8]) -> Seal<'_> {
        let Ok((raw, rest)) = MetaRaw::ref_from_prefix(slot) else {
            return Seal::Listed(&[]);
        };
        if raw.flags.get() == FLAG_PAGES_SYNCED {
            return Seal::Synced;
        }
        let entries = <[SealEntry]>::ref_from_prefix_with_elems(rest, raw.seal_len.get() as usize)
            .map(|(entries, _)| entries)
            .unwrap_or(&[]);
        Seal::Listed(entries)
    }

    /// Decodes and validates a meta slot (the bytes from the slot's start, up
    /// to one page) read from a file of `file_len` bytes.
    pub(crate) fn decode(bytes: &[u8], file_len: u64) -> Result<Meta, MetaError> {
        let Ok((raw, _)) = MetaRaw::ref_from_prefix(bytes) else {
            return Err(MetaError::Short);
        };
        if raw.magic != MAGIC {
            return Err(MetaError::Magic);
        }
        // The version comes first: where the checksum sits depends on it.
        if raw.version.get() != FORMAT_VERSION {
            return Err(MetaError::Version);
        }
        let seal_len = raw.seal_len.get();
        match meta_checksum(bytes, seal_len as usize) {
            Some(crc) if crc == raw.checksum.get() => {}
            Some(_) => return Err(MetaError::Checksum),
            None => return Err(MetaError::Short),
        }
        let page_size = raw.page_size.get();
        if !valid_page_size(page_size as usize) {
            return Err(MetaError::PageSize);
        }
        let flags = raw.flags.get();
        let pages_synced = flags == FLAG_PAGES_SYNCED;
        let fits = (seal_len as usize) <= seal_capacity(page_size as usize);
        if (flags & !FLAG_PAGES_SYNCED) != 0 || (pages_synced && seal_len != 0) || !fits {
            return Err(MetaError::Flags);
        }
        let catalog = TableDesc::from_raw(&raw.catalog).ok_or(MetaError::Geometry)?;
        let heap = HeapDesc::from_raw(&raw.heap).ok_or(MetaError::Geometry)?;
        let meta = Meta {
            page_size,
            txn_id: raw.txn_id.get(),
            high_water: raw.high_water.get(),
            freelist_head: raw.freelist_head.get(),
            freelist_entries: raw.freelist_entries.get(),
            catalog,
            heap,
        };
        if meta.txn_id > MAX_TXN_ID {
            return Err(MetaError::TxnId);
        }
        let in_file = meta.high_water >= 2
            && meta
                .high_water
                .checked_mul(u64::from(page_size))
                .is_some_and(|bytes| bytes <= file_len);
        let root_ok = |p: PageId| p == 0 || (2..meta.high_water).contains(&p);
        let roots_ok = [meta.catalog.root, meta.freelist_head, meta.heap.tree.root]
            .into_iter()
            .all(root_ok);
        if !in_file || !roots_ok {
            return Err(MetaError::Geometry);
        }
        // Entries lie in the snapshot, in strictly increasing page order and
        // without overlapping: recovery reads each page at most once.
        let mut next_free: PageId = 2;
        for e in Meta::seal(bytes).entries() {
            let (page, n) = (e.page.get(), u64::from(e.pages.get()));
            match page.checked_add(n) {
                Some(end) if n >= 1 && page >= 2 && end <= meta.high_water => {
                    if page < next_free {
                        return Err(MetaError::Flags);
                    }
                    next_free = end;
                }
                _ => return Err(MetaError::Geometry),
            }
        }
        Ok(meta)
    }
}

/// Whether `size` is an allowed page size.
pub(crate) fn valid_page_size(size: usize) -> bool {
    size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Meta {
        Meta {
            page_size: 4096,
            txn_id: 42,
            high_water: 10,
            freelist_head: 7,
            freelist_entries: 3,
            catalog: TableDesc {
                root: 5,
                entries: 2,
                depth: 1,
            },
            heap: HeapDesc {
                tree: TableDesc {
                    root: 6,
                    entries: 1,
                    depth: 1,
                },
                pages: 2,
                live: 5000,
            },
        }
    }

    fn entry(page: u64, pages: u32, checksum: u32) -> SealEntry {
        SealEntry {
            page: U64::new(page),
            pages: U32::new(pages),
            checksum: U32::new(checksum),
        }
    }

    #[test]
    fn layout_matches_design() {
        assert_eq!(size_of::<MetaRaw>(), 128);
        assert_eq!(size_of::<SealEntry>(), 16);
        assert_eq!(seal_capacity(4096), 248);
        assert_eq!(seal_capacity(512), 24);
        assert_eq!(DESC_SIZE, 24);
        let bytes = sample().encode();
        assert_eq!(&bytes[0..8], b"larch\0db");
        assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 4096);
        assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 42);
        assert_eq!(u64::from_le_bytes(bytes[48..56].try_into().unwrap()), 5);
        assert_eq!(u64::from_le_bytes(bytes[88..96].try_into().unwrap()), 6);
        assert_eq!(u64::from_le_bytes(bytes[112..120].try_into().unwrap()), 2);
        assert_eq!(
            u64::from_le_bytes(bytes[120..128].try_into().unwrap()),
            5000
        );
        let bytes = sample().encode_sealed(Seal::Listed(&[entry(3, 2, 0xabcd)]));
        assert_eq!(bytes.len(), 144);
        assert_eq!(u32::from_le_bytes(bytes[76..80].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(bytes[128..136].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(bytes[136..140].try_into().unwrap()), 2);
    }

    #[test]
    fn seal_round_trip() {
        let m = sample();
        let seal = [entry(2, 1, 7), entry(8, 2, 9)];
        let bytes = m.encode_sealed(Seal::Listed(&seal));
        let got = Meta::decode(&bytes, 10 * 4096).unwrap();
        assert_eq!(got, m);
        assert_eq!(Meta::seal(&bytes), Seal::Listed(&seal));
        // A synced meta reads back as one, with nothing to check.
        let synced = m.encode();
        assert_eq!(Meta::decode(&synced, 10 * 4096), Ok(m));
        assert_eq!(Meta::seal(&synced), Seal::Synced);
        // Every flipped bit of the list is caught by the checksum.
        for bit in 0..(bytes.len() * 8) {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Meta::decode(&b, 10 * 4096).is_err(), "bit {bit} accepted");
        }
        // A list cut short by the end of the slot is rejected.
        assert_eq!(
            Meta::decode(&bytes[..bytes.len() - 1], 10 * 4096),
            Err(MetaError::Short)
        );
        // Entries must lie inside the snapshot.
        let bad = m.encode_sealed(Seal::Listed(&[entry(2, 1, 7), entry(9, 2, 9)]));
        assert_eq!(Meta::decode(&bad, 10 * 4096), Err(MetaError::Geometry));
        // A synced commit carries no list: the flag set beside a list (the
        // checksum made to match) is refused.
        let mut both = bytes.clone();
        both[72..76].copy_from_slice(&FLAG_PAGES_SYNCED.to_le_bytes());
        let crc = meta_checksum(&both, seal.len()).unwrap();
        both[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Meta::decode(&both, 10 * 4096), Err(MetaError::Flags));
    }

    #[test]
    fn seal_entries_must_increase_without_overlap() {
        let decode = |seal: &[SealEntry]| {
            let mut m = sample();
            m.high_water = 20;
            Meta::decode(&m.encode_sealed(Seal::Listed(seal)), 20 * 4096)
        };
        // Adjacent entries, and gaps between them, are what commits write.
        assert!(decode(&[entry(2, 1, 7), entry(3, 4, 8), entry(7, 1, 9)]).is_ok());
        assert!(decode(&[entry(2, 1, 7), entry(9, 2, 8), entry(19, 1, 9)]).is_ok());
        // A page listed twice, a run overlapping the next entry, entries out
        // of order: each would make recovery read pages more than once.
        for bad in [
            &[entry(5, 1, 7), entry(5, 1, 7)][..],
            &[entry(2, 1, 7), entry(5, 3, 8), entry(7, 1, 9)],
            &[entry(2, 18, 7), entry(2, 18, 7), entry(2, 18, 7)],
            &[entry(2, 4, 7), entry(3, 1, 8)],
            &[entry(9, 1, 7), entry(4, 1, 8)],
            &[entry(2, 1, 7), entry(6, 1, 8), entry(4, 1, 9)],
        ] {
            assert_eq!(decode(bad), Err(MetaError::Flags), "{bad:?}");
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Meta::decode(&m.encode(), 10 * 4096), Ok(m));
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let bytes = sample().encode();
        for bit in 0..(size_of::<MetaRaw>() * 8) {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Meta::decode(&b, 10 * 4096).is_err(), "bit {bit} accepted");
        }
    }

    #[test]
    fn geometry_is_checked() {
        let m = sample();
        assert_eq!(
            Meta::decode(&m.encode(), 9 * 4096),
            Err(MetaError::Geometry)
        );
        let mut bad = m;
        bad.catalog.root = 10;
        assert_eq!(
            Meta::decode(&bad.encode(), 10 * 4096),
            Err(MetaError::Geometry)
        );
        let mut bad = m;
        bad.heap.tree.root = 10;
        assert_eq!(
            Meta::decode(&bad.encode(), 10 * 4096),
            Err(MetaError::Geometry)
        );
        // An empty heap has no totals.
        let mut bad = m;
        bad.heap.tree = TableDesc::default();
        assert_eq!(
            Meta::decode(&bad.encode(), 10 * 4096),
            Err(MetaError::Geometry)
        );
        let mut bad = m;
        bad.page_size = 3000;
        assert_eq!(
            Meta::decode(&bad.encode(), 1 << 20),
            Err(MetaError::PageSize)
        );
        assert_eq!(Meta::decode(&[0u8; 40], 1 << 20), Err(MetaError::Short));
        // Transaction ids stop at MAX_TXN_ID.
        for (id, ok) in [
            (MAX_TXN_ID - 1, true),
            (MAX_TXN_ID, true),
            (MAX_TXN_ID + 1, false),
            (u64::MAX - 1, false),
            (u64::MAX, false),
        ] {
            let mut m = sample();
            m.txn_id = id;
            let got = Meta::decode(&m.encode(), 10 * 4096);
            assert_eq!(got, if ok { Ok(m) } else { Err(MetaError::TxnId) }, "{id}");
        }
        // A meta of format 1 (checksum at 72, nothing after) reads as an
        // unsupported version, not as a damaged meta.
        let mut old = sample().encode();
        old[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(Meta::decode(&old, 10 * 4096), Err(MetaError::Version));
    }
}
