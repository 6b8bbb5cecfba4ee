//! `stat` figures and hot backups (`ReadTxn::copy_to`).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{TestDb, collect, open};
use larch::{Database, ReadTxn};

type Tables = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

/// Every table of a snapshot, owned.
fn contents(r: &ReadTxn) -> Tables {
    r.list_tables()
        .unwrap()
        .into_iter()
        .map(|name| {
            let entries = collect(r.open_table(&name).unwrap().iter().unwrap());
            (name, entries)
        })
        .collect()
}

fn key(i: u32) -> Vec<u8> {
    format!("key{:08}", i.wrapping_mul(2_654_435_761) % 1_000_000).into_bytes()
}

/// Three tables (one empty), overflow values, and a churned free list.
fn fill(db: &Database) {
    let w = db.begin_write().unwrap();
    {
        let mut a = w.open_table("a").unwrap();
        for i in 0..5000 {
            a.insert(&key(i), &vec![i as u8; 40 + (i % 60) as usize])
                .unwrap();
        }
        // Values packed into segments, and values of runs of their own.
        let mut big = w.open_table("big").unwrap();
        for i in 0..10u32 {
            let len = if i % 2 == 0 { 10_000 } else { 140_000 };
            big.insert(&i.to_be_bytes(), &vec![i as u8; len]).unwrap();
        }
    }
    w.open_table("empty").unwrap();
    w.commit().unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut a = w.open_table("a").unwrap();
        for i in (0..5000).step_by(3) {
            assert!(a.remove(&key(i)).unwrap());
        }
    }
    w.commit().unwrap();
}

#[test]
fn stat_accounts_for_every_page() {
    let t = TestDb::new(4096);
    let db = t.db();
    fill(db);
    let r = db.begin_read().unwrap();
    let stat = db.stat().unwrap();
    let report = r.check().unwrap();
    assert_eq!(stat.page_size, 4096);
    assert_eq!(stat.txn_id, db.last_txn_id());
    assert_eq!(stat.tables, 3);
    assert_eq!(stat.file_size, t.file_size());
    assert!(stat.pages * 4096 <= stat.file_size);
    assert_eq!(stat.live_readers, 1, "the reader above, not stat's own");

    let tables: Vec<_> = ["a", "big", "empty"]
        .iter()
        .map(|n| r.open_table(n).unwrap().stat().unwrap())
        .collect();
    let (a, big, empty) = (tables[0], tables[1], tables[2]);
    assert_eq!(a.entries, 5000 - 1667);
    assert!(a.depth >= 2 && a.branch_pages >= 1 && a.leaf_pages > 10);
    assert_eq!(a.overflow_pages, 0);
    // A 140,000-byte value after a 24-byte run header takes 35 pages of
    // 4 KiB; the 10,000-byte ones are packed.
    assert_eq!((big.entries, big.overflow_pages, big.depth), (10, 175, 1));
    assert_eq!((big.packed_values, big.packed_bytes), (5, 50_000));
    assert_eq!(stat.packed_bytes, 50_000);
    assert_eq!(stat.segment_pages, report.segment_pages);
    assert!(stat.segment_pages * 4096 < 50_000 + 2 * 4096);
    assert_eq!(empty, larch::TableStat::default());

    // The parts add up to the file: the checker's independent walk agrees.
    let sum = |f: fn(&larch::TableStat) -> u64| {
        f(&stat.catalog) + f(&stat.heap_tree) + tables.iter().map(f).sum::<u64>()
    };
    assert_eq!(sum(|s| s.branch_pages), report.branch_pages);
    assert_eq!(sum(|s| s.leaf_pages), report.leaf_pages);
    assert_eq!(sum(|s| s.overflow_pages), report.overflow_pages);
    assert_eq!(stat.free_pages, report.free_pages);
    assert_eq!(stat.pending_free_pages, report.pending_free_pages);
    assert_eq!(stat.freelist_pages, report.freelist_pages);
    assert!(stat.free_pages > 0, "the removals freed pages");
    let used = sum(|s| s.branch_pages + s.leaf_pages + s.overflow_pages) + stat.segment_pages;
    assert_eq!(2 + used + stat.freelist_pages + stat.free_pages, stat.pages);

    let r2 = db.begin_read().unwrap();
    assert_eq!(r2.stat().unwrap().live_readers, 2);
    assert_eq!(db.stat().unwrap().live_readers, 2);
}

