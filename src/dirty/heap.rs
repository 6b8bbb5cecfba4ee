//! The running transaction's side of the value heap: the segments it
//! fills, and how the live counts of segments change (DESIGN.md, "The value
//! heap"). The commit applies the changes to the heap's tree.
//!
//! The records of the counts ([`Records`]) are the transaction's, shared by
//! its partitions; each partition of the buffers (an open table, or the
//! transaction's own trees) fills a segment of its own ([`Segments`]), in
//! its own buffers, so that packing a value into one never moves or
//! writes bytes another partition hands out.

use std::collections::{BTreeMap, HashSet};

use super::alloc::Allocator;
use super::buffers::Buffers;
use crate::error::{Result, corrupted};
use crate::format::heap::{SEGMENT_DATA, SEGMENT_MAX_PAGES, SEGMENT_PAGES};
use crate::format::node::ValueRef;
use crate::format::page::{PageId, init_segment, overflow_pages, set_run_pages};

/// The segment the transaction appends values to: `pages` pages from
/// `first`, the first `used` bytes written (header included).
#[derive(Clone)]
struct OpenSegment {
    first: PageId,
    pages: u64,
    used: usize,
}

/// How the transaction changed one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Values added, less values freed.
    pub values: i64,
    /// Their bytes, likewise.
    pub bytes: i64,
    /// The segment's length, for a segment this transaction wrote (the heap
    /// tree does not list it yet); `None` for a committed one.
    pub pages: Option<u64>,
}

/// A change to the heap's records, as an undo log keeps it.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A value of this transaction's was recorded at (segment, offset).
    Owned(PageId, u32),
    /// One was released.
    Released(PageId, u32),
    /// A segment's change before it changed (`None`: it had none).
    Changed(PageId, Option<Change>),
}

/// The segments one partition fills: the open one, and a spare. A savepoint
/// keeps them whole (they are small).
#[derive(Clone, Default)]
pub(super) struct Segments {
    open: Option<OpenSegment>,
    /// A segment of this partition left without values, kept whole for
    /// the next segment it opens: its first page and length.
    spare: Option<(PageId, u64)>,
    /// Bytes this partition packed so far: its next segment is about as
    /// long (up to `SEGMENT_PAGES`), so a table that packs little takes
    /// little, however much the transaction's other tables pack, and its
    /// last segment leaves at most about half unfilled.
    packed: u64,
}

impl Segments {
    /// Counts what `from` packed as this partition's (the commit gathers
    /// every partition into the transaction's).
    pub(super) fn absorb(&mut self, from: &Segments) {
        self.packed = self.packed.saturating_add(from.packed);
    }

    /// Whether `settle` has nothing to do: no spare, and no open segment
    /// with a whole page unfilled or left without values.
    #[inline]
    pub(super) fn settled(&self, page_size: usize) -> bool {
        self.spare.is_none()
            && self.open.as_ref().is_none_or(|o| {
                o.used > SEGMENT_DATA && o.used.div_ceil(page_size) as u64 == o.pages
            })
    }
}

/// The transaction's changes to the live counts, shared by its partitions.
#[derive(Default)]
pub(super) struct Records {
    /// Where the values this transaction packed and still holds lie: a cell
    /// may release a value of one of its segments only if it is one of
    /// these, once.
    own: HashSet<(PageId, u32)>,
    changes: BTreeMap<PageId, Change>,
    /// One undo log per savepoint, oldest first, of the records above
    /// (`own`, `changes`): a savepoint costs what changes after it.
    undo: Vec<Vec<Step>>,
}

impl Records {
    /// Records a change in the newest undo log, if a savepoint is live.
    #[inline]
    fn log(&mut self, step: Step) {
        if let Some(log) = self.undo.last_mut() {
            log.push(step);
        }
    }

    /// The change of segment `seg`, to change: the log keeps it first.
    fn change(&mut self, seg: PageId) -> &mut Change {
        let was = self.changes.get(&seg).copied();
        self.log(Step::Changed(seg, was));
        self.changes.entry(seg).or_default()
    }

    /// A savepoint: an undo log from now on. (What each partition packed
    /// is its `Segments`', which the partition's savepoint copies.)
    pub(super) fn savepoint(&mut self) {
        self.undo.push(Vec::new());
    }

    /// Back to the savepoint of `level`, which stays.
    pub(super) fn restore(&mut self, level: usize) {
        while self.undo.len() > level {
            let log = self.undo.pop().expect("above the level");
            for step in log.into_iter().rev() {
                match step {
                    Step::Owned(seg, off) => {
                        self.own.remove(&(seg, off));
                    }
                    Step::Released(seg, off) => {
                        self.own.insert((seg, off));
                    }
                    Step::Changed(seg, Some(c)) => {
                        self.changes.insert(seg, c);
                    }
                    Step::Changed(seg, None) => {
                        self.changes.remove(&seg);
                    }
                }
            }
        }
        self.undo.push(Vec::new());
    }

