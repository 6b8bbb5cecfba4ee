//! Hostile review of file shrinking and `compact` (DESIGN.md, "Shrinking the
//! file"): edge cases of compaction, a full file, and cuts racing readers of
//! another handle.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{Rng, TestDb};
use larch::{Database, Options};

const PS: u32 = 4096;

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

fn value(i: u32, len: usize) -> Vec<u8> {
    i.to_le_bytes().iter().copied().cycle().take(len).collect()
}

fn no_leaks(db: &Database) {
    let report = db.check().unwrap();
    assert_eq!(report.leaked_pages, 0, "{report:?}");
}

/// `compact` on a new file, on one with an empty table, and on one whose only
/// table was deleted: no error, no growth, nothing leaked.
#[test]
fn compact_on_trivial_files() {
    let mut t = TestDb::new(PS);
    let before = t.file_size();
    assert_eq!(t.db().compact().unwrap(), 0);
    assert!(t.file_size() <= before);
    no_leaks(t.db());
    {
        let w = t.db().begin_write().unwrap();
        w.open_table("empty").unwrap();
        w.commit().unwrap();
    }
    t.db().compact().unwrap();
    no_leaks(t.db());
    {
        let w = t.db().begin_write().unwrap();
        {
            let mut x = w.open_table("x").unwrap();
            for i in 0..2000 {
                x.insert(&key(i), &value(i, 3000)).unwrap();
            }
        }
        w.commit().unwrap();
    }
    {
        let mut w = t.db().begin_write().unwrap();
        w.delete_table("x").unwrap();
        w.commit().unwrap();
    }
    t.db().compact().unwrap();
    no_leaks(t.db());
    let s = t.db().stat().unwrap();
    eprintln!("after dropping x: pages {} file {}", s.pages, t.file_size());
    assert!(t.file_size() <= (s.pages + 16) * u64::from(PS));
    t.reopen();
    no_leaks(t.db());
}

/// Many tables, values of many sizes (inline, one page, long runs), random
/// deletes and dropped tables; `compact` keeps every value, leaks nothing,
/// and a second `compact` returns nothing (the first did the whole job).
#[test]
fn compact_many_tables_and_run_lengths() {
    let mut t = TestDb::new(PS);
    let db = t.db();
    let mut rng = Rng(99);
    let sizes = [10usize, 2000, 4100, 9000, 30000, 70000];
    let mut model: Vec<std::collections::BTreeMap<u32, usize>> = vec![Default::default(); 6];
    for round in 0..20u32 {
        let w = db.begin_write().unwrap();
        for (ti, m) in model.iter_mut().enumerate() {
            let mut tb = w.open_table(&format!("t{ti}")).unwrap();
            for j in 0..60u32 {
                let k = round * 1000 + j;
                let len = sizes[rng.below(sizes.len() as u64) as usize];
                tb.insert(&key(k), &value(k, len)).unwrap();
                m.insert(k, len);
            }
        }
        w.commit().unwrap();
    }
    // Delete 85% at random, and drop two tables.
    let mut w = db.begin_write().unwrap();
    for (ti, m) in model.iter_mut().enumerate() {
        let mut tb = w.open_table(&format!("t{ti}")).unwrap();
        let ks: Vec<u32> = m.keys().copied().collect();
        for k in ks {
            if rng.below(100) < 85 {
                assert!(tb.remove(&key(k)).unwrap());
                m.remove(&k);
            }
        }
    }
    w.delete_table("t1").unwrap();
    w.delete_table("t4").unwrap();
    w.commit().unwrap();
    model[1].clear();
    model[4].clear();
    let before = t.file_size();
    let returned = db.compact().unwrap();
    let after = t.file_size();
    let s = db.stat().unwrap();
    let live = s.pages - s.free_pages;
    eprintln!(
        "before {before} after {after} returned {returned} live {live} hw {}",
        s.pages
    );
    no_leaks(db);
    let check = |db: &Database| {
        let r = db.begin_read().unwrap();
        for (ti, m) in model.iter().enumerate() {
            if m.is_empty() {
                continue;
            }
            let tb = r.open_table(&format!("t{ti}")).unwrap();
            assert_eq!(tb.len(), m.len() as u64);
            for (&k, &len) in m {
                assert_eq!(
                    tb.get(&key(k)).unwrap(),
                    Some(&value(k, len)[..]),
                    "t{ti} {k}"
                );
            }
        }
    };
    check(db);
    assert!(
        after <= live * u64::from(PS) * 12 / 10 + (1 << 16),
        "file {after} for {live} live pages"
    );
    let again = db.compact().unwrap();
    eprintln!("second compact returned {again}");
    no_leaks(db);
    t.reopen();
    check(t.db());
    no_leaks(t.db());
}

