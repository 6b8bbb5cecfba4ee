//! Typed tables: keys and values of Rust types over the byte API.
//!
//! A [`TableDefinition`] names a table and its key and value types; the
//! catalog stores the types' names with the table, and opening it with
//! other types is [`Error::TableTypeMismatch`](crate::Error::TableTypeMismatch).
//! Keys are written in encodings whose byte order is the type's order
//! ([`Key`]), so iteration and ranges follow the type's order.

mod multimap;
mod types;

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

pub use multimap::{
    MultimapKey, MultimapTableDefinition, TypedMultimap, TypedMultimapKeys, TypedMultimapMut,
    TypedMultimapPairs, TypedMultimapValues,
};
pub use types::{Key, Value, decode_escaped, encode_escaped};
use types::{encoded, encoded_checked};

use crate::error::{Error, Result};
use crate::format::catalog::{MAX_TYPE_NAME, TableTypes};
use crate::table::{Range, Shape, Table, TableMut, borrowed};
use crate::txn::{ReadTxn, WriteTxn};

/// A table's name with its key and value types: a constant, as in
///
/// ```
/// const USERS: larch::TableDefinition<u64, &str> = larch::TableDefinition::new("users");
/// ```
///
/// [`WriteTxn::open_typed`] opens (or creates) it and
/// [`ReadTxn::open_typed`] opens it. A table created through a definition
/// keeps the names of its types in the catalog; opening it with other
/// types, or through a definition when it was created through the byte API
/// ([`WriteTxn::open_table`]), is
/// [`Error::TableTypeMismatch`](crate::Error::TableTypeMismatch). The byte
/// API opens any table, typed or not, and sees the encoded bytes.
pub struct TableDefinition<'n, K: Key + 'static, V: Value + 'static> {
    name: &'n str,
    types: PhantomData<fn() -> (K, V)>,
}

impl<'n, K: Key + 'static, V: Value + 'static> TableDefinition<'n, K, V> {
    /// The table `name`, holding keys of type `K` and values of type `V`.
    pub const fn new(name: &'n str) -> Self {
        TableDefinition {
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

/// The type names the catalog keeps for a table of `K` and `V`, checked to
/// fit.
fn table_types<K: Value, V: Value>() -> Result<TableTypes> {
    let (key, value) = (K::type_name(), V::type_name());
    if key.len() > MAX_TYPE_NAME || value.len() > MAX_TYPE_NAME {
        return Err(Error::InvalidOption(
            "a type name is longer than 65,535 bytes",
        ));
    }
    Ok(TableTypes { key, value })
}

impl<K: Key + 'static, V: Value + 'static> Clone for TableDefinition<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Key + 'static, V: Value + 'static> Copy for TableDefinition<'_, K, V> {}

impl<K: Key + 'static, V: Value + 'static> fmt::Debug for TableDefinition<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TableDefinition({:?}: {} -> {})",
            self.name,
            K::type_name(),
            V::type_name()
        )
    }
}

impl ReadTxn {
    /// Opens the typed table `def`: [`Error::TableNotFound`] if it does
    /// not exist, [`Error::TableTypeMismatch`] if it was created with other
    /// types (or through the byte API).
    pub fn open_typed<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<'_, K, V>,
    ) -> Result<TypedTable<'_, K, V>> {
        let types = def.types()?;
        let table = self.open_table_as(def.name, Shape::Typed(&types))?;
        Ok(TypedTable {
            inner: table,
            types: PhantomData,
        })
    }
}

impl WriteTxn {
    /// Opens the typed table `def`, creating it (empty, with `K` and `V`'s
    /// names in the catalog) if it does not exist. A table created with
    /// other types, or through the byte API, is
    /// [`Error::TableTypeMismatch`], which leaves the transaction as it
    /// was; other errors are [`open_table`](WriteTxn::open_table)'s.
    pub fn open_typed<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<'_, K, V>,
    ) -> Result<TypedTableMut<'_, K, V>> {
        let types = def.types()?;
        let table = self.open_table_as(def.name, Shape::Typed(&types))?;
        Ok(TypedTableMut {
            inner: table,
            types: PhantomData,
        })
    }
}

/// A range of keys as bytes: its start and end.
type ByteBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The bytes of a key range.
fn key_bounds<'k, K: Key + 'static, KR: Borrow<K::SelfType<'k>>>(
    range: &impl RangeBounds<KR>,
) -> ByteBounds {
    let bound = |b: Bound<&KR>| match b {
        Bound::Included(k) => Bound::Included(encoded::<K>(k.borrow())),
        Bound::Excluded(k) => Bound::Excluded(encoded::<K>(k.borrow())),
        Bound::Unbounded => Bound::Unbounded,
    };
    (bound(range.start_bound()), bound(range.end_bound()))
}

/// A typed table in a read transaction. Reads borrow the transaction
/// (`'txn`), as [`Table`]'s do: a `&str` or `&[u8]` read points into the
/// map.
pub struct TypedTable<'txn, K: Key + 'static, V: Value + 'static> {
    inner: Table<'txn>,
    types: PhantomData<fn() -> (K, V)>,
}

