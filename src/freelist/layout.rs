//! The free list in the file: leaves of entries in page order, and a
//! directory chain that lists the leaves (layouts in `format::page`).
//! Reading a snapshot's list, every id checked; and writing the list a
//! commit leaves, which rewrites only the leaves whose entries changed and
//! the directory, checked by the same rules.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use zerocopy::little_endian::U64;

use super::list::{Entry, FreeList, Header, TxnFreeList};
use super::rules::ListRules;
use crate::error::{Result, corrupted};
use crate::format::meta::Meta;
use crate::format::page::{
    FreeEntry, KIND_BRANCH, KIND_FREEDIR, KIND_FREELIST, KIND_LEAF, KIND_OVERFLOW, KIND_SEGMENT,
    PageId, freedir_capacity, freelist_capacity, overflow_run, read_freedir, read_freelist,
    segment_run, write_freedir, write_freelist, written_by,
};
use crate::view::PageSource;

/// Where a persisted free list lies: its directory and its leaves.
#[derive(Debug, Default, Clone)]
pub(crate) struct Layout {
    /// The directory's pages, in chain order: the first is the meta's
    /// `freelist_head`. None for a list of one leaf, which the meta names
    /// itself (or of none).
    dir: Vec<PageId>,
    /// Each leaf's page, by the lowest page its entries may name: a leaf
    /// holds the entries from its key up to the next leaf's. The first
    /// leaf's key is 0.
    leaves: BTreeMap<PageId, PageId>,
}

/// The leaf holding page `p`'s entry (or that would hold it), by its
/// position among the leaves whose keys are `keys`; `None` without leaves.
fn leaf_of(keys: &[PageId], p: PageId) -> Option<usize> {
    keys.partition_point(|&k| k <= p).checked_sub(1)
}

/// A persisted free list as read: its entries, the pages holding them (the
/// directory's, then the leaves'), and where they lie.
pub(crate) struct Listed {
    pub entries: Vec<Entry>,
    pub pages: Vec<PageId>,
    layout: Layout,
}

/// A free list as a commit persists it: the list, and where it lies in the
/// file. The writer keeps the last commit's between transactions.
#[derive(Debug, Default)]
pub(crate) struct Persisted {
    pub list: FreeList,
    pub layout: Layout,
}

impl Persisted {
    /// The directory's first page (the meta's `freelist_head`), 0 when
    /// the list has none.
    pub(crate) fn head(&self) -> PageId {
        match (
            self.layout.dir.first(),
            self.layout.leaves.first_key_value(),
        ) {
            (Some(&dir), _) => dir,
            (None, Some((_, &leaf))) => leaf,
            (None, None) => 0,
        }
    }

    /// The commit that wrote this list is published: the list is what the
    /// file holds, nothing changed since.
    pub(crate) fn published(&mut self) {
        self.list.persisted();
    }

    /// Entries in the list (the meta's `freelist_entries`).
    pub(crate) fn entries(&self) -> u64 {
        self.list.len() as u64
    }
}

/// Reads the free list of `meta`, checking every id, loop and count: the
/// directory chain first, so that every page of the list is known before
/// the first entry is checked against them.
pub(crate) fn read_list<'a>(view: impl PageSource<'a>, meta: &Meta) -> Result<Listed> {
    let mut rules = ListRules::new(meta.high_water, meta.txn_id);
    let mut dir = Vec::new();
    let mut leaf_ids = Vec::new();
    let mut id = meta.freelist_head;
    // A list of one leaf may have no directory: the meta names the leaf.
    if id != 0 && view.page(id)?.first() == Some(&KIND_FREELIST) {
        if let Err(broken) = rules.list_page(id) {
            return corrupted(id, broken.reason());
        }
        leaf_ids.push(id);
        id = 0;
    }
    while id != 0 {
        if let Err(broken) = rules.list_page(id) {
            return corrupted(id, broken.reason());
        }
        let (next, ids) = read_freedir(view.page(id)?, id)?;
        dir.push(id);
        for leaf in ids {
            let leaf = leaf.get();
            if let Err(broken) = rules.list_page(leaf) {
                return corrupted(id, broken.reason());
            }
            leaf_ids.push(leaf);
        }
        id = next;
    }
    let mut entries = Vec::new();
    let mut leaves = BTreeMap::new();
    for &leaf in &leaf_ids {
        let (next, list) = read_freelist(view.page(leaf)?, leaf)?;
        if next != 0 {
            return corrupted(leaf, "free-list leaf points at another page");
        }
        let Some(first) = list.first() else {
            return corrupted(leaf, "free-list leaf holds no entry");
        };
        let key = if leaves.is_empty() {
            0
        } else {
            first.page.get()
        };
        leaves.insert(key, leaf);
        for e in list {
            let e = Entry {
                freed_by: e.freed_by.get(),
                written_by: e.written_by.get(),
                page: e.page.get(),
            };
            if let Err(broken) = rules.entry(e.freed_by, e.written_by, e.page) {
                return corrupted(leaf, broken.reason());
            }
            entries.push(e);
        }
    }
    if entries.len() as u64 != meta.freelist_entries {
        return corrupted(meta.txn_id % 2, "free-list length differs from the meta");
    }
    let mut pages = dir.clone();
    pages.extend(&leaf_ids);
    Ok(Listed {
        entries,
        pages,
        layout: Layout { dir, leaves },
    })
}

