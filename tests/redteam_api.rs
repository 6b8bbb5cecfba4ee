//! Red team of the range/prefix deletes, prefix scans, `table_exists`,
//! `open_existing_table` and `Error` into `io::Error`: odd bounds, keys
//! that are prefixes of each other, long keys on 512-byte pages, bounds
//! longer than any key, readers holding snapshots, failed transactions.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use common::heap_image::assert_clean;
use common::{Rng, TestDb};
use larch::{Error, MAX_KEY_LEN, Options};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

fn in_bounds(k: &[u8], b: &Bounds) -> bool {
    let lo = match &b.0 {
        Bound::Included(s) => k >= s.as_slice(),
        Bound::Excluded(s) => k > s.as_slice(),
        Bound::Unbounded => true,
    };
    let hi = match &b.1 {
        Bound::Included(e) => k <= e.as_slice(),
        Bound::Excluded(e) => k < e.as_slice(),
        Bound::Unbounded => true,
    };
    lo && hi
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Keys that are prefixes of each other, the empty key, 0xFF runs, and long
/// keys (past a quarter of a 512-byte page, up to the longest key) that
/// share their first bytes with short ones.
fn odd_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\0".to_vec(),
        b"\0\0".to_vec(),
        b"a".to_vec(),
        b"a\0".to_vec(),
        b"a\0\0".to_vec(),
        b"a\x01".to_vec(),
        b"aa".to_vec(),
        b"ab".to_vec(),
        b"b".to_vec(),
        vec![0xFE],
        vec![0xFE, 0xFF],
        vec![0xFF],
        vec![0xFF, 0x00],
        vec![0xFF, 0xFF],
        vec![0xFF, 0xFF, 0xFF],
    ];
    for len in [
        129usize,
        200,
        1000,
        4096,
        20_000,
        MAX_KEY_LEN - 1,
        MAX_KEY_LEN,
    ] {
        let mut a = vec![b'a'; len];
        keys.push(a.clone());
        a[len - 1] = 0xFF;
        keys.push(a);
        keys.push(vec![0xFF; len]);
        let mut z = vec![b'a'; len];
        z[0] = 0;
        keys.push(z);
    }
    for i in 0..300u32 {
        keys.push(format!("a{i:04}").into_bytes());
        keys.push(format!("b{i:04}").into_bytes());
    }
    keys.sort();
    keys.dedup();
    keys
}

fn load(t: &TestDb, keys: &[Vec<u8>]) -> Model {
    let mut model = Model::new();
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for (i, k) in keys.iter().enumerate() {
            let v = common::seeded_bytes(i as u64, (i * 37) % 400);
            tab.insert(k, &v).unwrap();
            model.insert(k.clone(), v);
        }
    }
    w.commit().unwrap();
    model
}

fn odd_bounds(keys: &[Vec<u8>]) -> Vec<Bounds> {
    use Bound::{Excluded as E, Included as I, Unbounded as U};
    let mut pts: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\0".to_vec(),
        b"a".to_vec(),
        b"a\0".to_vec(),
        b"aa".to_vec(),
        b"a0100".to_vec(),
        b"b".to_vec(),
        vec![0xFF],
        vec![0xFF, 0xFF],
        vec![b'a'; 200],
        vec![b'a'; MAX_KEY_LEN],
        vec![0xFF; MAX_KEY_LEN],
    ];
    pts.push(keys[keys.len() / 3].clone());
    let mut out = vec![(U, U)];
    for a in &pts {
        out.push((I(a.clone()), U));
        out.push((E(a.clone()), U));
        out.push((U, I(a.clone())));
        out.push((U, E(a.clone())));
        for b in &pts {
            out.push((I(a.clone()), I(b.clone())));
            out.push((I(a.clone()), E(b.clone())));
            out.push((E(a.clone()), I(b.clone())));
            out.push((E(a.clone()), E(b.clone())));
        }
    }
    out
}

