//! Delete with merge and redistribution, and dropping a whole tree.

use std::collections::HashSet;

use super::boundary::{branch_head, cut_branch, dropped_head_key, join, leaf_separator};
use super::cells::Cells;
use super::path::{Path, Step, cow_child};
use super::store::{PageStore, load_node};
use crate::error::{Result, corrupted};
use crate::format::meta::TableDesc;
use crate::format::node::{
    LongKey, Node, NodeKey, ValueRef, branch_cell_from_part, branch_cell_long_key, branch_key_part,
    cell_cost, insert_cell, leaf_cell_value_ref, rebuild, remove_cell, usable,
};
use crate::format::page::PageId;

/// Removes `key`. Returns whether it was present.
pub(crate) fn remove<S: PageStore>(s: &mut S, desc: &mut TableDesc, key: &[u8]) -> Result<bool> {
    if desc.root == 0 {
        return Ok(false);
    }
    let mut path = Path::find(s, desc, key)?;
    if !path.found {
        return Ok(false);
    }
    path.make_dirty(s, desc)?;
    let leaf = *path.steps.last().expect("a path has a leaf");
    let cell = Node::parse(s.page(leaf.id)?, leaf.id)?.cell(leaf.idx)?;
    remove_entry(s, leaf, leaf_cell_value_ref(cell))?;
    desc.entries = desc.entries.saturating_sub(1);
    rebalance(s, desc, &path)?;
    Ok(true)
}

/// Removes the entry at `leaf`, a position in a dirty leaf, and frees its
/// value's place out of the leaf if it has one: `value`, as the caller read
/// it from the entry's cell (`leaf_cell_value_ref`; an overwrite has the
/// cell in hand already).
pub(super) fn remove_entry<S: PageStore>(
    s: &mut S,
    leaf: Step,
    value: Option<(ValueRef, usize)>,
) -> Result<()> {
    if let Some((at, len)) = value {
        s.free_value(at, len)?;
    }
    remove_cell(s.page_mut(leaf.id)?, leaf.id, leaf.idx)
}

/// Walks up from the leaf of `path`, rebalancing each node the removal left
/// empty or underfull, then shortens the tree from the root. Rebalancing a
/// node changes only it, a sibling and their parent, so the walk ends at the
/// first node that needs nothing, or whose rebalancing leaves the parent as it
/// was.
fn rebalance<S: PageStore>(s: &mut S, desc: &mut TableDesc, path: &Path) -> Result<()> {
    for level in (1..path.steps.len()).rev() {
        let (id, parent) = (path.steps[level].id, path.steps[level - 1]);
        let next = match fill(s, id)? {
            Fill::Empty => drop_empty(s, id, parent)?,
            Fill::Underfull => rebalance_with_sibling(s, id, parent)?,
            Fill::Enough => Next::Stop,
        };
        if next == Next::Stop {
            return Ok(());
        }
    }
    collapse_root(s, desc)
}

/// How full a node is after a removal below it.
enum Fill {
    Empty,
    /// Below a quarter of its usable bytes, or a branch with one child.
    Underfull,
    Enough,
}

/// What rebalancing a node leaves for the walk up.
#[derive(PartialEq)]
enum Next {
    /// The parent lost a cell or had one replaced: rebalance it in turn.
    Parent,
    /// The parent is as it was: the walk ends, the root untouched.
    Stop,
}

/// How full node `id` is.
fn fill<S: PageStore>(s: &S, id: PageId) -> Result<Fill> {
    let node = Node::parse_any(s.page(id)?, id)?;
    Ok(if node.count() == 0 {
        Fill::Empty
    } else if node.used() < usable(s.page_size()) / 4 || (!node.is_leaf() && node.count() < 2) {
        Fill::Underfull
    } else {
        Fill::Enough
    })
}

/// Frees the empty node `id` and drops it from its parent, with the place
/// of its separator if long: it covers keys that no longer exist, and its
/// neighbouring children take over its range (when it was child 0, the next
/// cell becomes the head and keeps its key, which nothing reads; a long one
/// is dropped, its place freed). The parent may now be empty or underfull
/// itself.
fn drop_empty<S: PageStore>(s: &mut S, id: PageId, parent: Step) -> Result<Next> {
    s.free(id, 1)?;
    let long = {
        let pnode = Node::parse(s.page(parent.id)?, parent.id)?;
        branch_cell_long_key(pnode.cell(parent.idx)?)
    };
    remove_cell(s.page_mut(parent.id)?, parent.id, parent.idx)?;
    free_key(s, long)?;
    if parent.idx == 0 {
        let (head, child) = {
            let pnode = Node::parse_any(s.page(parent.id)?, parent.id)?;
            if pnode.count() == 0 {
                return Ok(Next::Parent);
            }
            (branch_cell_long_key(pnode.cell(0)?), pnode.child(0)?)
        };
        if head.is_some() {
            let mut cell = Vec::new();
            branch_head(&mut cell, child);
            let page = s.page_mut(parent.id)?;
            remove_cell(page, parent.id, 0)?;
            if !insert_cell(page, parent.id, 0, &cell)? {
                return corrupted(parent.id, "a head does not fit where a longer cell was");
            }
            free_key(s, head)?;
        }
    }
    Ok(Next::Parent)
}

