//! Ranges that own their snapshot: they outlive the [`Table`] and the
//! [`ReadTxn`](crate::ReadTxn) they came from, and still hand out keys and
//! values without copying them.
//!
//! A range walks the tree in batches: each batch is a short borrowed walk
//! ([`Range`]) whose entries are kept by their place in the snapshot's map,
//! and the next batch starts past the last key taken. The unwalked middle
//! shrinks from both ends, so the two ends never hand out an entry twice.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::read::Snapshot;
use crate::error::{Result, corrupted};
use crate::format::meta::TableDesc;
use crate::pager::MapBytes;
use crate::table::{Entry, Range, Table, borrowed, owned, prefix_end};
use crate::view::View;

/// Entries one batch takes at first; each batch after takes twice as many,
/// up to `MAX_BATCH`.
const FIRST_BATCH: usize = 16;
const MAX_BATCH: usize = 512;

/// A key and its value that hold their snapshot, from an [`OwnedRange`].
///
/// Both are read in place from the map, as a [`Table`]'s values are; the
/// entry keeps the snapshot (and so the pages it reaches) alive until it
/// is dropped, like a clone of its [`ReadTxn`](crate::ReadTxn).
///
/// A child process made by `fork` must not read entries (or values) it
/// inherited: the snapshot is the parent's, which ends when the parent
/// drops its copies, and the child's bytes may then change under it (an
/// [`OwnedRange`] it inherited fails with
/// [`Error::Forked`](crate::Error::Forked)). Open the database again in the
/// child.
#[derive(Clone)]
pub struct OwnedEntry {
    snap: Arc<Snapshot>,
    key: MapBytes,
    value: MapBytes,
}

impl OwnedEntry {
    /// The key.
    pub fn key(&self) -> &[u8] {
        self.snap.bytes(&self.key)
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        self.snap.bytes(&self.value)
    }
}

impl fmt::Debug for OwnedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedEntry")
            .field("key", &self.key())
            .field("value", &self.value())
            .finish()
    }
}

/// An iterator over a key range of a table that owns its snapshot: it
/// may outlive the [`Table`] and the [`ReadTxn`](crate::ReadTxn) it came
/// from, move to another thread, or be returned as a
/// `Box<dyn Iterator<Item = Result<OwnedEntry>>>`. Made by
/// [`Table::range_owned`], [`Table::iter_owned`] and
/// [`Table::prefix_owned`].
///
/// It goes both ways ([`DoubleEndedIterator`]); a corrupt page ends it with
/// an error. The snapshot, and the pages it reaches, stay until the range
/// and every entry it gave are dropped.
pub struct OwnedRange {
    snap: Arc<Snapshot>,
    desc: TableDesc,
    /// The keys not yet walked: each batch moves one end inwards.
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    /// No key is left between `start` and `end`.
    walked: bool,
    /// Entries taken from the front, in key order, and from the back, in
    /// reverse key order, not yet handed out.
    front: VecDeque<(MapBytes, MapBytes)>,
    back: VecDeque<(MapBytes, MapBytes)>,
    batch: usize,
    /// An error ended the range.
    failed: bool,
}

impl OwnedRange {
    fn new(table: &Table<'_>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> OwnedRange {
        let (snap, desc) = table.parts();
        OwnedRange {
            snap: Arc::clone(snap),
            desc,
            start,
            end,
            walked: false,
            front: VecDeque::new(),
            back: VecDeque::new(),
            batch: FIRST_BATCH,
            failed: false,
        }
    }