/// Table "t" of a new reader holds exactly `model`.
fn table_is(db: &larch::Database, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let r = db.begin_read().unwrap();
    let now = common::collect(r.open_table("t").unwrap().iter().unwrap());
    assert!(now.iter().map(|(k, v)| (k, v)).eq(model.iter()));
}

/// Held: every combination of bounds over odd points (inverted, equal,
/// excluded on both sides, the empty key, 0xFF runs, long keys up to 64 KiB)
/// removes exactly the keys a filter picks, on 512-byte pages, and `len`
/// and a scan agree; the last one is committed and the file checks clean.
#[test]
fn odd_bounds_remove_exactly_what_a_filter_picks() {
    let t = TestDb::new(512);
    let keys = odd_keys();
    let model = load(&t, &keys);
    let all = odd_bounds(&keys);
    let mut rng = Rng(0x0DD);
    // A sample keeps the run short: each case copies the table's pages.
    let mut cases: Vec<&Bounds> = all.iter().take(60).collect();
    for _ in 0..200 {
        cases.push(&all[rng.below(all.len() as u64) as usize]);
    }
    for b in cases {
        let want: Vec<&Vec<u8>> = model.keys().filter(|k| in_bounds(k, b)).collect();
        let w = t.db().begin_write().unwrap();
        let mut tab = w.open_table("t").unwrap();
        let seen: Vec<Vec<u8>> = tab
            .range((as_ref(&b.0), as_ref(&b.1)))
            .unwrap()
            .map(|e| e.unwrap().0.to_vec())
            .collect();
        assert!(seen.iter().eq(want.iter().copied()), "range {b:?}");
        let n = tab.remove_range((as_ref(&b.0), as_ref(&b.1))).unwrap();
        assert_eq!(
            n,
            want.len() as u64,
            "{:?}",
            (
                b.0.as_ref().map(|k| common::show_key(k)),
                b.1.as_ref().map(|k| common::show_key(k))
            )
        );
        assert_eq!(tab.len(), (model.len() - want.len()) as u64);
        let left: Vec<Vec<u8>> = tab.iter().unwrap().map(|e| e.unwrap().0.to_vec()).collect();
        let want_left: Vec<&Vec<u8>> = model.keys().filter(|k| !in_bounds(k, b)).collect();
        assert!(left.iter().eq(want_left.iter().copied()));
        drop(tab);
        w.abort();
    }
    let w = t.db().begin_write().unwrap();
    let n = w
        .open_table("t")
        .unwrap()
        .remove_range((
            Bound::Excluded(&b"a"[..]),
            Bound::Included(&[0xFF, 0xFF][..]),
        ))
        .unwrap();
    assert!(n > 600);
    w.commit().unwrap();
    assert_clean(t.db());
}

/// Held: prefixes of every odd kind (empty, 0xFF runs, a prefix that is a
/// key and a prefix of longer keys, long prefixes) read and remove exactly
/// the keys that start with them, forwards and backwards.
#[test]
fn odd_prefixes_match_starts_with() {
    let t = TestDb::new(512);
    let keys = odd_keys();
    let model = load(&t, &keys);
    let prefixes: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\0".to_vec(),
        b"a".to_vec(),
        b"a\0".to_vec(),
        b"a0".to_vec(),
        vec![0xFE],
        vec![0xFF],
        vec![0xFF, 0xFF],
        vec![0xFF; 200],
        vec![0xFF; MAX_KEY_LEN],
        vec![b'a'; 129],
        vec![b'a'; MAX_KEY_LEN - 1],
        vec![b'a'; MAX_KEY_LEN],
    ];
    for p in &prefixes {
        let want: Vec<&Vec<u8>> = model.keys().filter(|k| k.starts_with(p)).collect();
        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        let fwd: Vec<Vec<u8>> = common::keys_of(tab.prefix(p).unwrap());
        assert!(
            fwd.iter().eq(want.iter().copied()),
            "{}",
            common::show_key(p)
        );
        let back: Vec<Vec<u8>> = tab
            .prefix(p)
            .unwrap()
            .rev()
            .map(|e| e.unwrap().0.to_vec())
            .collect();
        assert!(back.iter().rev().eq(want.iter().copied()));
        drop(r);
        let w = t.db().begin_write().unwrap();
        let mut tab = w.open_table("t").unwrap();
        assert_eq!(tab.prefix(p).unwrap().count(), want.len());
        assert_eq!(
            tab.remove_prefix(p).unwrap(),
            want.len() as u64,
            "{}",
            common::show_key(p)
        );
        assert_eq!(tab.len(), (model.len() - want.len()) as u64);
        assert_eq!(tab.prefix(p).unwrap().count(), 0);
        drop(tab);
        w.abort();
    }
}

