//! The path from the root to a leaf, found read-only and then made dirty.

use super::source::{PageStore, load_node};
use crate::error::Result;
use crate::format::meta::TableDesc;
use crate::format::node::set_child;
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

impl Path {
    /// Finds the path to `key` in a non-empty tree without modifying anything.
    pub(super) fn find<S: PageStore>(s: &S, desc: &TableDesc, key: &[u8]) -> Result<Path> {
        let mut steps = Vec::with_capacity(desc.depth as usize);
        let mut id = desc.root;
        for level in 0..desc.depth as usize {
            let node = load_node(s.page(id)?, id, level, desc.depth)?;
            if node.is_leaf() {
                let (idx, found) = node.search_leaf(key)?;
                steps.push(Step {
                    id,
                    idx,
                    count: node.count(),
                });
                return Ok(Path { steps, found });
            }
            let idx = node.search_branch(key)?;
            steps.push(Step {
                id,
                idx,
                count: node.count(),
            });
            id = node.child(idx)?;
        }
        crate::error::corrupted(id, "descent did not reach a leaf")
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
        for level in 0..self.steps.len() {
            let old = self.steps[level].id;
            let new = s.cow(old)?;
            if new == old {
                continue;
            }
            self.steps[level].id = new;
            if level == 0 {
                desc.root = new;
            } else {
                let parent = self.steps[level - 1];
                set_child(s.page_mut(parent.id)?, parent.id, parent.idx, new)?;
            }
        }
        Ok(())
    }
}
