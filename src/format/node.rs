//! Branch and leaf pages: a slotted layout with cells packed at the page end.
//!
//! Reads go through [`Node`], which checks every offset and length against the
//! page before use. Writes go through the free functions at the bottom, which
//! work on a dirty page buffer and check what they read the same way.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::page::{KIND_BRANCH, KIND_LEAF, PageHeader, PageId};
use crate::error::{Result, corrupted};

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
const SLOT: usize = 2;
/// Leaf cell: flags, reserved, key_len u16, val_len u32.
const LEAF_CELL_HEADER: usize = 8;
/// Branch cell: child u64, key_len u16.
const BRANCH_CELL_HEADER: usize = 10;
const FLAG_OVERFLOW: u8 = 1;

/// Usable bytes of a node (slots and cells).
pub(crate) fn usable(page_size: usize) -> usize {
    page_size - NODE_HEADER_SIZE
}

/// The longest key a database of this page size accepts.
pub(crate) fn max_key(page_size: usize) -> usize {
    page_size / 4
}

/// Whether a value of `vlen` bytes under a key of `klen` bytes stays inline.
pub(crate) fn value_inline(klen: usize, vlen: usize, page_size: usize) -> bool {
    let inline = SLOT + LEAF_CELL_HEADER + klen + vlen;
    let spilled = SLOT + LEAF_CELL_HEADER + klen + 8;
    inline <= (usable(page_size) / 4).max(spilled)
}

/// Bytes a branch's first cell costs once its key is dropped.
pub(crate) const BRANCH_HEAD_COST: usize = BRANCH_CELL_HEADER + SLOT;

/// Bytes a node loses to a cell of `len` bytes (its slot included).
pub(crate) fn cell_cost(len: usize) -> usize {
    len + SLOT
}

/// A leaf's value: inline bytes, or the first page and length of an overflow run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeafValue<'a> {
    Inline(&'a [u8]),
    Overflow { page: PageId, len: usize },
}

/// A read-only, checked view of a branch or leaf page.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    page: &'a [u8],
    id: PageId,
    count: usize,
    upper: usize,
    leaf: bool,
}

impl<'a> Node<'a> {
    /// Checks the header of page `id` and returns a view of it.
    #[inline]
    pub(crate) fn parse(page: &'a [u8], id: PageId) -> Result<Node<'a>> {
        let node = Self::parse_header(page, id)?;
        if !node.leaf && node.count == 0 {
            return corrupted(id, "branch page without children");
        }
        Ok(node)
    }

    /// Like [`parse`](Node::parse), but accepts an empty branch: the writer
    /// meets one while it removes the children of a node being emptied.
    pub(crate) fn parse_any(page: &'a [u8], id: PageId) -> Result<Node<'a>> {
        Self::parse_header(page, id)
    }

    /// Checks the header only; an empty branch (being built) passes.
    #[inline]
    fn parse_header(page: &'a [u8], id: PageId) -> Result<Node<'a>> {
        let Ok((h, _)) = NodeHeader::ref_from_prefix(page) else {
            return corrupted(id, "node page shorter than its header");
        };
        let leaf = match h.page.kind {
            KIND_LEAF => true,
            KIND_BRANCH => false,
            _ => return corrupted(id, "expected a branch or leaf page"),
        };
        let count = usize::from(h.page.count.get());
        let upper = h.upper.get() as usize;
        if upper > page.len() || NODE_HEADER_SIZE + SLOT * count > upper {
            return corrupted(id, "node slots overlap its cells");
        }
        Ok(Node {
            page,
            id,
            count,
            upper,
            leaf,
        })
    }

    #[inline]
    pub(crate) fn is_leaf(&self) -> bool {
        self.leaf
    }

    #[inline]
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Bytes used by slots and cells.
    pub(crate) fn used(&self) -> usize {
        self.page.len() - self.upper + SLOT * self.count
    }

    /// Free bytes between the slots and the cells.
    pub(crate) fn free(&self) -> usize {
        self.upper - NODE_HEADER_SIZE - SLOT * self.count
    }

    fn corrupt<T>(&self, reason: &'static str) -> Result<T> {
        corrupted(self.id, reason)
    }

    #[inline]
    fn read_u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.page[at], self.page[at + 1]])
    }

    /// Offset of cell `i`, checked to lie in the cell area.
    #[inline]
    fn cell_offset(&self, i: usize) -> Result<usize> {
        debug_assert!(i < self.count);
        let off = usize::from(self.read_u16(NODE_HEADER_SIZE + SLOT * i));
        if off < self.upper || off >= self.page.len() {
            return self.corrupt("slot points outside the cell area");
        }
        Ok(off)
    }

