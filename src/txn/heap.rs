//! The value heap at commit (DESIGN.md, "The value heap"): the
//! transaction's changes to the live counts into the heap's tree, segments
//! left without values freed, and the cleaning of a heap grown mostly dead.

use super::write::WriteTxn;
use crate::btree;
use crate::dirty::Change;
use crate::error::{Result, corrupted};
use crate::format::catalog::CatalogEntry;
use crate::format::heap::{SEGMENT_PAGES, Segment, segment_key, segment_of_key};
use crate::format::page::{PageId, PageSet, segment_run};
use crate::table::catalog_names;
use crate::view::PageSource;

/// The heap is cleaned once its dead bytes pass a third of its segments'
/// bytes, and only when its segments span at least this many pages.
const CLEAN_MIN_PAGES: u64 = 4 * SEGMENT_PAGES;

impl WriteTxn {
    /// Step 1a: closes the segment the transaction fills and applies its
    /// changes to the heap's tree and totals. A segment left without values
    /// is removed from the tree and its pages freed, as a run's are.
    pub(super) fn write_heap(&mut self) -> Result<()> {
        let changes = self.dirty.take_heap_changes(&mut self.part)?;
        if changes.is_empty() {
            return Ok(());
        }
        let ps = self.core.pager.page_size() as u64;
        let mut heap = self.heap;
        for (seg, change) in changes {
            let key = segment_key(seg);
            let old = match change.pages {
                Some(_) => None,
                None => match btree::get(self.view(), &heap.tree, &key)? {
                    Some(bytes) => match Segment::decode(bytes, ps as usize) {
                        Some(old) => Some(old),
                        None => return corrupted(heap.tree.root, "invalid segment entry"),
                    },
                    None => return corrupted(seg, "a value in a segment the heap does not list"),
                },
            };
            let Some(new) = apply(old, change) else {
                return corrupted(seg, "a segment's live count would go below zero");
            };
            let (old_pages, old_live) = old.map_or((0, 0), |o| (o.pages, o.live));
            if new.values == 0 && old.is_some() {
                // Freed by the entry's length: it must be the segment's own
                // (a longer entry would free the pages after it).
                let first = self.view().page(seg)?;
                if segment_run(first, seg)? != new.pages {
                    return corrupted(seg, "segment length differs from the heap's entry");
                }
            }
            let mut pages = self.dirty.lend(&self.core.pager, &mut self.part);
            if new.values == 0 {
                if old.is_some() {
                    btree::remove(&mut pages, &mut heap.tree, &key)?;
                }
                btree::PageStore::free(&mut pages, seg, new.pages)?;
            } else {
                let hint = &mut btree::InsertHint::default();
                btree::insert(&mut pages, &mut heap.tree, hint, &key, &new.encode())?;
            }
            let kept = if new.values == 0 { 0 } else { new.pages };
            let live = if new.values == 0 { 0 } else { new.live };
            let totals = heap
                .pages
                .checked_sub(old_pages)
                .and_then(|p| p.checked_add(kept))
                .zip(
                    heap.live
                        .checked_sub(old_live)
                        .and_then(|l| l.checked_add(live)),
                );
            let Some((total_pages, total_live)) = totals else {
                return corrupted(seg, "the heap's totals disagree with its segments");
            };
            heap.pages = total_pages;
            heap.live = total_live;
        }
        self.heap = heap;
        Ok(())
    }

