//! The integrity checker: walks one snapshot and accounts for every page.
//!
//! Every page below the high-water mark must be exactly one of: reachable
//! from the catalog (a tree node or an overflow page), a page of the value
//! heap (its tree or a segment), a page of the free list, or listed free.
//! Every value packed into a segment must lie inside it, share no byte with
//! another, and be counted by the heap's entry for the segment. Every page in use must hold its checksum. Keys must be
//! sorted within and across pages, leaves all at the depth their descriptor
//! states, and entry counts must match.

use std::collections::BTreeMap;

use crate::btree::load_node;
use crate::error::{Error, Result, corrupted};
use crate::format::catalog::CatalogEntry;
use crate::format::heap::{SEGMENT_DATA, Segment, segment_of_key};
use crate::format::meta::{Meta, TableDesc};
use crate::format::multimap;
use crate::format::node::{LeafValue, NodeKey, ValueRef, long_prefix, max_inline_key};
use crate::format::page::{PageId, page_checksum, segment_run, stored_checksum};
use crate::freelist::read_list;
use crate::pager::{Map, Pager};
#[cfg(feature = "testing")]
use crate::view::SliceView;
use crate::view::{MapView, PageSource, run_len};

/// A problem the checker found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// The page where it was found.
    pub page: u64,
    /// What is wrong.
    pub reason: &'static str,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "page {}: {}", self.page, self.reason)
    }
}

/// Most errors a report lists; the count of leaked pages is always complete.
const MAX_ERRORS: usize = 1000;

/// What the integrity checker found in one snapshot: pages by kind, and every
/// problem with its page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// Transaction id of the snapshot checked.
    pub txn_id: u64,
    /// Pages below the high-water mark (the two metas included).
    pub pages: u64,
    /// Branch pages of all trees, the catalog included.
    pub branch_pages: u64,
    /// Leaf pages of all trees, the catalog included.
    pub leaf_pages: u64,
    /// Pages of overflow runs.
    pub overflow_pages: u64,
    /// Value segments in the heap.
    pub segments: u64,
    /// Their pages.
    pub segment_pages: u64,
    /// Bytes of the values packed into them.
    pub packed_bytes: u64,
    /// Pages of the free list itself (its directory and leaves).
    pub freelist_pages: u64,
    /// Pages listed free: reusable, or pending until older snapshots end.
    pub free_pages: u64,
    /// Of the free pages, those still pending (freed by a transaction that an
    /// older snapshot or the other meta may predate).
    pub pending_free_pages: u64,
    /// Pages neither reachable nor free.
    pub leaked_pages: u64,
    /// Every problem found (at most 1000), each with its page. Empty for a
    /// sound file.
    pub errors: Vec<CheckError>,
    /// Number of tables.
    pub tables: u64,
    /// Entries in all tables.
    pub entries: u64,
    /// Depth of the deepest tree.
    pub max_depth: u32,
}

/// A page still to visit: id, level, and the key bounds its parent gives it.
type Pending = (PageId, usize, Option<Vec<u8>>, Option<Vec<u8>>);

struct Checker<P> {
    view: P,
    page_size: usize,
    /// The snapshot's high-water mark: claimed pages lie in `2..pages`.
    pages: u64,
    claimed: Claims,
    /// The values the tables pack into each segment: `(offset, length)`.
    packed: BTreeMap<PageId, Vec<(u64, u64)>>,
    report: CheckReport,
}

/// The pages claimed so far, as disjoint runs `start -> end` (end exclusive).
///
/// Memory grows with the runs claimed, not with the snapshot's size: a crafted
/// meta may claim a high-water mark of terabytes over a sparse file, and a
/// crafted overflow reference a run of millions of pages, while the walk reads
/// only what the trees reach.
#[derive(Default)]
struct Claims {
    runs: BTreeMap<PageId, PageId>,
    total: u64,
}

