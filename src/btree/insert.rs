//! Insert and overwrite, with splits propagating to the root.

use std::borrow::Cow;

use super::boundary::{Separator, branch_head, cut_branch, leaf_separator};
use super::cells::Cells;
use super::delete::remove_entry;
use super::path::{Bounds, Path};
use super::store::PageStore;
use crate::error::{Result, corrupted};
use crate::format::meta::{MAX_DEPTH, TableDesc};
use crate::format::node::{
    Node, branch_cell_from_part, build, insert_cell, leaf_cell_inline, leaf_cell_long,
    leaf_cell_spilled, leaf_cell_value_ref, long_prefix, max_inline_key, rebuild, replace_cell,
    usable, value_inline,
};
use crate::format::page::PageId;

/// Where the last insert into a table landed, so that the next one into the
/// same leaf (a sorted or clustered load) skips the descent. Valid only while
/// the tree changes through inserts that split nothing: the table clears it
/// on every other change.
///
/// It also keeps the buffer cells are built in, so that an insert allocates
/// nothing of its own.
#[derive(Default)]
pub(crate) struct InsertHint {
    path: Option<Path>,
    /// The key range of the hinted path's leaf.
    bounds: Bounds,
    cell: Vec<u8>,
}

impl InsertHint {
    pub(crate) fn clear(&mut self) {
        self.path = None;
    }
}

/// Stores `value` under `key`, replacing any old value. Returns whether a value
/// was replaced. The caller has checked the key and value lengths.
pub(crate) fn insert<S: PageStore>(
    s: &mut S,
    desc: &mut TableDesc,
    hint: &mut InsertHint,
    key: &[u8],
    value: &[u8],
) -> Result<bool> {
    let mut cell = std::mem::take(&mut hint.cell);
    cell.clear();
    let r = insert_cell_built(s, desc, hint, key, value, &mut cell);
    hint.cell = cell;
    r
}

/// `insert`, building the leaf cell in `cell`.
fn insert_cell_built<S: PageStore>(
    s: &mut S,
    desc: &mut TableDesc,
    hint: &mut InsertHint,
    key: &[u8],
    value: &[u8],
    cell: &mut Vec<u8>,
) -> Result<bool> {
    let ps = s.page_size();
    if key.len() > max_inline_key(ps) {
        // A long key: its bytes and the value's share one place out of the
        // leaf, which holds the key's first bytes to order it.
        let mut both = Vec::with_capacity(key.len() + value.len());
        both.extend_from_slice(key);
        both.extend_from_slice(value);
        let at = s.alloc_value(&both)?;
        leaf_cell_long(cell, key, long_prefix(ps), value.len(), at);
    } else if value_inline(key.len(), value.len(), ps) {
        leaf_cell_inline(cell, key, value);
    } else {
        let at = s.alloc_value(value)?;
        leaf_cell_spilled(cell, key, value.len(), at);
    }

    if desc.root == 0 {
        let page = build(
            s.page_size(),
            true,
            s.txn_id(),
            std::iter::once(cell.as_slice()),
        )?;
        let root = s.alloc_node(page)?;
        *desc = TableDesc {
            root,
            entries: 1,
            depth: 1,
        };
        return Ok(false);
    }

    let path = match hint.path.take() {
        Some(mut path) if hint.bounds.contains(key) => {
            path.aim_leaf(s, key)?;
            path
        }
        old => {
            let steps = old.map(|p| p.steps).unwrap_or_default();
            let mut path = Path::descend(s, desc, key, steps, Some(&mut hint.bounds))?;
            path.make_dirty(s, desc)?;
            path
        }
    };
    let leaf = *path.steps.last().expect("a path has a leaf");
    if path.found {
        let old = Node::parse(s.page(leaf.id)?, leaf.id)?.cell(leaf.idx)?;
        if old == cell.as_slice() {
            hint.path = Some(path);
            return Ok(true);
        }
        let value = leaf_cell_value_ref(old);
        if old.len() == cell.len() {
            // The new cell takes the old one's place: nothing moves.
            if let Some((at, len)) = value {
                s.free_value(at, len)?;
            }
            replace_cell(s.page_mut(leaf.id)?, leaf.id, leaf.idx, cell)?;
            hint.path = Some(path);
            return Ok(true);
        }
        remove_entry(s, leaf, value)?;
    } else {
        // The count comes from the file: no real tree holds 2^64 entries.
        desc.entries = match desc.entries.checked_add(1) {
            Some(n) => n,
            None => return corrupted(desc.root, "entry count overflows"),
        };
    }
    let found = path.found;
    if !insert_at(s, desc, &path, path.steps.len() - 1, leaf.idx, cell)? {
        hint.path = Some(path);
    }
    Ok(found)
}

