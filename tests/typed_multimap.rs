//! Typed multimap tables: the types' orders for keys and values, composite
//! keys, zero-copy reads, the table kinds kept apart, refusals that change
//! nothing, savepoints, reopening, and `keys` from both ends against a model
//! of sorted sets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use common::{Rng, TestDb};
use larch::{Error, MultimapTableDefinition, TableDefinition, TableKind};

const NAMES: MultimapTableDefinition<i32, &str> = MultimapTableDefinition::new("names");
const NUMBERS: MultimapTableDefinition<i64, u64> = MultimapTableDefinition::new("numbers");

fn mismatch<T>(r: larch::Result<T>) -> bool {
    matches!(r, Err(Error::TableTypeMismatch { .. }))
}

/// Signed keys sort `-1 < 0 < 1` and `u64` values `2 < 10 < 256` (their
/// little-endian bytes would not), from both ends; counts, `contains`,
/// ranges and keys follow the types; `&str` values point into the map,
/// outliving the handle that read them.
#[test]
fn round_trip_in_the_types_orders() {
    let t = TestDb::new(4096);
    let db = t.db();
    let w = db.begin_write().unwrap();
    {
        let mut names = w.open_typed_multimap(NAMES).unwrap();
        assert!(names.is_empty().unwrap());
        for (k, v) in [
            (1, "one"),
            (-1, "minus"),
            (0, "zero"),
            (-1, "neg"),
            (1, "uno"),
        ] {
            assert!(names.insert(k, v).unwrap());
        }
        assert!(!names.insert(-1, "neg").unwrap(), "a value already there");
        assert_eq!(names.len().unwrap(), 5);
        let mut numbers = w.open_typed_multimap(NUMBERS).unwrap();
        for v in [256u64, 2, 10, u64::MAX, 0] {
            assert!(numbers.insert(-5, v).unwrap());
        }
        numbers.insert(i64::MIN, 1).unwrap();
        numbers.insert(i64::MAX, 1).unwrap();
        // The write handle reads its own changes.
        let got: Vec<u64> = numbers.get(-5).unwrap().map(Result::unwrap).collect();
        assert_eq!(got, [0, 2, 10, 256, u64::MAX]);
    }
    w.commit().unwrap();

    let r = db.begin_read().unwrap();
    let held: Vec<&str>;
    {
        let names = r.open_typed_multimap(NAMES).unwrap();
        let pairs: Vec<(i32, &str)> = names
            .iter()
            .unwrap()
            .map(|p| p.map(|(k, v)| (k.value(), v)).unwrap())
            .collect();
        assert_eq!(
            pairs,
            [
                (-1, "minus"),
                (-1, "neg"),
                (0, "zero"),
                (1, "one"),
                (1, "uno")
            ]
        );
        let back: Vec<(i32, &str)> = names
            .iter()
            .unwrap()
            .rev()
            .map(|p| p.map(|(k, v)| (k.value(), v)).unwrap())
            .collect();
        assert_eq!(
            back,
            [
                (1, "uno"),
                (1, "one"),
                (0, "zero"),
                (-1, "neg"),
                (-1, "minus")
            ]
        );
        let range: Vec<(i32, &str)> = names
            .range(-1..1)
            .unwrap()
            .map(|p| p.map(|(k, v)| (k.value(), v)).unwrap())
            .collect();
        assert_eq!(range, [(-1, "minus"), (-1, "neg"), (0, "zero")]);
        let keys: Vec<(i32, u64)> = names
            .keys(0..)
            .unwrap()
            .rev()
            .map(|k| k.map(|(k, n)| (k.value(), n)).unwrap())
            .collect();
        assert_eq!(keys, [(1, 2), (0, 1)]);
        assert_eq!(names.count(-1).unwrap(), 2);
        assert_eq!(names.count(7).unwrap(), 0);
        assert!(names.contains(1, "uno").unwrap());
        assert!(!names.contains(1, "neg").unwrap());
        assert_eq!(names.get(-1).unwrap().next_back().unwrap().unwrap(), "neg");
        // The values borrow the transaction, not the handle (dropped
        // here).
        held = names.get(1).unwrap().map(Result::unwrap).collect();
    }
    assert_eq!(held, ["one", "uno"]);
    let numbers = r.open_typed_multimap(NUMBERS).unwrap();
    let got: Vec<u64> = numbers.get(-5).unwrap().map(Result::unwrap).collect();
    assert_eq!(got, [0, 2, 10, 256, u64::MAX]);
    let back: Vec<u64> = numbers.get(-5).unwrap().rev().map(Result::unwrap).collect();
    assert_eq!(back, [u64::MAX, 256, 10, 2, 0]);
    let keys: Vec<(i64, u64)> = numbers
        .keys::<i64>(..)
        .unwrap()
        .map(|k| k.map(|(k, n)| (k.value(), n)).unwrap())
        .collect();
    assert_eq!(keys, [(i64::MIN, 1), (-5, 5), (i64::MAX, 1)]);
    assert_eq!(numbers.len().unwrap(), 7);
    drop((numbers, held));
    drop(r);

    let w = db.begin_write().unwrap();
    {
        let mut numbers = w.open_typed_multimap(NUMBERS).unwrap();
        assert!(numbers.remove(-5, 10).unwrap());
        assert!(!numbers.remove(-5, 10).unwrap());
        assert!(!numbers.remove(-6, 2).unwrap());
        assert_eq!(numbers.remove_all(-5).unwrap(), 4);
        assert_eq!(numbers.remove_all(-5).unwrap(), 0);
        assert_eq!(numbers.len().unwrap(), 2);
    }
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    let numbers = r.open_typed_multimap(NUMBERS).unwrap();
    assert_eq!(numbers.count(-5).unwrap(), 0);
    assert_eq!(numbers.len().unwrap(), 2);
    drop(r);
    db.check().unwrap();
}

