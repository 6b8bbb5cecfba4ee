//! Multimap tables: each key maps to a sorted set of values (LMDB's
//! `MDB_DUPSORT`, redb's multimap tables), in one B+tree of the byte API.
//!
//! The tree holds three kinds of entries (DESIGN.md, "Multimap tables"):
//! the empty key holds the number of pairs; `esc(k)`, the key escaped as a
//! field of a composite key, holds the number of values of `k` (its head);
//! and `esc(k) 01 v`, with an empty value, is the pair `(k, v)`. Escaping
//! keeps keys apart (no `esc(k)` starts another) and in order, so the
//! values of a key are one range of the tree, sorted, and a value is read
//! in place: the end of its entry's key.

use std::borrow::Cow;
use std::ops::{Bound, RangeBounds};

use crate::error::{Error, Result, corrupted};
use crate::format::escape::{decode_escaped, encode_escaped};
use crate::format::multimap::{self as layout, Entry, PAIR};
use crate::format::node::MAX_KEY;
use crate::table::{Range, Shape, Table, TableMut, after_start, before_end, borrowed};
use crate::txn::{ReadTxn, WriteTxn};

/// The tree key of `key`'s head.
fn head(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 3);
    encode_escaped(key, &mut out);
    out
}

/// The tree key of the pair `(key, value)`.
fn pair(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = head(key);
    out.push(PAIR);
    out.extend_from_slice(value);
    out
}

/// The tree keys of every pair of `key`: from `esc(key) 01` to before
/// `esc(key) 02`.
fn pairs_of(key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut start = head(key);
    let mut end = start.clone();
    start.push(PAIR);
    end.push(PAIR + 1);
    (start, end)
}

/// The tree keys of the pairs whose keys lie in `range`.
fn key_range<'a>(range: &impl RangeBounds<&'a [u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let past = |k: &[u8]| pairs_of(k).1;
    let start = match range.start_bound() {
        // The empty key, the pair count, lies before every head.
        Bound::Unbounded => Bound::Excluded(Vec::new()),
        Bound::Included(k) => Bound::Included(head(k)),
        Bound::Excluded(k) => Bound::Included(past(k)),
    };
    let end = match range.end_bound() {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(k) => Bound::Excluded(past(k)),
        Bound::Excluded(k) => Bound::Excluded(head(k)),
    };
    (start, end)
}

/// A count: a head's, or the pairs'.
fn count_of(bytes: Option<&[u8]>) -> Result<u64> {
    match bytes {
        None => Ok(0),
        Some(b) => match layout::count(b) {
            Some(n) => Ok(n),
            None => corrupted(0, "a multimap count is not 8 bytes"),
        },
    }
}

/// What a tree entry of a multimap is: a head (`None`), or a pair.
fn entry_of(stored: &[u8]) -> Result<Option<MultimapPair<'_>>> {
    match layout::entry(stored) {
        Some(Entry::Head(_)) => Ok(None),
        Some(Entry::Pair(key, value)) => Ok(Some((key, value))),
        Some(Entry::Total) | None => corrupted(0, "a multimap entry is neither a head nor a pair"),
    }
}

/// The pair `(key, value)`, checked to fit in a tree key before anything
/// changes.
fn checked_pair(key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
    let stored = pair(key, value);
    if stored.len() > MAX_KEY {
        return Err(Error::KeyTooLarge {
            len: stored.len(),
            max: MAX_KEY,
        });
    }
    Ok(stored)
}

impl ReadTxn {
    /// Opens multimap table `name`: [`Error::TableNotFound`] if it does
    /// not exist, [`Error::TableTypeMismatch`] if it is not a multimap of
    /// the byte API (a typed multimap included: see
    /// [`open_untyped_multimap`](ReadTxn::open_untyped_multimap)).
    pub fn open_multimap(&self, name: &str) -> Result<Multimap<'_>> {
        let inner = self.open_table_as(name, Shape::Multimap)?;
        Ok(Multimap::new(inner))
    }

    /// Opens multimap table `name`, typed or not, as the byte API sees it:
    /// the keys and values of a typed multimap as their encoded bytes.
    /// For tools that read every table without knowing its types (as
    /// [`open_table`](ReadTxn::open_table) reads a typed table);
    /// [`Error::TableNotFound`] if it does not exist,
    /// [`Error::TableTypeMismatch`] if it is not a multimap. There is no
    /// such opening in a write transaction: a typed multimap is changed
    /// through its types only.
    pub fn open_untyped_multimap(&self, name: &str) -> Result<Multimap<'_>> {
        let inner = self.open_table_as(name, Shape::AnyMultimap)?;
        Ok(Multimap::new(inner))
    }
}