#[test]
fn plain_and_compact_copies_equal_the_snapshot() {
    let t = TestDb::new(4096);
    let db = t.db();
    fill(db);
    let r = db.begin_read().unwrap();
    let want = contents(&r);
    let plain = t.dir.path().join("plain.larch");
    let compact = t.dir.path().join("compact.larch");
    r.copy_to(&plain, false).unwrap();
    r.copy_to(&compact, true).unwrap();
    drop(r);

    let plain_size = std::fs::metadata(&plain).unwrap().len();
    let compact_size = std::fs::metadata(&compact).unwrap().len();
    let plain_stat = open(&plain, 4096).stat().unwrap();
    assert_eq!(plain_stat.txn_id, t.db().last_txn_id());
    // The compact copy holds full pages and next to no free ones.
    let cstat = open(&compact, 4096).stat().unwrap();
    assert!(cstat.free_pages <= 8, "{cstat:?}");
    assert_eq!(
        compact_size,
        cstat.pages * 4096,
        "no slack after the last page"
    );
    // Both hold the five 140,000-byte values' runs whole (35 pages each);
    // the rest shrinks to less than two fifths.
    let runs = 5 * 35 * 4096;
    assert!(
        (compact_size - runs) * 10 < (plain_size - runs) * 4,
        "compact {compact_size} bytes, plain {plain_size}"
    );
    for path in [&plain, &compact] {
        let copy = open(path, 4096);
        copy.check().unwrap();
        assert_eq!(contents(&copy.begin_read().unwrap()), want, "{path:?}");
        // The copy is a working database.
        let w = copy.begin_write().unwrap();
        w.open_table("a").unwrap().insert(b"new", b"entry").unwrap();
        w.commit().unwrap();
        copy.check().unwrap();
    }
    assert!(!t.dir.path().join("plain.larch.larch-copy").exists());
}

#[test]
fn a_copy_refuses_an_existing_destination() {
    let t = TestDb::new(512);
    fill(t.db());
    let dest = t.dir.path().join("dest");
    std::fs::write(&dest, b"precious").unwrap();
    let r = t.db().begin_read().unwrap();
    for compact in [false, true] {
        let e = r.copy_to(&dest, compact).unwrap_err();
        assert!(
            matches!(&e, larch::Error::Io(io) if io.kind() == std::io::ErrorKind::AlreadyExists),
            "{e}"
        );
    }
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
}

