//! Compaction: moving a tree's pages from the end of the file to free pages
//! nearer its start, copy-on-write.

use super::store::{PageStore, load_node};
use crate::error::Result;
use crate::format::meta::TableDesc;
use crate::format::node::{LeafValue, set_child, set_overflow};
use crate::format::page::PageId;
use crate::view::run_len;

/// Moves the pages of the tree of `desc` that lie at or past `above` (nodes
/// and overflow runs) to the lowest free pages, when those lie lower, while
/// fewer than `budget` pages have moved. So every page moved goes down, and
/// repeating this ends. A moved
/// page's parent is copied too, to point at the copy (the copy goes to the
/// lowest free page, like any). Returns the pages moved.
///
/// A move is made only while the free pages left cover it, the copies of
/// every node on its path, and `keep` more (the commit's free-list chain):
/// so the walk never takes a page past the end of the file, which a file
/// at `Options::max_size` could not give.
///
/// Every node is read once; the walk is bounded by the descriptor's depth,
/// as a search is.
pub(crate) fn relocate<S: PageStore>(
    s: &mut S,
    desc: &mut TableDesc,
    above: PageId,
    budget: u64,
    keep: u64,
) -> Result<u64> {
    if desc.root == 0 {
        return Ok(0);
    }
    let mut walk = Walk {
        above,
        budget,
        keep,
        moved: 0,
        depth: desc.depth,
    };
    if let Some(root) = walk.node(s, desc.root, 0)? {
        desc.root = root;
    }
    Ok(walk.moved)
}

struct Walk {
    above: PageId,
    budget: u64,
    /// Free pages no move may take: the commit's chain needs them.
    keep: u64,
    moved: u64,
    depth: u32,
}

impl Walk {
    /// Whether `n` pages at `id`, referred to from `path` nodes (the node
    /// holding the reference and its ancestors), should move: they lie at or
    /// past `above`, the free list holds `n` consecutive pages lower down,
    /// and enough free pages are left for them, a copy of each node on the
    /// path, and `keep`.
    fn worth<S: PageStore>(&self, s: &S, id: PageId, n: u64, path: u64) -> bool {
        id >= self.above
            && self.moved < self.budget
            && s.spare_pages() >= n.saturating_add(path).saturating_add(self.keep)
            && s.lowest_free(n).is_some_and(|q| q < id)
    }

    /// Relocates the subtree of node `id` at `level`; returns the node's new
    /// id if it moved (or was copied to point at a moved child).
    fn node<S: PageStore>(
        &mut self,
        s: &mut S,
        id: PageId,
        level: usize,
    ) -> Result<Option<PageId>> {
        let ps = s.page_size();
        // What the node points at, read before anything changes.
        let (leaf, refs) = {
            let node = load_node(s.page(id)?, id, level, self.depth)?;
            let mut refs: Vec<(usize, PageId, u64)> = Vec::new();
            if node.is_leaf() {
                for i in 0..node.count() {
                    if let (_, LeafValue::Overflow { page, len }) = node.entry(i)? {
                        // A run below `above` stays: its header is not read
                        // (a cold page of the map, every pass). One that may
                        // move gets the one check of a run's header, as
                        // freeing it does.
                        if page >= self.above {
                            refs.push((i, page, run_len(s.page(page)?, page, len, ps)?));
                        }
                    }
                }
            } else {
                for i in 0..node.count() {
                    refs.push((i, node.child(i)?, 1));
                }
            }
            (node.is_leaf(), refs)
        };
        let mut updates: Vec<(usize, PageId)> = Vec::new();
        for (i, target, n) in refs {
            let new = if leaf {
                if !self.worth(s, target, n, level as u64 + 1) {
                    continue;
                }
                let new = s.move_run(target, n)?;
                self.moved += n;
                new
            } else {
                match self.node(s, target, level + 1)? {
                    Some(new) => new,
                    None => continue,
                }
            };
            if new != target {
                updates.push((i, new));
            }
        }
        let moves = self.worth(s, id, 1, level as u64);
        if updates.is_empty() && !moves {
            return Ok(None);
        }
        let new = s.cow(id)?;
        if moves && new != id {
            self.moved += 1;
        }
        let page = s.page_mut(new)?;
        for (i, target) in updates {
            if leaf {
                set_overflow(page, new, i, target)?;
            } else {
                set_child(page, new, i, target)?;
            }
        }
        Ok((new != id).then_some(new))
    }
}