/// A file at its `max_size` with a few free pages low down and its tree at
/// the end: compaction moves overflow runs into the low pages and then needs
/// pages for the copies of their leaves and parents, which the file cannot
/// grow to. `compact` should do what fits, not fail with `MapFull`.
#[test]
fn compact_at_max_size() {
    let mut failures = Vec::new();
    for freed in [1u32, 2, 3, 4, 6, 8, 12] {
        let max = 4u64 << 20;
        let opts = Options::new().page_size(PS).map_size(max).max_size(max);
        let mut t = TestDb::with_options(opts);
        let db = t.db();
        // Fill with one-page overflow values until the file is full, one
        // key per commit at the end so that the high-water mark is at the top.
        let mut n = 0u32;
        let mut per = 20;
        loop {
            let w = db.begin_write().unwrap();
            let ok = {
                let mut tb = w.open_table("t").unwrap();
                (0..per).all(|k| tb.insert(&key(n + k), &value(n + k, 3000)).is_ok())
            };
            if ok && w.commit().is_ok() {
                n += per;
            } else if per > 1 {
                per = 1;
            } else {
                break;
            }
        }
        let hw = db.stat().unwrap().pages;
        // Free a few pages at the start: the lowest keys' values.
        {
            let w = db.begin_write().unwrap();
            {
                let mut tb = w.open_table("t").unwrap();
                for i in 0..freed {
                    tb.remove(&key(i)).unwrap();
                }
            }
            w.commit().unwrap();
        }
        let r = db.compact();
        eprintln!(
            "freed {freed}: {n} keys, hw {hw}/1024, compact: {r:?}, file {}",
            t.file_size()
        );
        no_leaks(db);
        let rd = db.begin_read().unwrap();
        let tb = rd.open_table("t").unwrap();
        for i in freed..n {
            assert_eq!(tb.get(&key(i)).unwrap(), Some(&value(i, 3000)[..]));
        }
        drop(rd);
        if let Err(e) = r {
            failures.push((freed, e));
        }
        t.reopen();
        no_leaks(t.db());
    }
    assert!(
        failures.is_empty(),
        "compact on a full file failed: {failures:?}"
    );
}

