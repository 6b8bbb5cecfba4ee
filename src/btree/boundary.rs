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
//! cell and the parent. Cutting a run of cells in two sends the right part's
//! first key up as the new separator; in a branch, that cell's child stays
//! behind as the right node's head. Joining two nodes brings the separator
//! back down, and in a branch it becomes the key of the right node's former
//! head, which is now an ordinary cell.

use crate::format::node::{branch_cell, branch_cell_child, branch_cell_key, leaf_cell_key};
use crate::format::page::PageId;

/// Encodes into `out` the head of a new branch: `child` with an empty key.
///
/// Every head the writer builds has an empty key, so it costs
/// `BRANCH_HEAD_COST` bytes (what `Cells::split_point` counts on). A head can
/// still carry a key: when a branch loses its cell 0, cell 1 becomes the head
/// and keeps its old separator, which nothing reads.
pub(super) fn branch_head(out: &mut Vec<u8>, child: PageId) {
    branch_cell(out, child, b"");
}

/// Cuts a run of cells in a leaf (`leaf`) or a branch before `first`, the cell
/// that starts the right node. Returns the separator that points the parent at
/// the right node (`first`'s key) and the right node's first cell: `first`
/// itself in a leaf; in a branch, the head holding `first`'s child, encoded
/// into `head`, since the key moved up.
pub(super) fn cut<'c>(leaf: bool, first: &'c [u8], head: &'c mut Vec<u8>) -> (&'c [u8], &'c [u8]) {
    if leaf {
        (leaf_cell_key(first), first)
    } else {
        branch_head(head, branch_cell_child(first));
        (branch_cell_key(first), head)
    }
}

/// Undoes a `cut`: `first`, the first cell of the right of two siblings whose
/// parent separates them by `sep`, as it reads once it follows the left
/// node's cells in one node: itself in a leaf; in a branch, its child with
/// `sep` as its key, encoded into `out`.
pub(super) fn join<'c>(leaf: bool, first: &'c [u8], sep: &[u8], out: &'c mut Vec<u8>) -> &'c [u8] {
    if leaf {
        first
    } else {
        branch_cell(out, branch_cell_child(first), sep);
        out
    }
}
