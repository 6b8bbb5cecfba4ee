//! The meta page: the root of everything, written last by each commit.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::page::{MAX_PAGE_SIZE, MIN_PAGE_SIZE, PageId};
use crate::btree::MAX_DEPTH;

/// Version of the on-disk format; bumped whenever the bytes change.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// First eight bytes of each meta slot.
pub(crate) const MAGIC: [u8; 8] = *b"larch\0db";

/// Bytes of a meta slot that are written: one sector.
pub(crate) const META_SIZE: usize = 512;

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
        let raw = DescRaw {
            root: U64::new(self.root),
            entries: U64::new(self.entries),
            depth: U32::new(self.depth),
            flags: U32::new(0),
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
    pages: U64,
    freelist_head: U64,
    freelist_entries: U64,
    catalog: DescRaw,
    checksum: U32,
}

const CHECKSUMMED: usize = size_of::<MetaRaw>() - 4;

/// The decoded contents of a meta slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub page_size: u32,
    pub txn_id: u64,
    /// High-water mark: every page id in use is below it.
    pub pages: u64,
    pub freelist_head: PageId,
    pub freelist_entries: u64,
    pub catalog: TableDesc,
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
        }
    }
}

impl Meta {
    /// Encodes the meta into one sector, checksum included.
    pub(crate) fn encode(&self) -> [u8; META_SIZE] {
        let mut raw = MetaRaw {
            magic: MAGIC,
            version: U32::new(FORMAT_VERSION),
            page_size: U32::new(self.page_size),
            txn_id: U64::new(self.txn_id),
            pages: U64::new(self.pages),
            freelist_head: U64::new(self.freelist_head),
            freelist_entries: U64::new(self.freelist_entries),
            catalog: DescRaw::read_from_bytes(&self.catalog.encode()).expect("descriptor size"),
            checksum: U32::new(0),
        };
        raw.checksum = U32::new(crc32fast::hash(&raw.as_bytes()[..CHECKSUMMED]));
        let mut out = [0u8; META_SIZE];
        out[..size_of::<MetaRaw>()].copy_from_slice(raw.as_bytes());
        out
    }

    /// Decodes and validates a meta slot read from a file of `file_len` bytes.
    pub(crate) fn decode(bytes: &[u8], file_len: u64) -> Result<Meta, MetaError> {
        let Ok((raw, _)) = MetaRaw::ref_from_prefix(bytes) else {
            return Err(MetaError::Short);
        };
        if raw.magic != MAGIC {
            return Err(MetaError::Magic);
        }
        if raw.checksum.get() != crc32fast::hash(&raw.as_bytes()[..CHECKSUMMED]) {
            return Err(MetaError::Checksum);
        }
        if raw.version.get() != FORMAT_VERSION {
            return Err(MetaError::Version);
        }
        let page_size = raw.page_size.get();
        if !valid_page_size(page_size as usize) {
            return Err(MetaError::PageSize);
        }
        let catalog = TableDesc::from_raw(&raw.catalog).ok_or(MetaError::Geometry)?;
        let meta = Meta {
            page_size,
            txn_id: raw.txn_id.get(),
            pages: raw.pages.get(),
            freelist_head: raw.freelist_head.get(),
            freelist_entries: raw.freelist_entries.get(),
            catalog,
        };
        let in_file = meta.pages >= 2
            && meta
                .pages
                .checked_mul(u64::from(page_size))
                .is_some_and(|bytes| bytes <= file_len);
        let root_ok = |p: PageId| p == 0 || (2..meta.pages).contains(&p);
        if !in_file || !root_ok(meta.catalog.root) || !root_ok(meta.freelist_head) {
            return Err(MetaError::Geometry);
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
            pages: 10,
            freelist_head: 7,
            freelist_entries: 3,
            catalog: TableDesc {
                root: 5,
                entries: 2,
                depth: 1,
            },
        }
    }

    #[test]
    fn layout_matches_design() {
        assert_eq!(size_of::<MetaRaw>(), 76);
        assert_eq!(DESC_SIZE, 24);
        let bytes = sample().encode();
        assert_eq!(&bytes[0..8], b"larch\0db");
        assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 4096);
        assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 42);
        assert_eq!(u64::from_le_bytes(bytes[48..56].try_into().unwrap()), 5);
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
            let mut b = bytes;
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
        bad.page_size = 3000;
        assert_eq!(
            Meta::decode(&bad.encode(), 1 << 20),
            Err(MetaError::PageSize)
        );
        assert_eq!(Meta::decode(&[0u8; 40], 1 << 20), Err(MetaError::Short));
    }
}