/// Frees the place of a long separator a branch no longer holds.
fn free_key<S: PageStore>(s: &mut S, key: Option<LongKey>) -> Result<()> {
    match key {
        Some(key) => s.free_key(key),
        None => Ok(()),
    }
}

/// Rebalances the underfull node `id`, child `parent.idx` of `parent`, with a
/// sibling: merges the two when their cells fit in one page, else shares the
/// cells out between them. A node without a sibling (under a branch with one
/// child, which a sorted append leaves behind) is left to its parent's
/// rebalancing.
fn rebalance_with_sibling<S: PageStore>(s: &mut S, id: PageId, parent: Step) -> Result<Next> {
    let Some((left, right, ri)) = sibling_pair(s, id, parent)? else {
        return Ok(Next::Parent);
    };
    let pair = Pair::gather(s, parent.id, left, right, ri)?;
    if pair.cells.total() <= usable(s.page_size()) {
        merge(s, parent.id, &pair)
    } else {
        redistribute(s, parent.id, &pair)
    }
}

/// The node `id` and a sibling, as (left, right, the right one's index in the
/// parent): its left sibling when it has one, else its right. The sibling is
/// made dirty. `None` when the parent has no other child.
fn sibling_pair<S: PageStore>(
    s: &mut S,
    id: PageId,
    parent: Step,
) -> Result<Option<(PageId, PageId, usize)>> {
    let pnode = Node::parse(s.page(parent.id)?, parent.id)?;
    if pnode.count() < 2 {
        return Ok(None);
    }
    let sib_idx = if parent.idx > 0 { parent.idx - 1 } else { 1 };
    let sib = cow_child(s, parent.id, sib_idx, pnode.child(sib_idx)?)?;
    Ok(Some(if parent.idx > 0 {
        (sib, id, parent.idx)
    } else {
        (id, sib, 1)
    }))
}

/// Two dirty siblings and the cells one node holding both would have.
struct Pair {
    left: PageId,
    right: PageId,
    /// The right node's index in the parent.
    ri: usize,
    leaf: bool,
    /// The left node's cells, then the right node's joined to them.
    cells: Cells,
    /// How many of `cells` the left node holds.
    left_n: usize,
    /// The parent's free bytes.
    parent_free: usize,
    /// What the parent's cell for the right node costs it.
    sep_cost: usize,
    /// The place of that cell's separator, if long.
    sep_long: Option<LongKey>,
    /// The place of the long key the right node's head holds, if any (a
    /// branch's): joining drops it.
    head_long: Option<LongKey>,
}

impl Pair {
    /// Reads the siblings `left` and `right`, child `ri` of `parent`, and the
    /// separator between them.
    fn gather<S: PageStore>(
        s: &S,
        parent: PageId,
        left: PageId,
        right: PageId,
        ri: usize,
    ) -> Result<Pair> {
        let pnode = Node::parse(s.page(parent)?, parent)?;
        let sep_cell = pnode.cell(ri)?;
        let sep_cost = cell_cost(sep_cell.len());
        let sep_long = branch_cell_long_key(sep_cell);
        let parent_free = pnode.free();
        let sep = branch_key_part(sep_cell);
        let lnode = Node::parse(s.page(left)?, left)?;
        let rnode = Node::parse(s.page(right)?, right)?;
        if lnode.is_leaf() != rnode.is_leaf() {
            return corrupted(parent, "siblings at different depths");
        }
        let leaf = lnode.is_leaf();
        let mut cells = Cells::default();
        for i in 0..lnode.count() {
            cells.push(lnode.cell(i)?);
        }
        let left_n = cells.len();
        let mut joined = Vec::new();
        let mut head_long = None;
        for i in 0..rnode.count() {
            let cell = rnode.cell(i)?;
            cells.push(if i == 0 {
                head_long = dropped_head_key(leaf, cell);
                join(leaf, cell, sep, &mut joined)
            } else {
                cell
            });
        }
        Ok(Pair {
            left,
            right,
            ri,
            leaf,
            cells,
            left_n,
            parent_free,
            sep_cost,
            sep_long,
            head_long,
        })
    }
}

