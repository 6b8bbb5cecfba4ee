//! Round trips, overwrites, deletes, ranges, limits, abort, reopen, tables.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use common::{Rng, TestDb, collect};
use larch::Error;

fn key(i: u32) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

#[test]
fn round_trip_and_overwrite() {
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..5000 {
            tab.insert(&key(i), format!("value {i}").as_bytes())
                .unwrap();
        }
        assert_eq!(tab.len(), 5000);
        assert_eq!(tab.get(&key(42)).unwrap(), Some(&b"value 42"[..]));
    }
    w.commit().unwrap();

    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in (0..5000).step_by(3) {
            tab.insert(&key(i), b"over").unwrap();
        }
        assert_eq!(tab.len(), 5000);
    }
    w.commit().unwrap();

    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    assert_eq!(tab.len(), 5000);
    for i in 0..5000 {
        let want = if i % 3 == 0 {
            b"over".to_vec()
        } else {
            format!("value {i}").into_bytes()
        };
        assert_eq!(tab.get(&key(i)).unwrap(), Some(&want[..]), "key {i}");
    }
    assert_eq!(tab.get(b"missing").unwrap(), None);
}

#[test]
fn delete_everything_back_to_an_empty_tree() {
    for page_size in [512, 4096] {
        let mut t = TestDb::new(page_size);
        let mut rng = Rng(7);
        let mut keys: Vec<u32> = (0..20_000).collect();
        shuffle(&mut keys, &mut rng);
        let fill_order = keys.clone();
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for &i in &keys {
                let v = rng.bytes((i % 300) as usize);
                tab.insert(&key(i), &v).unwrap();
            }
        }
        w.commit().unwrap();
        let full = t.db().stat().unwrap().pages;

        // Remove in another random order over several transactions.
        shuffle(&mut keys, &mut rng);
        for chunk in keys.chunks(3000) {
            let w = t.db().begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for &i in chunk {
                    assert!(tab.remove(&key(i)).unwrap());
                    assert!(!tab.remove(&key(i)).unwrap());
                }
            }
            w.commit().unwrap();
        }
        t.reopen();
        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        assert_eq!(tab.len(), 0);
        assert!(tab.is_empty());
        assert_eq!(tab.iter().unwrap().count(), 0);
        assert_eq!(tab.cursor().first().unwrap(), None);
        let report = r.check().unwrap();
        assert_eq!((report.entries, report.overflow_pages), (0, 0));
        drop(r);

        // Two more commits let the reuse rule release the last deletes' pages
        // (those at the end of the file leave with it, and the file is cut);
        // then filling the table again reuses them before the file grows.
        for _ in 0..2 {
            let w = t.db().begin_write().unwrap();
            w.open_table("tick").unwrap().insert(b"t", b"").unwrap();
            w.commit().unwrap();
        }
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for &i in &fill_order {
                tab.insert(&key(i), &rng.bytes((i % 300) as usize)).unwrap();
            }
        }
        w.commit().unwrap();
        let refilled = t.db().stat().unwrap().pages;
        // Over the first fill: the previous commits' free-list pages, still
        // pending (long with 512-byte pages).
        assert!(
            refilled <= full + full / 10,
            "{refilled} pages, {full} when first full"
        );
    }
}

