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
/// Leaf cell flag: the key is long (`max_inline_key`): the cell holds its
/// first `long_prefix` bytes and a long-key reference; the key's bytes,
/// then the value's, live out of the leaf.
pub(super) const FLAG_LONG_KEY: u8 = 4;
/// Branch cell `key_len` bit: the separator is long; its field holds its
/// first bytes and a long-key reference to the whole of it.
pub(super) const BRANCH_LONG: u16 = 0x8000;
/// Bytes of a long-key reference: the key's length `u32`, a page `u64` and
/// an offset `u32` into the segment starting there (0: an overflow run of
/// its own starts there instead; a packed place is never at 0).
pub(crate) const LONG_REF: usize = 16;

/// The longest key a database accepts, at every page size.
pub(crate) const MAX_KEY: usize = 64 << 10;

/// Usable bytes of a node (slots and cells).
pub(crate) fn usable(page_size: usize) -> usize {
    page_size - NODE_HEADER_SIZE
}

/// The longest key a node of this page size holds whole; a longer one is
/// long (`FLAG_LONG_KEY`).
pub(crate) fn max_inline_key(page_size: usize) -> usize {
    page_size / 4
}

/// How many of a long key's first bytes its cell holds, to order it without
/// reading the rest: a sixteenth of the page, at most 256.
pub(crate) fn long_prefix(page_size: usize) -> usize {
    (page_size / 16).min(256)
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
