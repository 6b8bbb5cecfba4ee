//! Reading the persisted free-list chain of a snapshot, and the rules every
//! persisted chain obeys, which the commit checks before it writes one.

use crate::error::{Result, corrupted};
use crate::format::meta::Meta;
use crate::format::page::{PageId, PageSet, read_freelist};
use crate::view::PageSource;

/// A persisted free list: its `(freed_by, page)` entries and the chain's own
/// pages.
pub(crate) struct Chain {
    pub entries: Vec<(u64, PageId)>,
    pub pages: Vec<PageId>,
}

/// A rule of [`ListRules`] that a free list breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Broken {
    /// A chain page outside `2..pages`, or one the chain reaches twice.
    Chain,
    /// An entry outside `2..pages`, freed by a later transaction, or repeated.
    Entry,
    /// A page of the chain is also listed as free.
    ChainListed,
}

impl Broken {
    /// Why the reader refuses the list.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Broken::Chain => "free-list chain loops or leaves the snapshot",
            Broken::Entry => "free-list entry out of range or repeated",
            Broken::ChainListed => "free-list page lists itself as free",
        }
    }

    /// Why the commit refuses to write the list.
    pub(crate) fn commit_reason(self) -> &'static str {
        match self {
            Broken::Chain => "the commit's free-list chain repeats a page (the file was damaged)",
            Broken::Entry => {
                "the commit's free list repeats a page or holds one out of range \
                 (the file was damaged: a page reachable twice)"
            }
            Broken::ChainListed => {
                "the commit's free-list chain lists its own page as free (the file was damaged)"
            }
        }
    }
}

/// The rules a persisted free list obeys, for a snapshot of `pages` pages
/// written by transaction `txn_id`: every chain page and every entry lies in
/// `2..pages`, no page is on the chain twice or listed twice, no entry was
/// freed by a later transaction than `txn_id`, and no chain page is listed.
/// (The meta's entry count must also match; the commit writes it from the
/// list itself.)
///
/// The reader ([`read_chain`]) refuses a list that breaks one, and open then
/// falls back to the older meta; so the commit checks the list it is about to
/// write with the same rules, and fails instead of writing a commit that the
/// next open would drop.
pub(crate) struct ListRules {
    pages: u64,
    txn_id: u64,
    chain: PageSet,
    listed: PageSet,
}

impl ListRules {
    pub(crate) fn new(pages: u64, txn_id: u64) -> ListRules {
        ListRules {
            pages,
            txn_id,
            chain: PageSet::default(),
            listed: PageSet::default(),
        }
    }

    fn in_range(&self, page: PageId) -> bool {
        (2..self.pages).contains(&page)
    }

    /// Takes the next page of the chain.
    pub(crate) fn chain_page(&mut self, page: PageId) -> Result<(), Broken> {
        if !self.in_range(page) || !self.chain.insert(page) {
            return Err(Broken::Chain);
        }
        Ok(())
    }

    /// Takes one entry.
    pub(crate) fn entry(&mut self, freed_by: u64, page: PageId) -> Result<(), Broken> {
        if !self.in_range(page) || freed_by > self.txn_id || !self.listed.insert(page) {
            return Err(Broken::Entry);
        }
        Ok(())
    }

    /// After every chain page and entry: the first chain page that is also
    /// listed as free, if any.
    pub(crate) fn finish(&self) -> Result<(), (PageId, Broken)> {
        match self.chain.iter().find(|p| self.listed.contains(p)) {
            Some(&page) => Err((page, Broken::ChainListed)),
            None => Ok(()),
        }
    }
}

/// Reads the free-list chain of `meta`, checking every id, loop and count.
pub(crate) fn read_chain<'a>(view: impl PageSource<'a>, meta: &Meta) -> Result<Chain> {
    let mut rules = ListRules::new(meta.pages, meta.txn_id);
    let mut chain = Vec::new();
    let mut entries = Vec::new();
    let mut id = meta.freelist_head;
    while id != 0 {
        if let Err(broken) = rules.chain_page(id) {
            return corrupted(id, broken.reason());
        }
        let (next, list) = read_freelist(view.page(id)?, id)?;
        chain.push(id);
        for e in list {
            let (page, freed_by) = (e.page.get(), e.freed_by.get());
            if let Err(broken) = rules.entry(freed_by, page) {
                return corrupted(id, broken.reason());
            }
            entries.push((freed_by, page));
        }
        id = next;
    }
    if entries.len() as u64 != meta.freelist_entries {
        return corrupted(meta.txn_id % 2, "free-list length differs from the meta");
    }
    if let Err((_, broken)) = rules.finish() {
        return corrupted(meta.freelist_head, broken.reason());
    }
    Ok(Chain {
        entries,
        pages: chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        let mut r = ListRules::new(10, 5);
        assert_eq!(r.chain_page(9), Ok(()));
        assert_eq!(r.chain_page(9), Err(Broken::Chain));
        assert_eq!(r.chain_page(10), Err(Broken::Chain));
        assert_eq!(r.chain_page(1), Err(Broken::Chain));
        assert_eq!(r.entry(0, 2), Ok(()));
        assert_eq!(r.entry(5, 3), Ok(()));
        assert_eq!(r.entry(4, 3), Err(Broken::Entry));
        assert_eq!(r.entry(6, 4), Err(Broken::Entry));
        assert_eq!(r.entry(0, 10), Err(Broken::Entry));
        assert_eq!(r.entry(0, 0), Err(Broken::Entry));
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(r.entry(1, 9), Ok(()));
        assert_eq!(r.finish(), Err((9, Broken::ChainListed)));
    }
}
