//! Writes to a node: free functions that initialise, edit and build a dirty
//! page buffer, checking what they read the same way [`Node`] does.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use super::cell::{ValueRef, branch_cell_long_key, leaf_cell_long_key, leaf_cell_value_ref};
use super::layout::{NODE_HEADER_SIZE, NodeHeader, SLOT, cell_cost, usable};
use super::view::Node;
use crate::error::{Result, corrupted};
use crate::format::page::{KIND_BRANCH, KIND_LEAF, PageHeader, PageId};

/// Makes `page` an empty node written by `txn_id`.
pub(crate) fn init(page: &mut [u8], leaf: bool, txn_id: u64) {
    let len = page.len();
    let (h, _) = NodeHeader::mut_from_prefix(page).expect("page buffer holds a header");
    *h = NodeHeader {
        page: PageHeader {
            kind: if leaf { KIND_LEAF } else { KIND_BRANCH },
            flags: 0,
            count: U16::new(0),
            checksum: U32::new(0),
            txn_id: U64::new(txn_id),
        },
        upper: U32::new(len as u32),
        reserved: U32::new(0),
    };
}

pub(super) fn header(page: &mut [u8]) -> &mut NodeHeader {
    NodeHeader::mut_from_prefix(page)
        .expect("page buffer holds a header")
        .0
}

pub(super) fn slot(page: &[u8], i: usize) -> usize {
    let at = NODE_HEADER_SIZE + SLOT * i;
    usize::from(u16::from_le_bytes([page[at], page[at + 1]]))
}

pub(super) fn set_slot(page: &mut [u8], i: usize, off: usize) {
    let at = NODE_HEADER_SIZE + SLOT * i;
    page[at..at + SLOT].copy_from_slice(&(off as u16).to_le_bytes());
}

/// Inserts the raw cell `cell` at index `i` of the dirty node `page` (id `id`).
/// Returns `Ok(false)` without changing anything when it does not fit.
pub(crate) fn insert_cell(page: &mut [u8], id: PageId, i: usize, cell: &[u8]) -> Result<bool> {
    let node = Node::parse_header(page, id)?;
    if i > node.count {
        return corrupted(id, "cell index past the node end");
    }
    if node.free() < cell_cost(cell.len()) {
        return Ok(false);
    }
    let (count, upper) = (node.count, node.upper - cell.len());
    page[upper..upper + cell.len()].copy_from_slice(cell);
    let slots = NODE_HEADER_SIZE + SLOT * i;
    let slots_end = NODE_HEADER_SIZE + SLOT * count;
    page.copy_within(slots..slots_end, slots + SLOT);
    set_slot(page, i, upper);
    let h = header(page);
    h.page.count = U16::new(count as u16 + 1);
    h.upper = U32::new(upper as u32);
    Ok(true)
}

/// Removes cell `i` of the dirty node `page`, moving the cells below it so the
/// cell area keeps no holes.
pub(crate) fn remove_cell(page: &mut [u8], id: PageId, i: usize) -> Result<()> {
    let node = Node::parse(page, id)?;
    if i >= node.count {
        return corrupted(id, "cell index past the node end");
    }
    let len = node.cell(i)?.len();
    let off = node.cell_offset(i)?;
    let (count, upper) = (node.count, node.upper);
    // Cells are packed, so the ones stored below `off` move up by `len`.
    page.copy_within(upper..off, upper + len);
    for j in 0..count {
        let s = slot(page, j);
        if s < off {
            if s + len >= page.len() {
                return corrupted(id, "cells overlap");
            }
            set_slot(page, j, s + len);
        }
    }
    let slots = NODE_HEADER_SIZE + SLOT * i;
    let slots_end = NODE_HEADER_SIZE + SLOT * count;
    page.copy_within(slots + SLOT..slots_end, slots);
    let h = header(page);
    h.page.count = U16::new(count as u16 - 1);
    h.upper = U32::new((upper + len) as u32);
    Ok(())
}

/// Overwrites cell `i` of the dirty node `page` with `cell`, which has the
/// same length: the cells and slots stay where they are.
pub(crate) fn replace_cell(page: &mut [u8], id: PageId, i: usize, cell: &[u8]) -> Result<()> {
    let node = Node::parse(page, id)?;
    if i >= node.count {
        return corrupted(id, "cell index past the node end");
    }
    let off = node.cell_offset(i)?;
    if node.cell(i)?.len() != cell.len() {
        return corrupted(id, "a cell replaced by one of another length");
    }
    page[off..off + cell.len()].copy_from_slice(cell);
    Ok(())
}

/// Points branch cell `i` of the dirty node `page` at `child`.
pub(crate) fn set_child(page: &mut [u8], id: PageId, i: usize, child: PageId) -> Result<()> {
    let node = Node::parse(page, id)?;
    if node.leaf || i >= node.count {
        return corrupted(id, "child index past the branch end");
    }
    let off = node.cell_offset(i)?;
    node.cell(i)?;
    page[off..off + 8].copy_from_slice(&child.to_le_bytes());
    Ok(())
}

