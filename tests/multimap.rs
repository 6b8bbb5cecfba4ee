//! Multimap tables against a model of sorted sets, a key with a million
//! values, values past a quarter page, and the table kinds kept apart.

mod common;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use common::{Rng, TestDb};
use larch::{Error, TableDefinition};

type Model = BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>;

/// Keys that meet at every edge of the escaping: the empty key, zero
/// bytes, prefixes of each other, 0xFF.
const KEYS: [&[u8]; 9] = [
    b"",
    b"\0",
    b"\0\0",
    b"a",
    b"a\0",
    b"a\0b",
    b"ab",
    b"b",
    b"\xff\xff",
];

fn value(rng: &mut Rng, ps: usize) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => ps / 4 + rng.below(ps as u64) as usize,
        1 => 0,
        _ => 1 + rng.below(12) as usize,
    };
    // Few distinct short values, so inserts collide.
    let mut v = rng.bytes(len);
    if len > 0 && len < 12 {
        v[0] %= 4;
    }
    v
}

fn pairs_of(model: &Model, range: (Bound<&[u8]>, Bound<&[u8]>)) -> Vec<(Vec<u8>, Vec<u8>)> {
    if common::inverted(range.0, range.1) {
        return Vec::new();
    }
    model
        .range::<[u8], _>(range)
        .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
        .collect()
}

fn check_against(db: &larch::Database, model: &Model, rng: &mut Rng) {
    let r = db.begin_read().unwrap();
    let m = match r.open_multimap("m") {
        Ok(m) => m,
        Err(Error::TableNotFound(_)) => {
            assert!(model.is_empty());
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let total: usize = model.values().map(BTreeSet::len).sum();
    assert_eq!(m.len().unwrap(), total as u64);
    for k in KEYS {
        let want: Vec<Vec<u8>> = model
            .get(k)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let got: Vec<Vec<u8>> = m.get(k).unwrap().map(|v| v.unwrap().to_vec()).collect();
        assert_eq!(got, want, "values of {k:?}");
        let mut back: Vec<Vec<u8>> = m
            .get(k)
            .unwrap()
            .rev()
            .map(|v| v.unwrap().to_vec())
            .collect();
        back.reverse();
        assert_eq!(back, want);
        assert_eq!(m.count(k).unwrap(), want.len() as u64);
        for v in &want {
            assert!(m.contains(k, v).unwrap());
        }
    }
    let all: Vec<(Vec<u8>, Vec<u8>)> = m
        .iter()
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.into_owned(), v.to_vec())).unwrap())
        .collect();
    assert_eq!(all, pairs_of(model, (Bound::Unbounded, Bound::Unbounded)));
    let keys: Vec<(Vec<u8>, u64)> = m
        .keys(..)
        .unwrap()
        .map(|e| e.map(|(k, n)| (k.into_owned(), n)).unwrap())
        .collect();
    let want: Vec<(Vec<u8>, u64)> = model
        .iter()
        .map(|(k, s)| (k.clone(), s.len() as u64))
        .collect();
    assert_eq!(keys, want);
    for _ in 0..20 {
        let pick = |rng: &mut Rng| -> Bound<&[u8]> {
            let k = KEYS[rng.below(KEYS.len() as u64) as usize];
            match rng.below(3) {
                0 => Bound::Unbounded,
                1 => Bound::Included(k),
                _ => Bound::Excluded(k),
            }
        };
        let range = (pick(rng), pick(rng));
        let want = pairs_of(model, range);
        let got: Vec<_> = m
            .range(range)
            .unwrap()
            .map(|e| e.map(|(k, v)| (k.into_owned(), v.to_vec())).unwrap())
            .collect();
        assert_eq!(got, want, "{range:?}");
        let mut back: Vec<_> = m
            .range(range)
            .unwrap()
            .rev()
            .map(|e| e.map(|(k, v)| (k.into_owned(), v.to_vec())).unwrap())
            .collect();
        back.reverse();
        assert_eq!(back, want, "{range:?} reversed");
        let keys: Vec<Vec<u8>> = m
            .keys(range)
            .unwrap()
            .map(|e| e.unwrap().0.into_owned())
            .collect();
        let mut want_keys: Vec<Vec<u8>> = want.iter().map(|(k, _)| k.clone()).collect();
        want_keys.dedup();
        assert_eq!(keys, want_keys, "keys of {range:?}");
        let mut back: Vec<Vec<u8>> = m
            .keys(range)
            .unwrap()
            .rev()
            .map(|e| e.unwrap().0.into_owned())
            .collect();
        back.reverse();
        assert_eq!(back, want_keys, "keys of {range:?} reversed");
        // Both ends at once, in a random order of steps: they meet with
        // every key handed out once, with its count.
        let want_counts: Vec<(Vec<u8>, u64)> = want_keys
            .iter()
            .map(|k| (k.clone(), model[k].len() as u64))
            .collect();
        let both: Vec<(Vec<u8>, u64)> = common::from_both_ends(m.keys(range).unwrap(), rng)
            .into_iter()
            .map(|e| e.map(|(k, n)| (k.into_owned(), n)).unwrap())
            .collect();
        assert_eq!(both, want_counts, "keys of {range:?} from both ends");
    }
}