#[test]
fn hot_copies_taken_while_a_writer_commits() {
    let t = TestDb::new(4096);
    let db = t.db();
    fill(db);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let w = db.begin_write().unwrap();
                {
                    let mut a = w.open_table("a").unwrap();
                    for j in 0..200 {
                        let k = key(i * 200 + j);
                        if j % 4 == 0 {
                            a.remove(&k).unwrap();
                        } else {
                            a.insert(&k, &[j as u8; 90]).unwrap();
                        }
                    }
                }
                w.commit().unwrap();
                i += 1;
            }
        });
        for round in 0..6 {
            let r = db.begin_read().unwrap();
            let compact = round % 2 == 0;
            let path = t.dir.path().join(format!("copy{round}"));
            r.copy_to(&path, compact).unwrap();
            // The snapshot, read after the copy, is what the copy holds.
            let want = contents(&r);
            let id = r.id();
            drop(r);
            let copy = open(&path, 4096);
            copy.check().unwrap();
            assert_eq!(contents(&copy.begin_read().unwrap()), want, "round {round}");
            if !compact {
                assert_eq!(copy.last_txn_id(), id);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    db.check().unwrap();
}

/// A table name long enough pushes its catalog entry's descriptor out of
/// the leaf, into a value segment; one longer than a node holds whole goes
/// there with it. Names around those boundaries: `check` passes, and the
/// figures `stat` gives add up to the high-water mark, at the smallest,
/// default and largest page sizes.
#[test]
fn long_table_names_spill_and_are_accounted_for() {
    for ps in [512usize, 4096, 65536] {
        let mut t = TestDb::new(ps as u32);
        // A leaf cell is 8 bytes of header, the name and the 24-byte
        // descriptor; it stays inline up to a quarter of the usable bytes
        // (slot included).
        let inline_max = (ps - 24) / 4 - 2 - 8 - 24;
        let max = ps / 4;
        let lengths = [
            1,
            inline_max - 1,
            inline_max,
            inline_max + 1,
            max - 1,
            max,
            max + 1,
            5000,
        ];
        let spilled = lengths.iter().filter(|&&n| n > inline_max).count() as u64;
        // A long name's bytes lie beside its descriptor's.
        let packed_bytes: u64 = lengths
            .iter()
            .filter(|&&n| n > inline_max)
            .map(|&n| 24 + if n > max { n as u64 } else { 0 })
            .sum();
        let name = |n: usize| "n".repeat(n);
        let check = |db: &Database| {
            let r = db.begin_read().unwrap();
            let report = r.check().unwrap_or_else(|e| panic!("page size {ps}: {e}"));
            let stat = r.stat().unwrap();
            let tables: Vec<_> = r
                .list_tables()
                .unwrap()
                .iter()
                .map(|n| r.open_table(n).unwrap().stat().unwrap())
                .collect();
            let sum = |f: fn(&larch::TableStat) -> u64| {
                f(&stat.catalog) + f(&stat.heap_tree) + tables.iter().map(f).sum::<u64>()
            };
            assert_eq!(sum(|s| s.branch_pages), report.branch_pages, "{ps}");
            assert_eq!(sum(|s| s.leaf_pages), report.leaf_pages, "{ps}");
            assert_eq!(sum(|s| s.overflow_pages), report.overflow_pages, "{ps}");
            assert_eq!(stat.segment_pages, report.segment_pages, "{ps}");
            let used =
                sum(|s| s.branch_pages + s.leaf_pages + s.overflow_pages) + stat.segment_pages;
            assert_eq!(
                2 + used + stat.freelist_pages + stat.free_pages,
                stat.pages,
                "page size {ps}: {stat:?}"
            );
            (stat, report)
        };

        let w = t.db().begin_write().unwrap();
        for (i, &n) in lengths.iter().enumerate() {
            let mut tab = w.open_table(&name(n)).unwrap();
            for j in 0..i as u32 {
                tab.insert(&j.to_be_bytes(), b"value").unwrap();
            }
        }
        let e = w.open_table(&name(65_537)).err().unwrap();
        assert!(
            matches!(
                e,
                larch::Error::KeyTooLarge {
                    len: 65_537,
                    max: 65_536
                }
            ),
            "{e}"
        );
        w.commit().unwrap();
        let (stat, _) = check(t.db());
        assert_eq!(stat.tables, lengths.len() as u64);
        // A spilled entry's 24-byte descriptor is packed into a segment.
        assert_eq!(stat.catalog.packed_values, spilled, "page size {ps}");
        assert_eq!(stat.catalog.packed_bytes, packed_bytes, "page size {ps}");

        // Rewriting a spilled descriptor releases its old place; deleting a
        // table releases its entry's.
        let mut w = t.db().begin_write().unwrap();
        w.open_table(&name(max))
            .unwrap()
            .insert(b"more", b"x")
            .unwrap();
        assert!(w.delete_table(&name(inline_max + 1)).unwrap());
        w.commit().unwrap();
        check(t.db());
        t.reopen();
        let (stat, _) = check(t.db());
        assert_eq!(stat.catalog.packed_values, spilled - 1, "page size {ps}");
        let r = t.db().begin_read().unwrap();
        assert_eq!(r.open_table(&name(max)).unwrap().len(), 6);
        assert_eq!(r.open_table(&name(5000)).unwrap().len(), 7);
        assert_eq!(r.open_table(&name(inline_max)).unwrap().len(), 2);
    }
}

/// Names in `dir`, sorted.
fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A live database whose own name is a copy's destination plus the suffix
/// copies once used for their temporary file: the copy must not touch it,
/// and the commits after the copy survive a reopen.
#[test]
fn a_copy_never_removes_a_file_it_did_not_create() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("backup.larch-copy");
    let precious = dir.path().join("other.larch-copy");
    std::fs::write(&precious, b"precious").unwrap();
    let db = open(&live, 512);
    fill(&db);
    for (i, compact) in [false, true].into_iter().enumerate() {
        let r = db.begin_read().unwrap();
        let want = contents(&r);
        r.copy_to(dir.path().join("backup"), compact).unwrap();
        r.copy_to(dir.path().join("other"), compact).unwrap();
        drop(r);
        for dest in ["backup", "other"] {
            let copy = open(&dir.path().join(dest), 512);
            copy.check().unwrap();
            assert_eq!(contents(&copy.begin_read().unwrap()), want, "{dest}");
            drop(copy);
            std::fs::remove_file(dir.path().join(dest)).unwrap();
            std::fs::remove_file(dir.path().join(format!("{dest}-lock"))).unwrap();
        }
        let w = db.begin_write().unwrap();
        w.open_table("after")
            .unwrap()
            .insert(&[i as u8], b"copy")
            .unwrap();
        w.commit().unwrap();
    }
    assert_eq!(std::fs::read(&precious).unwrap(), b"precious");
    drop(db);
    let db = open(&live, 512);
    db.check().unwrap();
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("after").unwrap().len(), 2);
    assert_eq!(r.open_table("a").unwrap().len(), 5000 - 1667);
    assert_eq!(
        dir_names(dir.path()),
        [
            "backup.larch-copy",
            "backup.larch-copy-lock",
            "other.larch-copy"
        ]
    );
}

