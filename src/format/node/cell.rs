//! Cells: encoding leaf and branch cells, and reading the fields of a raw one.

use super::layout::{BRANCH_CELL_HEADER, FLAG_OVERFLOW, FLAG_PACKED, LEAF_CELL_HEADER, PACKED_REF};
use crate::format::page::PageId;

/// Where a value that does not stay in its leaf lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueRef {
    /// An overflow run of its own, from this page.
    Run(PageId),
    /// Packed into the value segment starting at page `seg`, `off` bytes
    /// from the segment's start.
    Packed { seg: PageId, off: u32 },
}

impl ValueRef {
    fn flag(self) -> u8 {
        match self {
            ValueRef::Run(_) => FLAG_OVERFLOW,
            ValueRef::Packed { .. } => FLAG_PACKED,
        }
    }

    /// Appends the reference's bytes to `out`.
    pub(super) fn encode(self, out: &mut Vec<u8>) {
        match self {
            ValueRef::Run(page) => out.extend_from_slice(&page.to_le_bytes()),
            ValueRef::Packed { seg, off } => {
                out.extend_from_slice(&seg.to_le_bytes());
                out.extend_from_slice(&off.to_le_bytes());
            }
        }
    }

    /// The reference a cell with `flags` holds in `body`, exactly its bytes;
    /// `None` for an inline value.
    #[inline]
    pub(super) fn decode(flags: u8, body: &[u8]) -> Option<ValueRef> {
        let page = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        match flags & (FLAG_OVERFLOW | FLAG_PACKED) {
            FLAG_OVERFLOW => Some(ValueRef::Run(page(body))),
            FLAG_PACKED => Some(ValueRef::Packed {
                seg: page(body),
                off: u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")),
            }),
            _ => None,
        }
    }

    /// Bytes of the reference in a cell.
    pub(super) fn len(self) -> usize {
        match self {
            ValueRef::Run(_) => 8,
            ValueRef::Packed { .. } => PACKED_REF,
        }
    }
}

/// Bytes of a leaf cell's body for `flags` and a value of `vlen` bytes;
/// `None` for flags no cell has.
#[inline]
fn body_len(flags: u8, vlen: usize) -> Option<usize> {
    match flags & (FLAG_OVERFLOW | FLAG_PACKED) {
        0 => Some(vlen),
        FLAG_OVERFLOW => Some(8),
        FLAG_PACKED => Some(PACKED_REF),
        _ => None,
    }
}

/// Length of the cell at `off`, if its header and body fit in the page. The
/// lengths come from the page: summed with checked arithmetic (a `u32` value
/// length could wrap a 32-bit `usize`).
#[inline]
pub(super) fn cell_len(page: &[u8], off: usize, leaf: bool) -> Option<usize> {
    let len = if leaf {
        let h = page.get(off..off + LEAF_CELL_HEADER)?;
        let klen = usize::from(u16::from_le_bytes([h[2], h[3]]));
        let vlen = usize::try_from(u32::from_le_bytes([h[4], h[5], h[6], h[7]])).ok()?;
        (LEAF_CELL_HEADER + klen).checked_add(body_len(h[0], vlen)?)?
    } else {
        let h = page.get(off..off + BRANCH_CELL_HEADER)?;
        BRANCH_CELL_HEADER + usize::from(u16::from_le_bytes([h[8], h[9]]))
    };
    (off.checked_add(len)? <= page.len()).then_some(len)
}

/// Encodes a leaf cell with an inline value into `out` (cleared first).
pub(crate) fn leaf_cell_inline(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.clear();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Encodes a leaf cell whose value of `len` bytes lives at `at`, out of the
/// leaf.
pub(crate) fn leaf_cell_spilled(out: &mut Vec<u8>, key: &[u8], len: usize, at: ValueRef) {
    out.clear();
    out.extend_from_slice(&[at.flag(), 0]);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(key);
    at.encode(out);
}

/// Encodes a branch cell into `out` (cleared first).
pub(crate) fn branch_cell(out: &mut Vec<u8>, child: PageId, key: &[u8]) {
    out.clear();
    out.extend_from_slice(&child.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
}

/// Key of a raw branch cell.
#[inline]
pub(crate) fn branch_cell_key(cell: &[u8]) -> &[u8] {
    &cell[BRANCH_CELL_HEADER..]
}

/// Child of a raw branch cell.
pub(crate) fn branch_cell_child(cell: &[u8]) -> PageId {
    u64::from_le_bytes(cell[..8].try_into().expect("branch cell has a child"))
}

/// Key of a raw leaf cell.
#[inline]
pub(crate) fn leaf_cell_key(cell: &[u8]) -> &[u8] {
    let klen = usize::from(u16::from_le_bytes([cell[2], cell[3]]));
    &cell[LEAF_CELL_HEADER..LEAF_CELL_HEADER + klen]
}

/// Where the value of a raw leaf cell (checked by `Node::cell`) lives when
/// it is out of the leaf, and its length.
pub(crate) fn leaf_cell_value_ref(cell: &[u8]) -> Option<(ValueRef, usize)> {
    let vlen = u32::from_le_bytes(cell[4..8].try_into().expect("4 bytes")) as usize;
    let klen = usize::from(u16::from_le_bytes([cell[2], cell[3]]));
    let at = ValueRef::decode(cell[0], &cell[LEAF_CELL_HEADER + klen..])?;
    Some((at, vlen))
}
