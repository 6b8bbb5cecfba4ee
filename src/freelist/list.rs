//! Free pages in memory: the list as of a commit ([`FreeList`]), and a write
//! transaction's changes to it ([`TxnFreeList`]).
//!
//! The reuse rule (DESIGN.md, "The page reuse rule"): a page written by
//! transaction `A` and freed by transaction `T` is reached by the snapshots
//! `A..T` and by no other. The writer may reuse it once no snapshot in
//! `A..T` is pinned: held by a live reader of any process, or by a meta on
//! disk ([`Pins`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::format::page::{PageId, PageSet};

/// One free page as the persisted list holds it: reusable now (`freed_by`
/// and `written_by` 0), or pending, reached by snapshots
/// `written_by..freed_by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub freed_by: u64,
    pub written_by: u64,
    pub page: PageId,
}

/// The snapshots that may still read pages: those of live readers, in every
/// process, and every snapshot from `metas_from` on (the metas on disk, and
/// the writer's base).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pins<'a> {
    live: &'a BTreeSet<u64>,
    metas_from: u64,
}

impl<'a> Pins<'a> {
    pub(crate) fn new(live: &'a BTreeSet<u64>, metas_from: u64) -> Pins<'a> {
        Pins { live, metas_from }
    }

    /// The newest pinned snapshot older than `t`: a page freed by `t` is
    /// reusable when it was written after this one (or there is none).
    fn newest_below(&self, t: u64) -> Option<u64> {
        if t > self.metas_from {
            return Some(t - 1);
        }
        self.live.range(..t).next_back().copied()
    }

    /// Whether a meta on disk (or the writer's base) reaches snapshots
    /// `a..t`.
    fn meta_reaches(&self, t: u64) -> bool {
        t > self.metas_from
    }
}

/// What the writer learns from the header of a page it is about to release:
/// the transaction that wrote it and the pages it spans (1, or an overflow
/// run's length). `None` when the page cannot be read as a page of the
/// snapshot.
pub(crate) type Header = Option<(u64, u64)>;

/// Free pages: reusable now, or pending by the transaction that freed them.
#[derive(Debug, Default, Clone)]
pub(crate) struct FreeList {
    /// Pages any writer may take now.
    reusable: BTreeSet<PageId>,
    /// Pages still reachable from an old snapshot, by the transaction that
    /// freed them (`T`); each group holds `(written_by, page)`, sorted, so
    /// that the pages a release takes are a suffix of it.
    pending: BTreeMap<u64, Vec<(u64, PageId)>>,
    /// The same pending pages by page: `(freed_by, written_by)` of each, so
    /// that the entries of a range of pages come out in page order, as the
    /// leaves of the persisted list hold them.
    pending_at: BTreeMap<PageId, (u64, u64)>,
    /// Pages whose entry may differ from the list as last persisted (taken,
    /// added, released): the leaves holding them are the ones the next
    /// commit rewrites. A page listed needlessly costs a rewrite, never a
    /// wrong list.
    changed: BTreeSet<PageId>,
    /// A page added while it was already listed: the file was damaged (a
    /// page reachable from two places freed twice). The commit refuses a
    /// list that holds one.
    twice: Option<PageId>,
    /// For runs of 2 to `RUN_HINTS + 1` pages: no run that long starts
    /// below this page. The pool only shrinks between insertions, so a scan
    /// for a run goes on from where the last one stopped, not from the
    /// lowest page (compaction looks for thousands of runs in one
    /// transaction). Any insertion resets them.
    run_floor: RunFloors,
}

/// One floor per run length of `FreeList::run_floor`.
#[derive(Debug, Clone)]
struct RunFloors([std::cell::Cell<PageId>; RUN_HINTS]);

impl Default for RunFloors {
    fn default() -> Self {
        RunFloors(std::array::from_fn(|_| std::cell::Cell::new(0)))
    }
}

/// Run lengths whose search remembers where it stopped (`run_floor`): up
/// to the 64 pages of a value segment, which a transaction may look for
/// dozens of times.
const RUN_HINTS: usize = 63;

impl FreeList {
    /// The pages transaction `t` freed that are still pending: after `t`'s
    /// commit, every committed page it freed.
    pub(crate) fn pending_of(&self, t: u64) -> impl Iterator<Item = PageId> + '_ {
        self.pending.get(&t).into_iter().flatten().map(|&(_, p)| p)
    }

    /// Rebuilds the list from persisted entries.
    pub(crate) fn from_entries(entries: impl IntoIterator<Item = Entry>) -> FreeList {
        let mut list = FreeList::default();
        for e in entries {
            if e.freed_by == 0 {
                list.add_reusable(e.page);
            } else {
                let group = list.pending.entry(e.freed_by).or_default();
                group.push((e.written_by, e.page));
                list.index_pending(e.page, e.freed_by, e.written_by);
            }
        }
        for group in list.pending.values_mut() {
            group.sort_unstable();
        }
        list.changed.clear();
        list
    }

    /// Adds `page` to the reusable pool, noting a page listed twice.
    fn add_reusable(&mut self, page: PageId) {
        if !self.reusable.insert(page) || self.pending_at.contains_key(&page) {
            self.twice.get_or_insert(page);
        }
        self.changed.insert(page);
    }

