//! A catalog value: a table's descriptor and, for a table created through
//! the typed API (a typed table or a typed multimap), the names of its key
//! and value types.

use super::meta::{DESC_SIZE, TableDesc};

/// Descriptor flag: the type record follows the descriptor.
pub(crate) const FLAG_TYPED: u32 = 1;

/// Descriptor flag: the table is a multimap (its tree holds the layout of
/// `crate::multimap`, which the byte API does not open). With
/// `FLAG_TYPED` too, a typed multimap (format 7 on).
pub(crate) const FLAG_MULTIMAP: u32 = 2;

/// The longest type name stored, in bytes.
pub(crate) const MAX_TYPE_NAME: usize = u16::MAX as usize;

/// The names of a typed table's (or typed multimap's) key and value types,
/// as the typed API spells them (`Value::type_name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableTypes {
    pub key: String,
    pub value: String,
}

/// What the catalog holds for one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CatalogEntry {
    pub desc: TableDesc,
    /// `None` for a table created through the byte API.
    pub types: Option<TableTypes>,
    /// A multimap table.
    pub multimap: bool,
}

impl CatalogEntry {
    /// The bytes of the value: the descriptor, then, for a typed table or
    /// typed multimap, each name as a little-endian `u16` length and its UTF-8 bytes.
    /// Names are at most `MAX_TYPE_NAME` bytes (the typed API checks).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let kind = if self.multimap { FLAG_MULTIMAP } else { 0 };
        let Some(types) = &self.types else {
            return self.desc.encode_with(kind).to_vec();
        };
        let mut out = Vec::with_capacity(DESC_SIZE + 4 + types.key.len() + types.value.len());
        out.extend_from_slice(&self.desc.encode_with(kind | FLAG_TYPED));
        for name in [&types.key, &types.value] {
            let len = u16::try_from(name.len()).expect("type names are checked before");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        out
    }

    /// Decodes a catalog value; `None` when the bytes cannot be one: a bad
    /// descriptor, an unknown flag, a type record that is missing, runs
    /// short or long, or is not UTF-8, or trailing bytes after an untyped
    /// descriptor.
    pub(crate) fn decode(bytes: &[u8]) -> Option<CatalogEntry> {
        let (head, rest) = bytes.split_at_checked(DESC_SIZE)?;
        let (desc, flags) = TableDesc::decode_with_flags(head)?;
        // Any combination of the two flags: a byte table, a typed table, a
        // multimap, a typed multimap. Nothing else.
        if flags & !(FLAG_TYPED | FLAG_MULTIMAP) != 0 {
            return None;
        }
        let multimap = flags & FLAG_MULTIMAP != 0;
        let types = match flags & FLAG_TYPED {
            0 if rest.is_empty() => None,
            FLAG_TYPED => {
                let (key, rest) = name(rest)?;
                let (value, rest) = name(rest)?;
                if !rest.is_empty() {
                    return None;
                }
                Some(TableTypes { key, value })
            }
            _ => return None,
        };
        Some(CatalogEntry {
            desc,
            types,
            multimap,
        })
    }
}

/// One length-prefixed name, and the bytes after it.
fn name(bytes: &[u8]) -> Option<(String, &[u8])> {
    let (len, rest) = bytes.split_at_checked(2)?;
    let len = u16::from_le_bytes([len[0], len[1]]) as usize;
    let (name, rest) = rest.split_at_checked(len)?;
    Some((std::str::from_utf8(name).ok()?.to_owned(), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_malformed_ones_are_refused() {
        let desc = TableDesc {
            root: 7,
            entries: 3,
            depth: 1,
        };
        let plain = CatalogEntry {
            desc,
            types: None,
            multimap: false,
        };
        let multi = CatalogEntry {
            multimap: true,
            ..plain.clone()
        };
        assert_eq!(CatalogEntry::decode(&multi.encode()), Some(multi));
        assert_eq!(plain.encode().len(), DESC_SIZE);
        assert_eq!(CatalogEntry::decode(&plain.encode()), Some(plain.clone()));
        let typed = CatalogEntry {
            desc,
            types: Some(TableTypes {
                key: "(u64, str)".into(),
                value: String::new(),
            }),
            multimap: false,
        };
        let bytes = typed.encode();
        assert_eq!(CatalogEntry::decode(&bytes), Some(typed));
        // Every cut of the record, and a byte too many, is refused.
        for cut in DESC_SIZE + 1..bytes.len() {
            assert_eq!(CatalogEntry::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(CatalogEntry::decode(&long), None);
        // The typed flag without a record, bytes after an untyped one, an
        // unknown flag, a name that is not UTF-8.
        assert_eq!(CatalogEntry::decode(&bytes[..DESC_SIZE]), None);
        let mut trailing = plain.encode();
        trailing.push(0);
        assert_eq!(CatalogEntry::decode(&trailing), None);
        let mut unknown = plain.encode();
        unknown[20] = 4;
        assert_eq!(CatalogEntry::decode(&unknown), None);
        // A typed multimap (both flags) carries its record like a typed
        // table, and is refused as one when the record is missing or
        // malformed.
        let typed_multi = CatalogEntry {
            multimap: true,
            ..CatalogEntry::decode(&bytes).unwrap()
        };
        let both = typed_multi.encode();
        assert_eq!(both[20], (FLAG_TYPED | FLAG_MULTIMAP) as u8);
        assert_eq!(both[DESC_SIZE..], bytes[DESC_SIZE..]);
        assert_eq!(CatalogEntry::decode(&both), Some(typed_multi));
        assert_eq!(CatalogEntry::decode(&both[..DESC_SIZE]), None);
        for cut in DESC_SIZE + 1..both.len() {
            assert_eq!(CatalogEntry::decode(&both[..cut]), None, "cut at {cut}");
        }
        let mut long = both.clone();
        long.push(0);
        assert_eq!(CatalogEntry::decode(&long), None);
        let mut bad = both.clone();
        bad[DESC_SIZE + 2] = 0xFF;
        assert_eq!(CatalogEntry::decode(&bad), None);
        let mut unknown = both;
        unknown[20] |= 4;
        assert_eq!(CatalogEntry::decode(&unknown), None);
        let mut bad = bytes;
        bad[DESC_SIZE + 2] = 0xFF;
        assert_eq!(CatalogEntry::decode(&bad), None);
    }
}
