//! Writing while walking a table: a cursor that removes or replaces the
//! entry under it and goes on, and a range drained entry by entry.
//!
//! A change copies pages on write, so no position inside the tree survives
//! it: both keep the key they are at, and each move is a descent from the
//! root to the entry after (or before) that key. That costs a seek per
//! move, O(log n), and no memory beyond one key.

use std::ops::{Bound, RangeBounds};

use super::{Entry, Range, TableMut, borrowed, owned};
use crate::error::Result;

/// The first entry of `bounds` in `table`, from the front (`forward`) or
/// the back.
fn first_of<'t>(
    table: &'t TableMut<'_>,
    bounds: (Bound<&[u8]>, Bound<&[u8]>),
    forward: bool,
) -> Result<Option<Entry<'t>>> {
    let mut range = Range::new(table.view(), *table.desc(), bounds);
    let found = if forward {
        range.next()
    } else {
        range.next_back()
    };
    found.transpose()
}

/// Where a [`CursorMut`] is.
enum Place {
    /// Not yet positioned: `next` goes to the first entry, `prev` to the
    /// last.
    Unset,
    /// On the entry with this key.
    On(Vec<u8>),
    /// Where the entry with this key was before the cursor removed it:
    /// `next` goes to the first key after it, `prev` to the last before.
    Gap(Vec<u8>),
    /// Past the last entry: `prev` goes to the last.
    AfterEnd,
    /// Before the first entry: `next` goes to the first.
    BeforeStart,
}

/// A cursor over a table of a write transaction that can remove or
/// replace the entry under it and go on, from
/// [`TableMut::cursor_mut`]. It moves as a [`Cursor`](crate::Cursor) does;
/// an entry it returns borrows it until the next call. Once it has removed
/// or replaced an entry, a move that fails (a damaged page) fails the
/// transaction, as [`TableMut::remove_range`] does: half a walk of changes
/// never commits.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # // SAFETY: the file is this example's own.
/// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
/// let mut w = db.begin_write()?;
/// let mut t = w.open_table("jobs")?;
/// for (k, v) in [(b"a", b"done"), (b"b", b"todo"), (b"c", b"done")] {
///     t.insert(k, v)?;
/// }
/// let mut c = t.cursor_mut();
/// while let Some((_, state)) = c.next()? {
///     if state == b"done" {
///         c.remove_current()?;
///     } else {
///         c.replace_current(b"started")?;
///     }
/// }
/// drop(c);
/// assert_eq!(t.len(), 1);
/// assert_eq!(t.get(b"b")?, Some(&b"started"[..]));
/// # Ok::<(), larch::Error>(())
/// ```
pub struct CursorMut<'a, 'txn> {
    table: &'a mut TableMut<'txn>,
    place: Place,
    /// The cursor removed or replaced an entry: from then on a move that
    /// fails (a damaged page) fails the transaction too, as a failed
    /// `remove_range` does, so that half a walk of changes cannot commit.
    changed: bool,
}

impl<'a, 'txn> CursorMut<'a, 'txn> {
    pub(super) fn new(table: &'a mut TableMut<'txn>) -> Self {
        CursorMut {
            table,
            place: Place::Unset,
            changed: false,
        }
    }