    /// Indexes pending `page` by page, noting a page listed twice (whose
    /// first entry the index keeps).
    fn index_pending(&mut self, page: PageId, freed_by: u64, written_by: u64) {
        let mut again = self.reusable.contains(&page);
        match self.pending_at.entry(page) {
            std::collections::btree_map::Entry::Occupied(_) => again = true,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert((freed_by, written_by));
            }
        }
        if again {
            self.twice.get_or_insert(page);
        }
        self.changed.insert(page);
    }

    /// Takes back what [`TxnFreeList::apply`] added: `local` as reusable
    /// pages, and the group of `txn_id`; `twice` is what
    /// [`listed_twice`](FreeList::listed_twice) said before.
    fn unapply(&mut self, txn_id: u64, local: &[PageId], twice: Option<PageId>) {
        for p in local {
            self.reusable.remove(p);
        }
        for (_, p) in self.pending.remove(&txn_id).unwrap_or_default() {
            if self.pending_at.get(&p).is_some_and(|&(t, _)| t == txn_id) {
                self.pending_at.remove(&p);
            }
        }
        self.twice = twice;
    }

    /// A page the list holds twice, if any (the file was damaged).
    pub(crate) fn listed_twice(&self) -> Option<PageId> {
        self.twice
    }

    /// Pages whose entries changed since the list was last persisted.
    pub(crate) fn changed(&self) -> &BTreeSet<PageId> {
        &self.changed
    }

    /// The list is what the file holds now: nothing changed since.
    pub(crate) fn persisted(&mut self) {
        self.changed.clear();
    }

    /// How many entries lie in `pages`.
    pub(crate) fn count_in(&self, pages: std::ops::Range<PageId>) -> usize {
        self.reusable.range(pages.clone()).count() + self.pending_at.range(pages).count()
    }

    /// The entries of `pages`, in page order (a page listed both reusable
    /// and pending comes out twice).
    pub(crate) fn entries_in(&self, pages: std::ops::Range<PageId>) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.count_in(pages.clone()));
        let mut pending = self.pending_at.range(pages.clone()).peekable();
        for &page in self.reusable.range(pages) {
            while let Some((&p, &(freed_by, written_by))) = pending.next_if(|&(&p, _)| p <= page) {
                out.push(Entry {
                    freed_by,
                    written_by,
                    page: p,
                });
            }
            out.push(Entry {
                freed_by: 0,
                written_by: 0,
                page,
            });
        }
        out.extend(pending.map(|(&page, &(freed_by, written_by))| Entry {
            freed_by,
            written_by,
            page,
        }));
        out
    }

    /// Moves into the reusable pool every pending page no pinned snapshot
    /// reaches: freed by `T` and written by `A`, with no snapshot of `A..T`
    /// in `pins`. One look-up per group, then only the pages released.
    ///
    /// A group no pinned snapshot older than `T` reaches at all goes
    /// whole: that needs no written-by (the old rule, `T` at most the metas'
    /// limit and the oldest reader). A page that only its written-by lets go
    /// is first checked against its header in the map (`header`): it must
    /// say the page (or the overflow run it starts, whose pages must all be
    /// listed beside it) was written by `A`. Readers refuse a page written
    /// after their snapshot (`view::read_page`), so a live snapshot that
    /// reaches the page is at least `A`, and being older than `T` it is in
    /// `A..T`, pinned. A page whose header disagrees (a damaged or crafted
    /// list) is not released: it stays pending with written-by 0, and waits
    /// for the old rule.
    pub(crate) fn release(&mut self, pins: Pins<'_>, mut header: impl FnMut(PageId) -> Header) {
        let mut emptied = Vec::new();
        let mut released = Vec::new();
        let mut demoted = Vec::new();
        for (&t, group) in self.pending.iter_mut() {
            let Some(pinned) = pins.newest_below(t) else {
                for (_, p) in group.drain(..) {
                    released.push(p);
                }
                emptied.push(t);
                continue;
            };
            let keep = group.partition_point(|&(a, _)| a <= pinned);
            if keep == group.len() {
                continue;
            }
            let candidates: Vec<(u64, PageId)> = group.drain(keep..).collect();
            let mut distrusted = Vec::new();
            let mut i = 0;
            while i < candidates.len() {
                let (a, p) = candidates[i];
                let found = header(p);
                let n = match found {
                    Some((by, n)) if by == a && by < t && n >= 1 => n,
                    _ => 0,
                };
                // A run's pages are listed together, consecutive, by the
                // same writer: its other pages have no header of their own.
                let whole = n >= 1
                    && (1..n).all(|k| {
                        usize::try_from(k)
                            .ok()
                            .and_then(|k| candidates.get(i + k))
                            .is_some_and(|&(b, q)| b == a && Some(q) == p.checked_add(k))
                    });
                if whole {
                    released.extend(p..p + n);
                    i += n as usize;
                } else {
                    // When its header starts a run, the pages listed after it
                    // (consecutive, by the same writer) up to the run's length
                    // are the rest of it: their bytes are a value's, not
                    // headers, and are not asked.
                    distrusted.push((0, p));
                    i += 1;
                    let mut rest = found.map_or(0, |(_, run)| run.saturating_sub(1));
                    while rest > 0
                        && let Some(&(b, q)) = candidates.get(i)
                        && b == a
                        && Some(q) == distrusted.last().and_then(|&(_, l)| l.checked_add(1))
                    {
                        distrusted.push((0, q));
                        i += 1;
                        rest -= 1;
                    }
                }
            }
            if !distrusted.is_empty() {
                demoted.extend(distrusted.iter().map(|&(_, p)| (t, p)));
                group.extend(distrusted);
                group.sort_unstable();
            }
            if group.is_empty() {
                emptied.push(t);
            }
        }
        for t in emptied {
            self.pending.remove(&t);
        }
        for p in released {
            self.pending_at.remove(&p);
            self.add_reusable(p);
        }
        for (t, p) in demoted {
            self.pending_at.insert(p, (t, 0));
            self.changed.insert(p);
        }
        self.grew();
    }

    /// Takes the lowest reusable page.
    pub(crate) fn pop(&mut self) -> Option<PageId> {
        let p = self.reusable.pop_first()?;
        self.changed.insert(p);
        Some(p)
    }

    /// Takes `n` consecutive reusable pages, lowest first, if there are any.
    pub(crate) fn take_run(&mut self, n: u64) -> Option<PageId> {
        if n == 1 {
            return self.pop();
        }
        let start = self.find_run(n)?;
        for page in start..start + n {
            self.remove_reusable(page);
        }
        Some(start)
    }

    /// How many consecutive reusable pages start at `p`, up to `max`.
    pub(crate) fn run_len_at(&self, p: PageId, max: u64) -> u64 {
        let mut len = 0;
        for &page in self.reusable.range(p..p.saturating_add(max)) {
            if page != p + len {
                break;
            }
            len += 1;
        }
        len
    }

    /// The first of the lowest `n` consecutive reusable pages, if any.
    pub(crate) fn find_run(&self, n: u64) -> Option<PageId> {
        if n == 1 {
            return self.reusable.first().copied();
        }
        // No run of `n` (nor a longer one, which starts with one) below it.
        let hint = usize::try_from(n - 2)
            .ok()
            .and_then(|i| self.run_floor.0.get(i));
        let floor = hint.map_or(0, |h| h.get());
        let mut start = None;
        let mut len = 0;
        let mut prev = None;
        let mut found = None;
        for &page in self.reusable.range(floor..) {
            if prev.is_some_and(|p: PageId| p + 1 == page) {
                len += 1;
            } else {
                start = Some(page);
                len = 1;
            }
            prev = Some(page);
            if len == n {
                found = start;
                break;
            }
        }
        if let Some(h) = hint {
            h.set(found.unwrap_or(PageId::MAX));
        }
        found
    }

    /// Forgets where run searches stopped: the pool gained pages.
    fn grew(&self) {
        for h in &self.run_floor.0 {
            h.set(0);
        }
    }

    /// Takes `page` out of the reusable pool; returns whether it was there.
    fn remove_reusable(&mut self, page: PageId) -> bool {
        let was = self.reusable.remove(&page);
        if was {
            self.changed.insert(page);
        }
        was
    }

    /// Makes `page` reusable at once.
    pub(crate) fn insert_reusable(&mut self, page: PageId) {
        self.add_reusable(page);
        self.grew();
    }

    /// Records pages freed by transaction `txn_id`, each with the transaction
    /// that wrote it.
    pub(crate) fn add_pending(&mut self, txn_id: u64, pages: &[(u64, PageId)]) {
        if !pages.is_empty() {
            let group = self.pending.entry(txn_id).or_default();
            group.extend_from_slice(pages);
            group.sort_unstable();
            for &(written_by, page) in pages {
                self.index_pending(page, txn_id, written_by);
            }
        }
    }

    /// Number of entries the persisted list holds.
    pub(crate) fn len(&self) -> usize {
        self.reusable.len() + self.pending.values().map(Vec::len).sum::<usize>()
    }

    /// Number of pages reusable now.
    pub(crate) fn reusable_len(&self) -> usize {
        self.reusable.len()
    }

    /// Number of groups of pending pages.
    #[cfg(test)]
    pub(crate) fn pending_groups(&self) -> usize {
        self.pending.len()
    }

    /// All entries, reusable ones first.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let reusable = self.reusable.iter().map(|&page| Entry {
            freed_by: 0,
            written_by: 0,
            page,
        });
        let pending = self.pending.iter().flat_map(|(&t, pages)| {
            pages.iter().map(move |&(a, page)| Entry {
                freed_by: t,
                written_by: a,
                page,
            })
        });
        reusable.chain(pending)
    }
}