#[test]
fn multimaps_match_a_model_of_sorted_sets() {
    for ps in [512u32, 4096] {
        let mut rng = Rng(u64::from(ps));
        let mut t = TestDb::new(ps);
        let mut model = Model::new();
        for round in 0..12 {
            let mut pending = model.clone();
            let w = t.db().begin_write().unwrap();
            {
                let mut m = w.open_multimap("m").unwrap();
                for _ in 0..150 {
                    let k = KEYS[rng.below(KEYS.len() as u64) as usize];
                    match rng.below(10) {
                        0..=5 => {
                            let v = value(&mut rng, ps as usize);
                            let new = pending.entry(k.to_vec()).or_default().insert(v.clone());
                            assert_eq!(m.insert(k, &v).unwrap(), new);
                        }
                        6..=7 => {
                            let set = pending.entry(k.to_vec()).or_default();
                            let v = match set.iter().next() {
                                Some(v) if rng.below(3) > 0 => v.clone(),
                                _ => value(&mut rng, ps as usize),
                            };
                            let was = set.remove(&v);
                            assert_eq!(m.remove(k, &v).unwrap(), was);
                        }
                        8 => {
                            let n = pending.remove(k).map_or(0, |s| s.len());
                            assert_eq!(m.remove_all(k).unwrap(), n as u64);
                        }
                        _ => {
                            let n = pending.get(k).map_or(0, BTreeSet::len);
                            assert_eq!(m.count(k).unwrap(), n as u64);
                        }
                    }
                    pending.retain(|_, s| !s.is_empty());
                }
                let total: usize = pending.values().map(BTreeSet::len).sum();
                assert_eq!(m.len().unwrap(), total as u64);
            }
            if round % 4 == 3 {
                w.abort();
            } else {
                w.commit().unwrap();
                model = pending;
            }
            if round % 3 == 2 {
                t.reopen();
            }
            check_against(t.db(), &model, &mut rng);
            t.db().check().unwrap();
        }
    }
}