/// A value read from a typed multimap lives as long as the transaction:
/// the handle may go.
#[test]
fn str_values_are_read_in_place() {
    let t = TestDb::new(4096);
    let db = t.db();
    let w = db.begin_write().unwrap();
    w.open_typed_multimap(NAMES)
        .unwrap()
        .insert(3, "in the map")
        .unwrap();
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    let value: &str = {
        let names = r.open_typed_multimap(NAMES).unwrap();
        names.get(3).unwrap().next().unwrap().unwrap()
    };
    // The same bytes the byte API reads in place, at the same address.
    let raw = r.open_untyped_multimap("names").unwrap();
    // 3i32: big-endian with the sign bit flipped.
    let bytes = raw.get(&[0x80, 0, 0, 3]).unwrap().next().unwrap().unwrap();
    assert_eq!(bytes, b"in the map");
    assert_eq!(value.as_ptr(), bytes.as_ptr(), "the value is not a copy");
}

/// Tuple keys and values sort field by field, `&str` fields included;
/// ranges over composite keys pick a prefix's keys.
#[test]
fn composite_keys_and_values() {
    const EVENTS: MultimapTableDefinition<(u32, &str), (i8, &str)> =
        MultimapTableDefinition::new("events");
    let t = TestDb::new(4096);
    let db = t.db();
    let w = db.begin_write().unwrap();
    {
        let mut m = w.open_typed_multimap(EVENTS).unwrap();
        for (k, v) in [
            ((2, "b"), (0, "x")),
            ((1, "zz"), (-1, "later")),
            ((1, "zz"), (-2, "first")),
            ((1, "a"), (5, "")),
            ((2, ""), (0, "empty")),
            ((1, "zz"), (-1, "earlier")),
        ] {
            assert!(m.insert(k, v).unwrap());
        }
    }
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    let m = r.open_typed_multimap(EVENTS).unwrap();
    let all: Vec<((u32, String), (i8, String))> = m
        .iter()
        .unwrap()
        .map(|p| {
            let (k, v) = p.unwrap();
            let (a, b) = k.value();
            ((a, b.to_owned()), (v.0, v.1.to_owned()))
        })
        .collect();
    let want: Vec<((u32, String), (i8, String))> = [
        ((1, "a"), (5, "")),
        ((1, "zz"), (-2, "first")),
        ((1, "zz"), (-1, "earlier")),
        ((1, "zz"), (-1, "later")),
        ((2, ""), (0, "empty")),
        ((2, "b"), (0, "x")),
    ]
    .into_iter()
    .map(|((a, b), (c, d))| ((a, b.to_owned()), (c, d.to_owned())))
    .collect();
    assert_eq!(all, want);
    // The keys of 1: from (1, "") to before (2, "").
    let keys: Vec<(u32, String, u64)> = m
        .keys((1, "")..(2, ""))
        .unwrap()
        .rev()
        .map(|k| {
            let (k, n) = k.unwrap();
            let (a, b) = k.value();
            (a, b.to_owned(), n)
        })
        .collect();
    assert_eq!(keys, [(1, "zz".to_owned(), 3), (1, "a".to_owned(), 1)]);
    let values: Vec<(i8, &str)> = m.get((1, "zz")).unwrap().map(Result::unwrap).collect();
    assert_eq!(values, [(-2, "first"), (-1, "earlier"), (-1, "later")]);
    assert!(m.contains((2, ""), (0, "empty")).unwrap());
}