    /// The raw bytes of cell `i`, checked to end inside the page.
    #[inline]
    pub(crate) fn cell(&self, i: usize) -> Result<&'a [u8]> {
        let off = self.cell_offset(i)?;
        let len = cell_len(self.page, off, self.leaf).ok_or(crate::Error::Corrupted {
            page: self.id,
            reason: "cell runs past the page end",
        })?;
        Ok(&self.page[off..off + len])
    }

    /// Key of cell `i`.
    #[inline]
    pub(crate) fn key(&self, i: usize) -> Result<&'a [u8]> {
        // Searches read keys only: check the key's bytes against the page, and
        // leave the value's to `entry`.
        let off = self.cell_offset(i)?;
        let (header, len_at) = if self.leaf {
            (LEAF_CELL_HEADER, 2)
        } else {
            (BRANCH_CELL_HEADER, 8)
        };
        let start = off + header;
        let key = self
            .page
            .get(off + len_at..off + len_at + 2)
            .and_then(|len| {
                let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
                self.page.get(start..start + len)
            });
        match key {
            Some(key) => Ok(key),
            None => self.corrupt("cell runs past the page end"),
        }
    }

    /// Child page of branch cell `i`.
    #[inline]
    pub(crate) fn child(&self, i: usize) -> Result<PageId> {
        debug_assert!(!self.leaf);
        let cell = self.cell(i)?;
        Ok(u64::from_le_bytes(cell[..8].try_into().expect("8 bytes")))
    }

    /// Key and value of leaf cell `i`.
    #[inline]
    pub(crate) fn entry(&self, i: usize) -> Result<(&'a [u8], LeafValue<'a>)> {
        debug_assert!(self.leaf);
        let cell = self.cell(i)?;
        let klen = usize::from(u16::from_le_bytes([cell[2], cell[3]]));
        let vlen = u32::from_le_bytes(cell[4..8].try_into().expect("4 bytes")) as usize;
        let key = &cell[LEAF_CELL_HEADER..LEAF_CELL_HEADER + klen];
        let rest = &cell[LEAF_CELL_HEADER + klen..];
        let value = if cell[0] & FLAG_OVERFLOW != 0 {
            let page = u64::from_le_bytes(rest.try_into().expect("cell_len checked 8 bytes"));
            LeafValue::Overflow { page, len: vlen }
        } else {
            LeafValue::Inline(rest)
        };
        Ok((key, value))
    }

    /// Leaf: the first index whose key is `>= key`, and whether it is equal.
    #[inline]
    pub(crate) fn search_leaf(&self, key: &[u8]) -> Result<(usize, bool)> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid)?.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Equal => return Ok((mid, true)),
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok((lo, false))
    }

    /// Branch: the index of the child whose range holds `key`.
    #[inline]
    pub(crate) fn search_branch(&self, key: &[u8]) -> Result<usize> {
        let (mut lo, mut hi) = (1, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid)? <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo - 1)
    }
}

