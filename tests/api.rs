//! The API that storage layers reach for first: range and prefix deletes,
//! prefix iteration, asking whether a table exists without creating it, and
//! larch errors as `std::io::Error`.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use common::heap_image::assert_clean;
use common::{Rng, TestDb, shuffle};
use larch::Error;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keys over several leaves and levels: short ones, some starting with
/// 0xFF bytes, and long ones sharing their first bytes.
fn keys(n: u32, ps: u32) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for i in 0..n {
        keys.push(format!("k{i:06}").into_bytes());
        if i % 50 == 0 {
            let mut k = vec![0xFF; 1 + (i as usize / 50) % 3];
            k.extend_from_slice(&i.to_be_bytes());
            keys.push(k);
        }
        if i % 97 == 0 {
            let mut k = vec![b'k'; ps as usize / 4 + 10];
            k.extend_from_slice(&i.to_be_bytes());
            keys.push(k);
        }
    }
    keys
}

fn filled(ps: u32, n: u32, rng: &mut Rng) -> (TestDb, Model) {
    let t = TestDb::new(ps);
    let mut ks = keys(n, ps);
    shuffle(&mut ks, rng);
    let mut model = Model::new();
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for k in ks {
            let v = common::seeded_bytes(rng.below(1 << 20), rng.below(300) as usize);
            tab.insert(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
    w.commit().unwrap();
    (t, model)
}

fn holds(db: &larch::Database, model: &Model) {
    let r = db.begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    assert_eq!(tab.len(), model.len() as u64);
    let got = common::collect(tab.iter().unwrap());
    let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(got == want, "{} entries against {}", got.len(), want.len());
}

/// The reader `r`, taken before a change, still reads `before` whole.
fn still_holds(r: larch::ReadTxn, before: &Model) {
    let old = common::collect(r.open_table("t").unwrap().iter().unwrap());
    assert!(old.iter().map(|(k, v)| (k, v)).eq(before.iter()));
}

/// Every kind of bound, inside and across leaves, at both page sizes: the
/// count returned and what is left agree with a `BTreeMap`, inside the
/// transaction and after the commit, and `check` is clean (the places of
/// removed long keys are given back).
#[test]
fn remove_range_removes_exactly_the_range() {
    for ps in [512u32, 4096] {
        let mut rng = Rng(0xA91 + u64::from(ps));
        let (t, mut model) = filled(ps, 4000, &mut rng);
        let all: Vec<Vec<u8>> = model.keys().cloned().collect();
        for round in 0..12 {
            let pick = |rng: &mut Rng| all[rng.below(all.len() as u64) as usize].clone();
            let (a, b) = (pick(&mut rng), pick(&mut rng));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let bounds: (Bound<&[u8]>, Bound<&[u8]>) = match round % 6 {
                0 => (Bound::Included(&lo), Bound::Excluded(&hi)),
                1 => (Bound::Excluded(&lo), Bound::Included(&hi)),
                2 => (Bound::Unbounded, Bound::Excluded(&lo)),
                3 => (Bound::Included(&hi), Bound::Unbounded),
                4 => (Bound::Included(&lo[..lo.len() - 1]), Bound::Included(&hi)),
                _ => (Bound::Included(&hi), Bound::Excluded(&lo)),
            };
            let want: Vec<Vec<u8>> = if round % 6 == 5 && lo < hi {
                Vec::new()
            } else {
                model
                    .range::<[u8], _>(bounds)
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            let w = t.db().begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                assert_eq!(
                    tab.remove_range(bounds).unwrap(),
                    want.len() as u64,
                    "{ps} {round}"
                );
                for k in &want {
                    model.remove(k);
                }
                assert_eq!(tab.len(), model.len() as u64);
                let got = common::collect(tab.iter().unwrap());
                assert_eq!(got.len(), model.len());
            }
            w.commit().unwrap();
            holds(t.db(), &model);
        }
        // Everything.
        let w = t.db().begin_write().unwrap();
        let n = w.open_table("t").unwrap().remove_range(..).unwrap();
        assert_eq!(n, model.len() as u64);
        w.commit().unwrap();
        model.clear();
        holds(t.db(), &model);
        let report = assert_clean(t.db());
        assert_eq!(report.packed_bytes, 0, "{ps}");
    }
}

/// Prefixes, including ones whose last bytes are 0xFF (the first key past
/// them is found by carrying) and the empty one: `prefix` reads exactly the
/// keys that start with it, forwards and backwards, in read and write
/// transactions, and `remove_prefix` removes exactly those.
#[test]
fn prefixes_read_and_remove_the_keys_that_start_with_them() {
    let mut rng = Rng(0x5EED);
    let (t, mut model) = filled(512, 2000, &mut rng);
    let prefixes: [&[u8]; 7] = [b"k0012", b"k001", &[0xFF], &[0xFF, 0xFF], b"k", b"zz", b""];
    for p in prefixes {
        let want: Vec<Vec<u8>> = model.keys().filter(|k| k.starts_with(p)).cloned().collect();
        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        let got: Vec<Vec<u8>> = common::keys_of(tab.prefix(p).unwrap());
        assert_eq!(got, want, "{p:?}");
        let back: Vec<Vec<u8>> = tab
            .prefix(p)
            .unwrap()
            .rev()
            .map(|e| e.unwrap().0.to_vec())
            .collect();
        assert!(back.iter().rev().eq(want.iter()), "{p:?}");
        drop(r);
        if p.is_empty() {
            continue;
        }
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            assert_eq!(tab.prefix(p).unwrap().count(), want.len());
            assert_eq!(tab.remove_prefix(p).unwrap(), want.len() as u64, "{p:?}");
            assert_eq!(tab.prefix(p).unwrap().count(), 0);
        }
        w.commit().unwrap();
        for k in &want {
            model.remove(k);
        }
        holds(t.db(), &model);
    }
    assert_clean(t.db());
}

/// A removal of tens of thousands of entries in one transaction, under a
/// reader that keeps the old snapshot: the reader reads every entry still,
/// the writer's count is right, and the file holds after reopening.
#[test]
fn a_large_range_goes_in_one_transaction_under_a_reader() {
    let mut rng = Rng(0xB16);
    let (mut t, mut model) = filled(4096, 30_000, &mut rng);
    let before = model.clone();
    let r = t.db().begin_read().unwrap();
    let w = t.db().begin_write().unwrap();
    let n = w
        .open_table("t")
        .unwrap()
        .remove_range(&b"k000100"[..]..&b"k029900"[..])
        .unwrap();
    let gone: Vec<Vec<u8>> = model
        .range::<[u8], _>((
            Bound::Included(&b"k000100"[..]),
            Bound::Excluded(&b"k029900"[..]),
        ))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(n, gone.len() as u64);
    assert!(n > 29_000);
    for k in gone {
        model.remove(&k);
    }
    w.commit().unwrap();
    still_holds(r, &before);
    t.reopen();
    holds(t.db(), &model);
    assert_clean(t.db());
}

/// A table that may be missing can be asked for without creating it: in a
/// write transaction, `table_exists` and `open_existing_table` leave nothing
/// behind at commit; tables created or deleted in the transaction count as
/// such; a read transaction answers for its snapshot.
#[test]
fn a_missing_table_is_not_created_by_asking() {
    let t = TestDb::new(512);
    let db = t.db();
    let w = db.begin_write().unwrap();
    assert!(!w.table_exists("absent").unwrap());
    assert!(matches!(
        w.open_existing_table("absent").err(),
        Some(Error::TableNotFound(name)) if name == "absent"
    ));
    w.open_table("made").unwrap().insert(b"k", b"v").unwrap();
    assert!(w.table_exists("made").unwrap());
    assert_eq!(w.open_existing_table("made").unwrap().len(), 1);
    assert!(!w.table_exists(&"n".repeat(70_000)).unwrap());
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    assert_eq!(r.list_tables().unwrap(), ["made"]);
    assert!(r.table_exists("made").unwrap());
    assert!(!r.table_exists("absent").unwrap());
    drop(r);
    let mut w = db.begin_write().unwrap();
    assert!(w.delete_table("made").unwrap());
    assert!(!w.table_exists("made").unwrap());
    assert!(w.open_existing_table("made").is_err());
    w.commit().unwrap();
    assert!(db.begin_read().unwrap().list_tables().unwrap().is_empty());
    assert_clean(db);
}

/// A storage layer that speaks `std::io` uses `?` on larch calls; the kind
/// says what happened and the larch error is inside.
#[test]
fn larch_errors_are_io_errors() {
    fn read(db: &larch::Database, table: &str) -> std::io::Result<usize> {
        let r = db.begin_read()?;
        let t = r.open_table(table)?;
        Ok(t.len() as usize)
    }
    let t = TestDb::new(512);
    let e = read(t.db(), "nosuch").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    let inner = e.into_inner().unwrap().downcast::<Error>().unwrap();
    assert!(matches!(*inner, Error::TableNotFound(_)));
}

/// `insert` says whether the key was there; `take` hands back the value it
/// removes, whether it lived in its leaf, in a segment, in a run of its own
/// or beside a long key, and frees its place; `None` for a missing key.
#[test]
fn insert_reports_and_take_returns_the_old_value() {
    for ps in [512u32, 4096] {
        let t = TestDb::new(ps);
        let long_key = vec![b'L'; ps as usize / 4 + 1];
        let cases: [(&[u8], usize); 4] = [
            (b"inline", 10),
            (b"packed", ps as usize),
            (b"run", 40 * ps as usize),
            (&long_key, 100),
        ];
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for (i, &(k, len)) in cases.iter().enumerate() {
                let v = common::seeded_bytes(i as u64, len);
                assert!(!tab.insert(k, &v).unwrap());
                assert!(tab.insert(k, &v).unwrap());
            }
            assert_eq!(tab.take(b"absent").unwrap(), None);
        }
        w.commit().unwrap();
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for (i, &(k, len)) in cases.iter().enumerate() {
                let v = common::seeded_bytes(i as u64, len);
                assert_eq!(tab.take(k).unwrap(), Some(v), "{ps} {i}");
                assert_eq!(tab.take(k).unwrap(), None);
            }
            assert!(tab.is_empty());
        }
        w.commit().unwrap();
        let report = assert_clean(t.db());
        assert_eq!((report.packed_bytes, report.overflow_pages), (0, 0), "{ps}");
    }
}