/// A typed multimap opens only through a definition of its own types:
/// with other types, as a typed table, as a byte multimap or byte table,
/// it is `TableTypeMismatch`, as is a byte multimap, typed table or byte
/// table opened through a multimap definition; the transaction goes on
/// after each. `table_kind` names it; tools read its bytes with
/// `open_untyped_multimap`.
#[test]
fn table_kinds_stay_apart() {
    const OTHER_KEY: MultimapTableDefinition<u32, &str> = MultimapTableDefinition::new("names");
    const OTHER_VALUE: MultimapTableDefinition<i32, u64> = MultimapTableDefinition::new("names");
    const AS_TABLE: TableDefinition<i32, &str> = TableDefinition::new("names");
    const TYPED: TableDefinition<i32, &str> = TableDefinition::new("typed");
    const TYPED_AS_MULTI: MultimapTableDefinition<i32, &str> =
        MultimapTableDefinition::new("typed");
    const MULTI_AS_TYPED: MultimapTableDefinition<i32, &str> =
        MultimapTableDefinition::new("multi");
    const PLAIN_AS_MULTI: MultimapTableDefinition<i32, &str> =
        MultimapTableDefinition::new("plain");
    let t = TestDb::new(4096);
    let db = t.db();
    let w = db.begin_write().unwrap();
    w.open_typed_multimap(NAMES)
        .unwrap()
        .insert(1, "a")
        .unwrap();
    w.open_typed(TYPED).unwrap().insert(1, "a").unwrap();
    w.open_multimap("multi")
        .unwrap()
        .insert(b"k", b"v")
        .unwrap();
    w.open_table("plain").unwrap().insert(b"k", b"v").unwrap();
    assert!(mismatch(w.open_typed_multimap(OTHER_KEY)));
    assert!(mismatch(w.open_typed_multimap(OTHER_VALUE)));
    assert!(mismatch(w.open_typed(AS_TABLE)));
    assert!(mismatch(w.open_multimap("names")));
    assert!(mismatch(w.open_table("names")));
    assert!(mismatch(w.open_typed_multimap(TYPED_AS_MULTI)));
    assert!(mismatch(w.open_typed_multimap(MULTI_AS_TYPED)));
    assert!(mismatch(w.open_typed_multimap(PLAIN_AS_MULTI)));
    // The transaction goes on, and nothing was created or changed.
    w.open_typed_multimap(NAMES)
        .unwrap()
        .insert(1, "b")
        .unwrap();
    w.commit().unwrap();

    let r = db.begin_read().unwrap();
    assert!(mismatch(r.open_typed_multimap(OTHER_KEY)));
    assert!(mismatch(r.open_typed_multimap(OTHER_VALUE)));
    assert!(mismatch(r.open_typed(AS_TABLE)));
    assert!(mismatch(r.open_multimap("names")));
    assert!(mismatch(r.open_table("names")));
    assert!(mismatch(r.open_typed_multimap(TYPED_AS_MULTI)));
    assert!(mismatch(r.open_typed_multimap(MULTI_AS_TYPED)));
    assert!(mismatch(r.open_typed_multimap(PLAIN_AS_MULTI)));
    assert!(matches!(
        r.open_typed_multimap(MultimapTableDefinition::<i32, &str>::new("missing")),
        Err(Error::TableNotFound(_))
    ));
    assert_eq!(
        r.table_kind("names").unwrap(),
        Some(TableKind::TypedMultimap {
            key: "i32".into(),
            value: "str".into()
        })
    );
    assert!(r.table_kind("names").unwrap().unwrap().is_multimap());
    assert!(r.table_kind("multi").unwrap().unwrap().is_multimap());
    assert!(!r.table_kind("typed").unwrap().unwrap().is_multimap());
    assert_eq!(r.open_typed_multimap(NAMES).unwrap().count(1).unwrap(), 2);
    assert_eq!(r.open_typed(TYPED).unwrap().get(1).unwrap(), Some("a"));
    // Tools read either multimap's bytes; tables stay refused.
    let raw = r.open_untyped_multimap("names").unwrap();
    assert_eq!(raw.len().unwrap(), 2);
    let (k, v) = raw.iter().unwrap().next().unwrap().unwrap();
    assert_eq!((&k[..], v), (&[0x80, 0, 0, 1][..], &b"a"[..]));
    assert_eq!(r.open_untyped_multimap("multi").unwrap().len().unwrap(), 1);
    assert!(mismatch(r.open_untyped_multimap("plain")));
    assert!(mismatch(r.open_untyped_multimap("typed")));
    // A compacted copy keeps the kind and the types.
    let copy = t.dir.path().join("copy.larch");
    r.copy_to(&copy, true).unwrap();
    // SAFETY: the copy is this test's own file.
    let c = unsafe { larch::Database::open(&copy) }.unwrap();
    let cr = c.begin_read().unwrap();
    assert_eq!(cr.open_typed_multimap(NAMES).unwrap().count(1).unwrap(), 2);
    assert!(mismatch(cr.open_typed_multimap(OTHER_VALUE)));
    assert!(mismatch(cr.open_multimap("names")));
    drop(cr);
    c.check().unwrap();
    drop(r);
    db.check().unwrap();
}