impl WriteTxn {
    /// Opens multimap table `name`, creating it (empty) if it does not
    /// exist. A table that is not a multimap is
    /// [`Error::TableTypeMismatch`], which leaves the transaction as it
    /// was; other errors are [`open_table`](WriteTxn::open_table)'s. (The
    /// byte API does not open a multimap.)
    pub fn open_multimap(&self, name: &str) -> Result<MultimapMut<'_>> {
        let inner = self.open_table_as(name, Shape::Multimap)?;
        Ok(MultimapMut::new(inner))
    }
}

/// The reads of both kinds of multimap handle; `$life` is the lifetime of
/// what they hand out.
macro_rules! reads {
    ($life:lifetime) => {
        /// The values of `key`, in order (and in reverse with `.rev()`):
        /// each a `&[u8]` read in place.
        pub fn get(&self, key: &[u8]) -> Result<MultimapValues<$life>> {
            let (start, end) = pairs_of(key);
            let prefix = start.len();
            let inner = self.inner.range(&start[..]..&end[..])?;
            Ok(MultimapValues { inner, prefix })
        }

        /// How many values `key` has: one lookup, O(log n).
        pub fn count(&self, key: &[u8]) -> Result<u64> {
            count_of(self.inner.get(&head(key))?)
        }

        /// Whether `key` has the value `value`.
        pub fn contains(&self, key: &[u8], value: &[u8]) -> Result<bool> {
            Ok(self.inner.get(&pair(key, value))?.is_some())
        }

        /// Number of pairs: one lookup, O(log n).
        pub fn len(&self) -> Result<u64> {
            count_of(self.inner.get(&[])?)
        }

        /// Whether the table holds no pair.
        pub fn is_empty(&self) -> Result<bool> {
            Ok(self.len()? == 0)
        }

        /// The pairs whose keys lie in `range`, by key then value (and in
        /// reverse with `.rev()`).
        pub fn range<'a>(&self, range: impl RangeBounds<&'a [u8]>) -> Result<MultimapPairs<$life>> {
            let (start, end) = key_range(&range);
            let inner = self.inner.range((borrowed(&start), borrowed(&end)))?;
            Ok(MultimapPairs { inner })
        }

        /// Every pair, by key then value.
        pub fn iter(&self) -> Result<MultimapPairs<$life>> {
            self.range(..)
        }

        /// The keys that lie in `range`, each once, with its count, in
        /// order (and in reverse with `.rev()`): one descent of the tree
        /// per key, however many values it has.
        pub fn keys<'a>(&self, range: impl RangeBounds<&'a [u8]>) -> Result<MultimapKeys<$life>> {
            let (start, end) = key_range(&range);
            Ok(MultimapKeys {
                front: self.inner.cursor(),
                back: self.inner.cursor(),
                start,
                end,
                back_started: false,
                done: false,
            })
        }
    };
}

/// A multimap table in a read transaction: each key has a sorted set of
/// values. Values borrow the transaction and point into the map.
pub struct Multimap<'txn> {
    inner: Table<'txn>,
}

impl<'txn> Multimap<'txn> {
    /// The multimap in `inner`, opened as one.
    pub(crate) fn new(inner: Table<'txn>) -> Self {
        Multimap { inner }
    }

    reads!('txn);

    /// The figures of the table's tree ([`Table::stat`]): its `entries`
    /// count the heads (one per key) and the pair total besides the pairs.
    pub fn stat(&self) -> Result<crate::TableStat> {
        self.inner.stat()
    }
}

/// A multimap table in a write transaction. Reads see the transaction's
/// own changes and borrow `&self`, so the next change ends them; errors
/// fail the transaction as [`TableMut`]'s do.
pub struct MultimapMut<'txn> {
    inner: TableMut<'txn>,
}

impl<'txn> MultimapMut<'txn> {
    /// The multimap in `inner`, opened as one.
    pub(crate) fn new(inner: TableMut<'txn>) -> Self {
        MultimapMut { inner }
    }