/// Held: bounds and prefixes longer than any key (past 64 KiB) are ordinary
/// arguments: the counts are right and the transaction stays usable.
#[test]
fn bounds_longer_than_any_key() {
    let t = TestDb::new(512);
    let keys = odd_keys();
    let model = load(&t, &keys);
    let huge_a = vec![b'a'; MAX_KEY_LEN + 10];
    let huge_ff = vec![0xFF; MAX_KEY_LEN + 10];
    let cases: Vec<Bounds> = vec![
        (Bound::Included(huge_a.clone()), Bound::Unbounded),
        (Bound::Unbounded, Bound::Excluded(huge_a.clone())),
        (
            Bound::Excluded(huge_a.clone()),
            Bound::Included(huge_ff.clone()),
        ),
        (Bound::Unbounded, Bound::Included(huge_ff.clone())),
    ];
    for b in &cases {
        let want = model.keys().filter(|k| in_bounds(k, b)).count() as u64;
        let r = t.db().begin_read().unwrap();
        let seen = r
            .open_table("t")
            .unwrap()
            .range((as_ref(&b.0), as_ref(&b.1)))
            .unwrap()
            .inspect(|e| assert!(e.is_ok()))
            .count() as u64;
        assert_eq!(seen, want);
        drop(r);
        let w = t.db().begin_write().unwrap();
        let mut tab = w.open_table("t").unwrap();
        assert_eq!(
            tab.remove_range((as_ref(&b.0), as_ref(&b.1))).unwrap(),
            want
        );
        assert_eq!(tab.remove_prefix(&huge_a).unwrap(), 0);
        assert_eq!(tab.prefix(&huge_ff).unwrap().count(), 0);
        tab.insert(b"still", b"usable").unwrap();
        drop(tab);
        w.commit().unwrap();
        let mut w = t.db().begin_write().unwrap();
        w.delete_table("t").unwrap();
        w.commit().unwrap();
        load(&t, &keys);
    }
    assert_clean(t.db());
}

/// Held: a reader holding its snapshot while long keys (and packed and
/// overflow values) are range-deleted and the deletion committed, then the
/// freed pages rewritten by later commits, still reads every entry; after
/// it ends the file is clean.
#[test]
fn a_reader_keeps_everything_a_range_delete_takes() {
    let t = TestDb::new(512);
    let keys = odd_keys();
    let mut model = Model::new();
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for (i, k) in keys.iter().enumerate() {
            let v = common::seeded_bytes(i as u64, [0, 30, 300, 3000, 12_000][i % 5]);
            tab.insert(k, &v).unwrap();
            model.insert(k.clone(), v);
        }
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let w = t.db().begin_write().unwrap();
    let n = w.open_table("t").unwrap().remove_prefix(b"a").unwrap();
    assert_eq!(
        n,
        model.keys().filter(|k| k.starts_with(b"a")).count() as u64
    );
    w.commit().unwrap();
    for round in 0..5u32 {
        let w = t.db().begin_write().unwrap();
        let mut tab = w.open_table("t").unwrap();
        for i in 0..200u32 {
            let k = format!("a{round}{i:05}");
            tab.insert(k.as_bytes(), &common::seeded_bytes(u64::from(i), 300))
                .unwrap();
        }
        tab.remove_prefix(format!("a{round}").as_bytes()).unwrap();
        drop(tab);
        w.commit().unwrap();
    }
    let old = common::collect(r.open_table("t").unwrap().iter().unwrap());
    assert!(old.iter().map(|(k, v)| (k, v)).eq(model.iter()));
    drop(r);
    model.retain(|k, _| !k.starts_with(b"a"));
    table_is(t.db(), &model);
    assert_clean(t.db());
}