/// `pop_first` and `pop_last`, alternated, drain a table from both ends in
/// key order, each entry whole, then find nothing.
#[test]
fn pop_drains_from_both_ends_in_order() {
    let mut rng = Rng(0x909);
    let (t, mut model) = filled(512, 1500, &mut rng);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        let mut i = 0;
        while !model.is_empty() {
            let (got, want) = if i % 3 == 0 {
                (tab.pop_last().unwrap(), model.pop_last())
            } else {
                (tab.pop_first().unwrap(), model.pop_first())
            };
            assert_eq!(got, want, "pop {i}");
            assert_eq!(tab.len(), model.len() as u64);
            i += 1;
        }
        assert_eq!(tab.pop_first().unwrap(), None);
        assert_eq!(tab.pop_last().unwrap(), None);
    }
    w.commit().unwrap();
    let report = assert_clean(t.db());
    assert_eq!(report.packed_bytes, 0);
}

/// `retain` keeps exactly the entries its predicate keeps, sees each entry
/// once in key order, and leaves a reader's snapshot whole.
#[test]
fn retain_keeps_what_the_predicate_keeps() {
    for ps in [512u32, 4096] {
        let mut rng = Rng(0x4E7 + u64::from(ps));
        let (mut t, mut model) = filled(ps, 3000, &mut rng);
        let before = model.clone();
        let keep = |k: &[u8], v: &[u8]| !(k.len() + v.len()).is_multiple_of(3);
        let r = t.db().begin_read().unwrap();
        let w = t.db().begin_write().unwrap();
        let mut seen = Vec::new();
        let n = w
            .open_table("t")
            .unwrap()
            .retain(|k, v| {
                seen.push(k.to_vec());
                keep(k, v)
            })
            .unwrap();
        w.commit().unwrap();
        assert_eq!(seen.len(), before.len(), "{ps}: each entry seen once");
        assert!(seen.iter().eq(before.keys()), "{ps}: in key order");
        model.retain(|k, v| keep(k, v));
        assert_eq!(n, (before.len() - model.len()) as u64);
        still_holds(r, &before);
        t.reopen();
        holds(t.db(), &model);
        assert_clean(t.db());
    }
}

