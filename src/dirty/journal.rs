//! A savepoint's journal of the buffers: what each buffer changed since the
//! savepoint held at it, so that a restore can put it back.
//!
//! A buffer of one page is kept whole the first time it changes. A buffer
//! of several pages (a value segment, an overflow run) that changes in
//! place, part by part, keeps only the pages that change and its length:
//! a value packed into a segment after a savepoint costs the pages it
//! lands on, not the segment.

use std::ops::Range;

use crate::format::page::{PageId, PageMap};

/// What a buffer held at the savepoint.
enum Old {
    /// The whole buffer (`None`: there was none).
    Whole(Option<Box<[u8]>>),
    /// Its length in bytes, and its pages (by index in the buffer) that
    /// changed since, as they were; the pages not listed are unchanged.
    Pages {
        len: usize,
        pages: PageMap<Box<[u8]>>,
    },
}

/// One savepoint's journal.
#[derive(Default)]
pub(super) struct Journal {
    old: PageMap<Old>,
}

/// The buffer `now` put back as `old` says it was.
fn rebuilt(now: &[u8], len: usize, pages: &PageMap<Box<[u8]>>, page_size: usize) -> Box<[u8]> {
    let mut buf = now.to_vec();
    buf.resize(len, 0);
    for (&i, page) in pages {
        let at = i as usize * page_size;
        buf[at..at + page.len()].copy_from_slice(page);
    }
    buf.into_boxed_slice()
}

impl Journal {
    /// Before buffer `id` (now `now`) changes as a whole, or goes: keeps
    /// all of it as it was at the savepoint, the first time.
    pub(super) fn whole(&mut self, id: PageId, now: Option<&[u8]>, page_size: usize) {
        let old = match self.old.get(&id) {
            None => Old::Whole(now.map(Box::from)),
            Some(Old::Whole(_)) => return,
            Some(Old::Pages { len, pages }) => {
                let now = now.expect("a journaled buffer in parts exists");
                Old::Whole(Some(rebuilt(now, *len, pages, page_size)))
            }
        };
        self.old.insert(id, old);
    }

    /// Before buffer `id` (now `now`), goes: it moves into the journal if
    /// nothing of it is kept yet, so that a removal copies nothing.
    pub(super) fn removed(&mut self, id: PageId, now: Box<[u8]>, page_size: usize) {
        match self.old.get(&id) {
            None => {
                self.old.insert(id, Old::Whole(Some(now)));
            }
            Some(Old::Whole(_)) => {}
            Some(Old::Pages { .. }) => self.whole(id, Some(&now), page_size),
        }
    }

    /// Before bytes `range` of buffer `id` (now `now`, which exists) change
    /// in place: keeps the pages they lie on that the buffer had at the
    /// savepoint, each the first time.
    pub(super) fn part(&mut self, id: PageId, now: &[u8], range: Range<usize>, page_size: usize) {
        let entry = self.old.entry(id).or_insert_with(|| Old::Pages {
            len: now.len(),
            pages: PageMap::default(),
        });
        let Old::Pages { len, pages } = entry else {
            return;
        };
        let last = range.end.min(*len).div_ceil(page_size);
        for i in range.start / page_size..last {
            pages
                .entry(i as u64)
                .or_insert_with(|| Box::from(&now[i * page_size..(i + 1) * page_size]));
        }
    }

    /// Before buffer `id` (now `now`, which exists) is cut or lengthened
    /// to `new_len` bytes: pages it loses that it had at the savepoint are
    /// kept; a longer buffer needs nothing (the length is kept).
    pub(super) fn resized(&mut self, id: PageId, now: &[u8], new_len: usize, page_size: usize) {
        if new_len < now.len() {
            self.part(id, now, new_len..now.len(), page_size);
        } else {
            self.part(id, now, 0..0, page_size);
        }
    }

    /// Puts every buffer it kept back into `map`.
    pub(super) fn undo(self, map: &mut PageMap<Box<[u8]>>, page_size: usize) {
        for (id, old) in self.old {
            match old {
                Old::Whole(Some(buf)) => {
                    map.insert(id, buf);
                }
                Old::Whole(None) => {
                    map.remove(&id);
                }
                Old::Pages { len, pages } => {
                    let now = map.get(&id).expect("a journaled buffer in parts exists");
                    let buf = rebuilt(now, len, &pages, page_size);
                    map.insert(id, buf);
                }
            }
        }
    }

    /// Merges this journal (of a later savepoint) into `below`, the one of
    /// the savepoint before it, which then covers both spans: what `below`
    /// kept is older and wins.
    pub(super) fn merge_into(self, below: &mut Journal, page_size: usize) {
        for (id, old) in self.old {
            let Some(earlier) = below.old.get_mut(&id) else {
                below.old.insert(id, old);
                continue;
            };
            match (earlier, old) {
                (Old::Whole(_), _) => {}
                // The buffer as it was at the later savepoint, put back to
                // the earlier one.
                (Old::Pages { len, pages }, Old::Whole(later)) => {
                    let later = later.expect("a journaled buffer in parts existed since");
                    let buf = rebuilt(&later, *len, pages, page_size);
                    below.old.insert(id, Old::Whole(Some(buf)));
                }
                (Old::Pages { len, pages }, Old::Pages { pages: later, .. }) => {
                    // Pages unchanged between the two savepoints, changed
                    // after: the later copy is the earlier state.
                    let had = len.div_ceil(page_size) as u64;
                    for (i, page) in later {
                        if i < had {
                            pages.entry(i).or_insert(page);
                        }
                    }
                }
            }
        }
    }

    /// Bytes it keeps.
    pub(super) fn bytes(&self) -> usize {
        (self.old.values())
            .map(|old| match old {
                Old::Whole(buf) => buf.as_ref().map_or(0, |b| b.len()),
                Old::Pages { pages, .. } => pages.values().map(|p| p.len()).sum(),
            })
            .sum()
    }
}
