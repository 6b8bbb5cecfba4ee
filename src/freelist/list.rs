//! Free pages in memory: the list as of a commit ([`FreeList`]), and a write
//! transaction's changes to it ([`TxnFreeList`]).
//!
//! The reuse rule (DESIGN.md): a page freed by transaction `T` is still
//! reachable in snapshot `T - 1`. The writer of `W` may reuse it only when
//! `T <= W - 2` (neither meta on disk reaches it) and no live reader has a
//! snapshot older than `T`; a replaced free-list chain, which only snapshot
//! `T - 1` reaches, once no live reader holds that one snapshot.

use std::collections::{BTreeMap, BTreeSet};

use crate::format::page::PageId;

/// Free pages: reusable now, or pending by the transaction that freed them.
#[derive(Debug, Default, Clone)]
pub(crate) struct FreeList {
    /// Pages any writer may take now.
    reusable: BTreeSet<PageId>,
    /// Pages still reachable from an old snapshot, by the transaction that freed
    /// them.
    pending: BTreeMap<u64, Vec<PageId>>,
    /// Of the pending pages, those that transaction `T` freed and only
    /// snapshot `T - 1` reaches: the free-list chain `T - 1` wrote, which
    /// `T` replaced. Known to the handle that freed them, not persisted
    /// (after a reopen they wait like any pending page).
    narrow: BTreeMap<u64, Vec<PageId>>,
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
        while let Some(entry) = self.narrow.first_entry() {
            if *entry.key() > limit {
                break;
            }
            entry.remove();
        }
    }

    /// Moves the pages of narrow groups (see `narrow`) into the reusable
    /// pool where neither meta nor a live snapshot reaches them: freed by
    /// `T <= meta_limit` (so `T - 1` is neither meta on disk) and no live
    /// snapshot is `T - 1`, the one snapshot that reaches them. Without
    /// this, a reader holding an old snapshot makes every commit's free list
    /// longer by the chain it replaced, and the file grow geometrically.
    pub(crate) fn release_narrow(&mut self, meta_limit: u64, live: &BTreeSet<u64>) {
        let ready: Vec<u64> = self
            .narrow
            .range(..=meta_limit)
            .map(|(&t, _)| t)
            .filter(|&t| !live.contains(&(t - 1)))
            .collect();
        for t in ready {
            let pages = self.narrow.remove(&t).expect("listed above");
            if let Some(group) = self.pending.get_mut(&t) {
                let set: BTreeSet<PageId> = pages.iter().copied().collect();
                group.retain(|p| !set.contains(p));
                if group.is_empty() {
                    self.pending.remove(&t);
                }
                self.reusable.extend(set);
            }
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

    /// Records pages freed by transaction `txn_id` (and pending in its
    /// group) that only snapshot `txn_id - 1` reaches.
    pub(crate) fn add_narrow(&mut self, txn_id: u64, pages: &[PageId]) {
        if !pages.is_empty() && txn_id > 0 {
            self.narrow
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

/// The free list as a write transaction sees and changes it: the list it
/// started from, with the groups it may reuse released, and what it took
/// from the list and freed. The pages themselves are the writer's (`Dirty`):
/// this only keeps the ids.
#[derive(Debug, Default)]
pub(crate) struct TxnFreeList {
    /// The free list, with the pages this transaction may reuse released.
    list: FreeList,
    /// Pages taken from the list's pool (given back on abort).
    taken: Vec<PageId>,
    /// Pages allocated by this transaction and freed again: reusable at once.
    local: Vec<PageId>,
    /// Committed pages this transaction freed: pending until the reuse rule
    /// allows them.
    freed: Vec<PageId>,
    /// Of `freed`, the previous commit's free-list chain: only that commit's
    /// snapshot reaches it.
    narrow: Vec<PageId>,
}

impl TxnFreeList {
    /// The free list a transaction starts from (its reusable groups already
    /// released).
    pub(crate) fn new(list: FreeList) -> TxnFreeList {
        TxnFreeList {
            list,
            ..TxnFreeList::default()
        }
    }

    /// A page to reuse: one this transaction allocated and freed again, else
    /// the lowest reusable one.
    pub(crate) fn take(&mut self) -> Option<PageId> {
        if let Some(p) = self.local.pop() {
            return Some(p);
        }
        let p = self.list.pop()?;
        self.taken.push(p);
        Some(p)
    }

    /// `n` consecutive pages to reuse, the lowest such run.
    pub(crate) fn take_run(&mut self, n: u64) -> Option<PageId> {
        if n == 1 {
            return self.take();
        }
        let p = self.list.take_run(n)?;
        self.taken.extend(p..p + n);
        Some(p)
    }

    /// Frees `n` pages from `id` that this transaction allocated: no snapshot
    /// ever saw them, so they are reusable at once.
    pub(crate) fn free_own(&mut self, id: PageId, n: u64) {
        self.local.extend(id..id + n);
    }

    /// Frees `n` pages from `id` of the committed state: pending until the
    /// reuse rule allows them.
    pub(crate) fn free_committed(&mut self, id: PageId, n: u64) {
        self.freed.extend(id..id + n);
    }

    /// Frees a page of the previous commit's free-list chain, which only that
    /// commit's snapshot reaches: pending like any committed page, and
    /// reusable as soon as no reader holds that one snapshot.
    pub(crate) fn free_chain_page(&mut self, id: PageId) {
        self.freed.push(id);
        self.narrow.push(id);
    }

    /// Whether the transaction freed no committed page.
    pub(crate) fn freed_none(&self) -> bool {
        self.freed.is_empty()
    }

    /// Entries the free list will hold after this transaction commits.
    pub(crate) fn len(&self) -> usize {
        self.list.len() + self.local.len() + self.freed.len()
    }

    /// The free list after transaction `txn_id` (this one) commits: its pool,
    /// its leftovers as reusable, and its freed pages as pending. A copy: the
    /// commit may still refuse it (`ListRules`), and then an abort needs the
    /// transaction's own state as it was.
    pub(crate) fn committed(&self, txn_id: u64) -> FreeList {
        let mut list = self.list.clone();
        for &p in &self.local {
            list.insert_reusable(p);
        }
        list.add_pending(txn_id, &self.freed);
        list.add_narrow(txn_id, &self.narrow);
        list
    }

    /// Gives back everything this transaction took and returns the free list
    /// as it was (with the released groups kept reusable).
    pub(crate) fn abort(&mut self) -> FreeList {
        for p in self.taken.drain(..) {
            self.list.insert_reusable(p);
        }
        std::mem::take(&mut self.list)
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
    fn a_replaced_chain_waits_only_for_its_one_snapshot() {
        let mut f = FreeList::default();
        f.add_pending(5, &[10, 11, 12]);
        f.add_narrow(5, &[11, 12]);
        // A reader of snapshot 3 holds the group back, but not the chain
        // pages, which only snapshot 4 reaches.
        f.release(3);
        f.release_narrow(6, &BTreeSet::from([3]));
        assert_eq!((f.pop(), f.pop(), f.pop()), (Some(11), Some(12), None));
        assert_eq!(f.len(), 1);
        // A reader of snapshot 4 holds them; so does a meta (limit below 5).
        let mut g = FreeList::default();
        g.add_pending(5, &[10, 11]);
        g.add_narrow(5, &[11]);
        g.release_narrow(6, &BTreeSet::from([4]));
        g.release_narrow(4, &BTreeSet::new());
        assert_eq!(g.pop(), None);
        g.release(5);
        assert_eq!((g.pop(), g.pop()), (Some(10), Some(11)));
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
    fn a_transaction_reuses_its_own_pages_first_and_gives_back_on_abort() {
        let mut t = TxnFreeList::new(FreeList::from_entries([(0, 3), (0, 4), (0, 5), (2, 9)]));
        assert_eq!(t.take(), Some(3));
        t.free_own(20, 2);
        assert_eq!(t.take(), Some(21));
        assert_eq!(t.take_run(2), Some(4));
        t.free_committed(7, 1);
        assert_eq!(t.len(), 1 + 1 + 1);
        let after = t.committed(6);
        assert_eq!(
            after.entries().collect::<Vec<_>>(),
            [(0, 20), (2, 9), (6, 7)]
        );
        let before = t.abort();
        assert_eq!(
            before.entries().collect::<Vec<_>>(),
            [(0, 3), (0, 4), (0, 5), (2, 9)]
        );
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
