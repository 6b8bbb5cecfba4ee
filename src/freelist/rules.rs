//! The rules every persisted free list obeys. The reader refuses a chain that
//! breaks one; the commit checks the chain it is about to write with the
//! same rules.

use crate::format::page::{PageId, PageSet};

/// A rule of [`ListRules`] that a free list breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Broken {
    /// A chain page outside `2..high_water`, or one the chain reaches twice.
    Chain,
    /// An entry outside `2..high_water`, freed by a later transaction, or
    /// repeated.
    Entry,
    /// A pending entry not written before it was freed, or a reusable one
    /// that names a writer.
    Interval,
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
            Broken::Interval => "free-list entry written after it was freed",
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
            Broken::Interval => {
                "the commit's free list holds a page written after it was freed \
                 (the file was damaged)"
            }
        }
    }
}

/// The rules a persisted free list obeys, for a snapshot whose high-water
/// mark is `high_water`, written by transaction `txn_id`: every chain page and
/// every entry lies in `2..high_water`, no page is on the chain twice or listed twice, no entry was
/// freed by a later transaction than `txn_id`, a pending entry was written
/// before it was freed (`written_by < freed_by`) and a reusable one
/// (`freed_by` 0) names no writer, and no chain page is listed.
/// (The meta's entry count must also match; the commit writes it from the
/// list itself.)
///
/// The reader (`read_chain`) refuses a list that breaks one, and open then
/// falls back to the older meta; so the commit (`write_chain`) checks the
/// list it is about to write with the same rules, and fails instead of
/// writing a commit that the next open would drop.
pub(crate) struct ListRules {
    high_water: u64,
    txn_id: u64,
    chain: PageSet,
    listed: PageSet,
}

impl ListRules {
    pub(crate) fn new(high_water: u64, txn_id: u64) -> ListRules {
        ListRules {
            high_water,
            txn_id,
            chain: PageSet::default(),
            listed: PageSet::default(),
        }
    }

    fn in_range(&self, page: PageId) -> bool {
        (2..self.high_water).contains(&page)
    }

    /// Takes the next page of the chain.
    pub(crate) fn chain_page(&mut self, page: PageId) -> Result<(), Broken> {
        if !self.in_range(page) || !self.chain.insert(page) {
            return Err(Broken::Chain);
        }
        Ok(())
    }

    /// Takes one entry.
    pub(crate) fn entry(
        &mut self,
        freed_by: u64,
        written_by: u64,
        page: PageId,
    ) -> Result<(), Broken> {
        if !self.in_range(page) || freed_by > self.txn_id || !self.listed.insert(page) {
            return Err(Broken::Entry);
        }
        let interval = if freed_by == 0 {
            written_by == 0
        } else {
            written_by < freed_by
        };
        if !interval {
            return Err(Broken::Interval);
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
        assert_eq!(r.entry(0, 0, 2), Ok(()));
        assert_eq!(r.entry(5, 4, 3), Ok(()));
        assert_eq!(r.entry(4, 0, 3), Err(Broken::Entry));
        assert_eq!(r.entry(6, 0, 4), Err(Broken::Entry));
        assert_eq!(r.entry(0, 0, 10), Err(Broken::Entry));
        assert_eq!(r.entry(0, 0, 0), Err(Broken::Entry));
        // The interval: written strictly before freed; reusable names none.
        assert_eq!(r.entry(5, 5, 4), Err(Broken::Interval));
        assert_eq!(r.entry(3, 4, 5), Err(Broken::Interval));
        assert_eq!(r.entry(0, 1, 6), Err(Broken::Interval));
        assert_eq!(r.entry(5, 0, 7), Ok(()));
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(r.entry(1, 0, 9), Ok(()));
        assert_eq!(r.finish(), Err((9, Broken::ChainListed)));
    }
}
