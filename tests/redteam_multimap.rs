//! Red team of multimap tables (`open_multimap`): keys and values at every
//! edge of the escaping, every key-range bound over keys whose escaped
//! forms compare tricky, double-ended iteration meeting in the middle,
//! `keys` over ranges, keys and values at and past the tree key's limit,
//! long values (long keys of the tree) under one key, crafted trees (heads,
//! totals and entries that lie), `MapFull`, I/O faults and power loss in
//! the middle of multimap commits, compaction and copies, the table kinds
//! kept apart (open, delete, recreate, abort), values read in place across
//! remaps, and a key with a million values (an ignored timing run).
//!
//! A test whose name starts with `defect_` fails on the commit it was
//! written against (73b31b0); `held_` ones passed and stay as regression
//! tests. The defects: a `Corrupted` found by `insert`, `remove` or
//! `remove_all` after the tree changed (a crafted head or total) does not
//! fail the transaction, which then commits half the change; and (minor)
//! an `insert` of a pair already there rewrites its leaf, so a transaction
//! of only such inserts cannot commit in a full file.

mod common;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use common::heap_image::{assert_clean, newest_slot};
use common::{Rng, TestDb, shuffle};
use larch::testing::{edit_meta, restamp};
use larch::{Database, Error, MAX_KEY_LEN, Multimap, Options, TableDefinition};

/// Keys by their values: the expected contents of a multimap.
type Model = BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>;

/// A key range of borrowed bounds.
type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// Keys that meet at every edge of the escaping (`00` -> `00 FF`, end
/// `00 00`, pairs after `01`): the empty key, zero bytes, keys that are
/// prefixes of each other continued by 00, 01, 02 and FF, and keys whose
/// bytes look like an escaped end or a pair marker.
const PROBES: [&[u8]; 22] = [
    b"",
    b"\0",
    b"\0\0",
    b"\0\x01",
    b"\0\xff",
    b"\x01",
    b"\x02",
    b"\xff",
    b"\xff\0",
    b"\xff\xff",
    b"k",
    b"k\0",
    b"k\0\0",
    b"k\0\x01",
    b"k\0\x02",
    b"k\0\xff",
    b"k\x01",
    b"k\x02",
    b"k\xff",
    b"k\0\0\x01",
    b"kk",
    b"k\x01\0",
];

/// Values whose bytes look like the escaping and the pair marker.
const VALUES: [&[u8]; 12] = [
    b"",
    b"\0",
    b"\0\0",
    b"\0\x01",
    b"\0\xff",
    b"\x01",
    b"\x01\0",
    b"\x02",
    b"\xff",
    b"\0\0\x01",
    b"\xff\0\0",
    b"v",
];

/// 4 KiB pages with a small first map: the suites grow the file and remap.
fn opts(ps: u32) -> Options {
    common::small_map(ps)
}

fn open_at(path: &Path, ps: u32) -> larch::Result<Database> {
    // SAFETY: the test owns the file; only larch handles touch it.
    unsafe { opts(ps).open(path) }
}

/// `esc(k)`: the tree key of `k`'s head.
fn esc(k: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    larch::encode_escaped(k, &mut out);
    out
}

/// The tree key of the pair `(k, v)`.
fn pair_key(k: &[u8], v: &[u8]) -> Vec<u8> {
    let mut out = esc(k);
    out.push(1);
    out.extend_from_slice(v);
    out
}

fn in_range(k: &[u8], r: &Bounds<'_>) -> bool {
    let after = match r.0 {
        Bound::Included(s) => k >= s,
        Bound::Excluded(s) => k > s,
        Bound::Unbounded => true,
    };
    let before = match r.1 {
        Bound::Included(e) => k <= e,
        Bound::Excluded(e) => k < e,
        Bound::Unbounded => true,
    };
    after && before
}

fn model_pairs(model: &Model, r: &Bounds<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|(k, _)| in_range(k, r))
        .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
        .collect()
}

fn model_keys(model: &Model, r: &Bounds<'_>) -> Vec<(Vec<u8>, u64)> {
    model
        .iter()
        .filter(|(k, vs)| in_range(k, r) && !vs.is_empty())
        .map(|(k, vs)| (k.clone(), vs.len() as u64))
        .collect()
}

fn total(model: &Model) -> u64 {
    model.values().map(|s| s.len() as u64).sum()
}

/// Walks a double-ended iterator from ends picked at random until the ends
/// meet: the items in order, each once. Once one end is done the other
/// must be too.
fn interleave<T, I>(mut it: I, rng: &mut Rng) -> Vec<T>
where
    I: DoubleEndedIterator<Item = larch::Result<T>>,
{
    let (mut front, mut back) = (Vec::new(), Vec::new());
    loop {
        let forward = rng.below(2) == 0;
        let item = if forward { it.next() } else { it.next_back() };
        match item {
            None => break,
            Some(r) => {
                let x = r.unwrap();
                if forward {
                    front.push(x);
                } else {
                    back.push(x);
                }
            }
        }
    }
    assert!(it.next().is_none(), "an end came back after the ends met");
    assert!(
        it.next_back().is_none(),
        "an end came back after the ends met"
    );
    back.reverse();
    front.extend(back);
    front
}

/// Every bound over `probes`: unbounded, then included and excluded.
fn all_bounds<'a>(probes: &[&'a [u8]]) -> Vec<Bound<&'a [u8]>> {
    let mut out = vec![Bound::Unbounded];
    for p in probes {
        out.push(Bound::Included(*p));
        out.push(Bound::Excluded(*p));
    }
    out
}