    /// Forgets the savepoint of `level`: its log joins the one before.
    pub(super) fn release_savepoint(&mut self, level: usize) {
        if level >= self.undo.len() {
            return;
        }
        let log = self.undo.remove(level);
        if let Some(below) = level.checked_sub(1).map(|l| &mut self.undo[l]) {
            below.extend(log);
        }
    }

    /// Forgets every savepoint.
    pub(super) fn drop_savepoints(&mut self) {
        self.undo.clear();
    }

    /// Packs `value` into the open segment of the partition whose segments
    /// and buffers are `segs` and `bufs`, or into a new one of its own if
    /// it does not fit, which must start below `below` and span at most
    /// `max_pages` pages. `None` when no such segment can be had.
    ///
    /// A value that starts in the open segment's first `SEGMENT_PAGES`
    /// pages and runs past its end lengthens it, when the segment ends at
    /// the high-water mark: appends fill segments whole.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pack(
        &mut self,
        segs: &mut Segments,
        alloc: &mut Allocator,
        bufs: &mut Buffers,
        txn_id: u64,
        value: &[u8],
        below: PageId,
        max_pages: u64,
    ) -> Result<Option<ValueRef>> {
        let ps = bufs.page_size();
        let fits = match segs.open.as_mut() {
            Some(o) if o.first < below => {
                let end = o.used + value.len();
                let pages = end.div_ceil(ps) as u64;
                if pages <= o.pages {
                    true
                } else if o.used < SEGMENT_PAGES as usize * ps
                    && pages <= SEGMENT_MAX_PAGES
                    && alloc.extend_at(
                        o.first + o.pages,
                        pages - o.pages,
                        overflow_pages(value.len(), ps),
                    )?
                {
                    bufs.resize(o.first, pages as usize);
                    let Some(head) = bufs.range_mut(o.first, 0..SEGMENT_DATA) else {
                        return corrupted(o.first, "the open segment has no buffer");
                    };
                    set_run_pages(head, pages as u32);
                    o.pages = pages;
                    let first = o.first;
                    self.change(first).pages = Some(pages);
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        if !fits {
            self.close(segs, alloc, bufs)?;
            let need = overflow_pages(value.len(), ps);
            if need > max_pages {
                return Ok(None);
            }
            let want = (segs.packed.div_ceil(ps as u64).max(2 * need))
                .next_power_of_two()
                .clamp(need, SEGMENT_PAGES.max(need))
                .min(max_pages);
            // Just long enough for the values of this length it can hold:
            // a segment of values of one length ends with no room for
            // another (100 KiB values: two in 51 pages, not 64).
            let len = value.len() as u64;
            let fit = (want * ps as u64 - SEGMENT_DATA as u64) / len.max(1);
            let want = (SEGMENT_DATA as u64 + fit.max(1) * len)
                .div_ceil(ps as u64)
                .clamp(need, want);
            let (first, pages) = match segs.spare {
                Some((first, pages))
                    if pages >= need && pages <= max_pages && first + pages <= below =>
                {
                    segs.spare = None;
                    (first, pages)
                }
                _ => {
                    let Some((first, pages)) =
                        alloc.alloc_segment(need, want, below, segs.packed == 0)?
                    else {
                        return Ok(None);
                    };
                    let mut buf = vec![0u8; pages as usize * ps].into_boxed_slice();
                    init_segment(&mut buf, pages as u32, txn_id);
                    bufs.insert(first, buf);
                    (first, pages)
                }
            };
            segs.open = Some(OpenSegment {
                first,
                pages,
                used: SEGMENT_DATA,
            });
            self.change(first).pages = Some(pages);
        }
        let open = segs.open.as_mut().expect("opened above");
        let off = open.used;
        let Some(at) = bufs.range_mut(open.first, off..off + value.len()) else {
            return corrupted(open.first, "the open segment has no buffer");
        };
        at.copy_from_slice(value);
        open.used += value.len();
        segs.packed += value.len() as u64;
        let first = open.first;
        self.own.insert((first, off as u32));
        self.log(Step::Owned(first, off as u32));
        let change = self.change(first);
        change.values += 1;
        change.bytes += value.len() as i64;
        Ok(Some(ValueRef::Packed {
            seg: first,
            off: off as u32,
        }))
    }

    /// Whether `(seg, off)` is a value this transaction packed and holds.
    pub(super) fn owns(&self, seg: PageId, off: u32) -> bool {
        self.own.contains(&(seg, off))
    }

    /// Records that the value of `len` bytes at `off` in the segment at
    /// `seg` is gone. A segment of this transaction left without values
    /// is reused at once: the open one starts over, another is kept for the
    /// next segment opened (or, with one kept already, freed), so a
    /// transaction that overwrites its own values over and over keeps
    /// reusing the same pages. A value of this transaction's lies in a
    /// segment of the partition that releases it (`segs`, `bufs`): the one
    /// whose tree holds it, which packed it.
    pub(super) fn release(
        &mut self,
        segs: &mut Segments,
        alloc: &mut Allocator,
        bufs: &mut Buffers,
        seg: PageId,
        off: u32,
        len: usize,
    ) -> Result<()> {
        let own = self.own.remove(&(seg, off));
        if own {
            self.log(Step::Released(seg, off));
        }
        let change = self.change(seg);
        // A segment written since the changes were last handed over holds
        // only values this transaction packed.
        if change.pages.is_some() && !own {
            return corrupted(
                seg,
                "a value released twice, or from a segment it is not in",
            );
        }
        change.values -= 1;
        change.bytes -= len as i64;
        let (Some(pages), 0) = (change.pages, change.values) else {
            return Ok(());
        };
        match segs.open.as_mut() {
            Some(open) if open.first == seg => open.used = SEGMENT_DATA,
            _ if segs.spare.is_none() => segs.spare = Some((seg, pages)),
            _ => self.free_segment(alloc, bufs, seg, pages)?,
        }
        Ok(())
    }

    /// Frees the `pages` pages of segment `seg` of this transaction, which
    /// holds no value: reusable at once (no snapshot saw it), back to the
    /// high-water mark when it ends there; it leaves the changes, so the
    /// heap's tree never hears of it.
    fn free_segment(
        &mut self,
        alloc: &mut Allocator,
        bufs: &mut Buffers,
        seg: PageId,
        pages: u64,
    ) -> Result<()> {
        alloc.give_back(seg, pages)?;
        bufs.remove(seg);
        let was = self.changes.remove(&seg);
        self.log(Step::Changed(seg, was));
        Ok(())
    }

    /// Settles the segments of a partition no handle holds now (its handle
    /// dropped, or its table deleted): whatever another partition could
    /// use goes back to the allocator. A spare, and an open segment left
    /// without values, are freed whole; an open one that holds values keeps
    /// them and stays open, cut to the pages they reach (its whole
    /// unfilled pages go back), so the table opened again appends to its
    /// last page. So a partition holds at most a page it does not fill
    /// while no handle has it, however many tables the transaction opens.
    pub(super) fn settle(
        &mut self,
        segs: &mut Segments,
        alloc: &mut Allocator,
        bufs: &mut Buffers,
    ) -> Result<()> {
        if let Some((seg, pages)) = segs.spare.take() {
            self.free_segment(alloc, bufs, seg, pages)?;
        }
        let Some(open) = segs.open.as_mut() else {
            return Ok(());
        };
        let first = open.first;
        let change = self.changes.get(&first).copied().unwrap_or_default();
        match change.pages {
            Some(pages) if change.values == 0 && open.used == SEGMENT_DATA => {
                segs.open = None;
                self.free_segment(alloc, bufs, first, pages)
            }
            _ => self.trim(open, alloc, bufs),
        }
    }

    /// Cuts the open segment `open` to the pages its values reach: the
    /// whole pages it did not fill go back to the allocator (to the
    /// high-water mark when it ends there, else to the free list: no
    /// snapshot saw them), and its header states the pages it keeps.
    fn trim(
        &mut self,
        open: &mut OpenSegment,
        alloc: &mut Allocator,
        bufs: &mut Buffers,
    ) -> Result<()> {
        let ps = bufs.page_size();
        let keep = open.used.div_ceil(ps) as u64;
        if keep < open.pages {
            bufs.resize(open.first, keep as usize);
            let Some(head) = bufs.range_mut(open.first, 0..SEGMENT_DATA) else {
                return corrupted(open.first, "the open segment has no buffer");
            };
            set_run_pages(head, keep as u32);
            alloc.give_back(open.first + keep, open.pages - keep)?;
            open.pages = keep;
            self.change(open.first).pages = Some(keep);
        }
        Ok(())
    }

    /// Closes the open segment of a partition: the pages it did not fill
    /// go back to the free list (no snapshot saw them), and its header
    /// states the pages it keeps.
    pub(super) fn close(
        &mut self,
        segs: &mut Segments,
        alloc: &mut Allocator,
        bufs: &mut Buffers,
    ) -> Result<()> {
        let Some(mut open) = segs.open.take() else {
            return Ok(());
        };
        self.trim(&mut open, alloc, bufs)
    }

    /// Closes a partition's segments: the open one as `close` does; a
    /// spare holds no value, and its change frees it at commit.
    pub(super) fn finish(
        &mut self,
        segs: &mut Segments,
        alloc: &mut Allocator,
        bufs: &mut Buffers,
    ) -> Result<()> {
        self.close(segs, alloc, bufs)?;
        segs.spare = None;
        Ok(())
    }

    /// Closes the segments of the last partition and hands over the
    /// changes, in page order.
    pub(super) fn take_changes(
        &mut self,
        segs: &mut Segments,
        alloc: &mut Allocator,
        bufs: &mut Buffers,
    ) -> Result<BTreeMap<PageId, Change>> {
        self.finish(segs, alloc, bufs)?;
        Ok(std::mem::take(&mut self.changes))
    }
}
