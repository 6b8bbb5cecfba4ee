//! [`Node`]: the read-only view of a branch or leaf page, which checks every
//! offset and length against the page before use.

use zerocopy::FromBytes;

use std::cmp::Ordering;

use super::cell::{LongKey, ValueRef, branch_cell_child, branch_cell_long_key, cell_len};
use super::layout::{
    BRANCH_CELL_HEADER, BRANCH_LONG, FLAG_LONG_KEY, FLAG_OVERFLOW, FLAG_PACKED, LEAF_CELL_HEADER,
    LONG_REF, MAX_KEY, NODE_HEADER_SIZE, NodeHeader, SLOT,
};
use crate::error::{Result, corrupted};
use crate::format::page::{KIND_BRANCH, KIND_LEAF, PageId};

/// A leaf's value: inline bytes, or where it lives out of the leaf and its
/// length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeafValue<'a> {
    Inline(&'a [u8]),
    /// `len` bytes at `at`: the value, after the first `key` bytes (a long
    /// key's, which share the place with it; 0 otherwise).
    Spilled {
        at: ValueRef,
        len: usize,
        key: usize,
    },
}

/// A key as a node holds it: whole, or a long key's first bytes and where
/// the whole of it lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeKey<'a> {
    Inline(&'a [u8]),
    Long { prefix: &'a [u8], key: LongKey },
}

/// Where the writer and the readers find the bytes of a long key.
pub(crate) trait Keys {
    /// The `key.len` bytes of the long key `key`.
    fn long_key(&self, key: LongKey) -> Result<&[u8]>;
}

impl NodeKey<'_> {
    /// How the key compares with `probe`, reading a long key's bytes only
    /// when its first ones are the first ones of `probe`.
    #[inline(always)]
    pub(crate) fn cmp(&self, probe: &[u8], keys: &impl Keys) -> Result<Ordering> {
        match *self {
            NodeKey::Inline(k) => Ok(k.cmp(probe)),
            NodeKey::Long { prefix, key } => {
                // A `probe` shorter than the prefix compares as it does
                // with the key, which starts with the prefix.
                let n = prefix.len().min(probe.len());
                match prefix.cmp(&probe[..n]) {
                    Ordering::Equal => Ok(keys.long_key(key)?.cmp(probe)),
                    o => Ok(o),
                }
            }
        }
    }
}