/// Checks a multimap handle (read or write: the reads are the same macro
/// on both) against `model`: len, per-key values from both ends and
/// interleaved, count, contains, every pair and key, and (with `ranges`)
/// every combination of bounds over the probes, pairs and keys.
macro_rules! check_view {
    ($m:expr, $model:expr, $probes:expr, $rng:expr, $ranges:expr, $ctx:expr) => {{
        let m = &$m;
        let model: &Model = $model;
        let probes: &[&[u8]] = $probes;
        let rng: &mut Rng = $rng;
        let ctx = $ctx;
        assert_eq!(m.len().unwrap(), total(model), "{ctx}: len");
        assert_eq!(m.is_empty().unwrap(), total(model) == 0, "{ctx}: is_empty");
        let mut keys: Vec<&[u8]> = probes.to_vec();
        keys.extend(model.keys().map(|k| &k[..]));
        for &k in &keys {
            let want: Vec<Vec<u8>> = model
                .get(k)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            let fwd: Vec<Vec<u8>> = m.get(k).unwrap().map(|v| v.unwrap().to_vec()).collect();
            assert_eq!(fwd, want, "{ctx}: get({k:02x?})");
            let mut back: Vec<Vec<u8>> = m
                .get(k)
                .unwrap()
                .rev()
                .map(|v| v.unwrap().to_vec())
                .collect();
            back.reverse();
            assert_eq!(back, want, "{ctx}: get({k:02x?}).rev()");
            let mixed: Vec<Vec<u8>> = interleave(m.get(k).unwrap(), rng)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect();
            assert_eq!(mixed, want, "{ctx}: get({k:02x?}) from both ends");
            assert_eq!(
                m.count(k).unwrap(),
                want.len() as u64,
                "{ctx}: count({k:02x?})"
            );
            for v in &want {
                assert!(
                    m.contains(k, v).unwrap(),
                    "{ctx}: contains({k:02x?}, {v:02x?})"
                );
            }
            for v in VALUES {
                let has = want.iter().any(|w| w == v);
                assert_eq!(
                    m.contains(k, v).unwrap(),
                    has,
                    "{ctx}: contains({k:02x?}, {v:02x?})"
                );
            }
        }
        let all: Vec<(Vec<u8>, Vec<u8>)> = m
            .iter()
            .unwrap()
            .map(|e| e.map(|(k, v)| (k.into_owned(), v.to_vec())).unwrap())
            .collect();
        let unb: Bounds<'_> = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(all, model_pairs(model, &unb), "{ctx}: iter");
        let ks: Vec<(Vec<u8>, u64)> = m
            .keys(..)
            .unwrap()
            .map(|e| e.map(|(k, n)| (k.into_owned(), n)).unwrap())
            .collect();
        assert_eq!(ks, model_keys(model, &unb), "{ctx}: keys(..)");
        if $ranges {
            let bounds = all_bounds(probes);
            for &s in &bounds {
                for &e in &bounds {
                    let r: Bounds<'_> = (s, e);
                    let want = model_pairs(model, &r);
                    let got: Vec<(Vec<u8>, Vec<u8>)> = m
                        .range(r)
                        .unwrap()
                        .map(|x| x.map(|(k, v)| (k.into_owned(), v.to_vec())).unwrap())
                        .collect();
                    assert_eq!(got, want, "{ctx}: range {r:02x?}");
                    let mut back: Vec<(Vec<u8>, Vec<u8>)> = m
                        .range(r)
                        .unwrap()
                        .rev()
                        .map(|x| x.map(|(k, v)| (k.into_owned(), v.to_vec())).unwrap())
                        .collect();
                    back.reverse();
                    assert_eq!(back, want, "{ctx}: range {r:02x?} reversed");
                    let mixed: Vec<(Vec<u8>, Vec<u8>)> = interleave(m.range(r).unwrap(), rng)
                        .into_iter()
                        .map(|(k, v)| (k.into_owned(), v.to_vec()))
                        .collect();
                    assert_eq!(mixed, want, "{ctx}: range {r:02x?} from both ends");
                    let ks: Vec<(Vec<u8>, u64)> = m
                        .keys(r)
                        .unwrap()
                        .map(|x| x.map(|(k, n)| (k.into_owned(), n)).unwrap())
                        .collect();
                    assert_eq!(ks, model_keys(model, &r), "{ctx}: keys {r:02x?}");
                }
            }
        }
    }};
}

/// Checks that every count of the committed multimap `name` agrees with its
/// pairs (whatever they are): each key's count with its values, `keys`
/// with the pairs, `len` with their number. Returns the contents.
fn consistent(db: &Database, name: &str) -> Model {
    let r = db.begin_read().unwrap();
    let m = match r.open_multimap(name) {
        Ok(m) => m,
        Err(Error::TableNotFound(_)) => return Model::new(),
        Err(e) => panic!("open_multimap({name}): {e}"),
    };
    read_all(&m)
}

fn read_all(m: &Multimap<'_>) -> Model {
    let mut model = Model::new();
    for e in m.iter().unwrap() {
        let (k, v) = e.unwrap();
        assert!(
            model.entry(k.into_owned()).or_default().insert(v.to_vec()),
            "a pair twice"
        );
    }
    assert_eq!(m.len().unwrap(), total(&model), "len() against the pairs");
    let keys: Vec<(Vec<u8>, u64)> = m
        .keys(..)
        .unwrap()
        .map(|e| e.map(|(k, n)| (k.into_owned(), n)).unwrap())
        .collect();
    let unb: Bounds<'_> = (Bound::Unbounded, Bound::Unbounded);
    assert_eq!(keys, model_keys(&model, &unb), "keys() against the pairs");
    for (k, vs) in &model {
        assert_eq!(m.count(k).unwrap(), vs.len() as u64, "count({k:02x?})");
        let got: Vec<&[u8]> = m.get(k).unwrap().map(|v| v.unwrap()).collect();
        assert_eq!(got.len(), vs.len(), "get({k:02x?})");
    }
    model
}

// ---------------------------------------------------------------------------
// The escaping's edges against a model, every bound, both ends.
// ---------------------------------------------------------------------------

/// A value for the model suite: mostly the escape-looking ones, sometimes
/// longer than a quarter page (a long key of the tree).
fn pick_value(rng: &mut Rng, ps: usize) -> Vec<u8> {
    match rng.below(12) {
        0 => {
            let mut v = VALUES[rng.below(VALUES.len() as u64) as usize].to_vec();
            let len = ps / 4 + rng.below(ps as u64) as usize;
            v.extend(rng.bytes(len));
            v
        }
        _ => VALUES[rng.below(VALUES.len() as u64) as usize].to_vec(),
    }
}

/// Held: random inserts, removes, `remove_all` and counts over the probe
/// keys and escape-looking values (and long values), in transactions that
/// commit or abort, with reopens: the write handle's reads see its own
/// changes, and after each commit every read (every bound combination over
/// the probes for `range` and `keys`, values from both ends and
/// interleaved) matches a model of sorted sets.
#[test]
fn held_escaping_edges_against_a_model_with_every_bound() {
    for ps in [512u32, 4096] {
        let mut rng = Rng(0xE5C0 + u64::from(ps));
        let mut t = TestDb::new(ps);
        let mut model = Model::new();
        for round in 0..10 {
            let mut pending = model.clone();
            let w = t.db().begin_write().unwrap();
            {
                let mut m = w.open_multimap("m").unwrap();
                for _ in 0..120 {
                    let k = PROBES[rng.below(PROBES.len() as u64) as usize];
                    match rng.below(10) {
                        0..=5 => {
                            let v = pick_value(&mut rng, ps as usize);
                            let new = pending.entry(k.to_vec()).or_default().insert(v.clone());
                            assert_eq!(m.insert(k, &v).unwrap(), new, "insert({k:02x?}, {v:02x?})");
                        }
                        6..=7 => {
                            let set = pending.entry(k.to_vec()).or_default();
                            let v = match set.iter().nth(rng.below(4) as usize) {
                                Some(v) => v.clone(),
                                None => pick_value(&mut rng, ps as usize),
                            };
                            let was = set.remove(&v);
                            assert_eq!(m.remove(k, &v).unwrap(), was, "remove({k:02x?}, {v:02x?})");
                        }
                        8 => {
                            let n = pending.remove(k).map_or(0, |s| s.len() as u64);
                            assert_eq!(m.remove_all(k).unwrap(), n, "remove_all({k:02x?})");
                        }
                        _ => {
                            let n = pending.get(k).map_or(0, |s| s.len() as u64);
                            assert_eq!(m.count(k).unwrap(), n);
                        }
                    }
                    pending.retain(|_, s| !s.is_empty());
                }
                let ctx = format!("ps {ps} round {round} (in the write txn)");
                check_view!(m, &pending, &PROBES, &mut rng, round % 5 == 0, ctx);
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
            let r = t.db().begin_read().unwrap();
            let m = r.open_multimap("m").unwrap();
            let ctx = format!("ps {ps} round {round}");
            check_view!(m, &model, &PROBES, &mut rng, round % 2 == 0, ctx);
            assert_eq!(consistent(t.db(), "m"), model);
            drop(r);
            assert_clean(t.db());
        }
    }
}

/// Held: every probe key holds every escape-looking value (a dense table
/// where each key's pairs sit next to the heads of its prefixes'
/// continuations): all bound combinations for `range` and `keys`, from
/// both ends, interleaved; then the keys emptied one at a time in random
/// order with `remove` and `remove_all`, checked after each.
#[test]
fn held_dense_table_of_tricky_keys_every_bound() {
    let t = TestDb::new(512);
    let mut rng = Rng(77);
    let mut model = Model::new();
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        for k in PROBES {
            for v in VALUES {
                assert!(m.insert(k, v).unwrap());
                assert!(!m.insert(k, v).unwrap(), "a second insert is not new");
                model.entry(k.to_vec()).or_default().insert(v.to_vec());
            }
        }
    }
    w.commit().unwrap();
    {
        let r = t.db().begin_read().unwrap();
        let m = r.open_multimap("m").unwrap();
        check_view!(m, &model, &PROBES, &mut rng, true, "dense");
    }
    let mut order: Vec<&[u8]> = PROBES.to_vec();
    shuffle(&mut order, &mut rng);
    for (i, k) in order.iter().enumerate() {
        let w = t.db().begin_write().unwrap();
        {
            let mut m = w.open_multimap("m").unwrap();
            if i % 2 == 0 {
                assert_eq!(m.remove_all(k).unwrap(), VALUES.len() as u64);
                assert_eq!(m.remove_all(k).unwrap(), 0);
            } else {
                for v in VALUES.iter().rev() {
                    assert!(m.remove(k, v).unwrap());
                    assert!(!m.remove(k, v).unwrap());
                }
            }
            model.remove(*k);
            assert_eq!(m.count(k).unwrap(), 0);
        }
        w.commit().unwrap();
        let r = t.db().begin_read().unwrap();
        let m = r.open_multimap("m").unwrap();
        check_view!(
            m,
            &model,
            &PROBES,
            &mut rng,
            i % 6 == 0,
            format!("after emptying {k:02x?}")
        );
    }
    assert_eq!(consistent(t.db(), "m"), Model::new());
    assert_clean(t.db());
}

