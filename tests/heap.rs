//! The value heap: values too long for their leaf and short enough to share
//! pages are packed into value segments; longer ones get runs of their own.
//! Every size round-trips, the file stays close to the data, dead values are
//! reclaimed, and `check` accounts for every byte range.

mod common;

use common::heap_image::assert_clean;
use common::{TestDb, seeded_bytes as bytes};
use larch::Options;

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// The lengths around every boundary of the layout at `ps`-byte pages (the
/// inline limit for 8-byte keys, a page, the longest packed value), some
/// short ones, and runs of their own.
fn boundary_lengths(ps: usize) -> Vec<usize> {
    let mut lens = vec![0, 1, 12, 13, 100];
    lens.extend(larch::testing::boundary_lengths(ps, 8));
    lens.extend([40 * ps, 40 * ps + 1]);
    lens
}

#[test]
fn every_boundary_length_round_trips() {
    for ps in [512u32, 4096, 65536] {
        let mut t = TestDb::with_options(Options::new().page_size(ps).map_size(1 << 30));
        let lens = boundary_lengths(ps as usize);
        {
            let db = t.db();
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for (i, &len) in lens.iter().enumerate() {
                    tab.insert(&key(i as u64), &bytes(i as u64, len)).unwrap();
                    // Read back inside the transaction, from its buffers.
                    assert_eq!(tab.get(&key(i as u64)).unwrap().unwrap().len(), len);
                }
                for (i, &len) in lens.iter().enumerate() {
                    let got = tab.get(&key(i as u64)).unwrap().unwrap();
                    assert_eq!(got, &bytes(i as u64, len)[..], "ps {ps} len {len}");
                }
            }
            w.commit().unwrap();
        }
        t.reopen();
        let db = t.db();
        let r = db.begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        for (i, &len) in lens.iter().enumerate() {
            let got = tab.get(&key(i as u64)).unwrap().unwrap();
            assert_eq!(got, &bytes(i as u64, len)[..], "ps {ps} len {len}");
        }
        let stat = tab.stat().unwrap();
        assert!(stat.packed_values > 0, "{stat:?}");
        assert!(stat.overflow_pages > 0, "{stat:?}");
        drop(r);
        let report = assert_clean(db);
        assert!(report.segments > 0);
        // Every value removed: the heap and the runs are gone.
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..lens.len() {
                assert!(tab.remove(&key(i as u64)).unwrap());
            }
        }
        w.commit().unwrap();
        let report = assert_clean(db);
        assert_eq!((report.segments, report.segment_pages), (0, 0));
        assert_eq!(report.overflow_pages, 0);
    }
}

/// Medium values pack: 20,000 values of 1,100 bytes take little more than
/// their bytes (each had a 4 KiB page of its own before the heap).
#[test]
fn medium_values_take_about_their_bytes() {
    for len in [1100usize, 2100, 5000] {
        let t = TestDb::with_options(Options::new().map_size(1 << 30));
        let db = t.db();
        let n = 20_000u64;
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for &i in chunk {
                    let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    tab.insert(&key(k), &bytes(i, len)).unwrap();
                }
            }
            w.commit().unwrap();
        }
        let report = assert_clean(db);
        let data = n * (len as u64 + 8);
        let used = (report.pages - report.free_pages) * 4096;
        assert!(
            used as f64 <= 1.3 * data as f64,
            "{len}: {used} bytes in use for {data} bytes of data"
        );
        // The segments hold little but live values.
        assert!(
            report.segment_pages * 4096 <= report.packed_bytes * 102 / 100 + 4096 * 40,
            "{len}: {} segments, {} pages, {} live bytes, used {used}, data {data}",
            report.segments,
            report.segment_pages,
            report.packed_bytes
        );
    }
}

/// Values of 100 KiB (25 pages, packed) loaded into a growing file take
/// about their bytes: each segment is sized to the values it can hold, and
/// grows in place at the end of the file when no free run could take the
/// value. (Segments of 64 pages held two such values and left 12-page runs
/// that no later value fitted: 1.28 times the data.)
#[test]
fn long_packed_values_take_about_their_bytes() {
    let t = TestDb::with_options(Options::new().map_size(1 << 30));
    let db = t.db();
    let (n, len) = (600u64, 100 * 1024);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for &i in chunk {
                tab.insert(&key(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)), &bytes(i, len))
                    .unwrap();
            }
        }
        w.commit().unwrap();
    }
    let report = assert_clean(db);
    let data = n * (len as u64 + 8);
    let used = (report.pages - report.free_pages) * 4096;
    assert!(
        used as f64 <= 1.1 * data as f64 && report.pages * 4096 <= data * 12 / 10,
        "{used} bytes in use, {} pages, for {data} bytes of data",
        report.pages
    );
}

/// Overwrites leave dead values in old segments; the commit cleans the heap
/// once the dead bytes pass a third of it, so the heap stays within one and
/// a half times the live bytes however long the churn goes on.
#[test]
fn churn_keeps_the_heap_bounded() {
    let t = TestDb::with_options(Options::new().map_size(1 << 30));
    let db = t.db();
    let n = 3000u64;
    let mut version = vec![0u64; n as usize];
    let mut rng = 7u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let len = |i: u64, v: u64| 1000 + ((i * 31 + v * 17) % 3000) as usize;
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..n {
            tab.insert(&key(i), &bytes(i, len(i, 0))).unwrap();
        }
    }
    w.commit().unwrap();
    for round in 0..60 {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for _ in 0..400 {
                let i = next() % n;
                version[i as usize] += 1;
                let v = version[i as usize];
                tab.insert(&key(i), &bytes(i * 1000 + v, len(i, v)))
                    .unwrap();
            }
        }
        w.commit().unwrap();
        let report = assert_clean(db);
        assert!(
            report.segment_pages * 4096 * 2 <= 3 * report.packed_bytes + 4 * 64 * 4096,
            "round {round}: {} segment pages for {} live bytes",
            report.segment_pages,
            report.packed_bytes
        );
    }
    let r = db.begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    for i in 0..n {
        let v = version[i as usize];
        let want = bytes(if v == 0 { i } else { i * 1000 + v }, len(i, v));
        assert_eq!(tab.get(&key(i)).unwrap().unwrap(), &want[..], "key {i}");
    }
}