/// Held: inserts into a range before and after its delete in the same
/// transaction: the delete takes the fresh keys too, the later inserts stay,
/// a second delete counts only what is there.
#[test]
fn inserts_and_range_deletes_in_one_transaction() {
    let t = TestDb::new(512);
    let keys = odd_keys();
    let mut model = load(&t, &keys);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..500u32 {
            let k = format!("a{i:04}x").into_bytes();
            tab.insert(&k, b"new").unwrap();
            model.insert(k, b"new".to_vec());
        }
        let b: Bounds = (
            Bound::Included(b"a0".to_vec()),
            Bound::Excluded(b"a1".to_vec()),
        );
        let want = model.keys().filter(|k| in_bounds(k, &b)).count() as u64;
        assert_eq!(
            tab.remove_range((as_ref(&b.0), as_ref(&b.1))).unwrap(),
            want
        );
        model.retain(|k, _| !in_bounds(k, &b));
        for i in 0..50u32 {
            let k = format!("a0{i:03}").into_bytes();
            tab.insert(&k, b"again").unwrap();
            model.insert(k, b"again".to_vec());
        }
        assert_eq!(tab.remove_range(&b"a00"[..]..&b"a001"[..]).unwrap(), 10);
        model.retain(|k, _| !(k.as_slice() >= &b"a00"[..] && k.as_slice() < &b"a001"[..]));
        assert_eq!(tab.len(), model.len() as u64);
    }
    w.commit().unwrap();
    table_is(t.db(), &model);
    assert_clean(t.db());
}

/// Held: tables created and deleted in the same transaction, committed
/// tables deleted and created again, asked about with `table_exists` in the
/// transaction and by readers before and after its commit; names of exactly
/// the longest key and past it; a transaction that only asks (and removes
/// nothing) commits nothing.
#[test]
fn table_exists_through_create_and_delete() {
    let t = TestDb::new(512);
    let db = t.db();
    let longest = "n".repeat(MAX_KEY_LEN);
    let past = "n".repeat(MAX_KEY_LEN + 1);
    let w = db.begin_write().unwrap();
    w.open_table("old").unwrap().insert(b"k", b"v").unwrap();
    w.commit().unwrap();

    let r0 = db.begin_read().unwrap();
    let mut w = db.begin_write().unwrap();
    // Created and deleted, empty and not.
    w.open_table("fresh").unwrap();
    assert!(w.table_exists("fresh").unwrap());
    assert!(w.delete_table("fresh").unwrap());
    assert!(!w.table_exists("fresh").unwrap());
    assert!(matches!(
        w.open_existing_table("fresh").err(),
        Some(Error::TableNotFound(_))
    ));
    w.open_table("full")
        .unwrap()
        .insert(b"x", &[7; 3000])
        .unwrap();
    assert!(w.delete_table("full").unwrap());
    assert!(!w.table_exists("full").unwrap());
    assert!(!w.delete_table("full").unwrap());
    // Committed, deleted, created again.
    assert!(w.table_exists("old").unwrap());
    assert!(w.delete_table("old").unwrap());
    assert!(!w.table_exists("old").unwrap());
    assert!(w.open_existing_table("old").is_err());
    assert!(r0.table_exists("old").unwrap());
    w.open_table("old").unwrap();
    assert!(w.table_exists("old").unwrap());
    assert_eq!(w.open_existing_table("old").unwrap().len(), 0);
    // Names at and past the longest key.
    w.open_table(&longest).unwrap().insert(b"k", b"v").unwrap();
    assert!(w.table_exists(&longest).unwrap());
    assert!(!w.table_exists(&past).unwrap());
    assert!(matches!(
        w.open_table(&past).err(),
        Some(Error::KeyTooLarge { .. })
    ));
    assert!(w.open_existing_table(&past).is_err());
    assert!(
        w.table_exists("old").unwrap(),
        "the transaction is still usable"
    );
    w.commit().unwrap();

    assert!(r0.table_exists("old").unwrap());
    assert!(!r0.table_exists(&longest).unwrap());
    drop(r0);
    let r = db.begin_read().unwrap();
    assert!(r.table_exists("old").unwrap());
    assert_eq!(r.open_table("old").unwrap().len(), 0);
    assert!(r.table_exists(&longest).unwrap());
    assert!(!r.table_exists(&past).unwrap());
    assert!(!r.table_exists("fresh").unwrap());
    assert!(!r.table_exists("full").unwrap());
    assert!(!r.table_exists("").unwrap());
    let mut names = r.list_tables().unwrap();
    names.sort();
    assert_eq!(names.len(), 2);
    drop(r);
    // Asking creates nothing: a transaction that only asks commits nothing.
    let id = db.begin_read().unwrap().id();
    let w = db.begin_write().unwrap();
    assert!(!w.table_exists("ghost").unwrap());
    assert!(w.open_existing_table("ghost").is_err());
    assert_eq!(
        w.open_existing_table("old")
            .unwrap()
            .remove_prefix(b"z")
            .unwrap(),
        0
    );
    w.commit().unwrap();
    assert_eq!(db.begin_read().unwrap().id(), id, "nothing was committed");
    let r = db.begin_read().unwrap();
    assert!(!r.table_exists("ghost").unwrap());
    assert_eq!(r.list_tables().unwrap().len(), 2);
    drop(r);
    assert_clean(db);
}

