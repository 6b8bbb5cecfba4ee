//! Cells: encoding leaf and branch cells, and reading the fields of a raw one.

use super::layout::{
    BRANCH_CELL_HEADER, BRANCH_LONG, FLAG_LONG_KEY, FLAG_OVERFLOW, FLAG_PACKED, LEAF_CELL_HEADER,
    LONG_REF, PACKED_REF,
};
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

    /// The page the place starts at: the run's first page, or the segment's.
    pub(crate) fn page(self) -> PageId {
        match self {
            ValueRef::Run(page) | ValueRef::Packed { seg: page, .. } => page,
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

/// Where a long key lives out of its node: its bytes, followed in a leaf
/// by its value's, at `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LongKey {
    pub at: ValueRef,
    /// The key's length.
    pub len: usize,
    /// Bytes out of the node: the key's, then (in a leaf) the value's.
    pub blob: usize,
}

impl LongKey {
    /// Appends the reference's `LONG_REF` bytes to `out`.
    fn encode(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len as u32).to_le_bytes());
        let (page, off) = match self.at {
            ValueRef::Run(page) => (page, 0),
            ValueRef::Packed { seg, off } => (seg, off),
        };
        out.extend_from_slice(&page.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
    }

    /// The reference in `r` (its `LONG_REF` bytes), with `value` bytes of a
    /// value after the key's; `None` when they would not fit a `usize`.
    #[inline]
    pub(super) fn decode(r: &[u8], value: usize) -> Option<LongKey> {
        let len = usize::try_from(u32::from_le_bytes(r[..4].try_into().ok()?)).ok()?;
        let page = u64::from_le_bytes(r[4..12].try_into().ok()?);
        let off = u32::from_le_bytes(r[12..16].try_into().ok()?);
        let at = match off {
            0 => ValueRef::Run(page),
            off => ValueRef::Packed { seg: page, off },
        };
        Some(LongKey {
            at,
            len,
            blob: len.checked_add(value)?,
        })
    }
}

/// Bytes of a leaf cell's body for `flags` and a value of `vlen` bytes;
/// `None` for flags no cell has.
#[inline]
fn body_len(flags: u8, vlen: usize) -> Option<usize> {
    match flags & (FLAG_OVERFLOW | FLAG_PACKED | FLAG_LONG_KEY) {
        0 => Some(vlen),
        FLAG_OVERFLOW => Some(8),
        FLAG_PACKED => Some(PACKED_REF),
        FLAG_LONG_KEY => Some(LONG_REF),
        _ => None,
    }
}

/// The length of a branch cell's key field, from its `key_len`, and
/// whether the separator is long (the field then ends with its reference).
#[inline]
pub(super) fn branch_key_len(key_len: u16) -> (usize, bool) {
    (
        usize::from(key_len & !BRANCH_LONG),
        key_len & BRANCH_LONG != 0,
    )
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
        let (klen, long) = branch_key_len(u16::from_le_bytes([h[8], h[9]]));
        if long && klen < LONG_REF {
            return None;
        }
        BRANCH_CELL_HEADER + klen
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

/// Encodes a leaf cell for a long key into `out` (cleared first): the
/// key's first `prefix` bytes and `at`, where the key's bytes and then the
/// value's (`vlen` of them) lie.
pub(crate) fn leaf_cell_long(
    out: &mut Vec<u8>,
    key: &[u8],
    prefix: usize,
    vlen: usize,
    at: ValueRef,
) {
    out.clear();
    out.extend_from_slice(&[FLAG_LONG_KEY, 0]);
    out.extend_from_slice(&(prefix as u16).to_le_bytes());
    out.extend_from_slice(&(vlen as u32).to_le_bytes());
    out.extend_from_slice(&key[..prefix]);
    LongKey {
        at,
        len: key.len(),
        blob: key.len() + vlen,
    }
    .encode(out);
}

/// Encodes a branch cell into `out` (cleared first), with a key a node
/// holds whole (at most `max_inline_key` bytes).
pub(crate) fn branch_cell(out: &mut Vec<u8>, child: PageId, key: &[u8]) {
    out.clear();
    out.extend_from_slice(&child.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
}

/// Encodes into `out` (cleared first) the key part of a branch cell for a
/// long separator: its first `prefix` bytes and `at`, where the whole of it
/// lies.
pub(crate) fn branch_key_long(out: &mut Vec<u8>, key: &[u8], prefix: usize, at: ValueRef) {
    out.clear();
    out.extend_from_slice(&((prefix + LONG_REF) as u16 | BRANCH_LONG).to_le_bytes());
    out.extend_from_slice(&key[..prefix]);
    LongKey {
        at,
        len: key.len(),
        blob: key.len(),
    }
    .encode(out);
}

/// Encodes a branch cell into `out` (cleared first) from its key part, as
/// `branch_key_part` reads it or the two functions above encode it.
pub(crate) fn branch_cell_from_part(out: &mut Vec<u8>, child: PageId, part: &[u8]) {
    out.clear();
    out.extend_from_slice(&child.to_le_bytes());
    out.extend_from_slice(part);
}

/// The key part of a raw branch cell: its `key_len` and key field, which
/// move whole when the separator moves.
#[inline]
pub(crate) fn branch_key_part(cell: &[u8]) -> &[u8] {
    &cell[8..]
}

/// The long separator of a raw branch cell, if it has one.
pub(crate) fn branch_cell_long_key(cell: &[u8]) -> Option<LongKey> {
    let (klen, long) = branch_key_len(u16::from_le_bytes([cell[8], cell[9]]));
    if !long {
        return None;
    }
    let end = BRANCH_CELL_HEADER + klen;
    LongKey::decode(&cell[end - LONG_REF..end], 0)
}

/// Child of a raw branch cell.
pub(crate) fn branch_cell_child(cell: &[u8]) -> PageId {
    u64::from_le_bytes(cell[..8].try_into().expect("branch cell has a child"))
}

/// Key field of a raw leaf cell: the key, or a long key's first bytes.
#[inline]
pub(crate) fn leaf_cell_key(cell: &[u8]) -> &[u8] {
    let klen = usize::from(u16::from_le_bytes([cell[2], cell[3]]));
    &cell[LEAF_CELL_HEADER..LEAF_CELL_HEADER + klen]
}

/// The long key of a raw leaf cell (checked by `Node::cell`), if it has one.
pub(crate) fn leaf_cell_long_key(cell: &[u8]) -> Option<LongKey> {
    if cell[0] & FLAG_LONG_KEY == 0 {
        return None;
    }
    let vlen = usize::try_from(u32::from_le_bytes(cell[4..8].try_into().ok()?)).ok()?;
    LongKey::decode(&cell[cell.len() - LONG_REF..], vlen)
}

/// What a raw leaf cell (checked by `Node::cell`) keeps out of the leaf, and
/// its length: its value's place, or a long key's, which holds the key and
/// the value. `None` when the key and value are all in the cell.
pub(crate) fn leaf_cell_value_ref(cell: &[u8]) -> Option<(ValueRef, usize)> {
    if let Some(long) = leaf_cell_long_key(cell) {
        return Some((long.at, long.blob));
    }
    let vlen = u32::from_le_bytes(cell[4..8].try_into().expect("4 bytes")) as usize;
    let klen = usize::from(u16::from_le_bytes([cell[2], cell[3]]));
    let at = ValueRef::decode(cell[0], &cell[LEAF_CELL_HEADER + klen..])?;
    Some((at, vlen))
}
