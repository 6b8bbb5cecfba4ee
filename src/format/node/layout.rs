//! The node layout: the header of a branch or leaf page, its slot and cell
//! header sizes, and the size limits derived from them.

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::format::page::PageHeader;

/// Header of a branch or leaf page.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct NodeHeader {
    pub page: PageHeader,
    /// Offset of the first byte of the cell area.
    pub upper: U32,
    /// Reserved, 0.
    pub reserved: U32,
}

/// Offset of the slot array.
pub(crate) const NODE_HEADER_SIZE: usize = size_of::<NodeHeader>();
pub(super) const SLOT: usize = 2;
/// Leaf cell: flags, reserved, key_len u16, val_len u32.
pub(super) const LEAF_CELL_HEADER: usize = 8;
/// Branch cell: child u64, key_len u16.
pub(super) const BRANCH_CELL_HEADER: usize = 10;
/// Leaf cell flag: the value lives in an overflow run of its own.
pub(super) const FLAG_OVERFLOW: u8 = 1;
/// Leaf cell flag: the value is packed into a value segment.
pub(super) const FLAG_PACKED: u8 = 2;
/// Bytes of a packed value's reference: segment page `u64`, offset `u32`.
pub(super) const PACKED_REF: usize = 12;

/// Usable bytes of a node (slots and cells).
pub(crate) fn usable(page_size: usize) -> usize {
    page_size - NODE_HEADER_SIZE
}

/// The longest key a database of this page size accepts.
pub(crate) fn max_key(page_size: usize) -> usize {
    page_size / 4
}

/// Whether a value of `vlen` bytes under a key of `klen` bytes stays inline:
/// when its cell is at most a quarter of the node, or no larger than the
/// longest reference that would replace the value.
pub(crate) fn value_inline(klen: usize, vlen: usize, page_size: usize) -> bool {
    let inline = SLOT + LEAF_CELL_HEADER + klen + vlen;
    let spilled = SLOT + LEAF_CELL_HEADER + klen + PACKED_REF;
    inline <= (usable(page_size) / 4).max(spilled)
}

/// Bytes a branch's first cell costs once its key is dropped.
pub(crate) const BRANCH_HEAD_COST: usize = BRANCH_CELL_HEADER + SLOT;

/// Bytes a node loses to a cell of `len` bytes (its slot included).
pub(crate) fn cell_cost(len: usize) -> usize {
    len + SLOT
}