/// Held: a range delete that runs out of room part way (`max_size`): the
/// error fails the transaction, `len` reports the count from before the
/// call, and every later call (the new ones included) returns `TxnFailed`;
/// nothing of it reaches the file.
#[test]
fn a_range_delete_that_fails_fails_everything_after_it() {
    let ps = 512u32;
    let mut found = false;
    for extra in [0u64, 1, 2, 4, 8, 16, 32] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let n = 3000u32;
        {
            // SAFETY: the test owns the file.
            let db = unsafe { Options::new().page_size(ps).open(&path) }.unwrap();
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for i in 0..n {
                    tab.insert(format!("k{i:06}").as_bytes(), &[1; 60]).unwrap();
                }
            }
            w.commit().unwrap();
        }
        let len = std::fs::metadata(&path).unwrap().len();
        // SAFETY: the test owns the file.
        let db = unsafe {
            Options::new()
                .page_size(ps)
                .max_size(len + extra * u64::from(ps))
                .open(&path)
        }
        .unwrap();
        let mut w = db.begin_write().unwrap();
        let mut tab = w.open_table("t").unwrap();
        let r = tab.remove_range(&b"k000100"[..]..&b"k002900"[..]);
        let Err(e) = r else {
            continue;
        };
        found = true;
        assert!(matches!(e, Error::MapFull { .. }), "{e:?}");
        assert_eq!(tab.len(), u64::from(n), "len from before the call");
        let failed = |r: larch::Result<()>| matches!(r, Err(Error::TxnFailed));
        assert!(failed(tab.remove_range(..).map(|_| ())));
        assert!(failed(tab.remove_prefix(b"k").map(|_| ())));
        assert!(failed(tab.remove_prefix(b"").map(|_| ())));
        assert!(failed(tab.prefix(b"k").map(|_| ())));
        assert!(failed(tab.range(..).map(|_| ())));
        assert!(failed(tab.get(b"k000001").map(|_| ())));
        assert!(failed(tab.remove(b"k000001").map(|_| ())));
        assert!(failed(tab.insert(b"k", b"v").map(|_| ())));
        drop(tab);
        assert!(failed(w.table_exists("t").map(|_| ())));
        assert!(failed(w.table_exists("absent").map(|_| ())));
        assert!(failed(w.table_exists(&"n".repeat(70_000)).map(|_| ())));
        assert!(failed(w.open_existing_table("t").map(|_| ())));
        assert!(failed(w.open_existing_table("absent").map(|_| ())));
        assert!(failed(w.open_table("t").map(|_| ())));
        assert!(failed(w.delete_table("t").map(|_| ())));
        assert!(failed(w.list_tables().map(|_| ())));
        assert!(failed(w.commit()));
        let r = db.begin_read().unwrap();
        assert_eq!(r.open_table("t").unwrap().len(), u64::from(n));
        drop(r);
        assert_clean(&db);
        break;
    }
    assert!(found, "no max size made the range delete fail");
}