    /// Walks the next batch from the front (`forward`) or the back of the
    /// keys not yet walked, into the matching queue.
    fn walk(&mut self, forward: bool) -> Result<()> {
        // A child made by `fork` reads through the parent's snapshot, which
        // the parent may end at any time.
        self.snap.same_process()?;
        let view = View::Map(self.snap.map_view());
        let mut range = Range::new(
            view,
            self.desc,
            (borrowed(&self.start), borrowed(&self.end)),
        );
        let mut last: Option<&[u8]> = None;
        let mut taken = 0;
        while taken < self.batch {
            let next = if forward {
                range.next()
            } else {
                range.next_back()
            };
            let Some(entry) = next else { break };
            let (k, v) = entry?;
            let place = self.place((k, v))?;
            if forward {
                self.front.push_back(place);
            } else {
                self.back.push_back(place);
            }
            last = Some(k);
            taken += 1;
        }
        match last {
            Some(k) if taken == self.batch => {
                let k = Bound::Excluded(k.to_vec());
                if forward {
                    self.start = k
                } else {
                    self.end = k
                }
            }
            // Fewer than a batch: the walk reached the other end.
            _ => self.walked = true,
        }
        self.batch = (self.batch * 2).min(MAX_BATCH);
        Ok(())
    }

    /// An entry of the snapshot, by its place in the map.
    fn place(&self, (k, v): Entry<'_>) -> Result<(MapBytes, MapBytes)> {
        match (self.snap.pin(k), self.snap.pin(v)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => corrupted(
                self.desc.root,
                "an entry read from a snapshot lies outside its map",
            ),
        }
    }

    fn entry(&self, (key, value): (MapBytes, MapBytes)) -> OwnedEntry {
        OwnedEntry {
            snap: Arc::clone(&self.snap),
            key,
            value,
        }
    }

    /// The next entry from the front (`forward`) or the back.
    fn step(&mut self, forward: bool) -> Option<Result<OwnedEntry>> {
        if self.failed {
            return None;
        }
        loop {
            let near = if forward {
                &mut self.front
            } else {
                &mut self.back
            };
            if let Some(place) = near.pop_front() {
                return Some(Ok(self.entry(place)));
            }
            if self.walked {
                // The middle is walked: what is left was taken from the
                // other end, and is handed out from its far side.
                let far = if forward {
                    &mut self.back
                } else {
                    &mut self.front
                };
                return far.pop_back().map(|place| Ok(self.entry(place)));
            }
            if let Err(e) = self.walk(forward) {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}

impl Iterator for OwnedRange {
    type Item = Result<OwnedEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

impl DoubleEndedIterator for OwnedRange {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl Table<'_> {
    /// The entries whose keys lie in `range`, as [`range`](Table::range)
    /// gives them, from an iterator that owns the snapshot: it outlives
    /// this table and its transaction (see [`OwnedRange`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # // SAFETY: the file is this example's own.
    /// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
    /// # let mut w = db.begin_write()?;
    /// # let mut t = w.open_table("users")?;
    /// # for k in [&b"ada"[..], b"bob", b"eve"] { t.insert(k, b"1")?; }
    /// # drop(t);
    /// # w.commit()?;
    /// /// A storage layer's scan: the iterator keeps what it reads.
    /// fn scan(db: &larch::Database, from: &[u8]) -> larch::Result<larch::OwnedRange> {
    ///     let r = db.begin_read()?;
    ///     let users = r.open_table("users")?;
    ///     users.range_owned(from..)
    /// }
    /// let keys: Vec<Vec<u8>> = scan(&db, b"b")?.map(|e| e.map(|e| e.key().to_vec())).collect::<Result<_, _>>()?;
    /// assert_eq!(keys, [b"bob".to_vec(), b"eve".to_vec()]);
    /// # Ok::<(), larch::Error>(())
    /// ```
    pub fn range_owned<'a>(&self, range: impl RangeBounds<&'a [u8]>) -> Result<OwnedRange> {
        Ok(OwnedRange::new(
            self,
            owned(range.start_bound()),
            owned(range.end_bound()),
        ))
    }

    /// All entries in key order, from an iterator that owns the snapshot
    /// (see [`range_owned`](Table::range_owned)).
    pub fn iter_owned(&self) -> Result<OwnedRange> {
        self.range_owned(..)
    }

    /// The entries whose keys start with `prefix`, from an iterator that
    /// owns the snapshot (see [`prefix`](Table::prefix) and
    /// [`range_owned`](Table::range_owned)).
    pub fn prefix_owned(&self, prefix: &[u8]) -> Result<OwnedRange> {
        Ok(OwnedRange::new(
            self,
            Bound::Included(prefix.to_vec()),
            prefix_end(prefix),
        ))
    }
}