fn shuffle(v: &mut [u32], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

fn bounds_cases() -> Vec<Bounds> {
    let ks: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        key(0),
        key(10),
        key(11),
        b"key00000010a".to_vec(),
        key(500),
        key(999),
        b"zzz".to_vec(),
    ];
    let mut out = vec![(Bound::Unbounded, Bound::Unbounded)];
    for a in &ks {
        for b in &ks {
            for (sa, sb) in [
                (Bound::Included(a.clone()), Bound::Included(b.clone())),
                (Bound::Included(a.clone()), Bound::Excluded(b.clone())),
                (Bound::Excluded(a.clone()), Bound::Included(b.clone())),
                (Bound::Excluded(a.clone()), Bound::Excluded(b.clone())),
            ] {
                out.push((sa, sb));
            }
        }
        out.push((Bound::Included(a.clone()), Bound::Unbounded));
        out.push((Bound::Excluded(a.clone()), Bound::Unbounded));
        out.push((Bound::Unbounded, Bound::Included(a.clone())));
        out.push((Bound::Unbounded, Bound::Excluded(a.clone())));
    }
    out
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

#[test]
fn ranges_with_every_kind_of_bound() {
    let t = TestDb::new(512);
    let mut model = BTreeMap::new();
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in (0..1000).step_by(1) {
            if i % 7 == 3 {
                continue;
            }
            let v = format!("v{i}").into_bytes();
            tab.insert(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    for (a, b) in bounds_cases() {
        let valid = match (&a, &b) {
            (Bound::Included(x), Bound::Included(y)) => x <= y,
            (Bound::Included(x) | Bound::Excluded(x), Bound::Excluded(y))
            | (Bound::Excluded(x), Bound::Included(y)) => x < y,
            _ => true,
        };
        let want: Vec<(Vec<u8>, Vec<u8>)> = if valid {
            model
                .range::<Vec<u8>, _>((a.clone(), b.clone()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let range = (as_ref(&a), as_ref(&b));
        let got = collect(tab.range(range).unwrap());
        assert_eq!(got, want, "forward {a:?}..{b:?}");
        let mut rev = collect_rev(tab.range(range).unwrap());
        rev.reverse();
        assert_eq!(rev, want, "reverse {a:?}..{b:?}");
        // Alternate ends: the two ends meet without overlap.
        let mut it = tab.range(range).unwrap();
        let mut front = Vec::new();
        let mut back = Vec::new();
        while let Some(e) = it.next() {
            front.push(e.unwrap().0.to_vec());
            match it.next_back() {
                Some(e) => back.push(e.unwrap().0.to_vec()),
                None => break,
            }
        }
        back.reverse();
        front.extend(back);
        let want_keys: Vec<Vec<u8>> = want.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(front, want_keys, "alternating {a:?}..{b:?}");
    }
}

fn collect_rev(r: larch::Range<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    r.rev()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

#[test]
fn cursor_moves_both_ways() {
    let t = TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..3000 {
            tab.insert(&key(i * 2), &key(i)).unwrap();
        }
        let mut c = tab.cursor();
        assert_eq!(c.seek(&key(101)).unwrap().unwrap().0, key(102));
        assert_eq!(c.prev().unwrap().unwrap().0, key(100));
        assert_eq!(c.next().unwrap().unwrap().0, key(102));
        assert_eq!(c.last().unwrap().unwrap().0, key(5998));
        assert_eq!(c.next().unwrap(), None);
        assert_eq!(c.prev().unwrap().unwrap().0, key(5998));
        assert_eq!(c.first().unwrap().unwrap().0, key(0));
        assert_eq!(c.prev().unwrap(), None);
        assert_eq!(c.next().unwrap().unwrap().0, key(0));
        assert_eq!(c.seek(b"zzz").unwrap(), None);
        let mut n = 0;
        let mut c = tab.cursor();
        let mut last: Option<Vec<u8>> = None;
        while let Some((k, _)) = c.prev().unwrap() {
            assert!(last.as_deref().is_none_or(|l| k < l));
            last = Some(k.to_vec());
            n += 1;
        }
        assert_eq!(n, 3000);
    }
    w.commit().unwrap();
}

/// Keys up to a quarter page are held whole by their node; longer ones, up
/// to 65,536 bytes, keep their first bytes there and the rest beside their
/// value. Either side of both limits: the longest key of each kind is
/// stored, and one byte past 64 KiB is `KeyTooLarge`, which changes nothing.
#[test]
fn keys_at_the_limits_and_one_over() {
    for page_size in [512u32, 4096] {
        let t = TestDb::new(page_size);
        let inline = page_size as usize / 4;
        let lens = [inline, inline + 1, 65_536];
        let key = |i: u8, len: usize| {
            let mut k = vec![i; len];
            k[len - 1] = 0;
            k
        };
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..60u8 {
                let v = vec![i; (i as usize) * 7];
                tab.insert(&key(i, lens[usize::from(i) % 3]), &v).unwrap();
            }
            let err = tab.insert(&vec![1u8; 65_537], b"v").unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::KeyTooLarge {
                        len: 65_537,
                        max: 65_536
                    }
                ),
                "{err}"
            );
            assert!(!tab.remove(&vec![1u8; 65_537]).unwrap());
        }
        w.commit().unwrap();
        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        assert_eq!(tab.len(), 60);
        for i in 0..60u8 {
            assert_eq!(
                tab.get(&key(i, lens[usize::from(i) % 3])).unwrap().unwrap(),
                &vec![i; (i as usize) * 7][..]
            );
        }
        let keys: Vec<Vec<u8>> = tab.iter().unwrap().map(|e| e.unwrap().0.to_vec()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        drop(r);
        assert!(t.db().check().unwrap().is_clean());
    }
}

#[test]
fn empty_keys_and_values() {
    let mut t = TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        tab.insert(b"", b"empty key").unwrap();
        tab.insert(b"a", b"").unwrap();
        tab.insert(b"b", b"x").unwrap();
    }
    w.commit().unwrap();
    t.reopen();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    assert_eq!(tab.get(b"").unwrap(), Some(&b"empty key"[..]));
    assert_eq!(tab.get(b"a").unwrap(), Some(&b""[..]));
    assert_eq!(tab.cursor().first().unwrap().unwrap().0, b"");
    assert_eq!(tab.len(), 3);
}

#[test]
fn values_around_the_overflow_threshold() {
    let mut t = TestDb::new(512);
    let mut rng = Rng(3);
    let mut model = BTreeMap::new();
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for len in (0..3000).step_by(7) {
            let v = rng.bytes(len);
            tab.insert(&key(len as u32), &v).unwrap();
            model.insert(key(len as u32), v);
        }
        // Overwrite inline values with overflowing ones and back.
        for len in (0..3000).step_by(14) {
            let v = rng.bytes(3000 - len);
            tab.insert(&key(len as u32), &v).unwrap();
            model.insert(key(len as u32), v);
        }
    }
    w.commit().unwrap();
    t.reopen();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    let got = collect(tab.iter().unwrap());
    let want: Vec<_> = model.into_iter().collect();
    assert_eq!(got, want);
}

#[test]
fn abort_leaves_nothing_behind() {
    let mut t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    w.open_table("keep").unwrap().insert(b"k", b"v").unwrap();
    w.commit().unwrap();
    let size = t.file_size();
    let last = t.db().last_txn_id();

    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("keep").unwrap();
        tab.insert(b"k", b"changed").unwrap();
        for i in 0..1000 {
            tab.insert(&key(i), &[0u8; 100]).unwrap();
        }
    }
    w.open_table("new").unwrap().insert(b"x", b"y").unwrap();
    w.abort();

    // Dropping is an abort too.
    {
        let w = t.db().begin_write().unwrap();
        w.open_table("dropped").unwrap().insert(b"x", b"y").unwrap();
    }
    assert_eq!(t.db().last_txn_id(), last);
    assert_eq!(t.file_size(), size);
    for _ in 0..2 {
        let r = t.db().begin_read().unwrap();
        assert_eq!(r.list_tables().unwrap(), vec!["keep".to_string()]);
        let tab = r.open_table("keep").unwrap();
        assert_eq!(tab.get(b"k").unwrap(), Some(&b"v"[..]));
        assert_eq!(tab.len(), 1);
        assert!(matches!(r.open_table("new"), Err(Error::TableNotFound(n)) if n == "new"));
        drop(r);
        t.reopen();
    }
}

#[test]
fn reopen_after_many_commits_gives_the_last_state() {
    let mut t = TestDb::new(512);
    let mut model = BTreeMap::new();
    let mut rng = Rng(11);
    for round in 0..300u32 {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for _ in 0..20 {
                let k = key(rng.below(2000) as u32);
                if rng.below(4) == 0 {
                    tab.remove(&k).unwrap();
                    model.remove(&k);
                } else {
                    let n = rng.below(200) as usize;
                    let v = rng.bytes(n);
                    tab.insert(&k, &v).unwrap();
                    model.insert(k, v);
                }
            }
        }
        w.commit().unwrap();
        if round % 50 == 49 {
            t.reopen();
        }
    }
    let last = t.db().last_txn_id();
    t.reopen();
    assert_eq!(t.db().last_txn_id(), last);
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    assert_eq!(tab.len(), model.len() as u64);
    assert_eq!(
        collect(tab.iter().unwrap()),
        model.into_iter().collect::<Vec<_>>()
    );
}