/// Length of the cell at `off`, if its header and body fit in the page. The
/// lengths come from the page: summed with checked arithmetic (a `u32` value
/// length could wrap a 32-bit `usize`).
#[inline]
fn cell_len(page: &[u8], off: usize, leaf: bool) -> Option<usize> {
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

fn header(page: &mut [u8]) -> &mut NodeHeader {
    NodeHeader::mut_from_prefix(page)
        .expect("page buffer holds a header")
        .0
}

fn slot(page: &[u8], i: usize) -> usize {
    let at = NODE_HEADER_SIZE + SLOT * i;
    usize::from(u16::from_le_bytes([page[at], page[at + 1]]))
}

fn set_slot(page: &mut [u8], i: usize, off: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_with(keys: &[&[u8]]) -> Vec<u8> {
        let mut page = vec![0u8; 512];
        init(&mut page, true, 1);
        let mut cell = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            leaf_cell_inline(&mut cell, k, b"v");
            assert!(insert_cell(&mut page, 9, i, &cell).unwrap());
        }
        page
    }

    #[test]
    fn insert_search_remove() {
        let mut page = leaf_with(&[b"b", b"d", b"f"]);
        let n = Node::parse(&page, 9).unwrap();
        assert_eq!(n.search_leaf(b"d").unwrap(), (1, true));
        assert_eq!(n.search_leaf(b"e").unwrap(), (2, false));
        assert_eq!(n.search_leaf(b"a").unwrap(), (0, false));
        assert_eq!(n.search_leaf(b"z").unwrap(), (3, false));
        let used = n.used();
        remove_cell(&mut page, 9, 1).unwrap();
        let n = Node::parse(&page, 9).unwrap();
        assert_eq!(n.count(), 2);
        assert_eq!(n.key(0).unwrap(), b"b");
        assert_eq!(n.key(1).unwrap(), b"f");
        assert_eq!(n.entry(1).unwrap().1, LeafValue::Inline(b"v"));
        assert_eq!(n.used(), used - cell_cost(10));
    }

    #[test]
    fn insert_refuses_when_full() {
        let mut page = vec![0u8; 512];
        init(&mut page, true, 1);
        let mut cell = Vec::new();
        leaf_cell_inline(&mut cell, &[7u8; 100], &[1u8; 10]);
        let mut n = 0;
        while insert_cell(&mut page, 9, 0, &cell).unwrap() {
            n += 1;
        }
        assert_eq!(n, usable(512) / cell_cost(cell.len()));
        assert_eq!(Node::parse(&page, 9).unwrap().count(), n);
    }

    #[test]
    fn branch_search_uses_separators() {
        let mut page = vec![0u8; 512];
        init(&mut page, false, 1);
        let mut cell = Vec::new();
        for (i, (child, key)) in [(10u64, &b""[..]), (11, b"m"), (12, b"t")]
            .into_iter()
            .enumerate()
        {
            branch_cell(&mut cell, child, key);
            assert!(insert_cell(&mut page, 9, i, &cell).unwrap());
        }
        let n = Node::parse(&page, 9).unwrap();
        assert_eq!(n.search_branch(b"a").unwrap(), 0);
        assert_eq!(n.search_branch(b"m").unwrap(), 1);
        assert_eq!(n.search_branch(b"s").unwrap(), 1);
        assert_eq!(n.search_branch(b"zz").unwrap(), 2);
        set_child(&mut page, 9, 2, 99).unwrap();
        assert_eq!(Node::parse(&page, 9).unwrap().child(2).unwrap(), 99);
    }

    #[test]
    fn build_writes_what_rebuild_writes_on_a_zeroed_page() {
        let mut x = 7u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut cell = Vec::new();
        for round in 0..200 {
            let leaf = round % 2 == 0;
            let n = (next() % 12) as usize;
            let cells: Vec<Vec<u8>> = (0..n)
                .map(|i| {
                    let key = vec![(next() % 256) as u8; (next() % 30) as usize];
                    if leaf {
                        leaf_cell_inline(&mut cell, &key, &vec![i as u8; (next() % 20) as usize]);
                    } else {
                        branch_cell(&mut cell, next() % 1000, &key);
                    }
                    cell.clone()
                })
                .collect();
            let iter = cells.iter().map(Vec::as_slice);
            let built = build(512, leaf, round, iter.clone()).unwrap();
            let mut page = vec![0u8; 512];
            rebuild(&mut page, 9, leaf, round, iter).unwrap();
            assert_eq!(&built[..], &page[..], "round {round}");
        }
        // Too much for one page: refused, as by rebuild.
        leaf_cell_inline(&mut cell, &[1; 100], &[2; 100]);
        let cells = [cell.as_slice(), cell.as_slice(), cell.as_slice()];
        assert!(build(512, true, 1, cells.iter().copied()).is_err());
    }

    #[test]
    fn bad_offsets_are_corruption_not_panics() {
        let page = leaf_with(&[b"a", b"b"]);
        // A slot pointing past the page.
        let mut p = page.clone();
        set_slot(&mut p, 0, 511);
        let n = Node::parse(&p, 3).unwrap();
        assert!(matches!(
            n.key(0),
            Err(crate::Error::Corrupted { page: 3, .. })
        ));
        // A key length running past the page end.
        let mut p = page.clone();
        let off = slot(&p, 1);
        p[off + 2] = 0xff;
        p[off + 3] = 0xff;
        assert!(Node::parse(&p, 3).unwrap().key(1).is_err());
        // A count whose slots run into the cells.
        let mut p = page.clone();
        header(&mut p).page.count = U16::new(300);
        assert!(Node::parse(&p, 3).is_err());
        // Wrong kind.
        let mut p = page;
        p[0] = 9;
        assert!(Node::parse(&p, 3).is_err());
    }

    #[test]
    fn limits_keep_cells_within_a_third() {
        for shift in 9..=16 {
            let ps = 1usize << shift;
            let k = max_key(ps);
            let worst_leaf = cell_cost(LEAF_CELL_HEADER + k + 8).max(usable(ps) / 4);
            let worst_branch = cell_cost(BRANCH_CELL_HEADER + k);
            assert!(worst_leaf <= usable(ps) / 3, "page size {ps}");
            assert!(worst_branch <= usable(ps) / 3, "page size {ps}");
            assert!(value_inline(k, 8, ps));
            assert!(!value_inline(0, ps / 4, ps));
        }
    }
}