/// The free list of `meta`, read from the file, for the writer.
pub(crate) fn load<'a>(view: impl PageSource<'a>, meta: &Meta) -> Result<Persisted> {
    let listed = read_list(view, meta)?;
    Ok(Persisted {
        list: FreeList::from_entries(listed.entries),
        layout: listed.layout,
    })
}

/// The header of page `id` of `view`, as a release checks it (see
/// `FreeList::release`): who wrote the page, and the pages it spans. Read
/// through the view's checks, so never a writer newer than the snapshot.
pub(crate) fn header<'a>(view: impl PageSource<'a>, id: PageId) -> Header {
    let page = view.page(id).ok()?;
    let n = match *page.first()? {
        KIND_BRANCH | KIND_LEAF | KIND_FREELIST | KIND_FREEDIR => 1,
        KIND_OVERFLOW => overflow_run(page, id).ok()?,
        KIND_SEGMENT => segment_run(page, id).ok()?,
        _ => return None,
    };
    Some((written_by(page), n))
}

/// The writer's pages, as writing the list needs them.
pub(crate) trait ListStore {
    fn page_size(&self) -> usize;
    /// Id of the running transaction.
    fn txn_id(&self) -> u64;
    /// The high-water mark, this transaction's allocations included.
    fn high_water(&self) -> u64;
    /// The transaction's free list.
    fn free_list(&mut self) -> &mut TxnFreeList;
    /// Lowers the high-water mark past the reusable pages at the end of the
    /// file, taking them off the list.
    fn trim_tail(&mut self);
    /// The transaction that wrote committed page `id`, from its header.
    fn written_by(&self, id: PageId) -> Result<u64>;
    /// Allocates a zeroed page, the lowest reusable one first (taking it
    /// shortens the list).
    fn alloc_page(&mut self) -> Result<PageId>;
    /// A page this transaction allocated, for writing.
    fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]>;
}

/// A range of the old leaves the commit rewrites: the leaves `first..end`
/// (none when the list had no leaf), which hold the entries of pages
/// `lo..hi`, `n` of them after the commit.
#[derive(Clone, Copy, Debug)]
struct Run {
    first: usize,
    end: usize,
    lo: PageId,
    hi: PageId,
    n: usize,
}