/// Keys and values that would not read back as their types (a borrowed
/// `&str` field with a zero byte before more fields) are refused with
/// `Error::Decode` before anything changes; the transaction goes on and
/// commits what it did besides. Lookups of such keys simply find nothing.
#[test]
fn decode_refusals_change_nothing() {
    const M: MultimapTableDefinition<(&str, u8), (&str, u8)> = MultimapTableDefinition::new("m");
    let t = TestDb::new(4096);
    let db = t.db();
    let w = db.begin_write().unwrap();
    {
        let mut m = w.open_typed_multimap(M).unwrap();
        m.insert(("k", 1), ("v", 1)).unwrap();
        let e = m.insert(("k\0", 1), ("v", 1)).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }), "{e:?}");
        let e = m.insert(("k", 1), ("v\0w", 1)).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }), "{e:?}");
        assert_eq!(m.len().unwrap(), 1);
        assert_eq!(m.count(("k", 1)).unwrap(), 1);
        assert_eq!(m.count(("k\0", 1)).unwrap(), 0);
        assert!(!m.contains(("k", 1), ("v\0w", 1)).unwrap());
        assert!(!m.remove(("k\0", 1), ("v", 1)).unwrap());
        assert_eq!(m.remove_all(("k\0", 1)).unwrap(), 0);
        m.insert(("k", 1), ("w", 2)).unwrap();
    }
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    let m = r.open_typed_multimap(M).unwrap();
    type Pair<'a> = ((String, u8), (&'a str, u8));
    let all: Vec<Pair> = m
        .iter()
        .unwrap()
        .map(|p| {
            let (k, v) = p.unwrap();
            let (a, b) = k.value();
            ((a.to_owned(), b), v)
        })
        .collect();
    let k = || ("k".to_owned(), 1);
    assert_eq!(all, [(k(), ("v", 1)), (k(), ("w", 2))]);
    drop(r);
    db.check().unwrap();
}

/// A savepoint taken before changes to a typed multimap brings back its
/// pairs and counts when restored; the transaction commits that state.
#[test]
fn savepoint_restore_over_a_typed_multimap() {
    let t = TestDb::new(4096);
    let db = t.db();
    let mut w = db.begin_write().unwrap();
    {
        let mut m = w.open_typed_multimap(NUMBERS).unwrap();
        for v in 0..300u64 {
            m.insert(1, v * 7).unwrap();
        }
        m.insert(2, 5).unwrap();
    }
    let sp = w.savepoint().unwrap();
    {
        let mut m = w.open_typed_multimap(NUMBERS).unwrap();
        assert_eq!(m.remove_all(1).unwrap(), 300);
        m.insert(2, 6).unwrap();
        m.insert(3, 1).unwrap();
        assert_eq!(m.len().unwrap(), 3);
    }
    w.restore_savepoint(&sp).unwrap();
    {
        let m = w.open_typed_multimap(NUMBERS).unwrap();
        assert_eq!(m.len().unwrap(), 301);
        assert_eq!(m.count(1).unwrap(), 300);
        assert_eq!(m.count(3).unwrap(), 0);
        let twos: Vec<u64> = m.get(2).unwrap().map(Result::unwrap).collect();
        assert_eq!(twos, [5]);
    }
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    let m = r.open_typed_multimap(NUMBERS).unwrap();
    let ones: Vec<u64> = m.get(1).unwrap().rev().map(Result::unwrap).collect();
    assert_eq!(ones, (0..300u64).rev().map(|v| v * 7).collect::<Vec<_>>());
    drop(r);
    db.check().unwrap();
}