/// Rebuilds the left node with the cells of both, frees the right one and
/// drops it from the parent, which may now be underfull. A leaf's separator
/// goes (its place, if long, freed); a branch's comes down into the joined
/// cell, with its place.
fn merge<S: PageStore>(s: &mut S, parent: PageId, pair: &Pair) -> Result<Next> {
    let (left, txn) = (pair.left, s.txn_id());
    let all = pair.cells.range(0..pair.cells.len());
    rebuild(s.page_mut(left)?, left, pair.leaf, txn, all)?;
    s.free(pair.right, 1)?;
    remove_cell(s.page_mut(parent)?, parent, pair.ri)?;
    if pair.leaf {
        free_key(s, pair.sep_long)?;
    }
    free_key(s, pair.head_long)?;
    Ok(Next::Parent)
}

/// Shares the cells out between the two nodes, balanced by size, and replaces
/// the separator in the parent. Leaves all three as they are when no cut fits
/// both nodes, the best one moves no cell, or the new separator would not fit
/// the parent.
fn redistribute<S: PageStore>(s: &mut S, parent: PageId, pair: &Pair) -> Result<Next> {
    let (left, right, txn) = (pair.left, pair.right, s.txn_id());
    let (cells, n) = (&pair.cells, pair.cells.len());
    let Some(m) = cells.split_point(pair.leaf, usable(s.page_size())) else {
        return Ok(Next::Stop);
    };
    if m == pair.left_n {
        return Ok(Next::Stop);
    }
    let mut head = Vec::new();
    let mut up = Vec::new();
    let first = if pair.leaf {
        // The old separator goes, its place freed if long; the new one is
        // made only once it is known to fit.
        let sep = leaf_separator(s, cells.get(m - 1), cells.get(m))?;
        if pair.parent_free + pair.sep_cost < cell_cost(sep.cell_len(s.page_size())) {
            return Ok(Next::Stop);
        }
        sep.cell(s, right, &mut up)?;
        free_key(s, pair.sep_long)?;
        cells.get(m)
    } else {
        // The old separator comes down into the joined cell and the new one
        // goes up from cell `m`, each with its place.
        let (sep, first) = cut_branch(cells.get(m), &mut head);
        branch_cell_from_part(&mut up, right, sep);
        if pair.parent_free + pair.sep_cost < cell_cost(up.len()) {
            return Ok(Next::Stop);
        }
        free_key(s, pair.head_long)?;
        first
    };
    rebuild(s.page_mut(left)?, left, pair.leaf, txn, cells.range(0..m))?;
    let right_cells = std::iter::once(first).chain(cells.range(m + 1..n));
    rebuild(s.page_mut(right)?, right, pair.leaf, txn, right_cells)?;
    let page = s.page_mut(parent)?;
    remove_cell(page, parent, pair.ri)?;
    if !insert_cell(page, parent, pair.ri, &up)? {
        return corrupted(parent, "separator does not fit after redistribution");
    }
    Ok(Next::Parent)
}

/// Shortens the tree from the root: a root branch with one child is replaced
/// by the child, and an empty root (a leaf, or a branch whose children were
/// all dropped) makes the tree empty.
fn collapse_root<S: PageStore>(s: &mut S, desc: &mut TableDesc) -> Result<()> {
    while desc.root != 0 {
        let root = desc.root;
        let node = Node::parse_any(s.page(root)?, root)?;
        match (node.count(), node.is_leaf()) {
            (0, _) => {
                s.free(root, 1)?;
                *desc = TableDesc::default();
            }
            (1, false) => {
                let child = node.child(0)?;
                let head = branch_cell_long_key(node.cell(0)?);
                s.free(root, 1)?;
                free_key(s, head)?;
                desc.root = child;
                desc.depth -= 1;
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Frees every page of a tree, and every value it keeps out of its leaves,
/// and empties `desc`.
pub(crate) fn drop_tree<S: PageStore>(s: &mut S, desc: &mut TableDesc) -> Result<()> {
    if desc.root == 0 {
        return Ok(());
    }
    let mut seen: HashSet<PageId> = HashSet::new();
    let mut stack = vec![(desc.root, 0usize)];
    let mut runs = Vec::new();
    while let Some((id, level)) = stack.pop() {
        if !seen.insert(id) {
            return corrupted(id, "page reachable twice");
        }
        let node = load_node(s.page(id)?, id, level, desc.depth)?;
        s.check_committed(id, &node)?;
        for i in 0..node.count() {
            if node.is_leaf() {
                if let Some(run) = leaf_cell_value_ref(node.cell(i)?) {
                    runs.push(run);
                }
            } else {
                stack.push((node.child(i)?, level + 1));
                if let NodeKey::Long { key, .. } = node.key(i)? {
                    runs.push((key.at, key.blob));
                }
            }
        }
        for (at, len) in runs.drain(..) {
            s.free_value(at, len)?;
        }
        s.free(id, 1)?;
    }
    *desc = TableDesc::default();
    Ok(())
}