impl Claims {
    /// Claims `start..end`; false if any of it was claimed before.
    fn claim(&mut self, start: PageId, end: PageId) -> bool {
        let before = self.runs.range(..=start).next_back().map(|(&s, &e)| (s, e));
        let after = self.runs.range(start..).next().map(|(&s, &e)| (s, e));
        if before.is_some_and(|(_, e)| e > start) || after.is_some_and(|(s, _)| s < end) {
            return false;
        }
        self.total += end - start;
        // Merge with touching neighbours so sequential claims stay one run.
        let (mut start, mut end) = (start, end);
        if let Some((s, e)) = before
            && e == start
        {
            self.runs.remove(&s);
            start = s;
        }
        if let Some((s, e)) = after
            && s == end
        {
            self.runs.remove(&s);
            end = e;
        }
        self.runs.insert(start, end);
        true
    }

    /// The claimed pages, in order.
    #[cfg(any(test, feature = "testing"))]
    fn pages(&self) -> impl Iterator<Item = PageId> + '_ {
        self.runs.iter().flat_map(|(&s, &e)| s..e)
    }

    /// The runs of pages in `from..to` that nothing claimed.
    fn gaps(&self, from: PageId, to: PageId) -> impl Iterator<Item = (PageId, PageId)> + '_ {
        let mut next = from;
        let mut runs = self.runs.iter();
        std::iter::from_fn(move || {
            for (&s, &e) in runs.by_ref() {
                let gap = (next, s.min(to));
                next = next.max(e);
                if gap.0 < gap.1 {
                    return Some(gap);
                }
            }
            let gap = (next, to);
            next = to;
            (gap.0 < gap.1).then_some(gap)
        })
    }
}

impl CheckReport {
    /// Whether the checker found no problem.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

impl<'a, P: PageSource<'a>> Checker<P> {
    /// Records the error of `r`, if any.
    fn note(&mut self, r: Result<()>) {
        let error = match r {
            Ok(()) => return,
            Err(Error::Corrupted { page, reason }) => CheckError { page, reason },
            Err(_) => CheckError {
                page: 0,
                reason: "I/O error while reading the snapshot",
            },
        };
        if self.report.errors.len() < MAX_ERRORS {
            self.report.errors.push(error);
        }
    }

    fn claim(&mut self, id: PageId, what: &'static str) -> Result<()> {
        self.claim_run(id, 1, what)
    }

    /// Claims the `n` pages from `id`.
    fn claim_run(&mut self, id: PageId, n: u64, what: &'static str) -> Result<()> {
        match id.checked_add(n) {
            Some(end) if id >= 2 && end <= self.pages => {
                if !self.claimed.claim(id, end) {
                    return corrupted(id, what);
                }
                Ok(())
            }
            _ => corrupted(id, "page id outside the snapshot"),
        }
    }

