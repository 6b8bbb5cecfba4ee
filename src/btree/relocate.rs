//! Compaction and the heap's cleaning: moving a tree's pages from the end of
//! the file to free pages nearer its start, and its packed values out of
//! segments, copy-on-write.

use super::store::{PageStore, load_node};
use crate::error::Result;
use crate::format::meta::TableDesc;
use crate::format::node::{LeafValue, NodeKey, ValueRef, set_child, set_key_ref, set_value_ref};
use crate::format::page::{PageId, PageSet, overflow_pages};
use crate::view::run_len;

/// Moves the pages of the tree of `desc` that lie at or past `above` (nodes,
/// overflow runs, and values packed into segments there) to the lowest free
/// pages, when those lie lower, while fewer than `budget` pages have moved.
/// So every page moved goes down, and repeating this ends. Values packed
/// into the segments of `clean` move too, wherever they go (the heap's
/// cleaning empties those segments). A moved page's parent is copied too, to
/// point at the copy (the copy goes to the lowest free page, like any).
/// Returns the pages moved.
///
/// A move is made only while the free pages left cover it, the copies of
/// every node on its path, and `keep` more (the commit's free-list pages):
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
    clean: &PageSet,
) -> Result<u64> {
    if desc.root == 0 {
        return Ok(0);
    }
    let mut walk = Walk {
        above,
        clean,
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

struct Walk<'c> {
    above: PageId,
    /// Segments whose values all move.
    clean: &'c PageSet,
    budget: u64,
    /// Free pages no move may take: the commit's chain needs them.
    keep: u64,
    moved: u64,
    depth: u32,
}

/// A reference a node holds that may move.
enum Target {
    Child(PageId),
    Run(PageId, u64),
    /// A value packed into the segment at the first field.
    Packed(PageId, ValueRef, usize),
}

impl Walk<'_> {
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
            s.check_committed(id, &node)?;
            let mut refs: Vec<(usize, Target)> = Vec::new();
            // The places out of the node: leaf values (with long keys), and
            // long separators.
            let mut places = Vec::new();
            if node.is_leaf() {
                for i in 0..node.count() {
                    if let (_, LeafValue::Spilled { at, len, .. }) = node.entry(i)? {
                        places.push((i, at, len));
                    }
                }
            } else {
                for i in 0..node.count() {
                    refs.push((i, Target::Child(node.child(i)?)));
                    if let NodeKey::Long { key, .. } = node.key(i)? {
                        places.push((i, key.at, key.blob));
                    }
                }
            }
            for (i, at, len) in places {
                match at {
                    // A run below `above` stays: its header is not read
                    // (a cold page of the map, every pass). One that may
                    // move gets the one check of a run's header, as
                    // freeing it does.
                    ValueRef::Run(page) if page >= self.above => {
                        let n = run_len(s.page(page)?, page, len, ps)?;
                        refs.push((i, Target::Run(page, n)));
                    }
                    ValueRef::Packed { seg, .. }
                        if seg >= self.above || self.clean.contains(&seg) =>
                    {
                        refs.push((i, Target::Packed(seg, at, len)));
                    }
                    _ => {}
                }
            }
            (node.is_leaf(), refs)
        };
        let mut children: Vec<(usize, PageId)> = Vec::new();
        let mut values: Vec<(usize, ValueRef)> = Vec::new();
        for (i, target) in refs {
            match target {
                Target::Child(child) => {
                    if let Some(new) = self.node(s, child, level + 1)?
                        && new != child
                    {
                        children.push((i, new));
                    }
                }
                Target::Run(run, n) => {
                    if !self.worth(s, run, n, level as u64 + 1) {
                        continue;
                    }
                    let new = s.move_run(run, n)?;
                    self.moved += n;
                    if new != run {
                        values.push((i, ValueRef::Run(new)));
                    }
                }
                Target::Packed(seg, at, len) => {
                    let new = if self.clean.contains(&seg) {
                        s.repack(at, len, PageId::MAX, u64::MAX)?
                    } else {
                        let n = overflow_pages(len, ps);
                        if !self.worth(s, seg, n, level as u64 + 1) {
                            continue;
                        }
                        // A new segment takes no page the moves of the
                        // path and the commit's chain need.
                        let path = level as u64 + 1;
                        let room = s.spare_pages().saturating_sub(path + self.keep);
                        s.repack(at, len, seg, room)?
                    };
                    if new != at {
                        self.moved += overflow_pages(len, ps);
                        values.push((i, new));
                    }
                }
            }
        }
        let moves = self.worth(s, id, 1, level as u64);
        if children.is_empty() && values.is_empty() && !moves {
            return Ok(None);
        }
        let new = s.cow(id)?;
        if moves && new != id {
            self.moved += 1;
        }
        let page = s.page_mut(new)?;
        for (i, child) in children {
            set_child(page, new, i, child)?;
        }
        for (i, at) in values {
            if leaf {
                set_value_ref(page, new, i, at)?;
            } else {
                set_key_ref(page, new, i, at)?;
            }
        }
        Ok((new != id).then_some(new))
    }
}