    /// Step 1b: when more than a third of the heap's bytes are dead, and
    /// the dead bytes are at least a sixteenth of the file (every cleaning
    /// walks every tree, so that much churn pays for the walk), moves the
    /// values out of the sparsest segments, so that each empties and is
    /// freed, until a fifth at most would be dead; then applies the changes
    /// as step 1a does. The values moved must fit twice over in the pages
    /// the transaction can take without growing the file: cleaning never
    /// makes a commit fail for want of room (a full disk, `max_size`).
    /// Returns the segments cleaned.
    pub(super) fn clean_heap(&mut self) -> Result<usize> {
        let ps = self.core.pager.page_size() as u64;
        let heap = self.heap;
        let bytes = heap.pages.saturating_mul(ps);
        let dead = bytes.saturating_sub(heap.live);
        let file = self.dirty.high_water().saturating_mul(ps);
        if heap.pages < CLEAN_MIN_PAGES
            || dead.saturating_mul(3) <= bytes
            || dead.saturating_mul(16) < file
        {
            return Ok(0);
        }
        // Every committed segment, sparsest first.
        let mut segments: Vec<(u64, PageId, Segment)> = Vec::new();
        let mut cursor = btree::Cursor::new(self.view(), heap.tree);
        while let Some((key, value)) = cursor.next()? {
            let (Some(seg), Some(entry)) =
                (segment_of_key(key), Segment::decode(value, ps as usize))
            else {
                return corrupted(heap.tree.root, "invalid segment entry");
            };
            // Segments this transaction wrote are as full as it left them.
            if !self.part.buffers().contains(seg) {
                // Live bytes per 2^20 of the segment: the order of fullness.
                let fill = (entry.live << 20) / (entry.pages * ps);
                segments.push((fill, seg, entry));
            }
        }
        segments.sort_unstable_by_key(|&(fill, seg, _)| (fill, seg));
        // Each victim's pages go (pending: not for this transaction); its
        // live bytes move into new segments, and each value may copy a leaf.
        // The pages taken must fit twice over in `budget`.
        let select = |budget: u64| {
            let (mut total, mut cost) = (bytes, 0u64);
            let mut victims = PageSet::default();
            for &(_, seg, entry) in &segments {
                if total.saturating_sub(heap.live).saturating_mul(5) <= total {
                    break;
                }
                let pages = entry.live.div_ceil(ps) + 1 + entry.values;
                if (cost + pages).saturating_mul(2) > budget {
                    break;
                }
                cost += pages;
                total = total
                    .saturating_sub(entry.pages * ps)
                    .saturating_add(entry.live);
                victims.insert(seg);
            }
            (victims, cost * 2)
        };
        // Room first: the free pages and the file's length, else the file
        // grown now (under `max_size`), before anything moves. A disk that
        // refuses the growth leaves the cleaning to a later commit.
        let room = self.dirty.room();
        let pager = &self.core.pager;
        let limit = pager.max_size() / ps;
        let end = (pager.writer_len() / ps).max(self.dirty.high_water());
        let (mut victims, need) = select(room + limit.saturating_sub(end));
        if need > room {
            match pager.grow((end + need - room).saturating_mul(ps)) {
                Ok(()) => self.dirty.file_grew(pager.writer_len() / ps),
                Err(crate::Error::MapFull { .. }) => victims = select(room).0,
                Err(e) => return Err(e),
            }
        }
        if victims.is_empty() {
            return Ok(0);
        }
        self.move_values(PageId::MAX, u64::MAX, 0, &victims)?;
        self.write_heap()?;
        Ok(victims.len())
    }

    /// Runs `btree::relocate` over the catalog, the heap's tree and every
    /// table, until `budget` pages have moved: nodes and values at or past
    /// `above` go down the file, and the values of the segments of `clean`
    /// move wherever they can. Each table moves through its own partition
    /// (no handle is open: the transaction is borrowed mutably). Tables
    /// whose tree changed are marked to be written to the catalog. Returns
    /// the pages moved.
    pub(super) fn move_values(
        &mut self,
        above: PageId,
        budget: u64,
        keep: u64,
        clean: &PageSet,
    ) -> Result<u64> {
        let names = catalog_names(self.view(), &self.catalog)?;
        let mut catalog = self.catalog;
        let mut heap = self.heap;
        let mut pages = self.dirty.lend(&self.core.pager, &mut self.part);
        let mut moved = btree::relocate(&mut pages, &mut catalog, above, budget, keep, clean)?;
        if moved < budget {
            moved += btree::relocate(
                &mut pages,
                &mut heap.tree,
                above,
                budget - moved,
                keep,
                clean,
            )?;
        }
        self.catalog = catalog;
        self.heap = heap;
        for name in names {
            if moved >= budget {
                break;
            }
            let Some((entry, mut held)) = self.entry_of(&name)? else {
                return corrupted(self.catalog.root, "a listed table is missing");
            };
            let desc = entry.desc;
            let mut moved_desc = desc;
            // A table not open in the transaction moves into a partition
            // of its own, kept if anything moved.
            let mut fresh = self.new_part();
            let part = match held.as_mut() {
                _ if self.gathered => &mut self.part,
                Some(t) => &mut t.part,
                None => &mut fresh,
            };
            let mut pages = self.dirty.lend(&self.core.pager, part);
            moved += btree::relocate(
                &mut pages,
                &mut moved_desc,
                above,
                budget - moved,
                keep,
                clean,
            )?;
            if moved_desc != desc {
                match held.as_mut() {
                    Some(t) => {
                        t.entry.desc = moved_desc;
                        t.changed = true;
                    }
                    None => {
                        let entry = CatalogEntry {
                            desc: moved_desc,
                            ..entry
                        };
                        self.adopt(name, entry, fresh);
                    }
                }
            }
        }
        Ok(moved)
    }
}

/// A segment's entry after `change`; `None` when a count would go below
/// zero or past what the entry can hold.
fn apply(old: Option<Segment>, change: Change) -> Option<Segment> {
    let base = match old {
        Some(old) => old,
        None => Segment {
            pages: change.pages?,
            values: 0,
            live: 0,
        },
    };
    let values = u64::try_from(
        i64::try_from(base.values)
            .ok()?
            .checked_add(change.values)?,
    )
    .ok()?;
    let live = u64::try_from(i64::try_from(base.live).ok()?.checked_add(change.bytes)?).ok()?;
    if values > u64::from(u32::MAX) || (values == 0) != (live == 0) {
        return None;
    }
    Some(Segment {
        pages: base.pages,
        values,
        live,
    })
}
