//! Typed multimap tables: the byte multimap (`crate::multimap`) with keys
//! and values of Rust types.
//!
//! A typed multimap is a byte multimap whose keys are `K`'s encoding and
//! whose values are `V`'s: the byte layer keeps each key's values sorted
//! by their bytes, and a [`Key`] encoding sorts as the values do, so a
//! key's values come in `V`'s order. Everything about the tree's layout is
//! the byte multimap's; this layer only encodes, decodes and checks types.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::marker::PhantomData;
use std::ops::RangeBounds;

use super::types::{encoded, encoded_checked};
use super::{Key, key_bounds, table_types};
use crate::error::Result;
use crate::format::catalog::TableTypes;
use crate::multimap::{
    Multimap, MultimapKeys, MultimapMut, MultimapPair, MultimapPairs, MultimapValues,
};
use crate::table::{Shape, borrowed};
use crate::txn::{ReadTxn, WriteTxn};

/// A multimap table's name with its key and value types: a constant, as a
/// [`TableDefinition`](crate::TableDefinition) is. Each key maps to a set
/// of values, kept in `V`'s order (values are [`Key`] types for that).
///
/// [`WriteTxn::open_typed_multimap`] opens (or creates) it and
/// [`ReadTxn::open_typed_multimap`] opens it. The catalog keeps the names
/// of its types, as for a typed table; opening it with other types, as a
/// typed table or as a multimap of the byte API, or opening a table of
/// another kind through a definition, is
/// [`Error::TableTypeMismatch`](crate::Error::TableTypeMismatch). Tools
/// read it as bytes with [`ReadTxn::open_untyped_multimap`].
///
/// ```
/// use larch::MultimapTableDefinition;
///
/// const TAGS: MultimapTableDefinition<u64, &str> = MultimapTableDefinition::new("tags");
/// # let dir = tempfile::tempdir().unwrap();
/// # // SAFETY: the file is this example's own.
/// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
///
/// let mut w = db.begin_write()?;
/// {
///     let mut tags = w.open_typed_multimap(TAGS)?;
///     tags.insert(7, "urgent")?;
///     tags.insert(7, "bug")?;
///     tags.insert(7, "ui")?;
///     // A value a key has already: nothing changes.
///     assert!(!tags.insert(7, "bug")?);
///     tags.insert(8, "docs")?;
/// }
/// w.commit()?;
///
/// let r = db.begin_read()?;
/// let tags = r.open_typed_multimap(TAGS)?;
/// // In the values' order, read in place; and from the other end.
/// let of_7: Vec<&str> = tags.get(7)?.collect::<larch::Result<_>>()?;
/// assert_eq!(of_7, ["bug", "ui", "urgent"]);
/// let last = tags.get(7)?.rev().next().transpose()?;
/// assert_eq!(last, Some("urgent"));
/// assert_eq!(tags.count(7)?, 3);
/// assert_eq!(tags.len()?, 4);
/// // Keys from the last, each with its count.
/// let keys: Vec<(u64, u64)> = tags
///     .keys::<u64>(..)?
///     .rev()
///     .map(|k| k.map(|(k, n)| (k.value(), n)))
///     .collect::<larch::Result<_>>()?;
/// assert_eq!(keys, [(8, 1), (7, 3)]);
///
/// let mut w = db.begin_write()?;
/// assert_eq!(w.open_typed_multimap(TAGS)?.remove_all(7)?, 3);
/// w.commit()?;
/// assert_eq!(db.begin_read()?.open_typed_multimap(TAGS)?.count(7)?, 0);
/// # Ok::<(), larch::Error>(())
/// ```
pub struct MultimapTableDefinition<'n, K: Key + 'static, V: Key + 'static> {
    name: &'n str,
    types: PhantomData<fn() -> (K, V)>,
}

impl<'n, K: Key + 'static, V: Key + 'static> MultimapTableDefinition<'n, K, V> {
    /// The multimap `name`, holding keys of type `K`, each with a set of
    /// values of type `V`.
    pub const fn new(name: &'n str) -> Self {
        MultimapTableDefinition {
            name,
            types: PhantomData,
        }
    }