/// `insert_reserve` hands out a value's own bytes, zeroed, wherever the
/// value lives (its leaf, a segment, a run of its own, beside a long key),
/// also when it replaces a value (an equal one of zeros included); what the
/// caller writes there is what commits.
#[test]
fn insert_reserve_fills_the_value_in_place() {
    for ps in [512u32, 4096] {
        let mut t = TestDb::new(ps);
        let long_key = vec![b'L'; ps as usize / 4 + 1];
        let cases: [(&[u8], usize); 5] = [
            (b"inline", 10),
            (b"empty", 0),
            (b"packed", ps as usize),
            (b"run", 40 * ps as usize),
            (&long_key, 300),
        ];
        let fill = |i: usize, len: usize| common::seeded_bytes(100 + i as u64, len);
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            // A length past the limit is refused before anything is made
            // of it (no buffer of that size), and changes nothing.
            for len in [usize::MAX, u32::MAX as usize] {
                let e = tab.insert_reserve(b"huge", len).unwrap_err();
                assert!(matches!(e, Error::ValueTooLarge { .. }), "{e:?}");
            }
            tab.insert(b"inline", &[0u8; 10]).unwrap();
            tab.insert(b"packed", b"an old value to replace").unwrap();
            for (i, &(k, len)) in cases.iter().enumerate() {
                let out = tab.insert_reserve(k, len).unwrap();
                assert_eq!(out.len(), len);
                assert!(out.iter().all(|&b| b == 0), "{ps} {i}: not zeroed");
                out.copy_from_slice(&fill(i, len));
                assert_eq!(tab.get(k).unwrap().unwrap(), &fill(i, len)[..]);
            }
        }
        w.commit().unwrap();
        t.reopen();
        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        assert_eq!(tab.len(), cases.len() as u64);
        for (i, &(k, len)) in cases.iter().enumerate() {
            assert_eq!(tab.get(k).unwrap().unwrap(), &fill(i, len)[..], "{ps} {i}");
        }
        drop(r);
        assert_clean(t.db());
    }
}
