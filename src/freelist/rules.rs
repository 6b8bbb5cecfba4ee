//! The rules every persisted free list obeys. The reader refuses a list that
//! breaks one; the commit checks the leaves it is about to write with the
//! same rules.

use crate::format::page::{PageId, PageSet};

/// A rule of [`ListRules`] that a free list breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Broken {
    /// A page of the directory or a leaf outside `2..high_water`, or one
    /// the list reaches twice.
    ListPage,
    /// An entry outside `2..high_water`, freed by a later transaction, or
    /// not after the entry before it in page order (repeated, or out of
    /// order).
    Entry,
    /// A pending entry not written before it was freed, or a reusable one
    /// that names a writer.
    Interval,
    /// A page of the list itself is also listed as free.
    ListedItself,
}

impl Broken {
    /// Why the reader refuses the list.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Broken::ListPage => "free-list pages loop or leave the snapshot",
            Broken::Entry => "free-list entry out of range, out of order or repeated",
            Broken::ListedItself => "free-list page lists itself as free",
            Broken::Interval => "free-list entry written after it was freed",
        }
    }

    /// Why the commit refuses to write the list.
    pub(crate) fn commit_reason(self) -> &'static str {
        match self {
            Broken::ListPage => {
                "the commit's free list reaches a page of its own twice (the file was damaged)"
            }
            Broken::Entry => {
                "the commit's free list repeats a page or holds one out of range \
                 (the file was damaged: a page reachable twice)"
            }
            Broken::ListedItself => {
                "the commit's free list lists its own page as free (the file was damaged)"
            }
            Broken::Interval => {
                "the commit's free list holds a page written after it was freed \
                 (the file was damaged)"
            }
        }
    }
}

/// The rules a persisted free list obeys, for a snapshot whose high-water
/// mark is `high_water`, written by transaction `txn_id`: every page of the
/// list (directory and leaves) and every entry lies in `2..high_water`, no
/// page of the list is reached twice, the entries come in strictly
/// increasing page order (so none is listed twice), none was freed by a
/// later transaction than `txn_id`, a pending entry was written before it
/// was freed (`written_by < freed_by`) and a reusable one (`freed_by` 0)
/// names no writer, and no page of the list is listed.
/// (The meta's entry count must also match; the commit writes it from the
/// list itself.)
///
/// Every page of the list is taken before the first entry. The reader
/// (`read_list`) refuses a list that breaks a rule, and open then falls
/// back to the older meta; so the commit (`write_list`) checks the leaves
/// it writes with the same rules, and fails instead of writing a commit
/// that the next open would drop. (The leaves it keeps were checked when
/// they were written or read, and their pages of the list and the ranges
/// of pages they hold do not change.)
pub(crate) struct ListRules {
    high_water: u64,
    txn_id: u64,
    own: PageSet,
    last: PageId,
}

impl ListRules {
    pub(crate) fn new(high_water: u64, txn_id: u64) -> ListRules {
        ListRules {
            high_water,
            txn_id,
            own: PageSet::default(),
            last: 0,
        }
    }

    fn in_range(&self, page: PageId) -> bool {
        (2..self.high_water).contains(&page)
    }

    /// Takes the next page of the list (of its directory, or a leaf).
    pub(crate) fn list_page(&mut self, page: PageId) -> Result<(), Broken> {
        if !self.in_range(page) || !self.own.insert(page) {
            return Err(Broken::ListPage);
        }
        Ok(())
    }

    /// Takes the next entry in page order.
    pub(crate) fn entry(
        &mut self,
        freed_by: u64,
        written_by: u64,
        page: PageId,
    ) -> Result<(), Broken> {
        if !self.in_range(page) || freed_by > self.txn_id || page <= self.last {
            return Err(Broken::Entry);
        }
        self.last = page;
        let interval = if freed_by == 0 {
            written_by == 0
        } else {
            written_by < freed_by
        };
        if !interval {
            return Err(Broken::Interval);
        }
        if self.own.contains(&page) {
            return Err(Broken::ListedItself);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        let mut r = ListRules::new(20, 5);
        assert_eq!(r.list_page(19), Ok(()));
        assert_eq!(r.list_page(19), Err(Broken::ListPage));
        assert_eq!(r.list_page(20), Err(Broken::ListPage));
        assert_eq!(r.list_page(1), Err(Broken::ListPage));
        assert_eq!(r.entry(0, 0, 0), Err(Broken::Entry));
        assert_eq!(r.entry(0, 0, 2), Ok(()));
        assert_eq!(r.entry(5, 4, 3), Ok(()));
        // Repeated, or out of page order.
        assert_eq!(r.entry(4, 0, 3), Err(Broken::Entry));
        assert_eq!(r.entry(0, 0, 2), Err(Broken::Entry));
        assert_eq!(r.entry(6, 0, 4), Err(Broken::Entry));
        assert_eq!(r.entry(0, 0, 20), Err(Broken::Entry));
        // The interval: written strictly before freed; reusable names none.
        assert_eq!(r.entry(5, 5, 5), Err(Broken::Interval));
        assert_eq!(r.entry(3, 4, 6), Err(Broken::Interval));
        assert_eq!(r.entry(0, 1, 7), Err(Broken::Interval));
        assert_eq!(r.entry(5, 0, 8), Ok(()));
        assert_eq!(r.entry(1, 0, 19), Err(Broken::ListedItself));
    }
}
