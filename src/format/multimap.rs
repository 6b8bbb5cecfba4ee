//! The entries of a multimap table's tree (DESIGN.md, "Multimap tables"):
//! the empty key holds the pair total, `esc(k)` the head of key `k` (its
//! count), `esc(k) 01 v` the pair `(k, v)` with an empty value.

use std::borrow::Cow;

use super::escape::decode_escaped;

/// The byte after a key's escaped form that starts each of its pairs.
pub(crate) const PAIR: u8 = 1;

/// What an entry of a multimap's tree is.
pub(crate) enum Entry<'a> {
    /// The pair total, under the empty key.
    Total,
    /// The head of a key: its count of values.
    Head(Cow<'a, [u8]>),
    /// A pair: the key and the value.
    Pair(Cow<'a, [u8]>, &'a [u8]),
}

/// What the tree key `stored` is; `None` when it is none of the three.
pub(crate) fn entry(stored: &[u8]) -> Option<Entry<'_>> {
    if stored.is_empty() {
        return Some(Entry::Total);
    }
    let (key, n) = decode_escaped(stored)?;
    match &stored[n..] {
        [] => Some(Entry::Head(key)),
        [PAIR, value @ ..] => Some(Entry::Pair(key, value)),
        _ => None,
    }
}

/// A count (a head's or the total): eight bytes, little-endian.
pub(crate) fn count(value: &[u8]) -> Option<u64> {
    value.try_into().ok().map(u64::from_le_bytes)
}