/// The reads of both kinds of typed table handle; `$life` is the lifetime
/// of what they hand out (the transaction's, or the handle's borrow).
macro_rules! reads {
    ($life:lifetime) => {
        /// The value under `key` (as this transaction left it, in a write
        /// transaction).
        pub fn get<'k>(
            &self,
            key: impl Borrow<K::SelfType<'k>>,
        ) -> Result<Option<V::SelfType<$life>>> {
            let key = encoded::<K>(key.borrow());
            self.inner.get(&key)?.map(V::decode).transpose()
        }

        /// The entries whose keys lie in `range`, in the keys' order (and in
        /// reverse with `.rev()`).
        pub fn range<'k, KR: Borrow<K::SelfType<'k>>>(
            &self,
            range: impl RangeBounds<KR>,
        ) -> Result<TypedRange<$life, K, V>> {
            let (start, end) = key_bounds::<K, KR>(&range);
            let inner = self.inner.range((borrowed(&start), borrowed(&end)))?;
            Ok(TypedRange::new(inner))
        }

        /// All entries in the keys' order.
        pub fn iter(&self) -> Result<TypedRange<$life, K, V>> {
            Ok(TypedRange::new(self.inner.iter()?))
        }

        /// The entry with the least key.
        pub fn first(&self) -> Result<Option<(K::SelfType<$life>, V::SelfType<$life>)>> {
            self.iter()?.next().transpose()
        }

        /// The entry with the greatest key.
        pub fn last(&self) -> Result<Option<(K::SelfType<$life>, V::SelfType<$life>)>> {
            self.iter()?.next_back().transpose()
        }

        /// Number of entries, O(1).
        pub fn len(&self) -> u64 {
            self.inner.len()
        }

        /// Whether the table holds no entry.
        pub fn is_empty(&self) -> bool {
            self.inner.is_empty()
        }
    };
}

impl<'txn, K: Key + 'static, V: Value + 'static> TypedTable<'txn, K, V> {
    reads!('txn);

    /// The table through the byte API: keys and values as they are stored.
    pub fn bytes(&self) -> &Table<'txn> {
        &self.inner
    }
}

/// A typed table in a write transaction. Reads see the transaction's own
/// changes and borrow `&self`, so the next change ends them, as for
/// [`TableMut`]; errors fail the transaction as [`TableMut`]'s do, but for
/// those that reject an argument first ([`Error::Decode`] of a key or
/// value that would not read back, `KeyTooLarge`, `ValueTooLarge`).
/// Lookups (`get`, `remove`, range bounds) never refuse a key: one that
/// could not be stored through this type is simply not found, or found if
/// a table of the same names stored it (a `String` field with a zero byte,
/// looked up as `&str`).
pub struct TypedTableMut<'txn, K: Key + 'static, V: Value + 'static> {
    inner: TableMut<'txn>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: Key + 'static, V: Value + 'static> TypedTableMut<'_, K, V> {
    /// Stores `value` under `key`, replacing any previous value; returns
    /// whether the key was there. A key or value that would not read back
    /// as its type ([`Value::encode_checked`]) is refused with
    /// [`Error::Decode`] before anything changes.
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<bool> {
        let key = encoded_checked::<K>(key.borrow())?;
        let value = encoded_checked::<V>(value.borrow())?;
        self.inner.insert(&key, &value)
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<bool> {
        self.inner.remove(&encoded::<K>(key.borrow()))
    }

    /// Removes every entry whose key lies in `range`, in bounded memory;
    /// returns how many.
    pub fn remove_range<'k, KR: Borrow<K::SelfType<'k>>>(
        &mut self,
        range: impl RangeBounds<KR>,
    ) -> Result<u64> {
        let (start, end) = key_bounds::<K, KR>(&range);
        self.inner.remove_range((borrowed(&start), borrowed(&end)))
    }

    reads!('_);
}

/// An iterator over the entries of a typed table's key range, from both
/// ends, decoded. Each item is a `Result`: a corrupt page ends the
/// iteration with an error; an entry whose bytes do not decode as the
/// types is an [`Error::Decode`] item, and the iteration goes on past it.
pub struct TypedRange<'txn, K: Key + 'static, V: Value + 'static> {
    inner: Range<'txn>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<'txn, K: Key + 'static, V: Value + 'static> TypedRange<'txn, K, V> {
    fn new(inner: Range<'txn>) -> Self {
        TypedRange {
            inner,
            types: PhantomData,
        }
    }

    fn decode(
        entry: Result<(&'txn [u8], &'txn [u8])>,
    ) -> Result<(K::SelfType<'txn>, V::SelfType<'txn>)> {
        let (k, v) = entry?;
        Ok((K::decode(k)?, V::decode(v)?))
    }
}

impl<'txn, K: Key + 'static, V: Value + 'static> Iterator for TypedRange<'txn, K, V> {
    type Item = Result<(K::SelfType<'txn>, V::SelfType<'txn>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(Self::decode)
    }
}

impl<K: Key + 'static, V: Value + 'static> DoubleEndedIterator for TypedRange<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(Self::decode)
    }
}