    /// Settles on the key found, or past the end it looked towards.
    fn settle(&mut self, found: Option<Vec<u8>>, forward: bool) -> Result<Option<Entry<'_>>> {
        self.place = match found {
            Some(key) => Place::On(key),
            None if forward => Place::AfterEnd,
            None => Place::BeforeStart,
        };
        self.current()
    }

    fn go(
        &mut self,
        bounds: (Bound<&[u8]>, Bound<&[u8]>),
        forward: bool,
    ) -> Result<Option<Entry<'_>>> {
        self.table.dirty.live()?;
        let found = match first_of(self.table, bounds, forward) {
            Ok(found) => found.map(|(k, _)| k.to_vec()),
            Err(e) if self.changed => return self.table.dirty.outcome(Err(e)),
            Err(e) => return Err(e),
        };
        self.settle(found, forward)
    }

    /// Moves to the first entry.
    pub fn first(&mut self) -> Result<Option<Entry<'_>>> {
        self.go((Bound::Unbounded, Bound::Unbounded), true)
    }

    /// Moves to the last entry.
    pub fn last(&mut self) -> Result<Option<Entry<'_>>> {
        self.go((Bound::Unbounded, Bound::Unbounded), false)
    }

    /// Moves to the first entry whose key is `>= key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<Entry<'_>>> {
        self.go((Bound::Included(key), Bound::Unbounded), true)
    }

    /// Moves to the next entry.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'_>>> {
        let from = match &self.place {
            Place::Unset | Place::BeforeStart => Bound::Unbounded,
            Place::On(k) | Place::Gap(k) => Bound::Excluded(k.clone()),
            Place::AfterEnd => return Ok(None),
        };
        self.go((borrowed(&from), Bound::Unbounded), true)
    }

    /// Moves to the previous entry.
    pub fn prev(&mut self) -> Result<Option<Entry<'_>>> {
        let to = match &self.place {
            Place::Unset | Place::AfterEnd => Bound::Unbounded,
            Place::On(k) | Place::Gap(k) => Bound::Excluded(k.clone()),
            Place::BeforeStart => return Ok(None),
        };
        self.go((Bound::Unbounded, borrowed(&to)), false)
    }

    /// The entry under the cursor: `None` before the first move, past
    /// either end, and after [`remove_current`](CursorMut::remove_current).
    pub fn current(&self) -> Result<Option<Entry<'_>>> {
        self.table.dirty.live()?;
        let Place::On(key) = &self.place else {
            return Ok(None);
        };
        let at = Bound::Included(&key[..]);
        match first_of(self.table, (at, at), true)? {
            Some(entry) => Ok(Some(entry)),
            None => {
                crate::error::corrupted(self.table.desc().root, "the entry under a cursor is gone")
            }
        }
    }

    /// Removes the entry under the cursor; returns whether there was one.
    /// The cursor stays where it was: `next` goes to the entry after it,
    /// `prev` to the one before. Errors as for [`TableMut::remove`].
    pub fn remove_current(&mut self) -> Result<bool> {
        self.table.dirty.live()?;
        let Place::On(key) = &self.place else {
            return Ok(false);
        };
        let key = key.clone();
        self.changed = true;
        let removed = self.table.remove(&key)?;
        self.place = Place::Gap(key);
        Ok(removed)
    }

    /// Replaces the value of the entry under the cursor, which stays on
    /// it; returns whether there was one. Errors as for
    /// [`TableMut::insert`].
    pub fn replace_current(&mut self, value: &[u8]) -> Result<bool> {
        self.table.dirty.live()?;
        let Place::On(key) = &self.place else {
            return Ok(false);
        };
        let key = key.clone();
        self.changed = true;
        self.table.insert(&key, value)?;
        Ok(true)
    }
}

/// The entries of a key range, each removed as it is taken, from
/// [`TableMut::drain`]: an iterator of `(key, value)` copied out, in key
/// order. Entries it has not given when it is dropped stay in the table
/// ([`TableMut::remove_range`] removes a range without reading it). It holds
/// one key at a time, so memory stays bounded however large the range.
pub struct Drain<'a, 'txn> {
    table: &'a mut TableMut<'txn>,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    done: bool,
}

impl<'a, 'txn> Drain<'a, 'txn> {
    pub(super) fn new<'k>(
        table: &'a mut TableMut<'txn>,
        range: impl RangeBounds<&'k [u8]>,
    ) -> Self {
        Drain {
            table,
            start: owned(range.start_bound()),
            end: owned(range.end_bound()),
            done: false,
        }
    }

    fn take(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.table.dirty.live()?;
        let bounds = (borrowed(&self.start), borrowed(&self.end));
        let first =
            (first_of(self.table, bounds, true)).map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())));
        // A read that fails is a failed change of the drain: the entries it
        // took are gone, so the transaction fails (as `remove_range`'s walk).
        let first = self.table.dirty.outcome(first)?;
        let Some((key, value)) = first else {
            return Ok(None);
        };
        self.table.remove(&key)?;
        self.start = Bound::Excluded(key.clone());
        Ok(Some((key, value)))
    }
}

impl Iterator for Drain<'_, '_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.take();
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r.transpose()
    }
}
