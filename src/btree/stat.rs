//! Counting a tree's pages by kind.

use super::store::load_node;
use crate::error::{Result, corrupted};
use crate::format::meta::TableDesc;
use crate::format::node::{LeafValue, NodeKey, ValueRef};
use crate::format::page::{PageId, PageSet};
use crate::view::{PageSource, run_len};

/// Pages of one tree, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PageCounts {
    pub branch: u64,
    pub leaf: u64,
    pub overflow: u64,
    /// Values packed into value segments (pages the tree shares with other
    /// trees, not counted here).
    pub packed: u64,
    /// Their bytes.
    pub packed_bytes: u64,
}

/// Walks the tree of `desc` and counts its pages. Reads every branch and leaf
/// page, and the first page of every overflow run. `pages` is the snapshot's
/// high-water mark; a node reached twice (a cycle, or a page shared by two
/// branches) or an overflow run reaching past it is corruption, so the walk
/// stays within the file's size and the counts cannot wrap.
pub(crate) fn count_pages<'a, P: PageSource<'a>>(
    src: P,
    desc: &TableDesc,
    pages: u64,
) -> Result<PageCounts> {
    let mut counts = PageCounts::default();
    if desc.root == 0 {
        return Ok(counts);
    }
    // A set of the nodes read, not a map of the snapshot: a crafted meta may
    // claim terabytes of pages over a sparse file.
    let mut seen = PageSet::default();
    let mut stack: Vec<(PageId, usize)> = vec![(desc.root, 0)];
    while let Some((id, level)) = stack.pop() {
        if id >= pages || !seen.insert(id) {
            return corrupted(id, "node reached twice or past the file end");
        }
        let node = load_node(src.page(id)?, id, level, desc.depth)?;
        // The places out of the node: leaf values (with long keys), and
        // long separators.
        let mut places = Vec::new();
        if node.is_leaf() {
            counts.leaf += 1;
            for i in 0..node.count() {
                if let (_, LeafValue::Spilled { at, len, .. }) = node.entry(i)? {
                    places.push((at, len));
                }
            }
        } else {
            counts.branch += 1;
            for i in 0..node.count() {
                stack.push((node.child(i)?, level + 1));
                if let NodeKey::Long { key, .. } = node.key(i)? {
                    places.push((key.at, key.blob));
                }
            }
        }
        for (at, len) in places {
            if let ValueRef::Run(page) = at {
                let first = src.page(page)?;
                let run = run_len(first, page, len, first.len())?;
                if page.checked_add(run).is_none_or(|end| end > pages) {
                    return corrupted(page, "overflow run past the end of the snapshot");
                }
                counts.overflow = match counts.overflow.checked_add(run) {
                    Some(n) => n,
                    None => return corrupted(page, "overflow page count overflows"),
                };
            } else {
                // Each place is one cell's: neither sum can wrap.
                counts.packed += 1;
                counts.packed_bytes += len as u64;
            }
        }
    }
    Ok(counts)
}