    /// Walks one tree; calls `leaf_entry` for every entry in key order.
    fn tree(
        &mut self,
        desc: &TableDesc,
        mut leaf_entry: impl FnMut(&mut Self, &[u8], LeafValue<'a>) -> Result<()>,
    ) -> Result<()> {
        if desc.root == 0 {
            return Ok(());
        }
        self.report.max_depth = self.report.max_depth.max(desc.depth);
        let mut count = 0u64;
        let mut last_key: Option<Vec<u8>> = None;
        let mut stack: Vec<Pending> = vec![(desc.root, 0, None, None)];
        while let Some((id, level, lo, hi)) = stack.pop() {
            self.claim(id, "page reachable twice")?;
            let page = self.view.page(id)?;
            checksum_matches(id, page)?;
            let node = load_node(page, id, level, desc.depth)?;
            let in_bounds = |k: &[u8]| {
                lo.as_deref().is_none_or(|l| k >= l) && hi.as_deref().is_none_or(|h| k < h)
            };
            if node.is_leaf() {
                self.report.leaf_pages += 1;
                if node.count() == 0 {
                    return corrupted(id, "empty leaf in a tree");
                }
                for i in 0..node.count() {
                    let key = self.whole_key(id, node.key(i)?)?;
                    let (_, value) = node.entry(i)?;
                    if !in_bounds(key) || last_key.as_deref().is_some_and(|l| key <= l) {
                        return corrupted(id, "keys out of order");
                    }
                    last_key = Some(key.to_vec());
                    leaf_entry(self, key, value)?;
                    count += 1;
                }
            } else {
                self.report.branch_pages += 1;
                let mut children = Vec::with_capacity(node.count());
                for i in 0..node.count() {
                    // A long separator's place is the branch's: claimed (a
                    // run) or counted into its segment, as a value's.
                    if let NodeKey::Long { key, .. } = node.key(i)? {
                        self.value(LeafValue::Spilled {
                            at: key.at,
                            len: key.blob,
                            key: 0,
                        })?;
                    }
                    let lower = if i == 0 {
                        lo.clone()
                    } else {
                        Some(self.whole_key(id, node.key(i)?)?.to_vec())
                    };
                    let upper = if i + 1 == node.count() {
                        hi.clone()
                    } else {
                        Some(self.whole_key(id, node.key(i + 1)?)?.to_vec())
                    };
                    if let (Some(l), Some(u)) = (&lower, &upper)
                        && l >= u
                    {
                        return corrupted(id, "separators out of order");
                    }
                    if i > 0 && !in_bounds(self.whole_key(id, node.key(i)?)?) {
                        return corrupted(id, "separator outside its parent's range");
                    }
                    children.push((node.child(i)?, level + 1, lower, upper));
                }
                stack.extend(children.into_iter().rev());
            }
        }
        if count != desc.entries {
            return corrupted(desc.root, "entry count differs from the descriptor");
        }
        Ok(())
    }

    /// The whole of a key of node `id`: a long one read from its place, and
    /// checked to be as the writer makes one: longer than a node holds,
    /// starting with the first bytes the node holds, all of them it may.
    fn whole_key(&self, id: PageId, key: NodeKey<'a>) -> Result<&'a [u8]> {
        let whole = match key {
            NodeKey::Inline(k) => k,
            NodeKey::Long { key, .. } => self.view.long_key_of(key)?,
        };
        if let NodeKey::Long { prefix, .. } = key
            && (whole.len() <= max_inline_key(self.page_size)
                || prefix.len() != long_prefix(self.page_size)
                || !whole.starts_with(prefix))
        {
            return corrupted(id, "long key not as the writer makes one");
        }
        Ok(whole)
    }

    fn value(&mut self, value: LeafValue<'a>) -> Result<()> {
        match value {
            LeafValue::Spilled {
                at: ValueRef::Run(page),
                len,
                ..
            } => {
                let run = run_len(self.view.page(page)?, page, len, self.page_size)?;
                self.claim_run(page, run, "overflow page reachable twice")?;
                checksum_matches(page, self.view.run_bytes(page, run)?)?;
                self.report.overflow_pages += run;
            }
            LeafValue::Spilled {
                at: ValueRef::Packed { seg, off },
                len,
                ..
            } => {
                // Readable where the cell says (the segment's header and
                // bounds); the segment itself is checked with the heap.
                self.view.value(value)?;
                let refs = self.packed.entry(seg).or_default();
                refs.push((u64::from(off), len as u64));
            }
            LeafValue::Inline(_) => {}
        }
        Ok(())
    }

    /// One segment of the heap's tree: its pages claimed and checksummed,
    /// its header agreeing with the entry, and the values the tables pack
    /// into it matching the entry's counts and never sharing a byte.
    fn segment(&mut self, key: &[u8], value: LeafValue<'a>) -> Result<()> {
        let bytes = self.view.value(value)?;
        let (Some(seg), Some(entry)) =
            (segment_of_key(key), Segment::decode(bytes, self.page_size))
        else {
            return corrupted(0, "invalid entry in the heap's tree");
        };
        if segment_run(self.view.page(seg)?, seg)? != entry.pages {
            return corrupted(seg, "segment length differs from the heap's entry");
        }
        self.claim_run(seg, entry.pages, "segment page also in use")?;
        checksum_matches(seg, self.view.run_bytes(seg, entry.pages)?)?;
        self.report.segments += 1;
        self.report.segment_pages += entry.pages;
        let mut refs = self.packed.remove(&seg).unwrap_or_default();
        refs.sort_unstable();
        let bytes: u64 = refs.iter().map(|&(_, len)| len).sum();
        if refs.len() as u64 != entry.values || bytes != entry.live {
            return corrupted(seg, "segment's live count differs from its values");
        }
        let mut next = SEGMENT_DATA as u64;
        for (off, len) in refs {
            if off < next {
                return corrupted(seg, "packed values share bytes");
            }
            next = off + len;
        }
        self.report.packed_bytes += bytes;
        Ok(())
    }
}

/// Whether the page or run in `bytes` holds the checksum its header claims.
fn checksum_matches(id: PageId, bytes: &[u8]) -> Result<()> {
    if page_checksum(bytes) != stored_checksum(bytes) {
        return corrupted(id, "page checksum mismatch");
    }
    Ok(())
}

/// Checks the snapshot `meta` of the file behind `pager`, read through
/// `map`: the full report, problems included.
pub(crate) fn report(pager: &Pager, map: &Map, meta: &Meta) -> CheckReport {
    walk(
        MapView::new(pager, map, meta.high_water, meta.txn_id),
        pager.page_size(),
        meta,
    )
    .0
}

/// The first problem of a report as an error, or the report.
pub(crate) fn strict(report: CheckReport) -> Result<CheckReport> {
    match report.errors.first() {
        Some(e) => corrupted(e.page, e.reason),
        None => Ok(report),
    }
}

#[cfg(feature = "testing")]
/// Checks the snapshot `meta` of a whole-file image; returns the report and
/// the pages reachable from the meta (trees, overflow runs, free-list pages).
pub(crate) fn check_image(image: &[u8], meta: &Meta) -> Result<(CheckReport, Vec<PageId>)> {
    let page_size = meta.page_size as usize;
    let view = SliceView::new(image, page_size, meta.high_water, meta.txn_id);
    let (report, claimed) = walk(view, page_size, meta);
    let report = strict(report)?;
    // Every page is claimed once: the reachable ones are those not listed free.
    let free: std::collections::HashSet<PageId> = read_list(view, meta)?
        .entries
        .iter()
        .map(|e| e.page)
        .collect();
    let reachable = claimed.pages().filter(|p| !free.contains(p)).collect();
    Ok((report, reachable))
}

/// Walks a snapshot, recording every problem; returns the report and the
/// pages it claimed (reachable, free-list pages and free).
/// The walk of a multimap's entries, in key order: each key's head, then
/// its pairs (`format::multimap`).
#[derive(Default)]
struct MultimapCheck {
    /// The pair total, if the table has one.
    total: Option<u64>,
    /// The key whose pairs come now, its head's count and the pairs seen.
    head: Option<(Vec<u8>, u64, u64)>,
    /// Pairs seen in all.
    pairs: u64,
}

impl MultimapCheck {
    fn entry(&mut self, root: PageId, key: &[u8], value: &[u8]) -> Result<()> {
        match multimap::entry(key) {
            Some(multimap::Entry::Total) => match multimap::count(value) {
                Some(n) if n > 0 => self.total = Some(n),
                _ => return corrupted(root, "a multimap's pair total is not a count"),
            },
            Some(multimap::Entry::Head(k)) => {
                self.end_head(root)?;
                match multimap::count(value) {
                    Some(n) if n > 0 => self.head = Some((k.into_owned(), n, 0)),
                    _ => return corrupted(root, "a multimap key's count is not a count"),
                }
            }
            Some(multimap::Entry::Pair(k, _)) => match &mut self.head {
                Some((head, _, seen)) if *head == *k && value.is_empty() => {
                    *seen += 1;
                    self.pairs += 1;
                }
                _ => return corrupted(root, "a multimap pair without its head, or with a value"),
            },
            None => return corrupted(root, "a multimap entry is neither a head nor a pair"),
        }
        Ok(())
    }

    /// The key whose pairs came last has as many as its head says.
    fn end_head(&mut self, root: PageId) -> Result<()> {
        match self.head.take() {
            Some((_, count, seen)) if count != seen => {
                corrupted(root, "a multimap key's count differs from its pairs")
            }
            _ => Ok(()),
        }
    }

    fn finish(mut self, root: PageId) -> Result<()> {
        self.end_head(root)?;
        if self.total.unwrap_or(0) != self.pairs {
            return corrupted(root, "a multimap's pair total differs from its pairs");
        }
        Ok(())
    }
}

fn walk<'a>(view: impl PageSource<'a>, page_size: usize, meta: &Meta) -> (CheckReport, Claims) {
    let mut c = Checker {
        view,
        page_size,
        pages: meta.high_water,
        claimed: Claims::default(),
        packed: BTreeMap::new(),
        report: CheckReport {
            txn_id: meta.txn_id,
            pages: meta.high_water,
            ..CheckReport::default()
        },
    };
    let mut tables = Vec::new();
    let r = c.tree(&meta.catalog, |c, name, value| {
        // A long name pushes its entry into an overflow run, claimed like a
        // table's.
        c.value(value)?;
        let bytes = c.view.value(value)?;
        match (std::str::from_utf8(name), CatalogEntry::decode(bytes)) {
            (Ok(_), Some(entry)) => {
                tables.push((entry.desc, entry.multimap));
                Ok(())
            }
            _ => corrupted(meta.catalog.root, "invalid catalog entry"),
        }
    });
    c.note(r);
    if tables.len() as u64 != meta.catalog.entries {
        c.note(corrupted(
            meta.catalog.root,
            "table count differs from the meta",
        ));
    }
    c.report.tables = tables.len() as u64;
    for (desc, multimap) in &tables {
        let r = if *multimap {
            // The layout too: every entry a head, a pair or the total, each
            // key's pairs as many as its head says, the total their sum.
            let mut m = MultimapCheck::default();
            let r = c.tree(desc, |c, key, value| {
                c.value(value)?;
                m.entry(desc.root, key, c.view.value(value)?)
            });
            r.and_then(|()| m.finish(desc.root))
        } else {
            c.tree(desc, |c, _, value| c.value(value))
        };
        c.note(r);
        // A figure for the report: the descriptors' counts, which come from
        // the file (a mismatch was noted above) and must not wrap.
        c.report.entries = c.report.entries.saturating_add(desc.entries);
    }
    let r = c.tree(&meta.heap.tree, |c, key, value| c.segment(key, value));
    c.note(r);
    if c.report.segments != meta.heap.tree.entries
        || c.report.segment_pages != meta.heap.pages
        || c.report.packed_bytes != meta.heap.live
    {
        c.note(corrupted(
            meta.heap.tree.root,
            "heap totals differ from the meta",
        ));
    }
    let unlisted: Vec<PageId> = c.packed.keys().copied().take(MAX_ERRORS).collect();
    for seg in unlisted {
        c.note(corrupted(
            seg,
            "a value in a segment the heap does not list",
        ));
    }
    let chain = match read_list(c.view, meta) {
        Ok(chain) => Some(chain),
        Err(e) => {
            c.note(Err(e));
            None
        }
    };
    if let Some(chain) = chain {
        for &p in &chain.pages {
            let r = c.claim(p, "free-list page also in use");
            c.note(r);
            let r = c.view.page(p).and_then(|bytes| checksum_matches(p, bytes));
            c.note(r);
        }
        c.report.freelist_pages = chain.pages.len() as u64;
        for e in &chain.entries {
            let r = c.claim(e.page, "free page also in use");
            c.note(r);
            if e.freed_by != 0 {
                c.report.pending_free_pages += 1;
            }
        }
        c.report.free_pages = chain.entries.len() as u64;
    }
    c.report.leaked_pages = meta.high_water.saturating_sub(2) - c.claimed.total;
    let leaked: Vec<PageId> = c
        .claimed
        .gaps(2, meta.high_water)
        .flat_map(|(s, e)| s..e)
        .take(MAX_ERRORS)
        .collect();
    for page in leaked {
        c.note(corrupted(page, "page neither in use nor free (leaked)"));
    }
    (c.report, c.claimed)
}

#[cfg(test)]
mod tests {
    use super::Claims;

    #[test]
    fn claims_are_disjoint_runs() {
        let mut c = Claims::default();
        assert!(c.claim(5, 8));
        assert!(c.claim(8, 9)); // touches: merged
        assert!(c.claim(2, 3));
        assert!(!c.claim(7, 10)); // overlaps 5..9
        assert!(!c.claim(4, 6));
        assert!(!c.claim(2, 3));
        assert!(c.claim(12, 1 << 40));
        assert_eq!(c.total, 1 + 4 + ((1 << 40) - 12));
        assert_eq!(c.runs.len(), 3);
        let gaps: Vec<_> = c.gaps(2, (1 << 40) + 3).collect();
        assert_eq!(gaps, [(3, 5), (9, 12), (1 << 40, (1 << 40) + 3)]);
        assert_eq!(c.gaps(0, 2).collect::<Vec<_>>(), [(0, 2)]);
        assert_eq!(c.pages().take(6).collect::<Vec<_>>(), [2, 5, 6, 7, 8, 12]);
    }
}