/// Held: the keys of pairs are borrowed unless they hold a zero byte (as
/// documented); `keys` likewise.
#[test]
fn held_keys_borrowed_unless_they_hold_a_zero() {
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        for k in PROBES {
            m.insert(k, b"v").unwrap();
        }
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let m = r.open_multimap("m").unwrap();
    for e in m.iter().unwrap() {
        let (k, _) = e.unwrap();
        let zero = k.contains(&0);
        assert_eq!(matches!(k, Cow::Owned(_)), zero, "{k:02x?}");
    }
    for e in m.keys(..).unwrap() {
        let (k, n) = e.unwrap();
        assert_eq!(n, 1);
        assert_eq!(matches!(k, Cow::Owned(_)), k.contains(&0), "{k:02x?}");
    }
}

// ---------------------------------------------------------------------------
// Keys and values at and past the limit.
// ---------------------------------------------------------------------------

/// Held: at the tree key's limit. A key of 32,767 zero bytes has a head of
/// exactly 64 KiB (each zero costs two bytes) but no pair fits; one of
/// 32,766 zeros fits pairs of a 0- and 1-byte value, not 2. A key of
/// 65,533 other bytes fits only the empty value. Refusals are
/// `KeyTooLarge` and leave the transaction going; lookups, removes and
/// ranges of keys and values past the limit are simply empty, never an
/// error and never a failed transaction.
#[test]
fn held_keys_and_values_at_and_past_the_limit() {
    assert_eq!(MAX_KEY_LEN, 65_536);
    let t = TestDb::new(4096);
    let zeros_head_only = vec![0u8; 32_767];
    let zeros = vec![0u8; 32_766];
    let wide = vec![7u8; 65_533];
    let past = vec![0u8; 40_000];
    let huge_value = vec![1u8; 70_000];
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        let too_large = |r: larch::Result<bool>| matches!(r, Err(Error::KeyTooLarge { .. }));
        assert!(too_large(m.insert(&zeros_head_only, b"")));
        assert!(m.insert(&zeros, b"").unwrap());
        assert!(m.insert(&zeros, b"\0").unwrap());
        assert!(too_large(m.insert(&zeros, b"\0\0")));
        assert!(m.insert(&wide, b"").unwrap());
        assert!(too_large(m.insert(&wide, b"x")));
        assert!(too_large(m.insert(b"k", &huge_value)));
        assert!(too_large(m.insert(&past, b"")));
        // Lookups past the limit: empty, and the transaction goes on.
        assert_eq!(m.count(&zeros_head_only).unwrap(), 0);
        assert_eq!(m.count(&past).unwrap(), 0);
        assert!(!m.contains(&zeros, b"\0\0").unwrap());
        assert!(!m.contains(b"k", &huge_value).unwrap());
        assert!(!m.contains(&past, &huge_value).unwrap());
        assert_eq!(m.get(&past).unwrap().count(), 0);
        assert_eq!(m.get(&zeros_head_only).unwrap().count(), 0);
        assert!(!m.remove(&zeros, b"\0\0").unwrap());
        assert!(!m.remove(&past, &huge_value).unwrap());
        assert_eq!(m.remove_all(&past).unwrap(), 0);
        assert_eq!(m.remove_all(&zeros_head_only).unwrap(), 0);
        // Bounds past the limit: `zeros` lies below `past` (its prefix),
        // `wide` above it.
        let r = (Bound::Included(&zeros[..]), Bound::Included(&past[..]));
        assert_eq!(m.range(r).unwrap().count(), 2, "zeros' two pairs");
        assert_eq!(m.range(r).unwrap().rev().count(), 2, "zeros' two pairs");
        assert_eq!(m.keys(r).unwrap().count(), 1);
        let r = (Bound::Excluded(&past[..]), Bound::Excluded(&huge_value[..]));
        assert_eq!(m.range(r).unwrap().count(), 0);
        let r = (Bound::Excluded(&past[..]), Bound::Unbounded);
        assert_eq!(m.range(r).unwrap().count(), 1, "wide's pair");
        assert_eq!(m.keys(r).unwrap().count(), 1);
        assert_eq!(m.count(&zeros).unwrap(), 2);
        assert_eq!(m.count(&wide).unwrap(), 1);
        assert_eq!(m.len().unwrap(), 3);
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let m = r.open_multimap("m").unwrap();
    let got: Vec<&[u8]> = m.get(&zeros).unwrap().map(|v| v.unwrap()).collect();
    assert_eq!(got, [&b""[..], b"\0"]);
    let keys: Vec<(Vec<u8>, u64)> = m
        .keys(..)
        .unwrap()
        .map(|e| e.map(|(k, n)| (k.into_owned(), n)).unwrap())
        .collect();
    assert_eq!(keys, [(zeros.clone(), 2), (wide.clone(), 1)]);
    assert_eq!(m.get(&wide).unwrap().next_back().unwrap().unwrap(), b"");
    drop(r);
    consistent(t.db(), "m");
    assert_clean(t.db());
}