    reads!('_);

    /// Adds `value` to the values of `key`; returns whether it is new
    /// (`false`: the key had it already, and nothing changed).
    ///
    /// A key and value are stored together as one key of the tree (the key
    /// escaped, then a byte, then the value), so together they are at most
    /// 64 KiB less three bytes and one per zero byte of the key
    /// ([`Error::KeyTooLarge`], which changes nothing).
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<bool> {
        let stored = checked_pair(key, value)?;
        if self.inner.get(&stored)?.is_some() {
            return Ok(false);
        }
        // The counts are read, and checked, before anything changes: a
        // damaged one fails the call and leaves the transaction as it was.
        let head = head(key);
        let (count, total) = (self.counted(&head, 1)?, self.counted(&[], 1)?);
        self.inner.insert(&stored, &[])?;
        self.set_count(&head, count)?;
        self.set_count(&[], total)?;
        Ok(true)
    }

    /// Removes `value` from the values of `key`; returns whether it was
    /// there.
    pub fn remove(&mut self, key: &[u8], value: &[u8]) -> Result<bool> {
        let stored = pair(key, value);
        if stored.len() > MAX_KEY || self.inner.get(&stored)?.is_none() {
            return Ok(false);
        }
        let head = head(key);
        let (count, total) = (self.counted(&head, -1)?, self.counted(&[], -1)?);
        if !self.inner.remove(&stored)? {
            return self.inner.fail_with(Error::Corrupted {
                page: 0,
                reason: "a multimap pair found was not there to remove",
            });
        }
        self.set_count(&head, count)?;
        self.set_count(&[], total)?;
        Ok(true)
    }

    /// Removes every value of `key`, in bounded memory however many it
    /// has; returns how many.
    pub fn remove_all(&mut self, key: &[u8]) -> Result<u64> {
        let head = head(key);
        let count = count_of(self.inner.get(&head)?)?;
        if count == 0 {
            return Ok(0);
        }
        let total = match self.count_at(&[])?.checked_sub(count) {
            Some(total) => total,
            None => return corrupted(0, "a multimap key has more values than the table"),
        };
        let (start, end) = pairs_of(key);
        let removed = self.inner.remove_range(&start[..]..&end[..])?;
        if removed != count {
            return self.inner.fail_with(Error::Corrupted {
                page: 0,
                reason: "a multimap key's count differs from its values",
            });
        }
        self.set_count(&head, 0)?;
        self.set_count(&[], total)?;
        Ok(removed)
    }

    /// The count at `at`.
    fn count_at(&self, at: &[u8]) -> Result<u64> {
        count_of(self.inner.get(at)?)
    }

    /// The count at `at` (a head, or the empty key for the pairs) with
    /// `by` added, checked.
    fn counted(&self, at: &[u8], by: i64) -> Result<u64> {
        match self.count_at(at)?.checked_add_signed(by) {
            Some(n) => Ok(n),
            None if by < 0 => corrupted(0, "a multimap count would go below zero"),
            None => corrupted(0, "a multimap count would overflow"),
        }
    }

    /// Stores `n` as the count at `at`, removing it at zero.
    fn set_count(&mut self, at: &[u8], n: u64) -> Result<()> {
        if n == 0 {
            self.inner.remove(at)?;
        } else {
            self.inner.insert(at, &n.to_le_bytes())?;
        }
        Ok(())
    }
}

/// The values of one key of a multimap, in order, from both ends.
pub struct MultimapValues<'txn> {
    inner: Range<'txn>,
    /// Bytes of the tree keys before the value.
    prefix: usize,
}

impl<'txn> Iterator for MultimapValues<'txn> {
    type Item = Result<&'txn [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let prefix = self.prefix;
        self.inner.next().map(|e| Ok(&e?.0[prefix..]))
    }
}

impl DoubleEndedIterator for MultimapValues<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let prefix = self.prefix;
        self.inner.next_back().map(|e| Ok(&e?.0[prefix..]))
    }
}

/// The pairs of a key range of a multimap, by key then value, from both
/// ends. A key is borrowed from the map unless it holds a zero byte.
pub struct MultimapPairs<'txn> {
    inner: Range<'txn>,
}

/// One pair of a multimap.
pub type MultimapPair<'txn> = (Cow<'txn, [u8]>, &'txn [u8]);

impl<'txn> MultimapPairs<'txn> {
    /// The next pair from `step` (a step from one end), past the heads.
    fn pair(
        step: impl FnMut() -> Option<Result<(&'txn [u8], &'txn [u8])>>,
    ) -> Option<Result<MultimapPair<'txn>>> {
        let mut step = step;
        loop {
            match step()? {
                Err(e) => return Some(Err(e)),
                Ok((stored, _)) => match entry_of(stored) {
                    Ok(None) => continue,
                    Ok(Some(pair)) => return Some(Ok(pair)),
                    Err(e) => return Some(Err(e)),
                },
            }
        }
    }
}

impl<'txn> Iterator for MultimapPairs<'txn> {
    type Item = Result<MultimapPair<'txn>>;

    fn next(&mut self) -> Option<Self::Item> {
        let inner = &mut self.inner;
        Self::pair(|| inner.next())
    }
}