/// A read-only, checked view of a branch or leaf page.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    page: &'a [u8],
    id: PageId,
    pub(super) count: usize,
    pub(super) upper: usize,
    pub(super) leaf: bool,
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
    pub(super) fn parse_header(page: &'a [u8], id: PageId) -> Result<Node<'a>> {
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

    #[cold]
    #[inline(never)]
    fn corrupt<T>(&self, reason: &'static str) -> Result<T> {
        corrupted(self.id, reason)
    }

    #[inline]
    fn read_u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.page[at], self.page[at + 1]])
    }

    /// Offset of cell `i`, checked to lie in the cell area.
    #[inline]
    pub(super) fn cell_offset(&self, i: usize) -> Result<usize> {
        debug_assert!(i < self.count);
        let off = usize::from(self.read_u16(NODE_HEADER_SIZE + SLOT * i));
        if off < self.upper || off >= self.page.len() {
            return self.corrupt("slot points outside the cell area");
        }
        Ok(off)
    }

    /// The raw bytes of cell `i`, checked to end inside the page.
    #[inline(always)]
    pub(crate) fn cell(&self, i: usize) -> Result<&'a [u8]> {
        let off = self.cell_offset(i)?;
        match cell_len(self.page, off, self.leaf) {
            Some(len) => Ok(&self.page[off..off + len]),
            None => self.corrupt("cell runs past the page end"),
        }
    }

    /// Key of cell `i`, as the node holds it.
    #[inline]
    pub(crate) fn key(&self, i: usize) -> Result<NodeKey<'a>> {
        match self.short_key(i)? {
            Some(key) => Ok(NodeKey::Inline(key)),
            None => self.long_node_key(i),
        }
    }

    /// Key of cell `i` when the node holds it whole, `None` when it is
    /// long. Searches read keys only: the key's bytes are checked against
    /// the page, the value's left to `entry`. Forced inline: every step of a
    /// search reads one, and a key the node holds whole costs one flag test
    /// more than a bare slice.
    #[inline(always)]
    fn short_key(&self, i: usize) -> Result<Option<&'a [u8]>> {
        let off = self.cell_offset(i)?;
        let (start, len, long) = if self.leaf {
            let Some(h) = self.page.get(off..off + 4) else {
                return self.corrupt("cell runs past the page end");
            };
            let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
            (off + LEAF_CELL_HEADER, len, h[0] & FLAG_LONG_KEY != 0)
        } else {
            let Some(h) = self.page.get(off + 8..off + 10) else {
                return self.corrupt("cell runs past the page end");
            };
            let len = u16::from_le_bytes([h[0], h[1]]);
            (
                off + BRANCH_CELL_HEADER,
                usize::from(len),
                len & BRANCH_LONG != 0,
            )
        };
        if long {
            return Ok(None);
        }
        match self.page.get(start..start + len) {
            Some(key) => Ok(Some(key)),
            None => self.corrupt("cell runs past the page end"),
        }
    }

    /// How the key of cell `i` compares with `probe`.
    #[inline(always)]
    fn cmp_key(&self, i: usize, probe: &[u8], keys: &impl Keys) -> Result<Ordering> {
        match self.short_key(i)? {
            Some(key) => Ok(key.cmp(probe)),
            None => self.cmp_long(i, probe, keys),
        }
    }

    /// How the long key of cell `i` compares with `probe`.
    #[cold]
    #[inline(never)]
    fn cmp_long(&self, i: usize, probe: &[u8], keys: &impl Keys) -> Result<Ordering> {
        self.long_node_key(i)?.cmp(probe, keys)
    }

    /// The key of cell `i`, which is long: its first bytes, checked to be
    /// fewer than the whole key's, and where the whole of it lies.
    #[cold]
    #[inline(never)]
    fn long_node_key(&self, i: usize) -> Result<NodeKey<'a>> {
        let cell = self.cell(i)?;
        // `cell_len` checked the cell's lengths: a leaf's body is exactly
        // the reference, and a long separator's field holds one.
        let (prefix, reference, value) = if self.leaf {
            let klen = usize::from(u16::from_le_bytes([cell[2], cell[3]]));
            let vlen = u32::from_le_bytes(cell[4..8].try_into().expect("4 bytes")) as usize;
            let body = LEAF_CELL_HEADER + klen;
            (&cell[LEAF_CELL_HEADER..body], &cell[body..], vlen)
        } else {
            let end = cell.len() - LONG_REF;
            (&cell[BRANCH_CELL_HEADER..end], &cell[end..], 0)
        };
        match LongKey::decode(reference, value) {
            Some(key) if prefix.len() < key.len && key.len <= MAX_KEY => {
                Ok(NodeKey::Long { prefix, key })
            }
            _ => self.corrupt("long key no longer than its first bytes, or past the limit"),
        }
    }

    /// The whole key of cell `i`, read from `keys` when it is long.
    #[inline(always)]
    pub(crate) fn full_key<'k>(&self, i: usize, keys: &'k impl Keys) -> Result<&'k [u8]>
    where
        'a: 'k,
    {
        match self.short_key(i)? {
            Some(k) => Ok(k),
            None => self.long_whole_key(i, keys),
        }
    }

    /// The whole of the long key of cell `i`.
    #[cold]
    #[inline(never)]
    fn long_whole_key<'k>(&self, i: usize, keys: &'k impl Keys) -> Result<&'k [u8]>
    where
        'a: 'k,
    {
        match self.long_node_key(i)? {
            NodeKey::Long { key, .. } => keys.long_key(key),
            NodeKey::Inline(k) => Ok(k),
        }
    }

    /// Child page of branch cell `i`.
    #[inline(always)]
    pub(crate) fn child(&self, i: usize) -> Result<PageId> {
        debug_assert!(!self.leaf);
        let cell = self.cell(i)?;
        Ok(u64::from_le_bytes(cell[..8].try_into().expect("8 bytes")))
    }

    /// Where the value of leaf cell `i` lies in the page when it is inline:
    /// its offset and length; `None` when it lies out of the leaf.
    pub(crate) fn inline_value_at(&self, i: usize) -> Result<Option<(usize, usize)>> {
        let off = self.cell_offset(i)?;
        match self.entry(i)?.1 {
            LeafValue::Inline(v) => {
                let klen =
                    usize::from(u16::from_le_bytes([self.page[off + 2], self.page[off + 3]]));
                Ok(Some((off + LEAF_CELL_HEADER + klen, v.len())))
            }
            LeafValue::Spilled { .. } => Ok(None),
        }
    }

    /// Key and value of leaf cell `i`: for a long key, its first bytes and
    /// the place it shares with the value (`LeafValue::Spilled::key` bytes
    /// of it, then the value's; `PageSource::entry` reads both whole).
    #[inline]
    pub(crate) fn entry(&self, i: usize) -> Result<(&'a [u8], LeafValue<'a>)> {
        debug_assert!(self.leaf);
        let cell = self.cell(i)?;
        if cell[0] & FLAG_LONG_KEY != 0 {
            return self.long_entry(i);
        }
        let klen = usize::from(u16::from_le_bytes([cell[2], cell[3]]));
        let vlen = u32::from_le_bytes(cell[4..8].try_into().expect("4 bytes")) as usize;
        let key = &cell[LEAF_CELL_HEADER..LEAF_CELL_HEADER + klen];
        let rest = &cell[LEAF_CELL_HEADER + klen..];
        // `cell_len` checked that the body is exactly the reference.
        let value = match ValueRef::decode(cell[0], rest) {
            Some(at) => LeafValue::Spilled {
                at,
                len: vlen,
                key: 0,
            },
            None => LeafValue::Inline(rest),
        };
        Ok((key, value))
    }

    /// Key and value of leaf cell `i`, whose key is long: the value lies
    /// after the key's bytes, in their place.
    #[cold]
    #[inline(never)]
    fn long_entry(&self, i: usize) -> Result<(&'a [u8], LeafValue<'a>)> {
        let NodeKey::Long { prefix, key } = self.long_node_key(i)? else {
            return self.corrupt("a long key's cell without one");
        };
        let value = LeafValue::Spilled {
            at: key.at,
            len: key.blob,
            key: key.len,
        };
        Ok((prefix, value))
    }

    /// Calls `f` with every page the node points at: a branch's children
    /// and the places of its long separators, or the overflow runs and
    /// segments of a leaf's values and long keys kept out of it. Reads only
    /// the flags of an inline value's cell.
    pub(crate) fn for_each_target(&self, mut f: impl FnMut(PageId) -> Result<()>) -> Result<()> {
        for i in 0..self.count {
            if self.leaf {
                let off = self.cell_offset(i)?;
                if self.page[off] & (FLAG_OVERFLOW | FLAG_PACKED | FLAG_LONG_KEY) == 0 {
                    continue;
                }
                if let LeafValue::Spilled { at, .. } = self.entry(i)?.1 {
                    f(at.page())?;
                }
            } else {
                let cell = self.cell(i)?;
                f(branch_cell_child(cell))?;
                if let Some(key) = branch_cell_long_key(cell) {
                    f(key.at.page())?;
                }
            }
        }
        Ok(())
    }

    /// Leaf: the first index whose key is `>= key`, and whether it is equal.
    #[inline]
    pub(crate) fn search_leaf(&self, key: &[u8], keys: &impl Keys) -> Result<(usize, bool)> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.cmp_key(mid, key, keys)? {
                Ordering::Less => lo = mid + 1,
                Ordering::Equal => return Ok((mid, true)),
                Ordering::Greater => hi = mid,
            }
        }
        Ok((lo, false))
    }

    /// Branch: the index of the child whose range holds `key`.
    #[inline]
    pub(crate) fn search_branch(&self, key: &[u8], keys: &impl Keys) -> Result<usize> {
        let (mut lo, mut hi) = (1, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.cmp_key(mid, key, keys)? != Ordering::Greater {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo - 1)
    }
}