/// Held: larch errors as `io::Error` keep their kind and their larch error,
/// `TxnFailed` included.
#[test]
fn io_error_kinds() {
    let t = TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    let e: std::io::Error = w.open_table(&"n".repeat(70_000)).err().unwrap().into();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e: std::io::Error = w.open_existing_table("none").err().unwrap().into();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    let e: std::io::Error = Error::TxnFailed.into();
    assert_eq!(e.kind(), std::io::ErrorKind::Other);
    assert!(matches!(
        *e.into_inner().unwrap().downcast::<Error>().unwrap(),
        Error::TxnFailed
    ));
}

/// Held: readers on another thread, each snapshot taken while range
/// deletes and refills commit one after another, see a table whose `len`
/// matches its scan and which is either whole or missing exactly one block.
#[test]
fn snapshots_under_committing_range_deletes_are_whole() {
    let t = TestDb::new(512);
    let db = t.db();
    let block = |b: u32, i: u32| format!("{b:02}/{i:04}").into_bytes();
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for b in 0..10 {
            for i in 0..100 {
                tab.insert(&block(b, i), &[b as u8; 90]).unwrap();
            }
        }
    }
    w.commit().unwrap();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            for _ in 0..300 {
                let r = db.begin_read().unwrap();
                let tab = r.open_table("t").unwrap();
                let n = tab.iter().unwrap().inspect(|e| assert!(e.is_ok())).count() as u64;
                assert_eq!(n, tab.len());
                assert!(n == 1000 || n == 900, "{n}");
                for b in 0..10u32 {
                    let c = tab.prefix(format!("{b:02}/").as_bytes()).unwrap().count();
                    assert!(c == 100 || c == 0);
                }
            }
        });
        for round in 0..60u32 {
            let b = round % 10;
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                assert_eq!(
                    tab.remove_prefix(format!("{b:02}/").as_bytes()).unwrap(),
                    100
                );
            }
            w.commit().unwrap();
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for i in 0..100 {
                    tab.insert(&block(b, i), &[round as u8; 90]).unwrap();
                }
            }
            w.commit().unwrap();
        }
        reader.join().unwrap();
    });
    assert_clean(db);
}

/// Held: the empty name is a table name like any other for `table_exists`
/// and `open_existing_table`, and an argument error (`KeyTooLarge` from
/// `open_table`) leaves `table_exists` working.
#[test]
fn the_empty_table_name() {
    let t = TestDb::new(512);
    let db = t.db();
    let w = db.begin_write().unwrap();
    assert!(!w.table_exists("").unwrap());
    assert!(w.open_existing_table("").is_err());
    assert!(w.open_table(&"x".repeat(MAX_KEY_LEN + 1)).is_err());
    w.open_table("").unwrap().insert(b"", b"").unwrap();
    assert!(w.table_exists("").unwrap());
    assert_eq!(
        w.open_existing_table("")
            .unwrap()
            .remove_prefix(b"")
            .unwrap(),
        1
    );
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    assert!(r.table_exists("").unwrap());
    assert!(r.open_table("").unwrap().is_empty());
    drop(r);
    assert_clean(db);
}