/// Points leaf cell `i` of the dirty node `page` at `to`, a new place of its
/// value (with its long key, if it has one) of the same kind (a run, or a
/// segment) as the old.
pub(crate) fn set_value_ref(page: &mut [u8], id: PageId, i: usize, to: ValueRef) -> Result<()> {
    let node = Node::parse(page, id)?;
    if !node.leaf || i >= node.count {
        return corrupted(id, "entry index past the leaf end");
    }
    let off = node.cell_offset(i)?;
    let cell = node.cell(i)?;
    if leaf_cell_long_key(cell).is_some() {
        return set_long_ref(page, off + cell.len(), to);
    }
    match leaf_cell_value_ref(cell) {
        Some((from, _)) if from.len() == to.len() => {}
        _ => return corrupted(id, "entry's value is not where the move expects"),
    }
    // A cell ends with its value's reference.
    let mut bytes = Vec::with_capacity(to.len());
    to.encode(&mut bytes);
    let at = off + cell.len() - to.len();
    page[at..at + to.len()].copy_from_slice(&bytes);
    Ok(())
}

/// Points the long separator of branch cell `i` of the dirty node `page` at
/// `to`, a new place of its bytes.
pub(crate) fn set_key_ref(page: &mut [u8], id: PageId, i: usize, to: ValueRef) -> Result<()> {
    let node = Node::parse(page, id)?;
    if node.leaf || i >= node.count {
        return corrupted(id, "child index past the branch end");
    }
    let off = node.cell_offset(i)?;
    let cell = node.cell(i)?;
    if branch_cell_long_key(cell).is_none() {
        return corrupted(id, "separator is not long where the move expects");
    }
    set_long_ref(page, off + cell.len(), to)
}

/// Writes `to` into the long-key reference that ends at `end`: its page
/// and offset, the last `PACKED_REF` bytes (the key's length stays).
fn set_long_ref(page: &mut [u8], end: usize, to: ValueRef) -> Result<()> {
    let (first, off) = match to {
        ValueRef::Run(p) => (p, 0),
        ValueRef::Packed { seg, off } => (seg, off),
    };
    page[end - 12..end - 4].copy_from_slice(&first.to_le_bytes());
    page[end - 4..end].copy_from_slice(&off.to_le_bytes());
    Ok(())
}

/// Rewrites the dirty node `page` (id `id`) to hold exactly `cells`, in order.
/// Fails without writing when they do not fit.
pub(crate) fn rebuild<'c>(
    page: &mut [u8],
    id: PageId,
    leaf: bool,
    txn_id: u64,
    cells: impl IntoIterator<Item = &'c [u8]> + Clone,
) -> Result<()> {
    let need: usize = cells.clone().into_iter().map(|c| cell_cost(c.len())).sum();
    if need > usable(page.len()) {
        return corrupted(id, "cells do not fit in one page");
    }
    init(page, leaf, txn_id);
    let mut upper = page.len();
    let mut count = 0;
    for cell in cells {
        upper -= cell.len();
        page[upper..upper + cell.len()].copy_from_slice(cell);
        set_slot(page, count, upper);
        count += 1;
    }
    let h = header(page);
    h.page.count = U16::new(count as u16);
    h.upper = U32::new(upper as u32);
    Ok(())
}

/// A new node page of `page_size` bytes holding exactly `cells`, in order:
/// the bytes `rebuild` leaves in a zeroed page, each written once (no page is
/// zeroed first). Fails when they do not fit.
pub(crate) fn build<'c>(
    page_size: usize,
    leaf: bool,
    txn_id: u64,
    cells: impl DoubleEndedIterator<Item = &'c [u8]> + Clone,
) -> Result<Box<[u8]>> {
    let (mut count, mut bytes) = (0usize, 0usize);
    for c in cells.clone() {
        count += 1;
        bytes += c.len();
    }
    if bytes + SLOT * count > usable(page_size) {
        return corrupted(0, "cells do not fit in one page");
    }
    let upper = page_size - bytes;
    let header = NodeHeader {
        page: PageHeader {
            kind: if leaf { KIND_LEAF } else { KIND_BRANCH },
            flags: 0,
            count: U16::new(count as u16),
            checksum: U32::new(0),
            txn_id: U64::new(txn_id),
        },
        upper: U32::new(upper as u32),
        reserved: U32::new(0),
    };
    let mut page = Vec::with_capacity(page_size);
    page.extend_from_slice(header.as_bytes());
    // Cell i ends where cell i - 1 starts, from the page end down.
    let mut end = page_size;
    for c in cells.clone() {
        end -= c.len();
        page.extend_from_slice(&(end as u16).to_le_bytes());
    }
    page.resize(upper, 0);
    for c in cells.rev() {
        page.extend_from_slice(c);
    }
    debug_assert_eq!(page.len(), page_size);
    Ok(page.into_boxed_slice())
}