/// One key with a million values: counted in one lookup, iterated from
/// both ends, one value removed in a descent, all of them removed in
/// bounded memory; the other keys untouched.
#[test]
fn a_key_with_a_million_values() {
    let t = TestDb::new(4096);
    let n: u32 = 1_000_000;
    for chunk in 0..10 {
        let w = t.db().begin_write().unwrap();
        {
            let mut m = w.open_multimap("m").unwrap();
            if chunk == 0 {
                m.insert(b"before", b"x").unwrap();
                m.insert(b"many\0after", b"y").unwrap();
            }
            for i in (chunk * n / 10)..((chunk + 1) * n / 10) {
                assert!(m.insert(b"many", &i.to_be_bytes()).unwrap());
            }
        }
        w.commit().unwrap();
    }
    let r = t.db().begin_read().unwrap();
    let m = r.open_multimap("m").unwrap();
    assert_eq!(m.count(b"many").unwrap(), u64::from(n));
    assert_eq!(m.len().unwrap(), u64::from(n) + 2);
    let mut values = m.get(b"many").unwrap();
    assert_eq!(values.next().unwrap().unwrap(), 0u32.to_be_bytes());
    assert_eq!(values.next_back().unwrap().unwrap(), (n - 1).to_be_bytes());
    let keys: Vec<(Cow<[u8]>, u64)> = m.keys(..).unwrap().map(|e| e.unwrap()).collect();
    let want = [
        (Cow::Borrowed(&b"before"[..]), 1),
        (Cow::Borrowed(&b"many"[..]), u64::from(n)),
        (Cow::Owned(b"many\0after".to_vec()), 1),
    ];
    assert_eq!(keys, want);
    let mut back: Vec<(Cow<[u8]>, u64)> = m.keys(..).unwrap().rev().map(|e| e.unwrap()).collect();
    back.reverse();
    assert_eq!(back, want);
    drop(r);
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        assert!(m.remove(b"many", &500_000u32.to_be_bytes()).unwrap());
        assert!(!m.contains(b"many", &500_000u32.to_be_bytes()).unwrap());
        assert_eq!(m.count(b"many").unwrap(), u64::from(n) - 1);
        assert_eq!(m.remove_all(b"many").unwrap(), u64::from(n) - 1);
        assert_eq!(m.count(b"many").unwrap(), 0);
        assert_eq!(m.len().unwrap(), 2);
        assert_eq!(
            m.get(b"many\0after").unwrap().next().unwrap().unwrap(),
            b"y"
        );
    }
    w.commit().unwrap();
    t.db().check().unwrap();
}

/// `keys` from the back with a key of 100,000 values (some 500 leaves of
/// them) between two keys of one: each step seeks a head and never walks a
/// key's pairs. Shown by damaging a leaf in the middle of the values in the
/// file: reading the values hits it (`Corrupted`), while `keys` from either
/// end, and from both at once, goes past it and counts every key. (A walk
/// of the values, from either end, would cross that leaf.)
#[test]
fn keys_from_the_back_seek_past_a_key_s_values() {
    use common::heap_image::{leaf_cells, newest_slot};
    let t = TestDb::new(4096);
    let n: u32 = 100_000;
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        m.insert(b"before", b"x").unwrap();
        m.insert(b"many\0after", b"y").unwrap();
        for i in 0..n {
            m.insert(b"many", &i.to_be_bytes()).unwrap();
        }
    }
    w.commit().unwrap();
    let want = vec![
        (b"before".to_vec(), 1),
        (b"many".to_vec(), u64::from(n)),
        (b"many\0after".to_vec(), 1),
    ];
    let keys = |m: &larch::Multimap<'_>| -> [Vec<(Vec<u8>, u64)>; 3] {
        let own = |e: larch::Result<(Cow<[u8]>, u64)>| e.map(|(k, c)| (k.into_owned(), c)).unwrap();
        let front: Vec<_> = m.keys(..).unwrap().map(own).collect();
        let mut back: Vec<_> = m.keys(..).unwrap().rev().map(own).collect();
        back.reverse();
        let mut it = m.keys(..).unwrap();
        let last = own(it.next_back().unwrap());
        let mut mixed = vec![own(it.next().unwrap())];
        mixed.extend(it.map(own));
        mixed.push(last);
        [front, back, mixed]
    };
    {
        let r = t.db().begin_read().unwrap();
        let m = r.open_multimap("m").unwrap();
        assert_eq!(keys(&m), [want.clone(), want.clone(), want.clone()]);
    }
    let path = t.path();
    let ps = 4096;
    let mut image = std::fs::read(&path).unwrap();
    // The leaf that holds the pair ("many", 50,000): its kind byte made
    // one no page has, and its checksum stamped again.
    let mut middle = b"many\0\0\x01".to_vec();
    middle.extend_from_slice(&(n / 2).to_be_bytes());
    let leaves: Vec<u64> = (2..(image.len() / ps) as u64)
        .filter(|&id| {
            image[id as usize * ps] == 2
                && leaf_cells(&image, ps, id)
                    .iter()
                    .any(|(_, k, _)| *k == middle)
        })
        .collect();
    assert!(!leaves.is_empty(), "a leaf holds the middle value");
    let slot = newest_slot(&image, ps);
    // The commit's seal list dropped, so that the edited pages do not set
    // it aside (the leaves are stamped again besides).
    let edited = larch::testing::edit_meta(&mut image, ps, slot, |m| m.seal.clear());
    assert!(edited);
    for &leaf in &leaves {
        image[leaf as usize * ps] = 0x7F;
        larch::testing::restamp(&mut image, ps, leaf);
    }
    let dir = tempfile::tempdir().unwrap();
    let crafted = dir.path().join("crafted");
    std::fs::write(&crafted, &image).unwrap();
    let db = common::open(&crafted, ps as u32);
    let r = db.begin_read().unwrap();
    let m = r.open_multimap("m").unwrap();
    // The damaged leaf lies on the values' walk, from either end.
    let walk: larch::Result<Vec<&[u8]>> = m.get(b"many").unwrap().collect();
    assert!(matches!(walk, Err(Error::Corrupted { .. })), "{walk:?}");
    let walk: larch::Result<Vec<&[u8]>> = m.get(b"many").unwrap().rev().collect();
    assert!(matches!(walk, Err(Error::Corrupted { .. })), "{walk:?}");
    // Not on the keys' seeks.
    assert_eq!(keys(&m), [want.clone(), want.clone(), want]);
    assert_eq!(m.count(b"many").unwrap(), u64::from(n));
}