/// The free list a commit leaves, written over `old`, the layout of the
/// commit before (DESIGN.md, commit protocol step 2, and "The free list in
/// the file").
///
/// Only the leaves holding a page whose entry changed are rewritten (with a
/// neighbour, when they would hold less than half a leaf), and the
/// directory; the other leaves stay where they are. Rewriting a leaf frees
/// its page, and the new pages are taken from the pool first, which changes
/// the entries of more pages: so the leaves to rewrite and the pages they
/// need are found again until neither grows. Then the leaves are checked
/// against the rules the reader enforces and filled. A list that breaks a
/// rule, which only a damaged file can produce (a page reachable from two
/// places is freed twice), is `Error::Corrupted`: open would drop such a
/// commit without a word, so it is refused before anything is written.
pub(crate) fn write_list(store: &mut impl ListStore, old: &Layout) -> Result<Persisted> {
    // The free pages at the end of the file leave the list and the snapshot
    // before anything is sized (DESIGN.md, "Shrinking the file").
    store.trim_tail();
    let txn_id = store.txn_id();
    let cap = freelist_capacity(store.page_size());
    let dir_cap = freedir_capacity(store.page_size());
    let keys: Vec<PageId> = old.leaves.keys().copied().collect();
    let pages_of: Vec<PageId> = old.leaves.values().copied().collect();
    // Old leaves to rewrite, by position; each is freed when it joins.
    // First those in the free tail of the file, which would stop it being
    // cut: they move down.
    let (tail, dir_in_tail) = in_the_tail(store, old, &pages_of);
    let mut dirty = BTreeSet::new();
    for i in tail {
        dirty.insert(i);
        free_old(store, pages_of[i])?;
    }
    let mut dir_freed = false;
    let mut fresh: Vec<PageId> = Vec::new();
    // Whether anything in the list changed, in any round: a round may undo
    // the change that started it (the page the list took was the one added)
    // and still needs the pages it has.
    let mut any_change = dir_in_tail;
    let runs = loop {
        let mut grew = false;
        let changed: Vec<PageId> = store.free_list().changed().collect();
        any_change |= !changed.is_empty();
        for p in changed {
            if let Some(i) = leaf_of(&keys, p)
                && dirty.insert(i)
            {
                free_old(store, pages_of[i])?;
                grew = true;
            }
        }
        let free = store.free_list();
        let added = free.added();
        let runs = runs_of(&keys, &dirty, any_change, |pages| {
            free.count_in(pages, &added)
        });
        // A run of less than half a leaf takes in a neighbour, so that every
        // leaf but a lone one is at least half full.
        for run in &runs {
            if run.n < cap / 2 && run.end - run.first < keys.len() {
                let next = if run.end < keys.len() {
                    run.end
                } else {
                    run.first - 1
                };
                if dirty.insert(next) {
                    free_old(store, pages_of[next])?;
                    grew = true;
                }
            }
        }
        // Any change to the leaves rewrites the directory, and so does a
        // directory in the free tail, on its own.
        let rewrite = !runs.is_empty() || dir_in_tail;
        if rewrite && !dir_freed {
            for &id in &old.dir {
                free_old(store, id)?;
            }
            dir_freed = true;
            grew = !old.dir.is_empty() || grew;
        }
        if grew {
            continue;
        }
        if !rewrite {
            break runs;
        }
        let new_leaves: usize = runs.iter().map(|r| r.n.div_ceil(cap)).sum();
        let needed = new_leaves + dir_pages(keys.len() - dirty.len() + new_leaves, dir_cap);
        if fresh.len() >= needed {
            break runs;
        }
        while fresh.len() < needed {
            fresh.push(store.alloc_page()?);
        }
    };
    let list = store.free_list().apply(txn_id);
    match lay_out(store, old, &keys, &runs, dir_in_tail, &fresh, &list) {
        // The list still records what changed since the commit before:
        // should the commit fail after this, the writer goes on from that
        // commit's layout. The publish forgets it (`Persisted::published`).
        Ok(layout) => Ok(Persisted { list, layout }),
        Err(e) => {
            store.free_list().give_back(list);
            Err(e)
        }
    }
}

/// Checks and writes the leaves of `runs` and a directory (also with no
/// run when `move_dir`) into the pages `fresh`, for `list`, the list after
/// the commit; returns where the list lies. `keys` are the old leaves'
/// keys.
fn lay_out(
    store: &mut impl ListStore,
    old: &Layout,
    keys: &[PageId],
    runs: &[Run],
    move_dir: bool,
    fresh: &[PageId],
    list: &FreeList,
) -> Result<Layout> {
    let txn_id = store.txn_id();
    let cap = freelist_capacity(store.page_size());
    let dir_cap = freedir_capacity(store.page_size());
    if let Some(page) = list.listed_twice() {
        return corrupted(page, super::rules::Broken::Entry.commit_reason());
    }
    if runs.is_empty() && !move_dir {
        // Nothing in the list changed: the commit keeps it where it is.
        return Ok(old.clone());
    }
    // Every page of the list before the first entry: the leaves kept, then
    // the new pages.
    let mut rules = ListRules::new(store.high_water(), txn_id);
    let mut leaves = old.leaves.clone();
    for run in runs {
        for key in &keys[run.first..run.end] {
            leaves.remove(key);
        }
    }
    for &id in leaves.values().chain(fresh) {
        if let Err(broken) = rules.list_page(id) {
            return corrupted(id, broken.commit_reason());
        }
    }
    let mut pages = fresh.iter().copied();
    for run in runs {
        let entries = list.entries_in(run.lo..run.hi);
        let n = entries.len();
        let k = n.div_ceil(cap);
        for j in 0..k {
            let part = &entries[j * n / k..(j + 1) * n / k];
            let mut out = Vec::with_capacity(part.len());
            for e in part {
                if let Err(broken) = rules.entry(e.freed_by, e.written_by, e.page) {
                    return corrupted(e.page, broken.commit_reason());
                }
                out.push(FreeEntry {
                    freed_by: U64::new(e.freed_by),
                    written_by: U64::new(e.written_by),
                    page: U64::new(e.page),
                });
            }
            let Some(id) = pages.next() else {
                return corrupted(0, "the commit's free list does not fit its pages");
            };
            write_freelist(store.page_mut(id)?, &out, txn_id);
            let key = if j == 0 { run.lo } else { part[0].page };
            leaves.insert(key, id);
        }
    }
    // The first leaf holds every page below the second's key.
    if let Some((&key, _)) = leaves.first_key_value()
        && key != 0
        && let Some(id) = leaves.remove(&key)
    {
        leaves.insert(0, id);
    }
    let ids: Vec<U64> = leaves.values().map(|&id| U64::new(id)).collect();
    let dir: Vec<PageId> = pages.collect();
    if dir.len() < dir_pages(ids.len(), dir_cap) {
        return corrupted(0, "the commit's free list does not fit its pages");
    }
    let mut parts = ids.chunks(dir_cap);
    for (i, &id) in dir.iter().enumerate() {
        let next = dir.get(i + 1).copied().unwrap_or(0);
        let part = parts.next().unwrap_or(&[]);
        write_freedir(store.page_mut(id)?, next, part, txn_id);
    }
    Ok(Layout { dir, leaves })
}

