//! [`Node`]: the read-only view of a branch or leaf page, which checks every
//! offset and length against the page before use.

use zerocopy::FromBytes;

use std::cmp::Ordering;

use super::cell::{LongKey, ValueRef, branch_key_len, cell_len};
use super::layout::{
    BRANCH_CELL_HEADER, FLAG_LONG_KEY, FLAG_OVERFLOW, FLAG_PACKED, LEAF_CELL_HEADER, LONG_REF,
    NODE_HEADER_SIZE, NodeHeader, SLOT,
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
    #[inline]
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
    #[inline]
    pub(crate) fn cell(&self, i: usize) -> Result<&'a [u8]> {
        let off = self.cell_offset(i)?;
        let len = cell_len(self.page, off, self.leaf).ok_or(crate::Error::Corrupted {
            page: self.id,
            reason: "cell runs past the page end",
        })?;
        Ok(&self.page[off..off + len])
    }

    /// Key of cell `i`, as the node holds it.
    #[inline]
    pub(crate) fn key(&self, i: usize) -> Result<NodeKey<'a>> {
        // Searches read keys only: check the key's bytes against the page, and
        // leave the value's to `entry`.
        let off = self.cell_offset(i)?;
        let (header, len_at) = if self.leaf {
            (LEAF_CELL_HEADER, 2)
        } else {
            (BRANCH_CELL_HEADER, 8)
        };
        let start = off + header;
        let Some(len) = self.page.get(off + len_at..off + len_at + 2) else {
            return self.corrupt("cell runs past the page end");
        };
        let len = u16::from_le_bytes([len[0], len[1]]);
        if self.leaf {
            if self.page[off] & FLAG_LONG_KEY != 0 {
                return self.long_leaf_key(i);
            }
            return match self.page.get(start..start + usize::from(len)) {
                Some(key) => Ok(NodeKey::Inline(key)),
                None => self.corrupt("cell runs past the page end"),
            };
        }
        let (len, long) = branch_key_len(len);
        let Some(field) = self.page.get(start..start + len) else {
            return self.corrupt("cell runs past the page end");
        };
        if !long {
            return Ok(NodeKey::Inline(field));
        }
        let Some(prefix_len) = len.checked_sub(LONG_REF) else {
            return self.corrupt("long separator shorter than its reference");
        };
        match LongKey::decode(&field[prefix_len..], 0) {
            Some(key) if prefix_len < key.len => Ok(NodeKey::Long {
                prefix: &field[..prefix_len],
                key,
            }),
            _ => self.corrupt("long separator shorter than its first bytes"),
        }
    }

    /// The key of leaf cell `i`, which is long.
    #[cold]
    fn long_leaf_key(&self, i: usize) -> Result<NodeKey<'a>> {
        let cell = self.cell(i)?;
        let klen = usize::from(u16::from_le_bytes([cell[2], cell[3]]));
        let vlen = u32::from_le_bytes(cell[4..8].try_into().expect("4 bytes")) as usize;
        // `cell_len` checked that the body is exactly the reference.
        let prefix = &cell[LEAF_CELL_HEADER..LEAF_CELL_HEADER + klen];
        match LongKey::decode(&cell[LEAF_CELL_HEADER + klen..], vlen) {
            Some(key) if klen < key.len => Ok(NodeKey::Long { prefix, key }),
            _ => self.corrupt("long key shorter than its first bytes"),
        }
    }

    /// The whole key of cell `i`, read from `keys` when it is long.
    #[inline]
    pub(crate) fn full_key<'k>(&self, i: usize, keys: &'k impl Keys) -> Result<&'k [u8]>
    where
        'a: 'k,
    {
        match self.key(i)? {
            NodeKey::Inline(k) => Ok(k),
            NodeKey::Long { key, .. } => keys.long_key(key),
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
    pub(crate) fn entry(&self, i: usize) -> Result<(NodeKey<'a>, LeafValue<'a>)> {
        debug_assert!(self.leaf);
        let cell = self.cell(i)?;
        if cell[0] & FLAG_LONG_KEY != 0 {
            let key = self.long_leaf_key(i)?;
            let NodeKey::Long { key: long, .. } = key else {
                unreachable!("a long key's cell")
            };
            let value = LeafValue::Spilled {
                at: long.at,
                len: long.blob,
                key: long.len,
            };
            return Ok((key, value));
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
        Ok((NodeKey::Inline(key), value))
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
                f(self.child(i)?)?;
                if let NodeKey::Long { key, .. } = self.key(i)? {
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
            match self.key(mid)?.cmp(key, keys)? {
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
            if self.key(mid)?.cmp(key, keys)? != Ordering::Greater {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo - 1)
    }
}