/// For each pinned snapshot of a live reader, the pending pages of
/// `entries` that it alone keeps from reuse: no other live reader's
/// snapshot and no meta on disk reaches them. Ending every reader of that
/// snapshot would let the next writer reuse them.
pub(crate) fn pinned_alone(
    entries: impl IntoIterator<Item = Entry>,
    pins: Pins<'_>,
) -> BTreeMap<u64, u64> {
    let mut alone = BTreeMap::new();
    for e in entries {
        if e.freed_by == 0 || pins.meta_reaches(e.freed_by) {
            continue;
        }
        let mut reach = pins.live.range(e.written_by..e.freed_by);
        if let (Some(&s), None) = (reach.next(), reach.next()) {
            *alone.entry(s).or_insert(0) += 1;
        }
    }
    alone
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
    taken: PageSet,
    /// Pages allocated by this transaction and freed again: reusable at once.
    local: Vec<PageId>,
    /// Committed pages this transaction freed, each with the transaction
    /// that wrote it: pending until the reuse rule allows them.
    freed: Vec<(u64, PageId)>,
    /// Reusable pages of the list at the end of the file that this
    /// transaction cut off with the high-water mark (`trim_tail`; given back
    /// on abort).
    trimmed: Vec<PageId>,
    /// The page taken from the pool last, whose run the next page continues
    /// (`take_grouped`).
    last: Option<PageId>,
    /// One undo log per savepoint of the transaction, oldest first: the
    /// changes made since it (and before the next), in order. Only the
    /// newest records; a restore undoes them newest first, so a savepoint
    /// costs what changes after it, not a copy of the list.
    undo: Vec<Vec<Step>>,
    /// What [`apply`](TxnFreeList::apply) added to the list it handed out.
    applied: Option<Applied>,
}