    /// The table's name.
    pub fn name(&self) -> &'n str {
        self.name
    }

    /// The type names the catalog keeps, checked to fit.
    fn types(&self) -> Result<TableTypes> {
        table_types::<K, V>()
    }
}

impl<K: Key + 'static, V: Key + 'static> Clone for MultimapTableDefinition<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Key + 'static, V: Key + 'static> Copy for MultimapTableDefinition<'_, K, V> {}

impl<K: Key + 'static, V: Key + 'static> fmt::Debug for MultimapTableDefinition<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MultimapTableDefinition({:?}: {} -> {{{}}})",
            self.name,
            K::type_name(),
            V::type_name()
        )
    }
}

impl ReadTxn {
    /// Opens the typed multimap `def`: [`Error::TableNotFound`] if it does
    /// not exist, [`Error::TableTypeMismatch`] if it is another kind of
    /// table or was created with other types.
    ///
    /// [`Error::TableNotFound`]: crate::Error::TableNotFound
    /// [`Error::TableTypeMismatch`]: crate::Error::TableTypeMismatch
    pub fn open_typed_multimap<K: Key + 'static, V: Key + 'static>(
        &self,
        def: MultimapTableDefinition<'_, K, V>,
    ) -> Result<TypedMultimap<'_, K, V>> {
        let types = def.types()?;
        let table = self.open_table_as(def.name, Shape::TypedMultimap(&types))?;
        Ok(TypedMultimap {
            inner: Multimap::new(table),
            types: PhantomData,
        })
    }
}

impl WriteTxn {
    /// Opens the typed multimap `def`, creating it (empty, with `K` and
    /// `V`'s names in the catalog) if it does not exist. Another kind of
    /// table, or one created with other types, is
    /// [`Error::TableTypeMismatch`], which leaves the transaction as it
    /// was; other errors are [`open_table`](WriteTxn::open_table)'s.
    ///
    /// [`Error::TableTypeMismatch`]: crate::Error::TableTypeMismatch
    pub fn open_typed_multimap<K: Key + 'static, V: Key + 'static>(
        &self,
        def: MultimapTableDefinition<'_, K, V>,
    ) -> Result<TypedMultimapMut<'_, K, V>> {
        let types = def.types()?;
        let table = self.open_table_as(def.name, Shape::TypedMultimap(&types))?;
        Ok(TypedMultimapMut {
            inner: MultimapMut::new(table),
            types: PhantomData,
        })
    }
}

/// The reads of both kinds of typed multimap handle; `$life` is the
/// lifetime of what they hand out. Lookups never refuse a key or value: one
/// that could not be stored through these types is simply not found.
macro_rules! reads {
    ($life:lifetime) => {
        /// The values of `key`, in `V`'s order (and in reverse with
        /// `.rev()`), decoded: a `&str` or `&[u8]` points into the map.
        pub fn get<'k>(
            &self,
            key: impl Borrow<K::SelfType<'k>>,
        ) -> Result<TypedMultimapValues<$life, V>> {
            let inner = self.inner.get(&encoded::<K>(key.borrow()))?;
            Ok(TypedMultimapValues {
                inner,
                types: PhantomData,
            })
        }

        /// How many values `key` has: one lookup, O(log n).
        pub fn count<'k>(&self, key: impl Borrow<K::SelfType<'k>>) -> Result<u64> {
            self.inner.count(&encoded::<K>(key.borrow()))
        }

        /// Whether `key` has the value `value`.
        pub fn contains<'k, 'v>(
            &self,
            key: impl Borrow<K::SelfType<'k>>,
            value: impl Borrow<V::SelfType<'v>>,
        ) -> Result<bool> {
            let (key, value) = (encoded::<K>(key.borrow()), encoded::<V>(value.borrow()));
            self.inner.contains(&key, &value)
        }

        /// Number of pairs (of a key and one of its values): one lookup.
        pub fn len(&self) -> Result<u64> {
            self.inner.len()
        }

        /// Whether the table holds no pair.
        pub fn is_empty(&self) -> Result<bool> {
            self.inner.is_empty()
        }

        /// The pairs whose keys lie in `range`, in `K`'s order then `V`'s
        /// (and in reverse with `.rev()`). Every pair is
        /// [`iter`](Self::iter).
        pub fn range<'k, KR: Borrow<K::SelfType<'k>>>(
            &self,
            range: impl RangeBounds<KR>,
        ) -> Result<TypedMultimapPairs<$life, K, V>> {
            let (start, end) = key_bounds::<K, KR>(&range);
            let inner = self.inner.range((borrowed(&start), borrowed(&end)))?;
            Ok(TypedMultimapPairs {
                inner,
                types: PhantomData,
            })
        }

        /// Every pair, in `K`'s order then `V`'s.
        pub fn iter(&self) -> Result<TypedMultimapPairs<$life, K, V>> {
            Ok(TypedMultimapPairs {
                inner: self.inner.iter()?,
                types: PhantomData,
            })
        }

        /// The keys that lie in `range`, each once with its count, in `K`'s
        /// order (and in reverse with `.rev()`): one descent of the tree
        /// per key, however many values it has. Every key is
        /// `keys::<K>(..)` (a full range names no key type).
        pub fn keys<'k, KR: Borrow<K::SelfType<'k>>>(
            &self,
            range: impl RangeBounds<KR>,
        ) -> Result<TypedMultimapKeys<$life, K>> {
            let (start, end) = key_bounds::<K, KR>(&range);
            let inner = self.inner.keys((borrowed(&start), borrowed(&end)))?;
            Ok(TypedMultimapKeys {
                inner,
                types: PhantomData,
            })
        }
    };
}