/// What a commit wrote reads back the same after the database is closed
/// and opened again, types and all.
#[test]
fn reopen_after_commit() {
    let mut t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_typed_multimap(NAMES).unwrap();
        for i in -50..50i32 {
            for v in ["a", "b", "c"].iter().take((i.rem_euclid(3) + 1) as usize) {
                m.insert(i, *v).unwrap();
            }
        }
    }
    w.commit().unwrap();
    t.reopen();
    let r = t.db().begin_read().unwrap();
    let m = r.open_typed_multimap(NAMES).unwrap();
    assert_eq!(m.len().unwrap(), 200);
    let keys: Vec<(i32, u64)> = m
        .keys::<i32>(..)
        .unwrap()
        .map(|k| k.map(|(k, n)| (k.value(), n)).unwrap())
        .collect();
    let want: Vec<(i32, u64)> = (-50..50i32)
        .map(|i| (i, i.rem_euclid(3) as u64 + 1))
        .collect();
    assert_eq!(keys, want);
    // `String` values share `&str`'s name: the same table.
    let owned = MultimapTableDefinition::<i32, String>::new("names");
    let m = r.open_typed_multimap(owned).unwrap();
    assert_eq!(m.get(-1).unwrap().next_back().unwrap().unwrap(), "c");
}

type Model = BTreeMap<i16, BTreeSet<u32>>;

/// A key of the model test: few, negatives among them, so that keys
/// collide and sort across zero.
fn model_key(rng: &mut Rng) -> i16 {
    rng.below(41) as i16 - 20
}

/// A value: spread over bytes that a little-endian order would misplace.
fn model_value(rng: &mut Rng) -> u32 {
    match rng.below(3) {
        0 => rng.below(20) as u32,
        1 => 1 << (8 * rng.below(4)),
        _ => rng.next_u64() as u32,
    }
}

fn model_bound(rng: &mut Rng) -> Bound<i16> {
    let k = model_key(rng);
    match rng.below(3) {
        0 => Bound::Unbounded,
        1 => Bound::Included(k),
        _ => Bound::Excluded(k),
    }
}

/// Whether a range of keys from `start` to `end` holds none (the model's
/// `BTreeMap::range` panics on an inverted one; larch gives nothing).
fn empty_range(start: Bound<i16>, end: Bound<i16>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}

