//! Free pages, grouped by the transaction that freed them.
//!
//! The reuse rule (DESIGN.md): a page freed by transaction `T` is still
//! reachable in snapshot `T - 1`. The writer of `W` may reuse it only when
//! `T <= W - 2` (neither meta on disk reaches it) and no live reader has a
//! snapshot older than `T`.

use std::collections::{BTreeMap, BTreeSet};

use crate::format::page::PageId;

#[derive(Debug, Default, Clone)]
pub(crate) struct FreeList {
    /// Pages any writer may take now.
    reusable: BTreeSet<PageId>,
    /// Pages still reachable from an old snapshot, by the transaction that freed
    /// them.
    pending: BTreeMap<u64, Vec<PageId>>,
}

impl FreeList {
    /// Rebuilds the list from persisted `(freed_by, page)` entries.
    pub(crate) fn from_entries(entries: impl IntoIterator<Item = (u64, PageId)>) -> FreeList {
        let mut list = FreeList::default();
        for (freed_by, page) in entries {
            if freed_by == 0 {
                list.reusable.insert(page);
            } else {
                list.pending.entry(freed_by).or_default().push(page);
            }
        }
        list
    }

    /// Moves every group freed by a transaction `<= limit` into the reusable pool.
    pub(crate) fn release(&mut self, limit: u64) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > limit {
                break;
            }
            self.reusable.extend(entry.remove());
        }
    }

    /// Takes the lowest reusable page.
    pub(crate) fn pop(&mut self) -> Option<PageId> {
        self.reusable.pop_first()
    }

    /// Takes `n` consecutive reusable pages, lowest first, if there are any.
    pub(crate) fn take_run(&mut self, n: u64) -> Option<PageId> {
        if n == 1 {
            return self.pop();
        }
        let mut start = None;
        let mut len = 0;
        let mut prev = None;
        for &page in &self.reusable {
            if prev.is_some_and(|p: PageId| p + 1 == page) {
                len += 1;
            } else {
                start = Some(page);
                len = 1;
            }
            prev = Some(page);
            if len == n {
                break;
            }
        }
        if len < n {
            return None;
        }
        let start = start.expect("a run was found");
        for page in start..start + n {
            self.reusable.remove(&page);
        }
        Some(start)
    }

    /// Makes `page` reusable at once.
    pub(crate) fn insert_reusable(&mut self, page: PageId) {
        self.reusable.insert(page);
    }

    /// Records pages freed by transaction `txn_id`.
    pub(crate) fn add_pending(&mut self, txn_id: u64, pages: &[PageId]) {
        if !pages.is_empty() {
            self.pending
                .entry(txn_id)
                .or_default()
                .extend_from_slice(pages);
        }
    }

    /// Number of entries the persisted list holds.
    pub(crate) fn len(&self) -> usize {
        self.reusable.len() + self.pending.values().map(Vec::len).sum::<usize>()
    }

    /// Number of pages reusable now.
    #[cfg(test)]
    pub(crate) fn reusable_len(&self) -> usize {
        self.reusable.len()
    }

    /// All entries as `(freed_by, page)`, reusable ones with `freed_by = 0`.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, PageId)> + '_ {
        let reusable = self.reusable.iter().map(|&p| (0, p));
        let pending = self
            .pending
            .iter()
            .flat_map(|(&t, pages)| pages.iter().map(move |&p| (t, p)));
        reusable.chain(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_respects_the_limit() {
        let mut f = FreeList::default();
        f.add_pending(5, &[10, 11]);
        f.add_pending(7, &[12]);
        f.release(4);
        assert_eq!(f.pop(), None);
        f.release(6);
        assert_eq!(f.pop(), Some(10));
        assert_eq!(f.pop(), Some(11));
        assert_eq!(f.pop(), None);
        assert_eq!(f.len(), 1);
        f.release(7);
        assert_eq!(f.pop(), Some(12));
    }

    #[test]
    fn runs_are_consecutive() {
        let mut f = FreeList::from_entries([(0, 3), (0, 5), (0, 6), (0, 7), (0, 9)]);
        assert_eq!(f.take_run(4), None);
        assert_eq!(f.take_run(3), Some(5));
        assert_eq!(f.take_run(2), None);
        assert_eq!(f.reusable_len(), 2);
    }

    #[test]
    fn entries_round_trip() {
        let mut f = FreeList::from_entries([(0, 3), (4, 8), (4, 9), (6, 2)]);
        let again = FreeList::from_entries(f.entries().collect::<Vec<_>>());
        assert_eq!(again.len(), 4);
        f.release(4);
        assert_eq!(f.reusable_len(), 3);
    }
}