/// Inserts `cell` at `idx` of the dirty node at `level` of `path`, splitting
/// nodes up the path as needed. Returns whether anything split.
fn insert_at<S: PageStore>(
    s: &mut S,
    desc: &mut TableDesc,
    path: &Path,
    mut level: usize,
    mut idx: usize,
    first: &[u8],
) -> Result<bool> {
    let mut cell = Cow::Borrowed(first);
    let usable = usable(s.page_size());
    let txn = s.txn_id();
    loop {
        let id = path.steps[level].id;
        if insert_cell(s.page_mut(id)?, id, idx, &cell)? {
            return Ok(level + 1 < path.steps.len());
        }

        let (leaf, count) = {
            let node = Node::parse(s.page(id)?, id)?;
            (node.is_leaf(), node.count())
        };
        let ps = s.page_size();
        let up = if idx == count && path.rightmost(level) {
            // Appending at the right edge of the tree (a sorted load): the old
            // page stays as it is, full, and a new one starts with only the
            // new cell.
            append_split(s, id, leaf, &cell)?
        } else {
            split(s, id, idx, &cell, usable)?
        };
        if level == 0 {
            if desc.depth as usize >= MAX_DEPTH {
                return corrupted(id, "tree would exceed the depth bound");
            }
            let mut left = Vec::new();
            branch_head(&mut left, id);
            let cells = [left.as_slice(), up.as_slice()];
            let root = s.alloc_node(build(ps, false, txn, cells.into_iter())?)?;
            desc.root = root;
            desc.depth += 1;
            return Ok(true);
        }
        level -= 1;
        idx = path.steps[level].idx + 1;
        cell = Cow::Owned(up);
    }
}

/// Starts a new right sibling of node `id` holding only `cell`; returns the
/// cell that points the parent at it.
fn append_split<S: PageStore>(s: &mut S, id: PageId, leaf: bool, cell: &[u8]) -> Result<Vec<u8>> {
    let (ps, txn) = (s.page_size(), s.txn_id());
    let mut up = Vec::new();
    if leaf {
        let sep = {
            let node = Node::parse(s.page(id)?, id)?;
            let last = node.cell(node.count() - 1)?;
            leaf_separator(s, last, cell)?
        };
        let right = s.alloc_node(build(ps, leaf, txn, std::iter::once(cell))?)?;
        sep.cell(s, right, &mut up)?;
    } else {
        let mut head = Vec::new();
        let (sep, first) = cut_branch(cell, &mut head);
        let right = s.alloc_node(build(ps, leaf, txn, std::iter::once(first))?)?;
        branch_cell_from_part(&mut up, right, sep);
    }
    Ok(up)
}

/// Splits the dirty node `id` with `cell` inserted at `idx` into two pages
/// balanced by size: the left half is rebuilt in place, the right half built
/// whole in a new page. Returns the cell that points the parent at the new
/// page.
fn split<S: PageStore>(
    s: &mut S,
    id: PageId,
    idx: usize,
    cell: &[u8],
    usable: usize,
) -> Result<Vec<u8>> {
    let (ps, txn) = (s.page_size(), s.txn_id());
    let node = Node::parse(s.page(id)?, id)?;
    let leaf = node.is_leaf();
    let mut cells = Cells::default();
    for i in 0..node.count() {
        if i == idx {
            cells.push(cell);
        }
        cells.push(node.cell(i)?);
    }
    if idx >= node.count() {
        cells.push(cell);
    }
    let n = cells.len();
    let Some(m) = cells.split_point(leaf, usable) else {
        return corrupted(id, "node cells cannot be split into two pages");
    };
    let mut head = Vec::new();
    let mut up = Vec::new();
    if leaf {
        let sep: Separator = leaf_separator(s, cells.get(m - 1), cells.get(m))?;
        let right = s.alloc_node(build(ps, leaf, txn, cells.range(m..n))?)?;
        sep.cell(s, right, &mut up)?;
    } else {
        let (sep, first) = cut_branch(cells.get(m), &mut head);
        let right_cells = std::iter::once(first).chain(cells.range(m + 1..n));
        let right = s.alloc_node(build(ps, leaf, txn, right_cells)?)?;
        branch_cell_from_part(&mut up, right, sep);
    }
    rebuild(s.page_mut(id)?, id, leaf, txn, cells.range(0..m))?;
    Ok(up)
}