/// The typed multimap in a read or write handle against the model: every
/// key's values from both ends, counts, `len`; for random key ranges the
/// pairs both ways, and the keys forwards, backwards and from both ends
/// at once in a random order of steps.
macro_rules! check_model {
    ($m:expr, $model:expr, $rng:expr) => {{
        let (m, model, rng) = (&$m, &$model, &mut *$rng);
        let pairs: usize = model.values().map(BTreeSet::len).sum();
        assert_eq!(m.len().unwrap(), pairs as u64);
        for k in -21..=21i16 {
            let want: Vec<u32> = model
                .get(&k)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            let got: Vec<u32> = m.get(k).unwrap().map(Result::unwrap).collect();
            assert_eq!(got, want, "values of {k}");
            let mut back: Vec<u32> = m.get(k).unwrap().rev().map(Result::unwrap).collect();
            back.reverse();
            assert_eq!(back, want, "values of {k} reversed");
            assert_eq!(m.count(k).unwrap(), want.len() as u64);
        }
        for _ in 0..8 {
            let (start, end) = (model_bound(rng), model_bound(rng));
            let in_range: Vec<(i16, &BTreeSet<u32>)> = if empty_range(start, end) {
                Vec::new()
            } else {
                model.range((start, end)).map(|(k, s)| (*k, s)).collect()
            };
            let want_pairs: Vec<(i16, u32)> = in_range
                .iter()
                .flat_map(|(k, s)| s.iter().map(move |v| (*k, *v)))
                .collect();
            let got: Vec<(i16, u32)> = m
                .range::<i16>((start, end))
                .unwrap()
                .map(|p| p.map(|(k, v)| (k.value(), v)).unwrap())
                .collect();
            assert_eq!(got, want_pairs, "pairs of {start:?}..{end:?}");
            let mut back: Vec<(i16, u32)> = m
                .range::<i16>((start, end))
                .unwrap()
                .rev()
                .map(|p| p.map(|(k, v)| (k.value(), v)).unwrap())
                .collect();
            back.reverse();
            assert_eq!(back, want_pairs, "pairs of {start:?}..{end:?} reversed");
            let want_keys: Vec<(i16, u64)> =
                in_range.iter().map(|(k, s)| (*k, s.len() as u64)).collect();
            let keys: Vec<(i16, u64)> = m
                .keys::<i16>((start, end))
                .unwrap()
                .map(|k| k.map(|(k, n)| (k.value(), n)).unwrap())
                .collect();
            assert_eq!(keys, want_keys, "keys of {start:?}..{end:?}");
            let mut back: Vec<(i16, u64)> = m
                .keys::<i16>((start, end))
                .unwrap()
                .rev()
                .map(|k| k.map(|(k, n)| (k.value(), n)).unwrap())
                .collect();
            back.reverse();
            assert_eq!(back, want_keys, "keys of {start:?}..{end:?} reversed");
            let both: Vec<(i16, u64)> =
                common::from_both_ends(m.keys::<i16>((start, end)).unwrap(), rng)
                    .into_iter()
                    .map(|k| k.map(|(k, n)| (k.value(), n)).unwrap())
                    .collect();
            assert_eq!(both, want_keys, "keys of {start:?}..{end:?} from both ends");
        }
    }};
}

/// Random inserts, removals and whole-key removals, in transactions that
/// commit or abort, against a `BTreeMap<i16, BTreeSet<u32>>`: the write
/// handle and each committed snapshot agree with the model; `check` passes
/// after.
#[test]
fn typed_multimaps_match_a_model_of_sorted_sets() {
    const M: MultimapTableDefinition<i16, u32> = MultimapTableDefinition::new("m");
    let t = TestDb::new(512);
    let db = t.db();
    let mut rng = Rng(0x7E57_0017);
    let mut committed = Model::new();
    let mut ops = 0;
    for round in 0..40 {
        let w = db.begin_write().unwrap();
        let mut model = committed.clone();
        {
            let mut m = w.open_typed_multimap(M).unwrap();
            for _ in 0..rng.below(150) {
                ops += 1;
                let k = model_key(&mut rng);
                match rng.below(10) {
                    0..=5 => {
                        let v = model_value(&mut rng);
                        let new = model.entry(k).or_default().insert(v);
                        assert_eq!(m.insert(k, v).unwrap(), new);
                    }
                    6..=8 => {
                        // A value the key has, mostly.
                        let v = match model.get(&k) {
                            Some(s) if rng.below(4) != 0 => {
                                *s.iter().nth(rng.below(s.len() as u64) as usize).unwrap()
                            }
                            _ => model_value(&mut rng),
                        };
                        let was = model.get_mut(&k).is_some_and(|s| s.remove(&v));
                        if model.get(&k).is_some_and(BTreeSet::is_empty) {
                            model.remove(&k);
                        }
                        assert_eq!(m.remove(k, v).unwrap(), was);
                    }
                    _ => {
                        let n = model.remove(&k).map_or(0, |s| s.len());
                        assert_eq!(m.remove_all(k).unwrap(), n as u64);
                    }
                }
            }
            check_model!(m, model, &mut rng);
        }
        if round % 5 == 4 {
            drop(w);
        } else {
            w.commit().unwrap();
            committed = model;
        }
        let r = db.begin_read().unwrap();
        match r.open_typed_multimap(M) {
            Ok(m) => check_model!(m, committed, &mut rng),
            Err(Error::TableNotFound(_)) => assert!(committed.is_empty()),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ops > 2000, "{ops} operations");
    db.check().unwrap();
}