/// A typed multimap in a read transaction. What it hands out borrows the
/// transaction (`'txn`): values of `&str` or `&[u8]` point into the map.
pub struct TypedMultimap<'txn, K: Key + 'static, V: Key + 'static> {
    inner: Multimap<'txn>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<'txn, K: Key + 'static, V: Key + 'static> TypedMultimap<'txn, K, V> {
    reads!('txn);

    /// The table as a multimap of the byte API: keys and values as their
    /// encodings.
    pub fn bytes(&self) -> &Multimap<'txn> {
        &self.inner
    }
}

/// A typed multimap in a write transaction. Reads see the transaction's own
/// changes and borrow `&self`, so the next change ends them; errors fail
/// the transaction as [`MultimapMut`]'s do, but for those that reject an
/// argument before anything changes ([`Error::Decode`] of a key or value
/// that would not read back, [`Error::KeyTooLarge`] of a pair too long).
///
/// [`Error::Decode`]: crate::Error::Decode
/// [`Error::KeyTooLarge`]: crate::Error::KeyTooLarge
pub struct TypedMultimapMut<'txn, K: Key + 'static, V: Key + 'static> {
    inner: MultimapMut<'txn>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: Key + 'static, V: Key + 'static> TypedMultimapMut<'_, K, V> {
    /// Adds `value` to the values of `key`; returns whether it is new
    /// (`false`: the key had it already, and nothing changed). A key or
    /// value that would not read back as its type
    /// ([`Value::encode_checked`](crate::Value::encode_checked)) is refused
    /// with [`Error::Decode`](crate::Error::Decode) before anything changes;
    /// so is a pair too long for the tree
    /// ([`MultimapMut::insert`]: [`Error::KeyTooLarge`](crate::Error::KeyTooLarge)).
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<bool> {
        let key = encoded_checked::<K>(key.borrow())?;
        let value = encoded_checked::<V>(value.borrow())?;
        self.inner.insert(&key, &value)
    }

    /// Removes `value` from the values of `key`; returns whether it was
    /// there.
    pub fn remove<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<bool> {
        let (key, value) = (encoded::<K>(key.borrow()), encoded::<V>(value.borrow()));
        self.inner.remove(&key, &value)
    }

    /// Removes every value of `key`, in bounded memory however many it
    /// has; returns how many.
    pub fn remove_all<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<u64> {
        self.inner.remove_all(&encoded::<K>(key.borrow()))
    }

    reads!('_);
}

/// A key of a typed multimap as a range or key iteration hands it out:
/// [`value`](MultimapKey::value) decodes it.
///
/// A key's bytes lie in the map escaped (as a field of a composite key),
/// so a key whose encoding holds a zero byte (most integers do) is a copy,
/// and the decoded key borrows this handle rather than the transaction.
/// Its bytes were checked to decode when it was handed out.
pub struct MultimapKey<'txn, K: Key + 'static> {
    bytes: Cow<'txn, [u8]>,
    types: PhantomData<fn() -> K>,
}

impl<'txn, K: Key + 'static> MultimapKey<'txn, K> {
    /// The key's bytes checked to decode as `K`: the handle, or the
    /// [`Error::Decode`](crate::Error::Decode) of bytes that do not.
    fn checked(bytes: Cow<'txn, [u8]>) -> Result<Self> {
        K::decode(&bytes)?;
        Ok(MultimapKey {
            bytes,
            types: PhantomData,
        })
    }

    /// The key, decoded.
    ///
    /// # Panics
    ///
    /// If `K`'s [`Value::decode`](crate::Value::decode) fails on bytes it
    /// accepted before (a decode that is not a function of its bytes).
    pub fn value(&self) -> K::SelfType<'_> {
        match K::decode(&self.bytes) {
            Ok(key) => key,
            Err(e) => panic!("a key decoded once fails to decode again: {e}"),
        }
    }

    /// The key as it is stored, `K`'s encoding.
    pub fn encoded(&self) -> &[u8] {
        &self.bytes
    }
}