/// The pages of a directory for `leaves` leaves: none for a lone leaf,
/// which the meta names itself.
fn dir_pages(leaves: usize, dir_cap: usize) -> usize {
    match leaves {
        1 => 0,
        n => n.div_ceil(dir_cap),
    }
}

/// How far down from the high-water mark [`in_the_tail`] looks.
const TAIL_SCAN: u64 = 4096;

/// The old leaves (by position) lying in the free tail of the file, and
/// whether a page of the directory does: below the high-water mark, only
/// free pages (reusable or pending) and pages of the list, up to
/// `TAIL_SCAN` pages down. Kept where they are, they would stop the tail
/// from being cut once its pending pages are released (DESIGN.md,
/// "Shrinking the file"); rewritten, they move to the lowest free pages.
/// A leaf further down moves once the tail above it is cut.
/// `pages_of` are the old leaves' pages, by position.
fn in_the_tail(
    store: &mut impl ListStore,
    old: &Layout,
    pages_of: &[PageId],
) -> (Vec<usize>, bool) {
    let hw = store.high_water();
    let free = store.free_list();
    let added = free.added();
    let mut leaves = Vec::new();
    let mut dir = false;
    let mut p = hw;
    // A page of the list moves only when the pages it will be given (the
    // lowest reusable ones, one per page moving) lie below it: else the
    // move stays in the tail, and the same leaves would be rewritten by
    // every commit while the tail stays pending.
    let moves_down = |q: PageId, moving: usize| free.reusable_below(q, moving + 1) > moving;
    while p > 2 && hw - p < TAIL_SCAN {
        p -= 1;
        // A free page is no page of the list (the reader's rules): the
        // leaves are looked for only among the pages in use, of which the
        // first that is not the list's ends the tail.
        if free.lists(p, &added) {
            continue;
        }
        if let Some(i) = pages_of.iter().position(|&q| q == p) {
            if moves_down(p, leaves.len() + usize::from(dir)) {
                leaves.push(i);
            }
        } else if old.dir.contains(&p) {
            dir = dir || moves_down(p, leaves.len());
        } else {
            break;
        }
    }
    (leaves, dir)
}

/// Frees page `id` of the list the commit replaces: written by the
/// transaction its header names, reached by the snapshots from it until
/// this one.
fn free_old(store: &mut impl ListStore, id: PageId) -> Result<()> {
    let by = store.written_by(id)?;
    store.free_list().free_committed(id, 1, by);
    Ok(())
}

/// The runs of consecutive `dirty` leaves of `keys` (the old leaves' keys),
/// each with its count of entries after the commit (`count`). Without old
/// leaves, one run over every page when the list changed at all.
fn runs_of(
    keys: &[PageId],
    dirty: &BTreeSet<usize>,
    changed: bool,
    count: impl Fn(std::ops::Range<PageId>) -> usize,
) -> Vec<Run> {
    if keys.is_empty() {
        if !changed {
            return Vec::new();
        }
        let n = count(0..PageId::MAX);
        return vec![Run {
            first: 0,
            end: 0,
            lo: 0,
            hi: PageId::MAX,
            n,
        }];
    }
    let mut runs: Vec<Run> = Vec::new();
    for &i in dirty {
        match runs.last_mut() {
            Some(run) if run.end == i => run.end = i + 1,
            _ => runs.push(Run {
                first: i,
                end: i + 1,
                lo: 0,
                hi: 0,
                n: 0,
            }),
        }
    }
    for run in &mut runs {
        run.lo = keys[run.first];
        run.hi = keys.get(run.end).copied().unwrap_or(PageId::MAX);
        run.n = count(run.lo..run.hi);
    }
    runs
}