impl DoubleEndedIterator for MultimapPairs<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let inner = &mut self.inner;
        Self::pair(|| inner.next_back())
    }
}

/// The keys of a key range of a multimap, each once with its count, in
/// order from both ends.
///
/// Each end seeks from head to head and never walks a key's pairs: going
/// forwards, from past a key's pairs (`esc(k) 02`) to the next head;
/// backwards, from the entry before the last head handed out (a pair or a
/// head of the key before it) to that key's head, a second descent only
/// when that entry is a pair. The ends meet by their bounds: the front
/// takes only heads before the last one the back handed out, and the back
/// only heads at or past where the front goes on.
pub struct MultimapKeys<'txn> {
    front: crate::table::Cursor<'txn>,
    /// On the last head the back handed out, once `back_started`.
    back: crate::table::Cursor<'txn>,
    /// Where the front seeks the next head: past the pairs of the last key
    /// the front handed out, or the range's start.
    start: Bound<Vec<u8>>,
    /// Before the last head the back handed out, or the range's end.
    end: Bound<Vec<u8>>,
    back_started: bool,
    /// Both ends met, or an error ended the iteration.
    done: bool,
}

/// One key of a multimap with its count of values.
type KeyCount<'txn> = (Cow<'txn, [u8]>, u64);

impl<'txn> MultimapKeys<'txn> {
    fn step_front(&mut self) -> Result<Option<KeyCount<'txn>>> {
        let found = match &self.start {
            Bound::Included(k) => self.front.seek(k)?,
            Bound::Excluded(k) => match self.front.seek(k)? {
                Some((at, _)) if at == k.as_slice() => self.front.next()?,
                other => other,
            },
            Bound::Unbounded => self.front.first()?,
        };
        let Some((stored, count)) = found else {
            return Ok(None);
        };
        if !before_end(&self.end, stored) {
            return Ok(None);
        }
        // A seek lands on a head: every key's pairs follow its head.
        if entry_of(stored)?.is_some() {
            return corrupted(0, "a multimap key's pairs have no head");
        }
        let Some((key, _)) = decode_escaped(stored) else {
            return corrupted(0, "a multimap entry does not start with a key");
        };
        let count = count_of(Some(count))?;
        let mut past = stored.to_vec();
        past.push(PAIR + 1);
        self.start = Bound::Included(past);
        Ok(Some((key, count)))
    }

    fn step_back(&mut self) -> Result<Option<KeyCount<'txn>>> {
        // The entry before the bound: the first step seeks it, the next
        // ones step back from the head the last one left the cursor on.
        let found = if self.back_started {
            self.back.prev()?
        } else {
            self.back_started = true;
            match &self.end {
                Bound::Included(k) => self.back.seek_back(k, true)?,
                Bound::Excluded(k) => self.back.seek_back(k, false)?,
                Bound::Unbounded => self.back.last()?,
            }
        };
        let Some((stored, value)) = found else {
            return Ok(None);
        };
        let (head, count) = match layout::entry(stored) {
            // The pair total, under the empty key, comes before every head.
            Some(Entry::Total) => return Ok(None),
            Some(Entry::Head(_)) => (stored, value),
            Some(Entry::Pair(..)) => {
                // The last pair of a key: its head is the key's escaped
                // form, the start of the pair's tree key, sought in one
                // descent (and the cursor left there).
                let Some((_, n)) = decode_escaped(stored) else {
                    return corrupted(0, "a multimap entry does not start with a key");
                };
                let head = &stored[..n];
                match self.back.seek(head)? {
                    Some((at, count)) if at == head => (at, count),
                    _ => return corrupted(0, "a multimap key's pairs have no head"),
                }
            }
            None => return corrupted(0, "a multimap entry is neither a head nor a pair"),
        };
        if !after_start(&self.start, head) {
            return Ok(None);
        }
        let Some((key, _)) = decode_escaped(head) else {
            return corrupted(0, "a multimap entry does not start with a key");
        };
        let count = count_of(Some(count))?;
        self.end = Bound::Excluded(head.to_vec());
        Ok(Some((key, count)))
    }

    /// The outcome of a step from either end: none (or an error) ends the
    /// iteration at both.
    fn settle(&mut self, step: Result<Option<KeyCount<'txn>>>) -> Option<Result<KeyCount<'txn>>> {
        match step {
            Ok(Some(k)) => Some(Ok(k)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<'txn> Iterator for MultimapKeys<'txn> {
    type Item = Result<KeyCount<'txn>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.step_front();
        self.settle(step)
    }
}

impl DoubleEndedIterator for MultimapKeys<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.step_back();
        self.settle(step)
    }
}
