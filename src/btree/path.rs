//! The path from the root to a leaf, found read-only and then made dirty.

use super::store::{PageStore, load_node};
use crate::error::Result;
use crate::format::meta::TableDesc;
use std::cmp::Ordering;

use crate::format::node::{Node, set_child};
use crate::format::page::PageId;

/// One level of a path: the page and the index taken in it (the child for a
/// branch, the entry position for the leaf).
#[derive(Clone, Copy, Debug)]
pub(super) struct Step {
    pub id: PageId,
    pub idx: usize,
    /// Cells on the page when the path was found.
    pub count: usize,
}

/// A path to the leaf position of `key`.
pub(super) struct Path {
    pub steps: Vec<Step>,
    /// Whether `key` is present at the leaf position.
    pub found: bool,
}

/// The key range the ancestors of a path's leaf give it: `lower <= k < upper`,
/// unbounded at the tree's edges. Buffers are kept across uses.
#[derive(Default)]
pub(super) struct Bounds {
    lower: Vec<u8>,
    has_lower: bool,
    upper: Vec<u8>,
    has_upper: bool,
}

impl Bounds {
    fn set(&mut self, lower: Option<&[u8]>, upper: Option<&[u8]>) {
        self.has_lower = lower.is_some();
        self.lower.clear();
        self.lower.extend_from_slice(lower.unwrap_or_default());
        self.has_upper = upper.is_some();
        self.upper.clear();
        self.upper.extend_from_slice(upper.unwrap_or_default());
    }

    /// Whether `key` belongs to the leaf.
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        (!self.has_lower || key >= self.lower.as_slice())
            && (!self.has_upper || key < self.upper.as_slice())
    }
}

impl Path {
    /// Finds the path to `key` in a non-empty tree without modifying anything.
    pub(super) fn find<S: PageStore>(s: &S, desc: &TableDesc, key: &[u8]) -> Result<Path> {
        Path::descend(s, desc, key, Vec::new(), None)
    }

    /// `find`, reusing the `steps` buffer and recording the leaf's key range
    /// in `bounds` when given.
    pub(super) fn descend<S: PageStore>(
        s: &S,
        desc: &TableDesc,
        key: &[u8],
        mut steps: Vec<Step>,
        mut bounds: Option<&mut Bounds>,
    ) -> Result<Path> {
        steps.clear();
        let mut id = desc.root;
        let (mut lower, mut upper) = (None, None);
        for level in 0..desc.depth as usize {
            let node = load_node(s.page(id)?, id, level, desc.depth)?;
            if node.is_leaf() {
                let (idx, found) = node.search_leaf(key, s)?;
                steps.push(Step {
                    id,
                    idx,
                    count: node.count(),
                });
                if let Some(b) = bounds.as_deref_mut() {
                    b.set(lower, upper);
                }
                return Ok(Path { steps, found });
            }
            let idx = node.search_branch(key, s)?;
            if bounds.is_some() {
                if idx > 0 {
                    lower = Some(node.full_key(idx, s)?);
                }
                if idx + 1 < node.count() {
                    upper = Some(node.full_key(idx + 1, s)?);
                }
            }
            steps.push(Step {
                id,
                idx,
                count: node.count(),
            });
            id = node.child(idx)?;
        }
        crate::error::corrupted(id, "descent did not reach a leaf")
    }

    /// Re-aims a path whose pages are all dirty and unchanged in shape since
    /// it was found at `key`'s leaf (the caller checked its `Bounds`):
    /// searches only the leaf, trying its end first (a sorted load).
    pub(super) fn aim_leaf<S: PageStore>(&mut self, s: &S, key: &[u8]) -> Result<()> {
        let leaf = self.steps.last_mut().expect("a path has a leaf");
        let node = Node::parse(s.page(leaf.id)?, leaf.id)?;
        let count = node.count();
        let (idx, found) = if count > 0 && node.key(count - 1)?.cmp(key, s)? == Ordering::Less {
            (count, false)
        } else {
            node.search_leaf(key, s)?
        };
        leaf.idx = idx;
        leaf.count = count;
        self.found = found;
        Ok(())
    }

    /// Whether every branch on the path goes to its last child.
    pub(super) fn rightmost(&self, level: usize) -> bool {
        self.steps[..level].iter().all(|s| s.idx + 1 == s.count)
    }

    /// Makes every page on the path dirty, top-down, pointing each parent at
    /// its child's new copy and the descriptor at the new root.
    pub(super) fn make_dirty<S: PageStore>(
        &mut self,
        s: &mut S,
        desc: &mut TableDesc,
    ) -> Result<()> {
        let (root, below) = self.steps.split_first_mut().expect("a path has a leaf");
        root.id = s.cow(root.id)?;
        desc.root = root.id;
        let mut parent = *root;
        for step in below {
            step.id = cow_child(s, parent.id, parent.idx, step.id)?;
            parent = *step;
        }
        Ok(())
    }
}

/// Makes `child`, child `idx` of the dirty branch `parent`, dirty, pointing
/// the parent at the copy when there is a new one (a page already dirty in
/// this transaction is its own copy). Returns the dirty child's id.
pub(super) fn cow_child<S: PageStore>(
    s: &mut S,
    parent: PageId,
    idx: usize,
    child: PageId,
) -> Result<PageId> {
    let new = s.cow(child)?;
    if new != child {
        set_child(s.page_mut(parent)?, parent, idx, new)?;
    }
    Ok(new)
}
