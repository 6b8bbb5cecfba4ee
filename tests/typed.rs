//! Typed tables: encodings that sort as their types do, type names kept in
//! the catalog through commits, compaction and copies, and typed errors for
//! the wrong types or bytes.

mod common;

use std::collections::BTreeMap;

use common::{Rng, TestDb};
use larch::{Error, Key, TableDefinition, Value};
use quickcheck::{QuickCheck, TestResult};

/// For two values of a key type that reads back owned, the encodings
/// compare as the values do, and read back as them.
fn sorts_as_values<K>(a: K, b: K) -> bool
where
    K: Ord + std::fmt::Debug + 'static + for<'a> Key<SelfType<'a> = K>,
{
    let encoded = |k: &K| {
        let mut out = Vec::new();
        K::encode_checked(k, &mut out).unwrap();
        out
    };
    let (ea, eb) = (encoded(&a), encoded(&b));
    ea.cmp(&eb) == a.cmp(&b) && K::decode(&ea).unwrap() == a && K::decode(&eb).unwrap() == b
}

#[test]
fn key_encodings_sort_as_their_types() {
    fn ints(a: (i64, i64), c: (i8, i8), e: (u32, u32), g: (i128, i128)) -> bool {
        sorts_as_values::<i64>(a.0, a.1)
            && sorts_as_values::<i8>(c.0, c.1)
            && sorts_as_values::<u32>(e.0, e.1)
            && sorts_as_values::<i128>(g.0, g.1)
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(ints as fn(_, _, _, _) -> bool);

    // Composite keys with strings and byte strings in every position,
    // zero bytes and prefixes included.
    fn tuples(
        a: (i16, String, u8),
        b: (i16, String, u8),
        c: (Vec<u8>, bool),
        d: (Vec<u8>, bool),
    ) -> bool {
        sorts_as_values::<(i16, String, u8)>(a, b) && sorts_as_values::<(Vec<u8>, bool)>(c, d)
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(tuples as fn(_, _, _, _) -> bool);

    fn options(
        a: Option<(u16, String)>,
        b: Option<(u16, String)>,
        c: Option<i32>,
        d: Option<i32>,
    ) -> bool {
        sorts_as_values::<Option<(u16, String)>>(a, b) && sorts_as_values::<Option<i32>>(c, d)
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(options as fn(_, _, _, _) -> bool);

    // Prefix pairs that differ only past a zero byte, the hard cases of the
    // escaping.
    let strs = ["", "\0", "\0\0", "a", "a\0", "a\0b", "a\u{1}", "ab", "b"];
    for a in strs {
        for b in strs {
            assert!(
                sorts_as_values::<(String, u8)>((a.into(), 1), (b.into(), 0)),
                "{a:?} {b:?}"
            );
            assert!(sorts_as_values::<(String, String)>(
                (a.into(), b.into()),
                (b.into(), a.into())
            ));
        }
    }
    // Fixed-size arrays, bools and the unit.
    assert!(sorts_as_values::<([u8; 3], bool)>(
        ([0, 0, 1], true),
        ([0, 1, 0], false)
    ));
    assert!(sorts_as_values::<((), u8)>(((), 1), ((), 2)));
}

#[test]
fn malformed_fields_are_decode_errors_not_panics() {
    fn any_bytes(bytes: Vec<u8>) -> TestResult {
        // Whatever the bytes, decoding returns, never panics.
        let _ = <(i16, String, u8)>::decode(&bytes);
        let _ = <(&str, &[u8], Option<u64>)>::decode(&bytes);
        let _ = <Option<(Vec<u8>, [u8; 2])>>::decode(&bytes);
        let _ = <(bool, (), i64)>::decode(&bytes);
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(5000)
        .quickcheck(any_bytes as fn(_) -> TestResult);
    assert!(matches!(u64::decode(&[1, 2, 3]), Err(Error::Decode { .. })));
    assert!(matches!(bool::decode(&[2]), Err(Error::Decode { .. })));
    assert!(matches!(<&str>::decode(&[0xFF]), Err(Error::Decode { .. })));
    assert!(matches!(
        <(&str, u8)>::decode(b"ab\0"),
        Err(Error::Decode { .. })
    ));
}

const SCORES: TableDefinition<(i32, &str), u64> = TableDefinition::new("scores");
const NAMES: TableDefinition<u64, &str> = TableDefinition::new("names");

/// A typed table holds what a `BTreeMap` of the same types holds, in the
/// same order, forwards, backwards and by ranges, across commits, a
/// reopen and compaction; `&str` reads borrow the map.
#[test]
fn typed_tables_match_a_model() {
    let mut t = TestDb::new(512);
    let mut rng = Rng(5);
    let words = [
        "",
        "ada",
        "bob",
        "bobby",
        "eve",
        "zoë",
        "a longer name that spills",
    ];
    let mut model: BTreeMap<(i32, String), u64> = BTreeMap::new();
    for round in 0..6 {
        let w = t.db().begin_write().unwrap();
        {
            let mut s = w.open_typed(SCORES).unwrap();
            for _ in 0..400 {
                let a = rng.below(200) as i32 - 100;
                let name = words[rng.below(words.len() as u64) as usize];
                let key = (a, name);
                if rng.below(4) == 0 {
                    let was = model.remove(&(a, name.to_owned())).is_some();
                    assert_eq!(s.remove(key).unwrap(), was);
                } else {
                    let v = rng.next_u64();
                    let was = model.insert((a, name.to_owned()), v).is_some();
                    assert_eq!(s.insert(key, v).unwrap(), was);
                }
            }
            assert_eq!(s.len(), model.len() as u64);
            // Reads inside the transaction see its changes.
            let first = s.iter().unwrap().next().map(|e| e.unwrap());
            let want = model
                .iter()
                .next()
                .map(|((a, n), v)| ((*a, n.as_str()), *v));
            assert_eq!(first, want);
        }
        w.commit().unwrap();
        if round % 2 == 1 {
            t.reopen();
            t.db().compact().unwrap();
        }
        let r = t.db().begin_read().unwrap();
        let s = r.open_typed(SCORES).unwrap();
        let got: Vec<((i32, &str), u64)> = s.iter().unwrap().map(|e| e.unwrap()).collect();
        let want: Vec<((i32, &str), u64)> = model
            .iter()
            .map(|((a, n), v)| ((*a, n.as_str()), *v))
            .collect();
        assert_eq!(got, want);
        let mut back: Vec<_> = s.iter().unwrap().rev().map(|e| e.unwrap()).collect();
        back.reverse();
        assert_eq!(back, want);
        for _ in 0..30 {
            let lo = (rng.below(220) as i32 - 110, words[rng.below(7) as usize]);
            let hi = (rng.below(220) as i32 - 110, words[rng.below(7) as usize]);
            let got: Vec<_> = s.range(lo..hi).unwrap().map(|e| e.unwrap()).collect();
            let want: Vec<_> = if lo < hi {
                model
                    .range((lo.0, lo.1.to_owned())..(hi.0, hi.1.to_owned()))
                    .map(|((a, n), v)| ((*a, n.as_str()), *v))
                    .collect()
            } else {
                Vec::new()
            };
            assert_eq!(got, want, "{lo:?}..{hi:?}");
            let got: Vec<_> = s.range(lo..=hi).unwrap().map(|e| e.unwrap()).collect();
            let want: Vec<_> = if lo <= hi {
                model
                    .range((lo.0, lo.1.to_owned())..=(hi.0, hi.1.to_owned()))
                    .map(|((a, n), v)| ((*a, n.as_str()), *v))
                    .collect()
            } else {
                Vec::new()
            };
            assert_eq!(got, want, "{lo:?}..={hi:?}");
        }
        // Every score of one number: the range of the tuples starting with it.
        let got: Vec<_> = s
            .range((7, "")..(8, ""))
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        let want: Vec<_> = model
            .range((7, String::new())..(8, String::new()))
            .map(|((a, n), v)| ((*a, n.as_str()), *v))
            .collect();
        assert_eq!(got, want);
        assert_eq!(s.first().unwrap(), want_first(&model));
        assert_eq!(
            s.last().unwrap().map(|e| e.1),
            model.values().last().copied()
        );
        drop(r);
        t.db().check().unwrap();
    }
}

fn want_first(model: &BTreeMap<(i32, String), u64>) -> Option<((i32, &str), u64)> {
    model
        .iter()
        .next()
        .map(|((a, n), v)| ((*a, n.as_str()), *v))
}

/// Signed integers iterate negative first: `-1 < 0 < 1`.
#[test]
fn signed_keys_iterate_in_numeric_order() {
    const T: TableDefinition<i64, ()> = TableDefinition::new("signed");
    let t = TestDb::new(4096);
    let keys = [i64::MIN, -100, -1, 0, 1, 100, i64::MAX];
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_typed(T).unwrap();
        for k in keys.iter().rev() {
            tab.insert(k, ()).unwrap();
        }
        assert_eq!(tab.remove_range(-1..=1).unwrap(), 3);
        tab.insert(-1, ()).unwrap();
        tab.insert(0, ()).unwrap();
        tab.insert(1, ()).unwrap();
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let got: Vec<i64> = r
        .open_typed(T)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| e.unwrap().0)
        .collect();
    assert_eq!(got, keys);
}

/// Opening a table with other types than it was created with, or a table
/// of the byte API through a definition, is a typed error that leaves the
/// write transaction usable; the byte API opens a typed table and keeps
/// its types.
#[test]
fn other_types_are_refused_and_types_survive() {
    const WRONG_KEY: TableDefinition<u32, &str> = TableDefinition::new("names");
    const WRONG_VALUE: TableDefinition<u64, u64> = TableDefinition::new("names");
    const SAME_BYTES: TableDefinition<u64, String> = TableDefinition::new("names");
    let mut t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    w.open_typed(NAMES).unwrap().insert(1, "ada").unwrap();
    w.open_table("plain").unwrap().insert(b"k", b"v").unwrap();
    for e in [
        w.open_typed(WRONG_KEY).err(),
        w.open_typed(WRONG_VALUE).err(),
        w.open_typed(TableDefinition::<u64, &str>::new("plain"))
            .err(),
    ] {
        assert!(matches!(e, Some(Error::TableTypeMismatch { .. })), "{e:?}");
    }
    // `&str` and `String` are stored alike and share a name.
    assert_eq!(
        w.open_typed(SAME_BYTES).unwrap().get(1).unwrap(),
        Some("ada".to_owned())
    );
    w.commit().unwrap();

    let check_refused = |db: &larch::Database| {
        let r = db.begin_read().unwrap();
        let e = r.open_typed(WRONG_KEY).err();
        match e {
            Some(Error::TableTypeMismatch {
                table,
                expected,
                found,
            }) => {
                assert_eq!(table, "names");
                assert_eq!(expected, "(u32, str)");
                assert_eq!(found, "(u64, str)");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            r.open_typed(TableDefinition::<u64, &str>::new("plain")),
            Err(Error::TableTypeMismatch { .. })
        ));
        assert!(matches!(
            r.open_typed(TableDefinition::<u64, &str>::new("missing")),
            Err(Error::TableNotFound(_))
        ));
        assert_eq!(r.open_typed(NAMES).unwrap().get(1).unwrap(), Some("ada"));
    };
    check_refused(t.db());
    // The byte API writes a typed table; its types stay.
    let w = t.db().begin_write().unwrap();
    {
        let mut raw = w.open_table("names").unwrap();
        let mut key = Vec::new();
        u64::encode(&2, &mut key);
        raw.insert(&key, b"bob").unwrap();
    }
    w.commit().unwrap();
    t.reopen();
    check_refused(t.db());
    assert_eq!(
        t.db()
            .begin_read()
            .unwrap()
            .open_typed(NAMES)
            .unwrap()
            .get(2)
            .unwrap(),
        Some("bob")
    );
    // Compaction and compacted copies keep them too.
    t.db().compact().unwrap();
    check_refused(t.db());
    let copy = t.dir.path().join("copy.larch");
    t.db().begin_read().unwrap().copy_to(&copy, true).unwrap();
    // SAFETY: the copy is this test's own file.
    let c = unsafe { larch::Database::open(&copy) }.unwrap();
    check_refused(&c);
    c.check().unwrap();
    // A deleted table is created anew with other types.
    let mut w = t.db().begin_write().unwrap();
    assert!(w.delete_table("names").unwrap());
    w.open_typed(WRONG_VALUE).unwrap().insert(5, 6).unwrap();
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert_eq!(r.open_typed(WRONG_VALUE).unwrap().get(5).unwrap(), Some(6));
    assert!(matches!(
        r.open_typed(NAMES),
        Err(Error::TableTypeMismatch { .. })
    ));
}

/// Bytes of the wrong shape in a typed table, written through the byte
/// API, read as a `Decode` error, never as garbage or a panic.
#[test]
fn bytes_of_the_wrong_shape_are_decode_errors() {
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    w.open_typed(NAMES).unwrap().insert(1, "ada").unwrap();
    {
        let mut raw = w.open_table("names").unwrap();
        let mut key = Vec::new();
        u64::encode(&2, &mut key);
        raw.insert(&key, &[0xFF, 0xFE]).unwrap();
        raw.insert(b"short", b"x").unwrap();
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let names = r.open_typed(NAMES).unwrap();
    assert_eq!(names.get(1).unwrap(), Some("ada"));
    assert!(matches!(names.get(2), Err(Error::Decode { .. })));
    let items: Vec<_> = names.iter().unwrap().collect();
    assert_eq!(items.len(), 3);
    assert!(
        items
            .iter()
            .filter(|e| matches!(e, Err(Error::Decode { .. })))
            .count()
            == 2
    );
}

/// A `&str` field with more fields after it that holds a NUL could not be
/// read back borrowed: the insert refuses it up front and the transaction
/// goes on; `String` stores it.
#[test]
fn borrowed_fields_with_zero_bytes_are_refused_up_front() {
    const OWNED: TableDefinition<(String, u8), u8> = TableDefinition::new("scores2");
    const BORROWED: TableDefinition<(&str, u8), u8> = TableDefinition::new("scores2");
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    {
        let mut s = w.open_typed(BORROWED).unwrap();
        assert!(matches!(
            s.insert(("a\0b", 1), 1),
            Err(Error::Decode { .. })
        ));
        s.insert(("ab", 1), 2).unwrap();
        assert_eq!(s.len(), 1);
    }
    {
        let mut s = w.open_typed(OWNED).unwrap();
        s.insert(("a\0b".to_owned(), 1), 3).unwrap();
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let owned: Vec<_> = r
        .open_typed(OWNED)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(
        owned,
        [(("a\0b".to_owned(), 1), 3), (("ab".to_owned(), 1), 2)]
    );
    // Read borrowed, the NUL entry is a decode error and the other reads.
    let borrowed: Vec<_> = r.open_typed(BORROWED).unwrap().iter().unwrap().collect();
    assert!(matches!(borrowed[0], Err(Error::Decode { .. })));
    assert_eq!(*borrowed[1].as_ref().unwrap(), (("ab", 1), 2));
}