/// The additions of a commit's [`TxnFreeList::apply`], to take out again
/// if the commit fails.
#[derive(Debug)]
struct Applied {
    txn_id: u64,
    /// The leftovers that were not listed already.
    local: Vec<PageId>,
    /// [`FreeList::listed_twice`] before.
    twice: Option<PageId>,
}

/// A change to a transaction's view of the free list, as an undo log
/// keeps it.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A page taken from the pool (into `taken`).
    Took(PageId),
    /// A run of pages taken from the pool.
    TookRun(PageId, u64),
    /// A page taken from `local`.
    Popped(PageId),
    /// Pages added to `local`.
    Pushed(u64),
    /// Pages added to `freed`.
    Freed(u64),
    /// What `last` was before it changed.
    Last(Option<PageId>),
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
            self.log(Step::Popped(p));
            return Some(p);
        }
        let p = self.list.pop()?;
        self.took(p);
        Some(p)
    }

    /// Records a change in the newest undo log, if a savepoint is live.
    #[inline]
    fn log(&mut self, step: Step) {
        if let Some(log) = self.undo.last_mut() {
            log.push(step);
        }
    }

    /// Page `p` was taken from the pool.
    fn took(&mut self, p: PageId) {
        self.log(Step::Took(p));
        self.log(Step::Last(self.last));
        self.taken.insert(p);
        self.last = Some(p);
    }

    /// A savepoint: changes from now on are logged, so that
    /// `restore(level)` undoes them.
    pub(crate) fn savepoint(&mut self) {
        self.undo.push(Vec::new());
    }

    /// Undoes the changes since the savepoint of `level`, which stays (with
    /// an empty log); the savepoints above it are gone.
    pub(crate) fn restore(&mut self, level: usize) {
        while self.undo.len() > level {
            let log = self.undo.pop().expect("above the level");
            for step in log.into_iter().rev() {
                match step {
                    Step::Took(p) => self.give_back_taken(p, 1),
                    Step::TookRun(p, n) => self.give_back_taken(p, n),
                    Step::Popped(p) => self.local.push(p),
                    Step::Pushed(n) => self.local.truncate(self.local.len() - n as usize),
                    Step::Freed(n) => self.freed.truncate(self.freed.len() - n as usize),
                    Step::Last(last) => self.last = last,
                }
            }
        }
        self.undo.push(Vec::new());
    }

    /// Forgets the savepoint of `level`, keeping the changes since: its log
    /// joins the one before (or goes, if it is the oldest).
    pub(crate) fn release(&mut self, level: usize) {
        if level >= self.undo.len() {
            return;
        }
        let log = self.undo.remove(level);
        if let Some(below) = level.checked_sub(1).map(|l| &mut self.undo[l]) {
            below.extend(log);
        }
    }

    /// Forgets every savepoint.
    pub(crate) fn drop_savepoints(&mut self) {
        self.undo.clear();
    }

    /// Puts the `n` pages from `p`, taken from the pool, back into it.
    fn give_back_taken(&mut self, p: PageId, n: u64) {
        for q in p..p + n {
            self.taken.remove(&q);
            self.list.insert_reusable(q);
        }
    }

    /// A page to reuse that keeps the commit's writes together: one this
    /// transaction allocated and freed again, else the page after the one
    /// taken last, else the first page of the lowest run of two or more.
    /// `None` when the pool holds only pages without a free neighbour.
    pub(crate) fn take_grouped(&mut self) -> Option<PageId> {
        if let Some(p) = self.local.pop() {
            self.log(Step::Popped(p));
            return Some(p);
        }
        let next =
            (self.last.and_then(|l| l.checked_add(1))).filter(|&n| self.list.remove_reusable(n));
        let p = match next {
            Some(p) => p,
            None => {
                let p = self.list.find_run(2)?;
                self.list.remove_reusable(p);
                p
            }
        };
        self.took(p);
        Some(p)
    }

    /// `n` consecutive pages to reuse, the lowest such run.
    pub(crate) fn take_run(&mut self, n: u64) -> Option<PageId> {
        if n == 1 {
            return self.take();
        }
        let p = self.list.take_run(n)?;
        self.log(Step::TookRun(p, n));
        self.taken.extend(p..p + n);
        Some(p)
    }

    /// The lowest run of at least `n` reusable pages: its first page and its
    /// length, counted up to `max`.
    /// For `n` of 1 it is the page `take_run(1)` takes, counted alone when
    /// it is one this transaction freed.
    pub(crate) fn peek_long_run(&self, n: u64, max: u64) -> Option<(PageId, u64)> {
        if n <= 1
            && let Some(&p) = self.local.last()
        {
            return Some((p, 1));
        }
        let p = self.list.find_run(n.max(1))?;
        Some((p, self.list.run_len_at(p, max).max(1)))
    }

    /// How many reusable pages of the pool lie below page `p`, counted up
    /// to `max`.
    pub(crate) fn reusable_below(&self, p: PageId, max: usize) -> usize {
        self.list.reusable.range(..p).take(max).count()
    }

    /// Whether page `p` was reusable when the transaction started (it may
    /// have taken it since): no committed page may point at it.
    pub(crate) fn was_reusable(&self, p: PageId) -> bool {
        self.list.reusable.contains(&p) || self.taken.contains(&p)
    }

    /// The page `take_run(n)` would return, without taking it.
    pub(crate) fn peek_run(&self, n: u64) -> Option<PageId> {
        match self.local.last() {
            Some(&p) if n == 1 => Some(p),
            _ => self.list.find_run(n),
        }
    }

    /// Frees `n` pages from `id` that this transaction allocated: no snapshot
    /// ever saw them, so they are reusable at once.
    pub(crate) fn free_own(&mut self, id: PageId, n: u64) {
        self.log(Step::Pushed(n));
        self.local.extend(id..id + n);
    }

    /// Frees `n` pages from `id` of the committed state, written by
    /// transaction `written_by` (as the header of `id` says): pending until
    /// the reuse rule allows them.
    pub(crate) fn free_committed(&mut self, id: PageId, n: u64, written_by: u64) {
        self.log(Step::Freed(n));
        self.freed.extend((id..id + n).map(|p| (written_by, p)));
    }

    /// Whether the transaction freed no committed page.
    pub(crate) fn freed_none(&self) -> bool {
        self.freed.is_empty()
    }

    /// Pages whose entries this transaction's commit changes, as far as
    /// it is known yet: those taken from the pool or released into it, and
    /// those added (its own leftovers and the pages it freed).
    pub(crate) fn changed(&self) -> impl Iterator<Item = PageId> + '_ {
        let added = self.local.iter().copied();
        let freed = self.freed.iter().map(|&(_, p)| p);
        self.list
            .changed()
            .iter()
            .copied()
            .chain(added)
            .chain(freed)
    }

    /// Whether the list holds page `p` after the commit, `added` being what
    /// [`added`](TxnFreeList::added) returned.
    pub(crate) fn lists(&self, p: PageId, added: &[PageId]) -> bool {
        self.list.reusable.contains(&p)
            || self.list.pending_at.contains_key(&p)
            || added.binary_search(&p).is_ok()
    }

    /// The lowest reusable page, taken before the transaction's own (which
    /// it may have allocated past the end of the file): for the pages of
    /// the free list, which a commit keeps where they are while their
    /// entries do not change.
    pub(crate) fn take_lowest(&mut self) -> Option<PageId> {
        if let Some(p) = self.list.pop() {
            self.took(p);
            return Some(p);
        }
        let p = self.local.pop()?;
        self.log(Step::Popped(p));
        Some(p)
    }

    /// The pages the commit adds to the list, sorted.
    pub(crate) fn added(&self) -> Vec<PageId> {
        let mut added: Vec<PageId> = self.local.clone();
        added.extend(self.freed.iter().map(|&(_, p)| p));
        added.sort_unstable();
        added
    }

    /// Entries in `pages` after this transaction commits, `added` being
    /// what [`added`](TxnFreeList::added) returned.
    pub(crate) fn count_in(&self, pages: std::ops::Range<PageId>, added: &[PageId]) -> usize {
        let from = added.partition_point(|&p| p < pages.start);
        let to = added.partition_point(|&p| p < pages.end);
        self.list.count_in(pages) + (to - from)
    }

    /// Entries the free list will hold after this transaction commits.
    pub(crate) fn len(&self) -> usize {
        self.list.len() + self.local.len() + self.freed.len()
    }

    /// Pages an allocation can take now without growing the file.
    pub(crate) fn spare(&self) -> usize {
        self.list.reusable_len() + self.local.len()
    }

    /// The free list after transaction `txn_id` (this one) commits: its pool,
    /// its leftovers as reusable, and its freed pages as pending, applied in
    /// place and handed out (no copy of a list of any length). The commit
    /// may still fail (a rule of `ListRules`, a write): then it hands the
    /// list back ([`give_back`](TxnFreeList::give_back)), which takes these
    /// additions out again, so that an abort finds the transaction's state
    /// as it was.
    pub(crate) fn apply(&mut self, txn_id: u64) -> FreeList {
        debug_assert!(self.applied.is_none(), "a free list applied twice");
        let twice = self.list.listed_twice();
        let mut local = Vec::with_capacity(self.local.len());
        for &p in &self.local {
            if !self.list.reusable.contains(&p) {
                local.push(p);
            }
            self.list.insert_reusable(p);
        }
        self.list.add_pending(txn_id, &self.freed);
        self.applied = Some(Applied {
            txn_id,
            local,
            twice,
        });
        std::mem::take(&mut self.list)
    }

    /// Takes back the list [`apply`](TxnFreeList::apply) handed out, of a
    /// commit that failed, without what it added.
    pub(crate) fn give_back(&mut self, mut list: FreeList) {
        if let Some(a) = self.applied.take() {
            list.unapply(a.txn_id, &a.local, a.twice);
        }
        self.list = list;
    }

    /// Lowers `high_water` past the reusable pages at the end of the file
    /// (this transaction's own freed ones included) and takes them off the
    /// list: no pinned snapshot reaches them, and the commit's high-water
    /// mark no longer covers them. Returns the new mark. A page still in use
    /// or pending stops it.
    pub(crate) fn trim_tail(&mut self, high_water: u64) -> u64 {
        // The commit's: its savepoints are gone by then, and nothing logs
        // what this changes.
        debug_assert!(self.undo.is_empty(), "a tail trimmed under a savepoint");
        let mut hw = high_water;
        let mut local: Option<BTreeSet<PageId>> = None;
        while hw > 2 {
            let top = hw - 1;
            if self.list.remove_reusable(top) {
                self.trimmed.push(top);
            } else {
                let local = local.get_or_insert_with(|| self.local.iter().copied().collect());
                if !local.remove(&top) {
                    break;
                }
            }
            hw = top;
        }
        if let Some(local) = local {
            self.local = local.into_iter().collect();
        }
        hw
    }

    /// Gives back everything this transaction took and returns the free list
    /// as it was (with the released groups kept reusable).
    pub(crate) fn abort(&mut self) -> FreeList {
        debug_assert!(self.applied.is_none(), "a commit kept its free list");
        for p in self.trimmed.drain(..) {
            self.list.insert_reusable(p);
        }
        for p in self.taken.drain() {
            self.list.insert_reusable(p);
        }
        std::mem::take(&mut self.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers as the writer would find them: every page written by the
    /// transaction `written` says, one page long.
    fn headers(written: &BTreeMap<PageId, (u64, u64)>) -> impl FnMut(PageId) -> Header + '_ {
        |p| written.get(&p).copied()
    }

    fn pending(t: u64, pages: &[(u64, PageId)]) -> FreeList {
        let mut f = FreeList::default();
        f.add_pending(t, pages);
        f
    }

    fn popped(f: &mut FreeList) -> Vec<PageId> {
        std::iter::from_fn(|| f.pop()).collect()
    }

    /// A run search goes on from where the last stopped while the pool
    /// only shrinks, and from the start again once it gains a page.
    #[test]
    fn run_searches_resume_until_the_pool_grows() {
        let mut f = FreeList::default();
        for p in [2, 4, 5, 7, 8, 9] {
            f.insert_reusable(p);
        }
        assert_eq!(f.take_run(2), Some(4));
        assert_eq!(f.find_run(2), Some(7));
        assert_eq!(f.find_run(3), Some(7));
        assert_eq!(f.take_run(3), Some(7));
        assert_eq!(f.find_run(2), None);
        f.insert_reusable(3);
        assert_eq!(f.find_run(2), Some(2));
        assert_eq!(f.take_run(2), Some(2));
        assert_eq!(f.find_run(2), None);
    }

    #[test]
    fn the_old_rule_needs_no_header() {
        let mut f = pending(5, &[(1, 10), (2, 11)]);
        f.add_pending(7, &[(6, 12)]);
        let none = BTreeMap::new();
        // No reader; the metas reach everything freed after 4.
        f.release(Pins::new(&BTreeSet::new(), 4), headers(&none));
        assert_eq!(popped(&mut f), Vec::<PageId>::new());
        f.release(Pins::new(&BTreeSet::new(), 6), headers(&none));
        assert_eq!(popped(&mut f), [10, 11]);
        assert_eq!(f.len(), 1);
        f.release(Pins::new(&BTreeSet::new(), 7), headers(&none));
        assert_eq!(popped(&mut f), [12]);
    }

    /// A page written by 3 and freed by 6 is reached by snapshots 3, 4, 5.
    #[test]
    fn interval_edges() {
        let written = BTreeMap::from([(10, (3, 1))]);
        for (reader, pinned) in [(2, false), (3, true), (4, true), (5, true), (6, false)] {
            let live = BTreeSet::from([reader]);
            let mut f = pending(6, &[(3, 10)]);
            f.release(Pins::new(&live, 100), headers(&written));
            let got = popped(&mut f);
            assert_eq!(got.is_empty(), pinned, "reader of snapshot {reader}");
        }
        // Readers on both sides of the interval pin nothing.
        let live = BTreeSet::from([2, 6, 7]);
        let mut f = pending(6, &[(3, 10)]);
        f.release(Pins::new(&live, 100), headers(&written));
        assert_eq!(popped(&mut f), [10]);
    }

    /// The metas on disk pin every snapshot from the limit on.
    #[test]
    fn the_metas_pin_like_readers() {
        let written = BTreeMap::from([(10, (3, 1)), (11, (5, 1))]);
        let mut f = pending(6, &[(3, 10), (5, 11)]);
        // Metas 5 and 6 (writer 7): snapshot 5 reaches both pages.
        f.release(Pins::new(&BTreeSet::new(), 5), headers(&written));
        assert_eq!(popped(&mut f), Vec::<PageId>::new());
        // Metas 6 and 7: neither, whatever the readers older than 3 hold.
        f.release(Pins::new(&BTreeSet::from([1, 2]), 6), headers(&written));
        assert_eq!(popped(&mut f), [10, 11]);
    }

    /// A replaced page of the free list's directory, written by `T - 1` and
    /// freed by `T`, is the narrowest case: only snapshot `T - 1` holds it.
    #[test]
    fn a_replaced_directory_page_waits_only_for_its_one_snapshot() {
        let written = BTreeMap::from([(11, (4, 1)), (12, (4, 1))]);
        let mut f = pending(5, &[(2, 10), (4, 11), (4, 12)]);
        f.release(Pins::new(&BTreeSet::from([3]), 6), headers(&written));
        assert_eq!(popped(&mut f), [11, 12]);
        assert_eq!(f.len(), 1);
        let mut g = pending(5, &[(2, 10), (4, 11)]);
        g.release(Pins::new(&BTreeSet::from([4]), 6), headers(&written));
        g.release(Pins::new(&BTreeSet::new(), 4), headers(&written));
        assert_eq!(popped(&mut g), Vec::<PageId>::new());
        g.release(Pins::new(&BTreeSet::new(), 5), headers(&written));
        assert_eq!(popped(&mut g), [10, 11]);
    }

    /// A written-by the page's header does not confirm (a damaged or crafted
    /// list) releases nothing early: the page waits for the old rule.
    #[test]
    fn a_header_that_disagrees_keeps_the_page_pending() {
        let live = BTreeSet::from([3]);
        // The list says 5 wrote page 10; its header says 2: snapshot 3
        // reaches it.
        let written = BTreeMap::from([(10, (2, 1)), (11, (5, 1))]);
        let mut f = pending(7, &[(5, 10), (5, 11)]);
        f.release(Pins::new(&live, 100), headers(&written));
        assert_eq!(popped(&mut f), [11]);
        assert_eq!(
            f.entries().collect::<Vec<_>>(),
            [Entry {
                freed_by: 7,
                written_by: 0,
                page: 10
            }]
        );
        // Demoted, it is not read again while the reader stays.
        let mut reads = 0;
        f.release(Pins::new(&live, 100), |_| {
            reads += 1;
            None
        });
        assert_eq!((reads, f.len()), (0, 1));
        // An unreadable header, likewise.
        let mut g = pending(7, &[(5, 11)]);
        g.release(Pins::new(&live, 100), |_| None);
        assert_eq!(g.len(), 1);
        // Once no reader is older than 7, the old rule lets it go.
        f.release(Pins::new(&BTreeSet::from([7]), 100), |_| None);
        assert_eq!(popped(&mut f), [10]);
    }

    /// An overflow run's header is on its first page only: the run goes
    /// whole, all its pages listed beside it, or not at all.
    #[test]
    fn overflow_runs_go_whole() {
        let live = BTreeSet::from([3]);
        let written = BTreeMap::from([(20, (5, 3))]);
        let mut f = pending(7, &[(5, 20), (5, 21), (5, 22)]);
        f.release(Pins::new(&live, 100), headers(&written));
        assert_eq!(popped(&mut f), [20, 21, 22]);
        // Pages of a run listed without its first page, or a run listed
        // short: nothing vouches for them.
        let mut g = pending(7, &[(5, 20), (5, 21), (5, 31)]);
        g.release(Pins::new(&live, 100), headers(&written));
        assert_eq!((popped(&mut g), g.len()), (vec![], 3));
        // A run whose header names another writer: its other pages hold
        // value bytes, which are never asked for a header (a value could
        // imitate one), and all three wait.
        let mut h = pending(7, &[(5, 20), (5, 21), (5, 22)]);
        let mut asked = Vec::new();
        h.release(Pins::new(&live, 100), |p| {
            asked.push(p);
            match p {
                20 => Some((4, 3)),
                _ => Some((5, 1)),
            }
        });
        assert_eq!(asked, [20]);
        assert_eq!((popped(&mut h), h.len()), (vec![], 3));
    }

    /// A reader pinned for good keeps only what its snapshot reaches: the
    /// pages written after it and freed since go back to the pool at every
    /// commit, and the list stays as long as its snapshot is big.
    #[test]
    fn a_reader_pinned_for_good_keeps_only_its_pages() {
        let live = BTreeSet::from([10]);
        let mut f = FreeList::default();
        let mut written = BTreeMap::new();
        // Snapshot 10 reaches pages 2..6, written by 9.
        for p in 2..6 {
            written.insert(p, (9, 1));
        }
        let mut next = 100;
        let mut current: Vec<PageId> = (2..6).collect();
        for w in 11..5000u64 {
            f.release(Pins::new(&live, w - 2), headers(&written));
            // Commit `w` rewrites one page of the four.
            let i = (w % 4) as usize;
            let old = current[i];
            let page = f.pop().unwrap_or_else(|| {
                next += 1;
                next
            });
            let by = written[&old].0;
            f.add_pending(w, &[(by, old)]);
            written.insert(page, (w, 1));
            current[i] = page;
        }
        assert!(f.len() <= 4 + 8, "{} entries", f.len());
        assert!(f.pending_groups() <= 4 + 2, "{} groups", f.pending_groups());
        assert!(next < 120, "grew to {next}");
    }

    #[test]
    fn pages_pinned_alone_are_counted_per_snapshot() {
        let live = BTreeSet::from([3, 5, 8]);
        let entries = [
            (6, 2, 10),  // 3 and 5
            (6, 4, 11),  // 5 alone
            (6, 5, 12),  // 5 alone
            (9, 6, 13),  // 8 alone
            (4, 1, 14),  // 3 alone
            (4, 3, 15),  // 3 alone
            (3, 1, 16),  // none
            (0, 0, 17),  // reusable
            (11, 9, 18), // a meta
        ]
        .map(|(freed_by, written_by, page)| Entry {
            freed_by,
            written_by,
            page,
        });
        let alone = pinned_alone(entries, Pins::new(&live, 10));
        assert_eq!(alone, BTreeMap::from([(3, 2), (5, 2), (8, 1)]));
    }

    #[test]
    fn runs_are_consecutive() {
        let mut f = FreeList::from_entries([3, 5, 6, 7, 9].map(|page| Entry {
            freed_by: 0,
            written_by: 0,
            page,
        }));
        assert_eq!(f.take_run(4), None);
        assert_eq!(f.take_run(3), Some(5));
        assert_eq!(f.take_run(2), None);
        assert_eq!(f.reusable_len(), 2);
    }

    fn entry((freed_by, written_by, page): (u64, u64, PageId)) -> Entry {
        Entry {
            freed_by,
            written_by,
            page,
        }
    }

    #[test]
    fn a_transaction_reuses_its_own_pages_first_and_gives_back_on_abort() {
        let start = [(0, 0, 3), (0, 0, 4), (0, 0, 5), (2, 1, 9)].map(entry);
        let mut t = TxnFreeList::new(FreeList::from_entries(start));
        assert_eq!(t.take(), Some(3));
        t.free_own(20, 2);
        assert_eq!(t.take(), Some(21));
        assert_eq!(t.take_run(2), Some(4));
        t.free_committed(7, 1, 4);
        assert_eq!(t.len(), 1 + 1 + 1);
        let after = t.apply(6);
        assert_eq!(
            after.entries().collect::<Vec<_>>(),
            [(0, 0, 20), (2, 1, 9), (6, 4, 7)].map(entry)
        );
        // The commit failed: the additions go, and the abort gives back
        // what the transaction took.
        t.give_back(after);
        let before = t.abort();
        assert_eq!(before.entries().collect::<Vec<_>>(), start);
    }

    #[test]
    fn the_reusable_tail_is_cut_and_given_back_on_abort() {
        let start = [(0, 0, 3), (0, 0, 7), (0, 0, 8), (5, 4, 6), (0, 0, 9)].map(entry);
        let mut t = TxnFreeList::new(FreeList::from_entries(start));
        t.free_own(10, 2);
        // 11, 10, 9, 8 and 7 go; 6 is pending and stops the cut.
        assert_eq!(t.trim_tail(12), 7);
        let after = t.apply(6);
        assert_eq!(
            after.entries().collect::<Vec<_>>(),
            [(0, 0, 3), (5, 4, 6)].map(entry)
        );
        t.give_back(after);
        // A page in use stops it at once.
        assert_eq!(t.trim_tail(7), 7);
        let before = t.abort();
        let want = FreeList::from_entries(start);
        assert_eq!(
            before.entries().collect::<Vec<_>>(),
            want.entries().collect::<Vec<_>>()
        );
    }

    #[test]
    fn entries_round_trip() {
        let f = FreeList::from_entries([(0, 0, 3), (4, 2, 8), (4, 1, 9), (6, 5, 2)].map(entry));
        let again = FreeList::from_entries(f.entries().collect::<Vec<_>>());
        assert_eq!(again.len(), 4);
        assert_eq!(
            again.entries().collect::<Vec<_>>(),
            [(0, 0, 3), (4, 1, 9), (4, 2, 8), (6, 5, 2)].map(entry)
        );
    }
}
