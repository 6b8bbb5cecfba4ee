//! Delete with merge and redistribution, and dropping a whole tree.

use std::collections::HashSet;

use super::boundary::{cut, join};
use super::cells::Cells;
use super::path::{Path, Step, cow_child};
use super::source::{PageStore, load_node};
use crate::error::{Result, corrupted};
use crate::format::meta::TableDesc;
use crate::format::node::{
    Node, branch_cell, cell_cost, insert_cell, leaf_cell_overflow_ref, rebuild, remove_cell, usable,
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
    remove_entry(s, *path.steps.last().expect("a path has a leaf"))?;
    desc.entries = desc.entries.saturating_sub(1);
    rebalance(s, desc, &path)?;
    Ok(true)
}

/// Removes the entry at `leaf`, a position in a dirty leaf, and frees its
/// value's overflow run if it has one.
pub(super) fn remove_entry<S: PageStore>(s: &mut S, leaf: Step) -> Result<()> {
    let cell = Node::parse(s.page(leaf.id)?, leaf.id)?.cell(leaf.idx)?;
    if let Some((run, len)) = leaf_cell_overflow_ref(cell) {
        s.free_value(run, len)?;
    }
    remove_cell(s.page_mut(leaf.id)?, leaf.id, leaf.idx)
}

/// Walks up from the leaf of `path`, merging or redistributing every node that
/// fell below a quarter of a page, then shortens the tree from the root.
fn rebalance<S: PageStore>(s: &mut S, desc: &mut TableDesc, path: &Path) -> Result<()> {
    let usable = usable(s.page_size());
    let txn = s.txn_id();
    let mut level = path.steps.len() - 1;
    while level > 0 {
        let id = path.steps[level].id;
        let node = Node::parse_any(s.page(id)?, id)?;
        let leaf = node.is_leaf();
        let underfull =
            node.count() == 0 || node.used() < usable / 4 || (!leaf && node.count() < 2);
        if !underfull {
            return Ok(());
        }
        let parent = path.steps[level - 1];
        if node.count() == 0 {
            // An empty node covers keys that no longer exist: drop it from its
            // parent, whose neighbouring children take over its range (a new
            // cell 0 keeps its key, which searches ignore). The parent may now
            // be empty or underfull itself.
            s.free(id, 1)?;
            remove_cell(s.page_mut(parent.id)?, parent.id, parent.idx)?;
            level -= 1;
            continue;
        }
        let pnode = Node::parse(s.page(parent.id)?, parent.id)?;
        if pnode.count() < 2 {
            // No sibling to lean on: let the parent deal with it.
            level -= 1;
            continue;
        }
        let (li, ri) = if parent.idx > 0 {
            (parent.idx - 1, parent.idx)
        } else {
            (0, 1)
        };
        let sib_idx = if li == parent.idx { ri } else { li };
        let sib_new = cow_child(s, parent.id, sib_idx, pnode.child(sib_idx)?)?;
        let (left, right) = if li == parent.idx {
            (id, sib_new)
        } else {
            (sib_new, id)
        };

        let pnode = Node::parse(s.page(parent.id)?, parent.id)?;
        let sep_cost = cell_cost(pnode.cell(ri)?.len());
        let parent_free = pnode.free();
        let sep = pnode.key(ri)?.to_vec();
        let lnode = Node::parse(s.page(left)?, left)?;
        let rnode = Node::parse(s.page(right)?, right)?;
        if lnode.is_leaf() != leaf || rnode.is_leaf() != leaf {
            return corrupted(parent.id, "siblings at different depths");
        }
        let mut cells = Cells::default();
        for i in 0..lnode.count() {
            cells.push(lnode.cell(i)?);
        }
        let left_n = cells.len();
        let mut joined = Vec::new();
        for i in 0..rnode.count() {
            let cell = rnode.cell(i)?;
            cells.push(if i == 0 {
                join(leaf, cell, &sep, &mut joined)
            } else {
                cell
            });
        }
        let n = cells.len();

        if cells.total() <= usable {
            // Merge right into left and drop the right node.
            rebuild(s.page_mut(left)?, left, leaf, txn, cells.range(0..n))?;
            s.free(right, 1)?;
            remove_cell(s.page_mut(parent.id)?, parent.id, ri)?;
            level -= 1;
            continue;
        }

        // Redistribute the cells of both evenly.
        let Some(m) = cells.split_point(leaf, usable) else {
            return Ok(());
        };
        if m == left_n {
            return Ok(());
        }
        let mut head = Vec::new();
        let (new_sep, first) = cut(leaf, cells.get(m), &mut head);
        let mut up = Vec::new();
        branch_cell(&mut up, right, new_sep);
        if parent_free + sep_cost < cell_cost(up.len()) {
            // The new separator would not fit the parent: keep things as they are.
            return Ok(());
        }
        rebuild(s.page_mut(left)?, left, leaf, txn, cells.range(0..m))?;
        let right_cells = std::iter::once(first).chain(cells.range(m + 1..n));
        rebuild(s.page_mut(right)?, right, leaf, txn, right_cells)?;
        let page = s.page_mut(parent.id)?;
        remove_cell(page, parent.id, ri)?;
        if !insert_cell(page, parent.id, ri, &up)? {
            return corrupted(parent.id, "separator does not fit after redistribution");
        }
        level -= 1;
    }
    collapse_root(s, desc)
}

/// Replaces a root branch with a single child by that child, and an empty root
/// (leaf, or branch whose children were all dropped) by nothing.
fn collapse_root<S: PageStore>(s: &mut S, desc: &mut TableDesc) -> Result<()> {
    while desc.root != 0 {
        let root = desc.root;
        let node = Node::parse_any(s.page(root)?, root)?;
        if node.count() == 0 {
            s.free(root, 1)?;
            *desc = TableDesc::default();
            return Ok(());
        }
        if node.is_leaf() {
            return Ok(());
        }
        if node.count() != 1 {
            return Ok(());
        }
        let child = node.child(0)?;
        s.free(root, 1)?;
        desc.root = child;
        desc.depth -= 1;
    }
    Ok(())
}

/// Frees every page of a tree, overflow runs included, and empties `desc`.
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
        for i in 0..node.count() {
            if node.is_leaf() {
                if let Some(run) = leaf_cell_overflow_ref(node.cell(i)?) {
                    runs.push(run);
                }
            } else {
                stack.push((node.child(i)?, level + 1));
            }
        }
        for (run, len) in runs.drain(..) {
            s.free_value(run, len)?;
        }
        s.free(id, 1)?;
    }
    *desc = TableDesc::default();
    Ok(())
}