/// A reader holds its snapshot through overwrites, deletions and the
/// cleaning they cause: its slices keep their bytes.
#[test]
fn a_reader_keeps_its_values_through_cleaning() {
    let t = TestDb::with_options(Options::new().map_size(1 << 30));
    let db = t.db();
    let n = 2000u64;
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..n {
            tab.insert(&key(i), &bytes(i, 1500)).unwrap();
        }
    }
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    let held: Vec<&[u8]> = (0..n).map(|i| tab.get(&key(i)).unwrap().unwrap()).collect();
    for round in 0..5u64 {
        let w = db.begin_write().unwrap();
        {
            let mut t2 = w.open_table("t").unwrap();
            for i in 0..n {
                if i % 5 != round {
                    t2.insert(
                        &key(i),
                        &bytes(i + 7777 * (round + 1), 1500 + round as usize),
                    )
                    .unwrap();
                }
            }
        }
        w.commit().unwrap();
    }
    for (i, v) in held.iter().enumerate() {
        assert_eq!(*v, &bytes(i as u64, 1500)[..], "key {i}");
    }
    drop(r);
    assert_clean(db);
}

/// An aborted transaction's segments go back; a deleted table's values
/// leave the heap.
#[test]
fn abort_and_delete_table_give_segments_back() {
    let t = TestDb::with_options(Options::new().map_size(1 << 30));
    let db = t.db();
    let w = db.begin_write().unwrap();
    {
        let mut a = w.open_table("a").unwrap();
        for i in 0..500 {
            a.insert(&key(i), &bytes(i, 3000)).unwrap();
        }
    }
    w.abort();
    assert_clean(db);
    let w = db.begin_write().unwrap();
    for name in ["a", "b"] {
        let mut tab = w.open_table(name).unwrap();
        for i in 0..500 {
            tab.insert(&key(i), &bytes(i, 3000)).unwrap();
        }
    }
    w.commit().unwrap();
    let before = assert_clean(db);
    let mut w = db.begin_write().unwrap();
    assert!(w.delete_table("a").unwrap());
    w.commit().unwrap();
    let after = assert_clean(db);
    assert_eq!(after.packed_bytes * 2, before.packed_bytes);
    let mut w = db.begin_write().unwrap();
    assert!(w.delete_table("b").unwrap());
    w.commit().unwrap();
    let empty = assert_clean(db);
    assert_eq!((empty.segments, empty.packed_bytes), (0, 0));
}

/// Compaction moves packed values down the file with the pages around them.
#[test]
fn compaction_moves_packed_values_down() {
    let t = TestDb::with_options(Options::new().map_size(1 << 30));
    let db = t.db();
    for round in 0..4u64 {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..2000 {
                tab.insert(&key(round * 10_000 + i), &bytes(i, 2500))
                    .unwrap();
            }
        }
        w.commit().unwrap();
    }
    // Keep the last round's values only, mostly near the end of the file.
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for round in 0..3u64 {
            for i in 0..2000 {
                tab.remove(&key(round * 10_000 + i)).unwrap();
            }
        }
    }
    w.commit().unwrap();
    let before = std::fs::metadata(t.path()).unwrap().len();
    db.compact().unwrap();
    let after = std::fs::metadata(t.path()).unwrap().len();
    let report = assert_clean(db);
    assert!(after * 2 < before, "{before} -> {after}");
    assert!(report.pages * 4096 < 2000 * 2600 * 13 / 10, "{report:?}");
    let r = db.begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    for i in 0..2000 {
        assert_eq!(
            tab.get(&key(30_000 + i)).unwrap().unwrap(),
            &bytes(i, 2500)[..]
        );
    }
}

/// One packed value per commit, overwriting a small set of keys. A new
/// segment took the room the file holds past the high-water mark before a
/// free run the value fits in, so the mark climbed to the end of the
/// file's room while the segments freed below waited (563 pages for 156
/// pages of values); and the pages a segment left unfilled at the top went
/// to the free list, where the commit's own pages took them, raising the
/// mark again. The mark settles near the data instead.
#[test]
fn small_commits_do_not_creep_up_the_file() {
    let t = TestDb::with_options(Options::new().page_size(1024).map_size(1 << 30));
    let db = t.db();
    let put = |from: u64, n: u64| {
        for i in from..from + n {
            let w = db.begin_write().unwrap();
            w.open_table("t")
                .unwrap()
                .insert(&key(i % 64), &bytes(i, 2500))
                .unwrap();
            w.commit().unwrap();
        }
    };
    put(0, 200);
    let warm = db.stat().unwrap().pages;
    put(200, 800);
    let end = db.stat().unwrap().pages;
    eprintln!("pages after 200 commits: {warm}, after 1000: {end}");
    assert!(
        end <= warm + 16,
        "the mark crept from {warm} to {end} pages"
    );
    let data_pages = 64 * 2500 / 1024;
    assert!(
        end * 10 <= data_pages * 16,
        "{end} pages hold {data_pages} pages of values"
    );
    assert_clean(db);
}