/// Held: many long values (past a quarter page: long keys of the tree)
/// under one key and its neighbours `k\0` and `k\x01`, at 512-byte pages:
/// inserted and removed in random order, read from both ends, counted,
/// after reopen; the file checks clean with no leak.
#[test]
fn held_long_values_under_one_key() {
    let mut t = TestDb::new(512);
    let mut rng = Rng(9);
    let mut model = Model::new();
    let keys: [&[u8]; 3] = [b"k", b"k\0", b"k\x01"];
    for round in 0..6 {
        let w = t.db().begin_write().unwrap();
        {
            let mut m = w.open_multimap("m").unwrap();
            for _ in 0..60 {
                let k = keys[rng.below(3) as usize];
                let len = [129usize, 500, 1000, 3000, 20_000][rng.below(5) as usize];
                let mut v = rng.bytes(len);
                v[0] %= 3;
                if rng.below(4) == 0
                    && let Some(old) = model.get(k).and_then(|s| s.iter().next().cloned())
                {
                    assert!(m.remove(k, &old).unwrap());
                    model.get_mut(k).unwrap().remove(&old);
                } else {
                    let new = model.entry(k.to_vec()).or_default().insert(v.clone());
                    assert_eq!(m.insert(k, &v).unwrap(), new);
                }
                model.retain(|_, s| !s.is_empty());
            }
            if round == 4 {
                let n = model.remove(&b"k"[..]).map_or(0, |s| s.len() as u64);
                assert_eq!(m.remove_all(b"k").unwrap(), n);
            }
        }
        w.commit().unwrap();
        t.reopen();
        let r = t.db().begin_read().unwrap();
        let m = r.open_multimap("m").unwrap();
        check_view!(
            m,
            &model,
            &keys,
            &mut rng,
            true,
            format!("long values round {round}")
        );
        drop(r);
        assert_clean(t.db());
    }
}

// ---------------------------------------------------------------------------
// Crafted trees.
// ---------------------------------------------------------------------------

/// The catalog leaf of the newest commit, with its seal list dropped (so
/// that edited pages do not set the commit aside): the leaf's page, and
/// the offset in the image of table `name`'s catalog value.
fn catalog_value(image: &mut [u8], ps: usize, name: &[u8]) -> (u64, usize) {
    let slot = newest_slot(image, ps);
    let mut root = (0, 0);
    assert!(edit_meta(image, ps, slot, |m| {
        root = (m.catalog_root, m.catalog_depth);
        m.seal.clear();
    }));
    assert_eq!(root.1, 1, "a catalog of one leaf");
    let base = root.0 as usize * ps;
    let page = &image[base..base + ps];
    let u16_at = |at: usize| u16::from_le_bytes([page[at], page[at + 1]]) as usize;
    for i in 0..u16_at(2) {
        let cell = u16_at(24 + 2 * i);
        let klen = u16_at(cell + 2);
        if &page[cell + 8..cell + 8 + klen] == name {
            assert_eq!(page[cell], 0, "an inline catalog value");
            return (root.0, base + cell + 8 + klen);
        }
    }
    panic!("no catalog cell for {name:?}");
}

/// A file holding the tree `entries` as multimap "m" (written through the
/// byte API, then the catalog flag set to MULTIMAP in the file), beside a
/// byte table "u".
fn crafted(dir: &Path, name: &str, entries: &[(Vec<u8>, Vec<u8>)]) -> std::path::PathBuf {
    let path = dir.join(name);
    let db = open_at(&path, 4096).unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("m").unwrap();
        for (k, v) in entries {
            t.insert(k, v).unwrap();
        }
    }
    w.open_table("u").unwrap().insert(b"k", b"v").unwrap();
    w.commit().unwrap();
    drop(db);
    let mut image = std::fs::read(&path).unwrap();
    let (leaf, value) = catalog_value(&mut image, 4096, b"m");
    assert_eq!(image[value + 20], 0, "a byte table's flags");
    image[value + 20] = 2;
    restamp(&mut image, 4096, leaf);
    std::fs::write(&path, &image).unwrap();
    path
}

/// The valid tree of "a" -> {x, y}, "b" -> {z}.
fn valid_tree() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (Vec::new(), 3u64.to_le_bytes().to_vec()),
        (esc(b"a"), 2u64.to_le_bytes().to_vec()),
        (pair_key(b"a", b"x"), Vec::new()),
        (pair_key(b"a", b"y"), Vec::new()),
        (esc(b"b"), 1u64.to_le_bytes().to_vec()),
        (pair_key(b"b", b"z"), Vec::new()),
    ]
}

type Craft = fn(&mut Vec<(Vec<u8>, Vec<u8>)>);

fn set(tree: &mut Vec<(Vec<u8>, Vec<u8>)>, k: Vec<u8>, v: Vec<u8>) {
    tree.retain(|(x, _)| *x != k);
    tree.push((k, v));
}

fn crafts() -> Vec<(&'static str, Craft)> {
    vec![
        ("valid", |_| {}),
        ("head of a is 7 bytes", |t| {
            set(t, esc(b"a"), vec![2, 0, 0, 0, 0, 0, 0])
        }),
        ("head of a is 9 bytes", |t| set(t, esc(b"a"), vec![2; 9])),
        ("head of a is empty", |t| set(t, esc(b"a"), Vec::new())),
        ("head of a missing", |t| t.retain(|(k, _)| *k != esc(b"a"))),
        ("head of a says 0", |t| {
            set(t, esc(b"a"), 0u64.to_le_bytes().to_vec())
        }),
        ("head of a says 1", |t| {
            set(t, esc(b"a"), 1u64.to_le_bytes().to_vec())
        }),
        ("head of a says u64::MAX", |t| {
            set(t, esc(b"a"), u64::MAX.to_le_bytes().to_vec())
        }),
        ("total missing", |t| t.retain(|(k, _)| !k.is_empty())),
        ("total is 4 bytes", |t| set(t, Vec::new(), vec![3, 0, 0, 0])),
        ("total says 1", |t| {
            set(t, Vec::new(), 1u64.to_le_bytes().to_vec())
        }),
        ("entry esc(a) 02", |t| {
            let mut k = esc(b"a");
            k.push(2);
            set(t, k, Vec::new())
        }),
        ("entry esc(a) ff q", |t| {
            let mut k = esc(b"a");
            k.extend_from_slice(b"\xffq");
            set(t, k, Vec::new())
        }),
        ("entry unterminated 'aa'", |t| {
            set(t, b"aa".to_vec(), Vec::new())
        }),
        ("entry bad escape a 00 05", |t| {
            set(t, b"a\0\x05".to_vec(), Vec::new())
        }),
        ("entry a lone zero", |t| set(t, vec![0], Vec::new())),
        ("pair with a value", |t| {
            set(t, pair_key(b"a", b"x"), b"junk".to_vec())
        }),
        ("pair b without head, total 3", |t| {
            t.retain(|(k, _)| *k != esc(b"b"))
        }),
    ]
}

/// Every read of the crafted multimap, each `Ok` or `Corrupted` (anything
/// else is returned as a problem; a panic is caught by the caller).
fn read_everything(m: &Multimap<'_>) -> Vec<String> {
    let mut bad = Vec::new();
    let mut note = |what: &str, e: Error| {
        if !matches!(e, Error::Corrupted { .. }) {
            bad.push(format!("{what}: {e:?}"));
        }
    };
    if let Err(e) = m.len() {
        note("len", e);
    }
    for k in [&b"a"[..], b"b", b"", b"c"] {
        if let Err(e) = m.count(k) {
            note("count", e);
        }
        let _ = m.contains(k, b"x").map_err(|e| note("contains", e));
        for e in m.get(k).unwrap() {
            if let Err(e) = e {
                note("get", e);
            }
        }
        for e in m.get(k).unwrap().rev() {
            if let Err(e) = e {
                note("get rev", e);
            }
        }
    }
    let ranges: [Bounds<'_>; 4] = [
        (Bound::Unbounded, Bound::Unbounded),
        (Bound::Included(b"a"), Bound::Included(b"a")),
        (Bound::Excluded(b"a"), Bound::Unbounded),
        (Bound::Unbounded, Bound::Excluded(b"b")),
    ];
    for r in ranges {
        for e in m.range(r).unwrap() {
            if let Err(e) = e {
                note("range", e);
                break;
            }
        }
        for e in m.range(r).unwrap().rev() {
            if let Err(e) = e {
                note("range rev", e);
                break;
            }
        }
        for e in m.keys(r).unwrap() {
            if let Err(e) = e {
                note("keys", e);
                break;
            }
        }
    }
    bad
}