impl<K: Key + 'static> fmt::Debug for MultimapKey<'_, K>
where
    for<'a> K::SelfType<'a>: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value().fmt(f)
    }
}

/// The values of one key of a typed multimap, in `V`'s order, from both
/// ends, decoded. A value whose bytes do not decode is an
/// [`Error::Decode`](crate::Error::Decode) item, and the iteration goes on
/// past it.
pub struct TypedMultimapValues<'txn, V: Key + 'static> {
    inner: MultimapValues<'txn>,
    types: PhantomData<fn() -> V>,
}

impl<'txn, V: Key + 'static> Iterator for TypedMultimapValues<'txn, V> {
    type Item = Result<V::SelfType<'txn>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|v| V::decode(v?))
    }
}

impl<V: Key + 'static> DoubleEndedIterator for TypedMultimapValues<'_, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(|v| V::decode(v?))
    }
}

/// The pairs of a key range of a typed multimap, in `K`'s order then
/// `V`'s, from both ends. A pair whose key or value does not decode is an
/// [`Error::Decode`](crate::Error::Decode) item, and the iteration goes on
/// past it.
pub struct TypedMultimapPairs<'txn, K: Key + 'static, V: Key + 'static> {
    inner: MultimapPairs<'txn>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<'txn, K: Key + 'static, V: Key + 'static> TypedMultimapPairs<'txn, K, V> {
    fn decode(
        pair: Result<MultimapPair<'txn>>,
    ) -> Result<(MultimapKey<'txn, K>, V::SelfType<'txn>)> {
        let (key, value) = pair?;
        Ok((MultimapKey::checked(key)?, V::decode(value)?))
    }
}

impl<'txn, K: Key + 'static, V: Key + 'static> Iterator for TypedMultimapPairs<'txn, K, V> {
    type Item = Result<(MultimapKey<'txn, K>, V::SelfType<'txn>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(Self::decode)
    }
}

impl<K: Key + 'static, V: Key + 'static> DoubleEndedIterator for TypedMultimapPairs<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(Self::decode)
    }
}

/// The keys of a key range of a typed multimap, each once with its count,
/// in `K`'s order from both ends (see [`MultimapKeys`]). A key that does
/// not decode is an [`Error::Decode`](crate::Error::Decode) item, and the
/// iteration goes on past it.
pub struct TypedMultimapKeys<'txn, K: Key + 'static> {
    inner: MultimapKeys<'txn>,
    types: PhantomData<fn() -> K>,
}

/// A key the byte iteration gave, decoded.
fn key_count<'txn, K: Key + 'static>(
    item: Result<(Cow<'txn, [u8]>, u64)>,
) -> Result<(MultimapKey<'txn, K>, u64)> {
    let (key, count) = item?;
    Ok((MultimapKey::checked(key)?, count))
}

impl<'txn, K: Key + 'static> Iterator for TypedMultimapKeys<'txn, K> {
    type Item = Result<(MultimapKey<'txn, K>, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(key_count)
    }
}

impl<K: Key + 'static> DoubleEndedIterator for TypedMultimapKeys<'_, K> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(key_count)
    }
}