#[test]
fn tables_are_named_listed_and_deleted() {
    let mut t = TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    for name in ["b", "a", "c"] {
        let mut tab = w.open_table(name).unwrap();
        for i in 0..2000 {
            tab.insert(&key(i), name.as_bytes()).unwrap();
        }
    }
    w.open_table("empty").unwrap();
    assert_eq!(w.list_tables().unwrap(), ["a", "b", "c", "empty"]);
    w.commit().unwrap();
    let pages = t.db().stat().unwrap().pages;

    t.reopen();
    let r = t.db().begin_read().unwrap();
    let b = r.open_table("b").unwrap().stat().unwrap();
    let b_pages = b.leaf_pages + b.branch_pages;
    assert_eq!(r.list_tables().unwrap(), ["a", "b", "c", "empty"]);
    assert_eq!(r.open_table("empty").unwrap().len(), 0);
    assert_eq!(
        r.open_table("b").unwrap().get(&key(5)).unwrap(),
        Some(&b"b"[..])
    );
    drop(r);

    let mut w = t.db().begin_write().unwrap();
    assert!(w.delete_table("b").unwrap());
    assert!(!w.delete_table("b").unwrap());
    assert!(!w.delete_table("nope").unwrap());
    assert_eq!(w.list_tables().unwrap(), ["a", "c", "empty"]);
    w.commit().unwrap();
    // Deleted pages come back: a new table of the same size takes them
    // (after two commits, when the reuse rule releases them), and the
    // high-water mark grows by much less than the table (the pages the
    // commits since copied, and the free list's).
    for _ in 0..2 {
        let w = t.db().begin_write().unwrap();
        w.open_table("a").unwrap().insert(b"tick", b"").unwrap();
        w.commit().unwrap();
    }
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("d").unwrap();
        for i in 0..2000 {
            tab.insert(&key(i), b"d").unwrap();
        }
    }
    w.commit().unwrap();
    let grown = t.db().stat().unwrap().pages - pages;
    assert!(grown * 2 < b_pages, "{grown} pages grown, {b_pages} freed");
    let r = t.db().begin_read().unwrap();
    assert!(matches!(r.open_table("b"), Err(Error::TableNotFound(_))));
    assert_eq!(r.open_table("d").unwrap().len(), 2000);
    assert_eq!(r.open_table("a").unwrap().len(), 2001);
    let report = r.check().unwrap();
    assert_eq!((report.tables, report.entries), (4, 2000 + 2001 + 2000));
}