/// What the committed crafted multimap shows of "a" and the total: the
/// pairs through `get` (no head involved), `count`, `len`.
type Shown = (
    Vec<Vec<u8>>,
    Option<u64>,
    Option<u64>,
    Vec<Vec<u8>>,
    Option<u64>,
);

fn shown(db: &Database) -> Shown {
    let r = db.begin_read().unwrap();
    let m = r.open_multimap("m").unwrap();
    let values = |k: &[u8]| -> Vec<Vec<u8>> {
        m.get(k)
            .unwrap()
            .filter_map(|v| v.ok().map(<[u8]>::to_vec))
            .collect()
    };
    (
        values(b"a"),
        m.count(b"a").ok(),
        m.len().ok(),
        values(b"b"),
        m.count(b"b").ok(),
    )
}

/// Held: reads of crafted multimaps (heads and totals that are not 8
/// bytes, missing or lying; entries that are neither head nor pair; a pair
/// with a value) are `Ok` or `Corrupted`, never a panic or another error.
#[test]
fn held_crafted_trees_read_as_corrupted_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for (i, (name, craft)) in crafts().into_iter().enumerate() {
        let mut tree = valid_tree();
        craft(&mut tree);
        let path = crafted(dir.path(), &format!("c{i}"), &tree);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let db = open_at(&path, 4096).unwrap();
            let r = db.begin_read().unwrap();
            assert!(matches!(
                r.open_table("m"),
                Err(Error::TableTypeMismatch { .. })
            ));
            let m = r.open_multimap("m").unwrap();
            let bad = read_everything(&m);
            // `check` walks the multimap's layout too: every craft but the
            // valid tree breaks it, and is reported.
            let mut bad = bad;
            let clean = db.check_report().unwrap().errors.is_empty();
            if clean != (name == "valid") {
                bad.push(format!("check found the layout clean: {clean}"));
            }
            bad
        }));
        match outcome {
            Ok(bad) if bad.is_empty() => {}
            Ok(bad) => problems.push(format!("{name}: {bad:?}")),
            Err(_) => problems.push(format!("{name}: panicked")),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Defect: a change to a crafted multimap that fails with `Corrupted`
/// after the tree changed (a head or total that is not 8 bytes, or a count
/// that would go below zero, found after the pair was inserted or removed)
/// does not fail the transaction: it commits, and the committed table then
/// holds the pair change without the count change. `MultimapMut`'s docs
/// say errors fail the transaction as `TableMut`'s do; `add` returns
/// `count_of`'s and its own `corrupted(..)` without going through the
/// table's failure path.
///
/// For each craft and each change (insert a new value of "a", remove a
/// value of "a", `remove_all("a")`, insert into and remove from "b"):
/// either the change succeeds, or it errs and then the commit is refused,
/// or, should the commit go through, what the table shows is what it
/// showed before.
#[test]
fn defect_corrupted_mid_change_commits_half_a_change() {
    type Change = fn(&mut larch::MultimapMut<'_>) -> larch::Result<()>;
    let changes: [(&str, Change); 5] = [
        ("insert(a, w)", |m| m.insert(b"a", b"w").map(drop)),
        ("remove(a, x)", |m| m.remove(b"a", b"x").map(drop)),
        ("remove_all(a)", |m| m.remove_all(b"a").map(drop)),
        ("insert(b, n)", |m| m.insert(b"b", b"n").map(drop)),
        ("remove(b, z)", |m| m.remove(b"b", b"z").map(drop)),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for (i, (name, craft)) in crafts().into_iter().enumerate() {
        for (j, (what, change)) in changes.iter().enumerate() {
            let mut tree = valid_tree();
            craft(&mut tree);
            let path = crafted(dir.path(), &format!("c{i}-{j}"), &tree);
            let outcome = catch_unwind(AssertUnwindSafe(|| -> Option<String> {
                let db = open_at(&path, 4096).unwrap();
                let before = shown(&db);
                let w = db.begin_write().unwrap();
                let r = change(&mut w.open_multimap("m").unwrap());
                let err = match r {
                    Ok(()) => {
                        w.commit().unwrap();
                        return None;
                    }
                    Err(e) => e,
                };
                if !matches!(err, Error::Corrupted { .. }) {
                    return Some(format!("{what}: {err:?}"));
                }
                match w.commit() {
                    Err(Error::TxnFailed) => None,
                    Err(e) => Some(format!("{what}: {err}; commit: {e:?}")),
                    Ok(()) => {
                        let after = shown(&db);
                        (after != before).then(|| {
                            format!(
                                "{what} returned `{err}` yet the commit went through with \
                                 half the change: (values of a, count(a), len, values of b, \
                                 count(b)) {before:?} -> {after:?}"
                            )
                        })
                    }
                }
            }));
            match outcome {
                Ok(None) => {}
                Ok(Some(p)) => problems.push(format!("{name}: {p}")),
                Err(_) => problems.push(format!("{name}: {what} panicked")),
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---------------------------------------------------------------------------
// MapFull, I/O faults, power loss.
// ---------------------------------------------------------------------------

/// Held: writers of multimaps run into `MapFull` at every point of an
/// insert (the pair, the head, the total: values of several lengths, long
/// ones included, and each failing transaction stops somewhere else):
/// the error fails the transaction (every later call, commit included, is
/// `TxnFailed`), and the committed table keeps its counts in agreement
/// with its pairs. A transaction that removes from a full file, and one
/// that `remove_all`s, commit or fail the same way.
#[test]
fn held_map_full_mid_insert_keeps_committed_counts() {
    for (ps, pages) in [(512u32, 48u64), (512, 80), (4096, 16), (4096, 40)] {
        let mut rng = Rng(u64::from(ps) * pages);
        let o = Options::new()
            .page_size(ps)
            .map_size(8 * u64::from(ps))
            .max_size(pages * u64::from(ps));
        let t = TestDb::with_options(o);
        let mut model = Model::new();
        let mut fails = 0;
        for attempt in 0..40 {
            let mut pending = model.clone();
            let w = t.db().begin_write().unwrap();
            let failed = {
                let mut m = w.open_multimap("m").unwrap();
                let mut failed = false;
                for _ in 0..(5 + attempt) {
                    let k = PROBES[rng.below(6) as usize];
                    let len =
                        [0, 3, 40, ps as usize / 4 + 12, 2 * ps as usize][rng.below(5) as usize];
                    let v = rng.bytes(len);
                    if rng.below(5) == 0 {
                        let n = pending.remove(k).map_or(0, |s| s.len() as u64);
                        match m.remove_all(k) {
                            Ok(got) => assert_eq!(got, n),
                            Err(Error::MapFull { .. }) => {
                                failed = true;
                                break;
                            }
                            Err(e) => panic!("remove_all: {e:?}"),
                        }
                        continue;
                    }
                    match m.insert(k, &v) {
                        Ok(new) => {
                            assert_eq!(new, pending.entry(k.to_vec()).or_default().insert(v))
                        }
                        Err(Error::MapFull { .. }) => {
                            failed = true;
                            break;
                        }
                        Err(e) => panic!("insert: {e:?}"),
                    }
                }
                if failed {
                    assert!(matches!(m.count(b"k"), Err(Error::TxnFailed)));
                    assert!(matches!(m.len(), Err(Error::TxnFailed)));
                    assert!(matches!(m.insert(b"k", b"x"), Err(Error::TxnFailed)));
                }
                failed
            };
            pending.retain(|_, s| !s.is_empty());
            if failed {
                fails += 1;
                assert!(matches!(w.commit(), Err(Error::TxnFailed)));
            } else {
                match w.commit() {
                    Ok(()) => model = pending,
                    Err(Error::MapFull { .. }) => fails += 1,
                    Err(e) => panic!("commit: {e:?}"),
                }
            }
            assert_eq!(consistent(t.db(), "m"), model, "attempt {attempt}");
            // Make room now and then: a writer of a full file removes.
            if attempt % 7 == 6 {
                let w = t.db().begin_write().unwrap();
                let r = {
                    let mut m = w.open_multimap("m").unwrap();
                    let k = model.keys().next().cloned();
                    match k {
                        Some(k) => m.remove_all(&k).map(|n| (k, n)),
                        None => Ok((Vec::new(), 0)),
                    }
                };
                match r {
                    Ok((k, n)) => {
                        if w.commit().is_ok() {
                            assert_eq!(model.remove(&k).map_or(0, |s| s.len() as u64), n);
                        }
                    }
                    Err(Error::MapFull { .. }) => {
                        assert!(matches!(w.commit(), Err(Error::TxnFailed)))
                    }
                    Err(e) => panic!("{e:?}"),
                }
                assert_eq!(consistent(t.db(), "m"), model);
            }
        }
        eprintln!("ps {ps} max {pages} pages: {fails} failed transactions");
        assert!(fails >= 3, "ps {ps} pages {pages}: only {fails} failures");
        assert_clean(t.db());
    }
}

/// One commit of the multimap workload, by step: long values, keys with
/// zero bytes, removes, `remove_all`, a delete and a recreate.
fn workload_step(db: &Database, step: u32) {
    let mut w = db.begin_write().unwrap();
    {
        match step % 6 {
            5 => {
                assert!(w.delete_table("m").unwrap());
            }
            _ => {
                let mut m = w.open_multimap("m").unwrap();
                for i in 0..(20 + step * 7) {
                    let k = PROBES[((i + step) % PROBES.len() as u32) as usize];
                    let len = [1usize, 9, 200, 700][(i % 4) as usize];
                    let v = common::seeded_bytes(u64::from(step * 1000 + i), len);
                    m.insert(k, &v).unwrap();
                    if i % 5 == 0 {
                        m.remove(k, &v).unwrap();
                    }
                }
                if step % 3 == 2 {
                    m.remove_all(b"k").unwrap();
                    m.remove_all(b"").unwrap();
                }
            }
        }
    }
    w.commit().unwrap();
}

/// Held: a power loss at every sync of multimap commits (long values,
/// removes, `remove_all`, the table deleted and recreated), the pending
/// writes lost, made or torn: every image opens to the last acknowledged
/// commit or the one in flight, with counts in agreement with pairs and
/// `check` clean.
#[test]
fn held_power_loss_during_multimap_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(open_at(&path, 512).unwrap());
    use common::crash_images::{CrashImages, crash_images};
    let CrashImages {
        recorder,
        images,
        acked,
    } = crash_images(2);
    let rec = recorder.clone();
    let o = Options::new().page_size(512).storage(move |f| rec.wrap(f));
    // SAFETY: the test owns the file.
    let db = unsafe { o.open(&path) }.unwrap();
    let mut states = vec![consistent(&db, "m")];
    for step in 0..8u32 {
        workload_step(&db, step);
        states.push(consistent(&db, "m"));
        *acked.lock().unwrap() += 1;
    }
    drop(db);
    let images = std::mem::take(&mut *images.lock().unwrap());
    assert!(images.len() > 20, "{}", images.len());
    for (n, (image, k)) in images.iter().enumerate() {
        let p = dir.path().join(format!("crash{n}"));
        std::fs::write(&p, image).unwrap();
        let db = common::open(&p, 512);
        let got = consistent(&db, "m");
        assert!(
            got == states[*k] || got == states[(k + 1).min(states.len() - 1)],
            "image {n}: not commit {k} or the next"
        );
        assert_clean(&db);
        drop(db);
        let _ = std::fs::remove_file(&p);
    }
}

/// Held: an I/O fault (EIO, ENOSPC, a short write; writes and syncs) in
/// the middle of a multimap commit: the commit errs, and the reopened file
/// holds the commit before, counts in agreement with pairs, clean.
#[test]
fn held_io_fault_mid_multimap_commit() {
    use larch::testing::faults::{Fault, Kind, Trap};
    for (kind, fault, nth) in [
        (Kind::Write, Fault::Eio, 1),
        (Kind::Write, Fault::Short, 2),
        (Kind::Write, Fault::NoSpace, 3),
        (Kind::Sync, Fault::Eio, 1),
        (Kind::Sync, Fault::Eio, 2),
        (Kind::Resize, Fault::NoSpace, 1),
    ] {
        let trap = Trap::new();
        let hook = trap.clone();
        let mut t = TestDb::with_options(
            common::small_map(512).storage(move |file| Ok(hook.storage(file))),
        );
        workload_step(t.db(), 0);
        workload_step(t.db(), 1);
        let before = consistent(t.db(), "m");
        let id = t.db().last_txn_id();
        trap.arm(kind, fault, nth);
        let w = t.db().begin_write().unwrap();
        {
            let mut m = w.open_multimap("m").unwrap();
            for i in 0..400u32 {
                m.insert(b"many", &i.to_be_bytes()).unwrap();
            }
            m.insert(b"k\0", &vec![3u8; 5000]).unwrap();
            m.remove_all(b"k").unwrap();
        }
        let r = w.commit();
        let fired = trap.fired() > 0;
        // A commit that needed no resize meets no resize fault.
        assert_eq!(r.is_err(), fired, "{kind:?} {fault:?} {nth}: {r:?}");
        trap.disarm();
        let after = consistent(t.db(), "m");
        t.reopen();
        let db = t.db();
        if fired {
            assert_eq!(db.last_txn_id(), id, "{kind:?} {fault:?} {nth}");
            assert_eq!(consistent(db, "m"), before, "{kind:?} {fault:?} {nth}");
        } else {
            assert_eq!(consistent(db, "m"), after, "{kind:?} {fault:?} {nth}");
        }
        assert_clean(db);
    }
}

// ---------------------------------------------------------------------------
// Compaction, copies, the kinds kept apart.
// ---------------------------------------------------------------------------

/// Held: after churn (long values, `remove_all`, a byte table deleted
/// beside), `compact` moves the multimap's pages and the compacted and
/// plain copies keep its kind and contents, counts included; an empty
/// multimap stays one through copies and reopens.
#[test]
fn held_compaction_and_copies_keep_multimaps() {
    let mut t = TestDb::new(512);
    let mut rng = Rng(5);
    let w = t.db().begin_write().unwrap();
    w.open_multimap("empty").unwrap();
    {
        let mut b = w.open_table("bulk").unwrap();
        for i in 0..3000u32 {
            b.insert(&i.to_be_bytes(), &[0u8; 100]).unwrap();
        }
    }
    w.commit().unwrap();
    for step in 0..6 {
        workload_step(t.db(), step);
    }
    let mut w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        for i in 0..200u32 {
            m.insert(b"k\0\xff", &rng.bytes(50 + (i as usize % 3) * 400))
                .unwrap();
        }
    }
    assert!(w.delete_table("bulk").unwrap());
    w.commit().unwrap();
    let want = consistent(t.db(), "m");
    assert!(!want.is_empty());
    let shrunk = t.db().compact().unwrap();
    assert!(shrunk > 0, "compaction moved nothing");
    assert_eq!(consistent(t.db(), "m"), want);
    t.reopen();
    assert_eq!(consistent(t.db(), "m"), want);
    assert_clean(t.db());
    let r = t.db().begin_read().unwrap();
    for compact in [true, false] {
        let copy = t.dir.path().join(format!("copy-{compact}"));
        r.copy_to(&copy, compact).unwrap();
        let c = open_at(&copy, 512).unwrap();
        assert_eq!(consistent(&c, "m"), want, "copy (compact {compact})");
        let cr = c.begin_read().unwrap();
        for name in ["m", "empty"] {
            assert!(
                matches!(cr.open_table(name), Err(Error::TableTypeMismatch { .. })),
                "{name} in the copy (compact {compact})"
            );
        }
        assert_eq!(cr.open_multimap("empty").unwrap().len().unwrap(), 0);
        drop(cr);
        assert_clean(&c);
    }
}

/// Held: the kinds stay apart in every path: a multimap refuses the byte
/// API (`open_table`, `open_existing_table`) and typed definitions in both
/// transactions, even created in the same transaction; a refusal leaves
/// the transaction going; `delete_table` of a multimap (committed, or made
/// in the transaction) lets the name be reused as a byte table, and vice
/// versa, with fresh counts; an aborted creation leaves nothing; an empty
/// multimap committed stays one after reopen.
#[test]
fn held_kinds_stay_apart_through_delete_recreate_and_abort() {
    let mut t = TestDb::new(4096);
    let def: TableDefinition<u64, u64> = TableDefinition::new("m");
    let mismatch = |e: Option<Error>| matches!(e, Some(Error::TableTypeMismatch { .. }));
    // Made and refused in the same transaction.
    let w = t.db().begin_write().unwrap();
    w.open_multimap("m").unwrap().insert(b"k", b"v").unwrap();
    assert!(mismatch(w.open_table("m").err()));
    assert!(mismatch(w.open_existing_table("m").err()));
    assert!(mismatch(w.open_typed(def).err()));
    w.open_table("bytes").unwrap().insert(b"k", b"v").unwrap();
    assert!(mismatch(w.open_multimap("bytes").err()));
    w.open_multimap("empty").unwrap();
    w.commit().unwrap();
    t.reopen();
    {
        let r = t.db().begin_read().unwrap();
        assert!(mismatch(r.open_table("m").err()));
        assert!(mismatch(r.open_typed(def).err()));
        assert!(mismatch(r.open_table("empty").err()));
        assert_eq!(r.open_multimap("empty").unwrap().len().unwrap(), 0);
        assert_eq!(r.open_multimap("m").unwrap().count(b"k").unwrap(), 1);
    }
    // Deleted, then the name reused as bytes in the same transaction.
    let mut w = t.db().begin_write().unwrap();
    w.open_multimap("m").unwrap().insert(b"k", b"w").unwrap();
    assert!(w.delete_table("m").unwrap());
    w.open_table("m").unwrap().insert(b"plain", b"1").unwrap();
    assert!(mismatch(w.open_multimap("m").err()));
    w.commit().unwrap();
    {
        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("m").unwrap();
        assert_eq!(tab.len(), 1);
        assert!(mismatch(r.open_multimap("m").err()));
    }
    // And back: bytes deleted, a multimap with fresh counts.
    let mut w = t.db().begin_write().unwrap();
    assert!(w.delete_table("m").unwrap());
    {
        let mut m = w.open_multimap("m").unwrap();
        assert_eq!(m.len().unwrap(), 0);
        assert_eq!(m.count(b"plain").unwrap(), 0);
        m.insert(b"x", b"1").unwrap();
    }
    w.commit().unwrap();
    assert_eq!(consistent(t.db(), "m").len(), 1);
    assert_eq!(consistent(t.db(), "m")[&b"x"[..]].len(), 1);
    // A creation aborted leaves nothing; the name then takes any kind.
    let w = t.db().begin_write().unwrap();
    w.open_multimap("gone").unwrap().insert(b"a", b"b").unwrap();
    w.abort();
    let w = t.db().begin_write().unwrap();
    assert!(!w.table_exists("gone").unwrap());
    w.open_table("gone").unwrap().insert(b"a", b"b").unwrap();
    w.commit().unwrap();
    // The multimap committed earlier, deleted in a transaction that aborts,
    // is still there with its counts.
    let mut w = t.db().begin_write().unwrap();
    assert!(w.delete_table("m").unwrap());
    w.abort();
    assert_eq!(consistent(t.db(), "m")[&b"x"[..]].len(), 1);
    assert_clean(t.db());
}

/// Held: values and keys read in place from a read transaction stay what
/// they were while a writer grows the file past its maps (remaps) and
/// rewrites the same keys.
#[test]
fn held_zero_copy_values_survive_remaps() {
    let t = TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        for i in 0..50u32 {
            m.insert(
                b"k",
                &common::seeded_bytes(u64::from(i), 30 + i as usize * 20),
            )
            .unwrap();
        }
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let m = r.open_multimap("m").unwrap();
    let held: Vec<&[u8]> = m.get(b"k").unwrap().map(|v| v.unwrap()).collect();
    let copies: Vec<Vec<u8>> = held.iter().map(|v| v.to_vec()).collect();
    let pairs: Vec<(Cow<'_, [u8]>, &[u8])> = m.iter().unwrap().map(|e| e.unwrap()).collect();
    for round in 0..4u64 {
        let w = t.db().begin_write().unwrap();
        {
            let mut mm = w.open_multimap("m").unwrap();
            mm.remove_all(b"k").unwrap();
            for i in 0..400u64 {
                mm.insert(b"k", &common::seeded_bytes(round * 1000 + i, 300))
                    .unwrap();
            }
        }
        w.commit().unwrap();
    }
    assert!(
        t.file_size() > 16 * 512 * 8,
        "the file grew past its first map"
    );
    for (h, c) in held.iter().zip(&copies) {
        assert_eq!(h, c);
    }
    for ((k, v), c) in pairs.iter().zip(&copies) {
        assert_eq!(&k[..], b"k");
        assert_eq!(v, c);
    }
    assert_eq!(m.count(b"k").unwrap(), 50);
}

// ---------------------------------------------------------------------------
// A key with very many values.
// ---------------------------------------------------------------------------

/// Held (a timing run, ignored in the suite: run with `--release --ignored
/// --nocapture`): a key with a million values beside its neighbours; the
/// time of count, first and last value, contains, keys, one remove and a
/// remove_all, against the time of a fill.
#[test]
#[ignore]
fn timing_a_key_with_a_million_values() {
    use std::time::Instant;
    let t = TestDb::new(4096);
    let n: u32 = 1_000_000;
    let start = Instant::now();
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        m.insert(b"many\0", b"after").unwrap();
        m.insert(b"man", b"before").unwrap();
        for i in 0..n {
            m.insert(b"many", &i.to_be_bytes()).unwrap();
        }
    }
    w.commit().unwrap();
    eprintln!("fill: {:?}", start.elapsed());
    let r = t.db().begin_read().unwrap();
    let m = r.open_multimap("m").unwrap();
    let time = |what: &str, f: &mut dyn FnMut()| {
        let s = Instant::now();
        for _ in 0..1000 {
            f();
        }
        eprintln!("{what}: {:?} each", s.elapsed() / 1000);
    };
    time("count", &mut || {
        assert_eq!(m.count(b"many").unwrap(), u64::from(n))
    });
    time("len", &mut || {
        assert_eq!(m.len().unwrap(), u64::from(n) + 2)
    });
    time("first", &mut || {
        assert_eq!(
            m.get(b"many").unwrap().next().unwrap().unwrap(),
            0u32.to_be_bytes()
        )
    });
    time("last", &mut || {
        let last = m.get(b"many").unwrap().next_back().unwrap().unwrap();
        assert_eq!(last, (n - 1).to_be_bytes())
    });
    time("contains", &mut || {
        assert!(m.contains(b"many", &777_777u32.to_be_bytes()).unwrap())
    });
    time("keys", &mut || assert_eq!(m.keys(..).unwrap().count(), 3));
    time("range of the next key", &mut || {
        let r = (Bound::Excluded(&b"many"[..]), Bound::Unbounded);
        assert_eq!(m.range(r).unwrap().count(), 1)
    });
    drop(r);
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        let s = Instant::now();
        assert!(m.remove(b"many", &500_000u32.to_be_bytes()).unwrap());
        eprintln!("one remove: {:?}", s.elapsed());
        let rss = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let line = |key: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(key))
                    .unwrap_or("")
                    .to_owned()
            };
            format!("{} / {}", line("VmRSS"), line("VmHWM"))
        };
        eprintln!("before remove_all: {}", rss());
        let s = Instant::now();
        assert_eq!(m.remove_all(b"many").unwrap(), u64::from(n) - 1);
        eprintln!("remove_all: {:?}; after: {}", s.elapsed(), rss());
        assert_eq!(m.len().unwrap(), 2);
    }
    w.commit().unwrap();
    assert_eq!(consistent(t.db(), "m").len(), 2);
}

/// Held: a key with 200,000 values is one descent for `count`, its first
/// and last value and `keys` (the same bounded number of calls however
/// many values: checked by ratio against a key with 2,000, generously),
/// and `remove_all` of it leaves the neighbours and counts right.
#[test]
fn held_a_key_with_many_values_stays_cheap() {
    use std::time::Instant;
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        for i in 0..200_000u32 {
            m.insert(b"big", &i.to_be_bytes()).unwrap();
        }
        for i in 0..2_000u32 {
            m.insert(b"small", &i.to_be_bytes()).unwrap();
        }
        m.insert(b"big\0", b"next").unwrap();
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let m = r.open_multimap("m").unwrap();
    let cost = |k: &[u8]| {
        let s = Instant::now();
        for _ in 0..2000 {
            m.count(k).unwrap();
            m.get(k).unwrap().next().unwrap().unwrap();
            m.get(k).unwrap().next_back().unwrap().unwrap();
            m.keys((Bound::Included(k), Bound::Included(k)))
                .unwrap()
                .count();
        }
        s.elapsed()
    };
    let (big, small) = (cost(b"big"), cost(b"small"));
    assert!(
        big < small * 20 + std::time::Duration::from_millis(50),
        "a key of 200,000 values costs {big:?}, one of 2,000 {small:?}"
    );
    drop(r);
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        assert_eq!(m.remove_all(b"big").unwrap(), 200_000);
        assert_eq!(m.count(b"big\0").unwrap(), 1);
        assert_eq!(m.count(b"small").unwrap(), 2000);
    }
    w.commit().unwrap();
    assert_eq!(consistent(t.db(), "m").len(), 2);
}

