//! Reading the persisted free-list chain of a snapshot.

use std::collections::HashSet;

use crate::btree::PageSource;
use crate::error::{Result, corrupted};
use crate::format::meta::Meta;
use crate::format::page::{PageId, read_freelist};

/// A persisted free list: its `(freed_by, page)` entries and the chain's own
/// pages.
pub(crate) struct Chain {
    pub entries: Vec<(u64, PageId)>,
    pub pages: Vec<PageId>,
}

/// Reads the free-list chain of `meta`, checking every id, loop and count.
pub(crate) fn read_chain<'a>(view: impl PageSource<'a>, meta: &Meta) -> Result<Chain> {
    let mut chain = Vec::new();
    let mut chain_set = HashSet::new();
    let mut pages = HashSet::new();
    let mut entries = Vec::new();
    let mut id = meta.freelist_head;
    while id != 0 {
        if !chain_set.insert(id) {
            return corrupted(id, "free-list chain loops");
        }
        let (next, list) = read_freelist(view.page(id)?, id)?;
        chain.push(id);
        for e in list {
            let (page, freed_by) = (e.page.get(), e.freed_by.get());
            if page < 2 || page >= meta.pages || freed_by > meta.txn_id || !pages.insert(page) {
                return corrupted(id, "free-list entry out of range or repeated");
            }
            entries.push((freed_by, page));
        }
        id = next;
    }
    if entries.len() as u64 != meta.freelist_entries {
        return corrupted(meta.txn_id % 2, "free-list length differs from the meta");
    }
    if chain.iter().any(|p| pages.contains(p)) {
        return corrupted(meta.freelist_head, "free-list page lists itself as free");
    }
    Ok(Chain {
        entries,
        pages: chain,
    })
}