/// Two handles (as two processes): both write, both compact, readers of
/// both read whole snapshots meanwhile. A cut below a snapshot a reader
/// holds would be a SIGBUS or a wrong value.
#[test]
fn two_handles_write_compact_and_read() {
    let t = TestDb::new(PS);
    let a = t.db();
    // SAFETY: the test owns the file; larch handles share it.
    let b = unsafe { common::small_map(PS).open(t.path()) }.unwrap();
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let n = 3000u32;
    let fill = |db: &Database, round: u32| {
        let w = db.begin_write().unwrap();
        {
            let mut tb = w.open_table("t").unwrap();
            for i in 0..n {
                tb.insert(&key(i), &value(round ^ i, 100 + (i as usize % 7) * 1500))
                    .unwrap();
            }
        }
        w.commit().unwrap();
    };
    let wipe = |db: &Database| {
        let w = db.begin_write().unwrap();
        {
            let mut tb = w.open_table("t").unwrap();
            for i in 0..n {
                if i % 10 != 0 {
                    tb.remove(&key(i)).unwrap();
                }
            }
        }
        w.commit().unwrap();
    };
    std::thread::scope(|s| {
        for h in [a, &b] {
            for _ in 0..1 {
                let (stop, reads) = (&stop, &reads);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let r = h.begin_read().unwrap();
                        let Ok(tb) = r.open_table("t") else { continue };
                        let mut sum = 0u64;
                        for e in tb.iter().unwrap() {
                            let (_, v) = e.unwrap();
                            sum += v.iter().map(|&x| x as u64).sum::<u64>();
                        }
                        std::hint::black_box(sum);
                        r.check().unwrap();
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
        for round in 0..12u32 {
            let h = if round % 2 == 0 { a } else { &b };
            fill(h, round);
            wipe(h);
            let other = if round % 3 == 0 { a } else { &b };
            other.compact().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    eprintln!(
        "reads {} file {}",
        reads.load(Ordering::Relaxed),
        t.file_size()
    );
    no_leaks(a);
    no_leaks(&b);
}

/// A crafted free list that lists the last page of the file, which the
/// newest commit reaches (the last page of an overflow run), as reusable.
/// Opened as trusted (no `verify`), the next commit's `trim_tail` would
/// lower the high-water mark below a reachable page, and the value would be
/// lost: such a file breaks the contract of a trusted open. `verify(true)`
/// must set the crafted commit aside.
#[test]
fn a_free_list_naming_the_reachable_tail_page_is_set_aside_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted.larch");
    let opts = Options::new().page_size(PS).map_size(1 << 26);
    let big = value(7, 40_000);
    {
        // SAFETY: the test owns the file.
        let db = unsafe { opts.open(&path) }.unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for i in 0..60 {
                t.insert(&key(i), &value(i, 5000)).unwrap();
            }
        }
        w.commit().unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for i in 0..60 {
                if i % 3 == 0 {
                    t.remove(&key(i)).unwrap();
                }
            }
        }
        w.commit().unwrap();
        for i in 0..3 {
            let w = db.begin_write().unwrap();
            w.open_table("u").unwrap().insert(&key(i), b"x").unwrap();
            w.commit().unwrap();
        }
        let w = db.begin_write().unwrap();
        w.open_table("t").unwrap().insert(b"zz", &big).unwrap();
        w.commit().unwrap();
    }
    let mut image = std::fs::read(&path).unwrap();
    let states = larch::testing::image_state(&image, PS as usize);
    let newest = states.iter().max_by_key(|s| s.txn_id).unwrap().clone();
    let top = newest.high_water - 1;
    assert!(
        newest.reachable.as_ref().unwrap().contains(&top),
        "tail page reachable"
    );
    let mut head = 0;
    assert!(larch::testing::edit_meta(
        &mut image,
        PS as usize,
        newest.slot as usize,
        |m| {
            head = m.freelist_head;
            // The chain page is edited below: no seal to vouch for it.
            m.seal.clear();
        }
    ));
    assert!(head != 0);
    // The last entry of the last leaf (the directory's last id, or the lone
    // leaf the meta names; entries
    // are in page order, and no free page is above the reachable top)
    // becomes (freed_by 0, written_by 0, page top): reusable.
    let ps = PS as usize;
    let count_at = |image: &[u8], page: usize| {
        usize::from(u16::from_le_bytes([
            image[page * ps + 2],
            image[page * ps + 3],
        ]))
    };
    let dir = head as usize;
    let leaf = if image[dir * ps] == 4 {
        // A lone leaf, which the meta names itself.
        dir
    } else {
        assert_eq!(image[dir * ps], 6, "a directory page");
        let last = dir * ps + 24 + 8 * (count_at(&image, dir) - 1);
        u64::from_le_bytes(image[last..last + 8].try_into().unwrap()) as usize
    };
    let at = leaf * ps + 24 + 24 * (count_at(&image, leaf) - 1);
    image[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
    image[at + 8..at + 16].copy_from_slice(&0u64.to_le_bytes());
    image[at + 16..at + 24].copy_from_slice(&top.to_le_bytes());
    larch::testing::restamp(&mut image, ps, leaf as u64);
    std::fs::write(&path, &image).unwrap();

    // A file someone edited breaks the contract of a trusted open: there,
    // the trim cuts the page off (DESIGN.md, "Shrinking the file"). Opened
    // with `verify(true)`, as such a file must be, the crafted commit is set
    // aside and nothing is lost of the commit before it.
    // SAFETY: the test owns the file; `verify` checks what it holds.
    let db = unsafe { opts.clone().verify(true).open(&path) }.unwrap();
    let stat = db.stat().unwrap();
    assert!(stat.set_aside.is_some(), "{stat:?}");
    assert!(db.last_txn_id() < newest.txn_id);
    for i in 0..4u32 {
        let w = db.begin_write().unwrap();
        w.open_table("u")
            .unwrap()
            .insert(&key(100 + i), &value(i, 20))
            .unwrap();
        w.commit().unwrap();
        db.check().unwrap();
    }
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("t").unwrap().len(), 40);
}