/// Minor defect: `insert` of a pair that is already there returns `false`
/// ("the key had it already, and nothing changed") but rewrites the pair's
/// leaf path (the tree insert replaces the entry), so a transaction whose
/// only call is such an insert is not empty: it writes and syncs at
/// commit, and in a full file (`max_size` reached) its commit fails with
/// `MapFull`, where a transaction whose only call is a `remove` of an
/// absent pair commits. (LMDB's `MDB_NODUPDATA` reports the pair without
/// writing.)
#[test]
fn defect_minor_noop_insert_rewrites_pages() {
    let o = Options::new()
        .page_size(4096)
        .map_size(8 * 4096)
        .max_size(16 * 4096);
    let t = TestDb::with_options(o);
    let mut i = 0u32;
    // Fill the file: batches, then single pairs, until two single pairs in
    // a row do not fit.
    let mut misses = 0;
    for round in 0..400 {
        let batch = if misses > 0 || round > 150 { 1 } else { 20 };
        let w = t.db().begin_write().unwrap();
        let r = {
            let mut m = w.open_multimap("m").unwrap();
            (0..batch).try_for_each(|_| {
                i += 1;
                let len = if batch == 1 { 1 } else { 300 };
                m.insert(b"k", &common::seeded_bytes(u64::from(i), len))
                    .map(drop)
            })
        };
        match r.and_then(|()| w.commit()) {
            Ok(()) if batch == 1 => misses = 0,
            Ok(()) => {}
            Err(Error::MapFull { .. }) | Err(Error::TxnFailed) => {
                misses += 1;
                if misses == 3 {
                    break;
                }
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(misses, 3, "the file never filled");
    let before = consistent(t.db(), "m");
    let v = before[&b"k"[..]].iter().next().unwrap().clone();
    let id = t.db().last_txn_id();
    // A remove of an absent pair: an empty transaction.
    let w = t.db().begin_write().unwrap();
    assert!(
        !w.open_multimap("m")
            .unwrap()
            .remove(b"k", b"absent")
            .unwrap()
    );
    let removed = w.commit();
    // An insert of a pair already there.
    let w = t.db().begin_write().unwrap();
    assert!(!w.open_multimap("m").unwrap().insert(b"k", &v).unwrap());
    let inserted = w.commit();
    assert_eq!(consistent(t.db(), "m"), before);
    assert!(removed.is_ok(), "{removed:?}");
    assert!(
        inserted.is_ok(),
        "a transaction whose only change is an insert of a pair already there \
         (returned false) fails to commit in a full file: {inserted:?} (last txn {id} -> {})",
        t.db().last_txn_id()
    );
}

/// Held: keys longer than a quarter page (their heads and pairs long keys
/// of the tree, ordered by a stored prefix and then the whole key) that
/// share a 1,500-byte prefix and end in the probes' tricky tails, at
/// 512-byte pages: every value, every bound combination, both ends.
#[test]
fn held_long_keys_sharing_a_prefix_every_bound() {
    let t = TestDb::new(512);
    let mut rng = Rng(15);
    let prefix = vec![b'p'; 1500];
    let keys: Vec<Vec<u8>> = PROBES
        .iter()
        .map(|tail| [&prefix[..], tail].concat())
        .collect();
    let probes: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let mut model = Model::new();
    let w = t.db().begin_write().unwrap();
    {
        let mut m = w.open_multimap("m").unwrap();
        for (i, k) in keys.iter().enumerate() {
            for v in VALUES.iter().skip(i % 3) {
                assert!(m.insert(k, v).unwrap());
                model.entry(k.clone()).or_default().insert(v.to_vec());
            }
        }
        check_view!(m, &model, &probes, &mut rng, false, "long keys (write txn)");
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let m = r.open_multimap("m").unwrap();
    check_view!(m, &model, &probes, &mut rng, true, "long keys");
    drop(r);
    assert_clean(t.db());
}
