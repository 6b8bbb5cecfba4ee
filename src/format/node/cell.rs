//! Cells: encoding leaf and branch cells, and reading the fields of a raw one.

use super::layout::{BRANCH_CELL_HEADER, FLAG_OVERFLOW, LEAF_CELL_HEADER};
use crate::format::page::PageId;

/// Length of the cell at `off`, if its header and body fit in the page. The
/// lengths come from the page: summed with checked arithmetic (a `u32` value
/// length could wrap a 32-bit `usize`).
#[inline]
pub(super) fn cell_len(page: &[u8], off: usize, leaf: bool) -> Option<usize> {
    let len = if leaf {
        let h = page.get(off..off + LEAF_CELL_HEADER)?;
        let klen = usize::from(u16::from_le_bytes([h[2], h[3]]));
        let vlen = usize::try_from(u32::from_le_bytes([h[4], h[5], h[6], h[7]])).ok()?;
        let body = if h[0] & FLAG_OVERFLOW != 0 { 8 } else { vlen };
        (LEAF_CELL_HEADER + klen).checked_add(body)?
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

/// Encodes a leaf cell whose value of `len` bytes lives in the overflow run at
/// `page`.
pub(crate) fn leaf_cell_overflow(out: &mut Vec<u8>, key: &[u8], len: usize, page: PageId) {
    out.clear();
    out.extend_from_slice(&[FLAG_OVERFLOW, 0]);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&page.to_le_bytes());
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

/// Overflow run referenced by a raw leaf cell, if any: (first page, value length).
pub(crate) fn leaf_cell_overflow_ref(cell: &[u8]) -> Option<(PageId, usize)> {
    if cell[0] & FLAG_OVERFLOW == 0 {
        return None;
    }
    let vlen = u32::from_le_bytes(cell[4..8].try_into().expect("4 bytes")) as usize;
    let klen = usize::from(u16::from_le_bytes([cell[2], cell[3]]));
    let at = LEAF_CELL_HEADER + klen;
    Some((
        u64::from_le_bytes(cell[at..at + 8].try_into().expect("8 bytes")),
        vlen,
    ))
}
