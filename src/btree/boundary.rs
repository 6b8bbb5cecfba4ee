//! Where two sibling nodes meet: the separator between them, and a branch's
//! head cell.
//!
//! A branch with `n` cells has `n` children. Cell `i > 0` holds child `i` and
//! its separator: child `i` holds the keys `k` with `key(i) <= k < key(i+1)`.
//! Cell 0, the branch's *head*, holds child 0 only: that child's keys are
//! bounded below by the separator the branch's own parent holds for it, so no
//! search reads the head's key (`Node::search_branch` starts at cell 1).
//!
//! Moving the boundary between two siblings therefore moves a key between a
//! cell and the parent. Cutting a run of leaf cells in two makes a new
//! separator from the right part's first key (`leaf_separator`: a long one
//! is shortened where it can be, else copied to a place of its own). Cutting
//! a run of branch cells sends the right part's first key part up whole,
//! with any place it owns; that cell's child stays behind as the right
//! node's head. Joining two nodes brings the separator back down, and in a
//! branch it becomes the key of the right node's former head, which is now
//! an ordinary cell.

use super::store::PageStore;
use crate::error::Result;
use crate::format::node::{
    Keys, LONG_REF, LongKey, NodeKey, branch_cell, branch_cell_child, branch_cell_from_part,
    branch_key_long, branch_key_part, leaf_cell_key, leaf_cell_long_key, long_prefix,
    max_inline_key,
};
use crate::format::page::PageId;

/// Encodes into `out` the head of a new branch: `child` with an empty key.
///
/// Every head the writer builds has an empty key, so it costs
/// `BRANCH_HEAD_COST` bytes (what `Cells::split_point` counts on). A head can
/// still carry a key: when a branch loses its cell 0, cell 1 becomes the head
/// and keeps its old separator, which nothing reads (unless it is long: the
/// writer gives such a head an empty key and frees the separator's place).
pub(super) fn branch_head(out: &mut Vec<u8>, child: PageId) {
    branch_cell(out, child, b"");
}

/// The key of a raw leaf cell, as its node holds it.
pub(super) fn leaf_cell_node_key(cell: &[u8]) -> NodeKey<'_> {
    let field = leaf_cell_key(cell);
    match leaf_cell_long_key(cell) {
        Some(key) => NodeKey::Long { prefix: field, key },
        None => NodeKey::Inline(field),
    }
}

/// The whole of a key as a node holds it.
fn whole<'k>(key: NodeKey<'k>, keys: &'k impl Keys) -> Result<&'k [u8]> {
    match key {
        NodeKey::Inline(k) => Ok(k),
        NodeKey::Long { key, .. } => keys.long_key(key),
    }
}

/// The separator between two leaves, the left one ending with the cell
/// `left` and the right one starting with `right`, as the parent will hold
/// it. A key a node holds whole is the right leaf's first key, as it always
/// was. For a long one, the shortest start of it that is greater than the
/// left leaf's last key, when a node holds that whole (keys that differ
/// early need no long separator); else the whole key, which gets a place
/// of its own (`Separator::cell`).
pub(super) fn leaf_separator<S: PageStore>(s: &S, left: &[u8], right: &[u8]) -> Result<Separator> {
    let key = match leaf_cell_node_key(right) {
        NodeKey::Inline(k) => {
            return Ok(Separator {
                key: k.to_vec(),
                long: false,
            });
        }
        long => whole(long, s)?,
    };
    let before = whole(leaf_cell_node_key(left), s)?;
    let same = key.iter().zip(before).take_while(|(a, b)| a == b).count();
    let short = (same + 1).min(key.len());
    Ok(if short <= max_inline_key(s.page_size()) {
        Separator {
            key: key[..short].to_vec(),
            long: false,
        }
    } else {
        Separator {
            key: key.to_vec(),
            long: true,
        }
    })
}

/// A separator on its way into a branch cell: its bytes, and whether they
/// are too long for a node (then the cell holds a reference to a copy).
pub(super) struct Separator {
    key: Vec<u8>,
    long: bool,
}

impl Separator {
    /// The length of the branch cell `cell` would encode.
    pub(super) fn cell_len(&self, page_size: usize) -> usize {
        let field = if self.long {
            long_prefix(page_size) + LONG_REF
        } else {
            self.key.len()
        };
        10 + field
    }

    /// Encodes into `out` the branch cell pointing at `child` under this
    /// separator; a long one is first copied to a place of its own.
    pub(super) fn cell<S: PageStore>(
        &self,
        s: &mut S,
        child: PageId,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if !self.long {
            branch_cell(out, child, &self.key);
            return Ok(());
        }
        let at = s.alloc_value(&self.key)?;
        let mut part = Vec::new();
        branch_key_long(&mut part, &self.key, long_prefix(s.page_size()), at);
        branch_cell_from_part(out, child, &part);
        Ok(())
    }
}

/// Cuts a run of branch cells before `first`, the cell that starts the
/// right node. Returns the key part that points the parent at the right
/// node (`first`'s, which moves up whole, with any place it refers to) and
/// the right node's first cell: the head holding `first`'s child, encoded
/// into `head`.
pub(super) fn cut_branch<'c>(first: &'c [u8], head: &'c mut Vec<u8>) -> (&'c [u8], &'c [u8]) {
    branch_head(head, branch_cell_child(first));
    (branch_key_part(first), head)
}

/// Undoes a cut: `first`, the first cell of the right of two siblings whose
/// parent separates them by the key part `sep`, as it reads once it follows
/// the left node's cells in one node: itself in a leaf; in a branch, its
/// child with `sep` as its key, encoded into `out` (its own key, which
/// nothing read, is dropped: `dropped_head_key` names a long one's place).
pub(super) fn join<'c>(leaf: bool, first: &'c [u8], sep: &[u8], out: &'c mut Vec<u8>) -> &'c [u8] {
    if leaf {
        first
    } else {
        branch_cell_from_part(out, branch_cell_child(first), sep);
        out
    }
}

/// The place of the long key a branch head holds, if any, which `join`
/// drops.
pub(super) fn dropped_head_key(leaf: bool, first: &[u8]) -> Option<LongKey> {
    if leaf {
        None
    } else {
        crate::format::node::branch_cell_long_key(first)
    }
}