/// Copies to one destination from several threads at once: each either
/// writes the destination or is refused with `AlreadyExists`, the one that
/// wins leaves a whole copy, and nothing else in the directory changes.
#[test]
fn concurrent_copies_to_one_destination() {
    let t = TestDb::new(512);
    let db = t.db();
    fill(db);
    let precious = t.dir.path().join("dest.larch-copy");
    std::fs::write(&precious, b"precious").unwrap();
    let want = contents(&db.begin_read().unwrap());
    for round in 0..8 {
        let dest = t.dir.path().join("dest");
        let results: Vec<larch::Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let dest = &dest;
                    s.spawn(move || {
                        let r = db.begin_read().unwrap();
                        r.copy_to(dest, (round + i) % 2 == 0)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert!(won >= 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, larch::Error::Io(io) if io.kind() == std::io::ErrorKind::AlreadyExists),
                    "round {round}: {e}"
                );
            }
        }
        let copy = open(&dest, 512);
        copy.check().unwrap();
        assert_eq!(contents(&copy.begin_read().unwrap()), want, "round {round}");
        drop(copy);
        assert_eq!(std::fs::read(&precious).unwrap(), b"precious");
        assert_eq!(
            dir_names(t.dir.path()),
            [
                "dest",
                "dest-lock",
                "dest.larch-copy",
                "test.larch",
                "test.larch-lock"
            ],
            "round {round}"
        );
        std::fs::remove_file(&dest).unwrap();
        std::fs::remove_file(t.dir.path().join("dest-lock")).unwrap();
    }
}

/// A copy that fails part-way (here: a compacting copy of a damaged tree)
/// leaves neither the destination nor a temporary file behind.
#[test]
fn a_failed_copy_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let image = larch::testing::corrupt::damaged_image(larch::testing::corrupt::Class::Cycle);
    std::fs::write(&path, image).unwrap();
    let db = open(&path, 512);
    let r = db.begin_read().unwrap();
    let e = r.copy_to(dir.path().join("dest"), true).unwrap_err();
    assert!(matches!(e, larch::Error::Corrupted { .. }), "{e}");
    // The database's own lock file, and nothing of the copy.
    assert_eq!(dir_names(dir.path()), ["db", "db-lock"]);
}