/// Values longer than a quarter page, up to what a tree key holds; a pair
/// too long is refused before anything changes and the transaction goes on.
#[test]
fn long_values_and_the_limit() {
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        let long: Vec<Vec<u8>> = [1025usize, 3000, 10_000, 65_536 - 4]
            .iter()
            .map(|&len| vec![7u8; len])
            .collect();
        for v in &long {
            assert!(m.insert(b"k", v).unwrap());
        }
        // The key (1 byte), its escaping's end (2), the pair byte (1): one
        // byte more does not fit.
        let e = m.insert(b"k", &vec![7u8; 65_536 - 3]).unwrap_err();
        assert!(matches!(e, Error::KeyTooLarge { .. }), "{e:?}");
        assert_eq!(m.count(b"k").unwrap(), 4);
        let got: Vec<usize> = m.get(b"k").unwrap().map(|v| v.unwrap().len()).collect();
        assert_eq!(got, [1025, 3000, 10_000, 65_536 - 4]);
    }
    w.commit().unwrap();
    t.db().check().unwrap();
}

/// A multimap is opened only as one, and a table of another kind not as a
/// multimap; a compacted copy keeps the kind.
#[test]
fn table_kinds_stay_apart() {
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    w.open_multimap("m").unwrap().insert(b"k", b"v").unwrap();
    w.open_table("plain").unwrap().insert(b"k", b"v").unwrap();
    let typed: TableDefinition<u64, u64> = TableDefinition::new("typed");
    w.open_typed(typed).unwrap().insert(1, 2).unwrap();
    for e in [
        w.open_table("m").err(),
        w.open_typed(TableDefinition::<u64, u64>::new("m")).err(),
        w.open_multimap("plain").err(),
        w.open_multimap("typed").err(),
    ] {
        assert!(matches!(e, Some(Error::TableTypeMismatch { .. })), "{e:?}");
    }
    // The transaction goes on.
    w.open_multimap("m").unwrap().insert(b"k", b"w").unwrap();
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert!(matches!(
        r.open_table("m"),
        Err(Error::TableTypeMismatch { .. })
    ));
    assert!(matches!(
        r.open_multimap("plain"),
        Err(Error::TableTypeMismatch { .. })
    ));
    let copy = t.dir.path().join("copy.larch");
    r.copy_to(&copy, true).unwrap();
    // SAFETY: the copy is this test's own file.
    let c = unsafe { larch::Database::open(&copy) }.unwrap();
    let cr = c.begin_read().unwrap();
    let m = cr.open_multimap("m").unwrap();
    assert_eq!(m.count(b"k").unwrap(), 2);
    assert!(matches!(
        cr.open_table("m"),
        Err(Error::TableTypeMismatch { .. })
    ));
    assert_eq!(cr.open_typed(typed).unwrap().get(1).unwrap(), Some(2));
}
