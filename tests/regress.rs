//! Shrunk failures of the model test, kept as permanent tests.

mod common;

use common::TestDb;

/// An overflowing value replaced by an inline one in the same transaction.
#[test]
fn overflow_value_replaced_inline_in_one_transaction() {
    let mut t = TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        tab.insert(b"00435", &[9u8; 535]).unwrap();
        tab.insert(b"00435", b"").unwrap();
        assert_eq!(tab.get(b"00435").unwrap(), Some(&b""[..]));
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert_eq!(
        r.open_table("t").unwrap().get(b"00435").unwrap(),
        Some(&b""[..])
    );
    drop(r);
    t.reopen();
    let r = t.db().begin_read().unwrap();
    assert_eq!(
        r.open_table("t").unwrap().get(b"00435").unwrap(),
        Some(&b""[..])
    );
    r.check().unwrap();
}

/// Removing the only key of a leaf that a sorted append split off, under a
/// branch that the same append left with one child, left an empty leaf in the
/// tree (the rebalance had no sibling to merge with at that level).
#[test]
fn removing_the_key_of_an_appended_leaf_leaves_no_empty_leaf() {
    let mut t = TestDb::new(512);
    let inserts: [(u16, usize); 22] = [
        (430, 31),
        (238, 0),
        (438, 18),
        (126, 0),
        (530, 55),
        (264, 46),
        (277, 54),
        (613, 181),
        (55, 48),
        (251, 1),
        (43, 51),
        (140, 0),
        (170, 61),
        (286, 24),
        (476, 2),
        (380, 45),
        (608, 101),
        (252, 1),
        (588, 0),
        (178, 51),
        (112, 1),
        (595, 8),
    ];
    let key = |k: u16| {
        let mut b = format!("{:05}", k % 600).into_bytes();
        if k.is_multiple_of(7) {
            b.resize(100, b'~');
        }
        b
    };
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for (k, len) in inserts {
            tab.insert(&key(k), &vec![7u8; len]).unwrap();
        }
        assert!(tab.remove(&key(595)).unwrap());
    }
    w.commit().unwrap();
    t.db().check().unwrap();
    // Every way down to an empty tree stays sound.
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for (k, _) in inserts.iter().rev() {
            tab.remove(&key(*k)).unwrap();
        }
        assert!(tab.is_empty());
    }
    w.commit().unwrap();
    t.reopen();
    t.db().check().unwrap();
}

/// Opens `path` with a file of at most `max_pages` pages (and a first map
/// of four).
fn open_small(path: &std::path::Path, page_size: u32, max_pages: u64) -> larch::Database {
    // SAFETY: the test owns the file.
    unsafe {
        larch::Options::new()
            .page_size(page_size)
            .map_size(4 * u64::from(page_size))
            .max_size(max_pages * u64::from(page_size))
            .open(path)
    }
    .unwrap()
}

/// One trial of a transaction that runs into `MapFull` and is committed
/// anyway. Commits `base` keys; then, in one transaction, stores two values
/// of three pages each, inserts until the map is full (new keys, or
/// overwrites of the base keys with longer values), removes the two big
/// values again (which gives their pages back, so the commit has room), and
/// commits. Returns what went wrong, if anything: the commit must fail, and
/// the reopened file must hold exactly the base commit and pass `check`.
fn map_full_trial(
    page_size: u32,
    max_pages: u64,
    base: u32,
    seed: u64,
    overwrite: bool,
) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.larch");
    let db = open_small(&path, page_size, max_pages);
    let mut rng = common::Rng(seed);
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..base {
            let len = 10 + rng.below(30) as usize;
            t.insert(format!("k{:06}", i * 7).as_bytes(), &rng.bytes(len))
                .unwrap();
        }
    }
    w.commit().unwrap();
    let model = larch::testing::read_model(&db).unwrap();
    let w = db.begin_write().unwrap();
    let mut inserts = 0;
    let err = {
        let mut t = w.open_table("t").unwrap();
        let big = vec![7u8; 3 * page_size as usize - 100];
        t.insert(b"big0", &big).unwrap();
        t.insert(b"big1", &big).unwrap();
        let err = loop {
            let (key, len) = if overwrite {
                let i = rng.below(u64::from(base)) as u32;
                let len = page_size / 16 + rng.below(u64::from(page_size / 4)) as u32;
                (format!("k{:06}", i * 7), len as usize)
            } else {
                let i = rng.below(u64::from(base) * 7);
                (format!("k{i:06}"), 10 + rng.below(40) as usize)
            };
            match t.insert(key.as_bytes(), &rng.bytes(len)) {
                Ok(_) => inserts += 1,
                Err(e) => break e,
            }
            assert!(inserts < 1_000_000, "the map never filled");
        };
        // The transaction failed: these are refused (before, they went
        // through and gave the commit room).
        for key in [&b"big0"[..], b"big1"] {
            let r = t.remove(key);
            assert!(matches!(r, Err(larch::Error::TxnFailed)), "{r:?}");
        }
        err
    };
    assert!(matches!(err, larch::Error::MapFull { .. }), "{err:?}");
    let commit = w.commit();
    drop(db);
    let db = open_small(&path, page_size, max_pages);
    let check = db.check();
    let got = larch::testing::read_model(&db);
    // What the table holds, read entry by entry (`read_model` refuses a table
    // whose count is wrong).
    let r = db.begin_read().unwrap();
    let entries: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = r
        .open_table("t")
        .unwrap()
        .iter()
        .unwrap()
        .filter_map(|e| e.ok().map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect();
    let changed = model["t"]
        .iter()
        .filter(|(k, v)| entries.get(*k) != Some(v))
        .count();
    let refused = matches!(commit, Err(larch::Error::TxnFailed));
    if refused && check.is_ok() && got.as_ref().is_ok_and(|g| *g == model) {
        return None;
    }
    Some(format!(
        "seed {seed}: {inserts} inserts, then {err}; the commit gave {commit:?}; after \
         reopen check gave {:?} and {changed} keys differ from the last commit",
        check.err()
    ))
}

fn map_full_trials(page_size: u32, max_pages: u64, base: u32, overwrite: bool) {
    let failures: Vec<String> = (0..16)
        .filter_map(|seed| map_full_trial(page_size, max_pages, base, seed, overwrite))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 16 trials:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// An insert that ran into `MapFull` after changing the tree (the entry
/// count bumped, a split half done) left its transaction half-applied, and
/// once the transaction had room again its commit succeeded: a wrong entry
/// count on disk.
#[test]
fn a_transaction_whose_insert_hit_map_full_does_not_commit_4096() {
    map_full_trials(4096, 48, 400, false);
}

/// The same at 512-byte pages, where the lost half of a split took keys of
/// the previous commit with it.
#[test]
fn a_transaction_whose_insert_hit_map_full_does_not_commit_512() {
    map_full_trials(512, 120, 300, false);
}

/// Overwrites: the old cell was removed before the split that failed, so the
/// key lost its old value.
#[test]
fn a_transaction_whose_overwrite_hit_map_full_does_not_commit() {
    map_full_trials(4096, 48, 400, true);
    map_full_trials(512, 120, 300, true);
}

/// On a file where two tables share a tree (already damaged), deleting both
/// freed every shared page twice, and the commit wrote a free list with
/// repeated entries. Open refuses such a list and fell back, without a word,
/// to the commit before: an acknowledged commit silently dropped. The commit
/// must fail instead, before its meta is written.
#[test]
fn a_commit_that_would_write_a_free_list_open_refuses_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.larch");
    std::fs::write(&path, larch::testing::corrupt::shared_tree_image()).unwrap();
    let db = common::open(&path, 512);
    let before = db.last_txn_id();
    assert!(db.check().is_err(), "the image is damaged");
    let mut w = db.begin_write().unwrap();
    assert!(w.delete_table("a").unwrap());
    assert!(w.delete_table("b").unwrap());
    let commit = w.commit();
    let tables = db.begin_read().unwrap().list_tables().unwrap();
    drop(db);
    let db = common::open(&path, 512);
    assert!(
        matches!(commit, Err(larch::Error::Corrupted { .. })),
        "the commit gave {commit:?}; after reopen the file holds transaction {} (before it: {before})",
        db.last_txn_id()
    );
    if let Err(larch::Error::Corrupted { reason, .. }) = &commit {
        assert!(reason.contains("free list"), "{reason}");
    }
    assert_eq!(tables, ["a", "b"], "the failed commit was published");
    assert_eq!(db.last_txn_id(), before);
    let r = db.begin_read().unwrap();
    assert_eq!(r.list_tables().unwrap(), ["a", "b"]);
    // A write that frees nothing twice still commits.
    drop(r);
    let w = db.begin_write().unwrap();
    w.open_table("c").unwrap().insert(b"k", b"v").unwrap();
    w.commit().unwrap();
    drop(db);
    let db = common::open(&path, 512);
    assert_eq!(db.last_txn_id(), before + 1);
}

/// After a change failed, every call on the transaction and on its table
/// handles is refused with `TxnFailed`, reads included, and so is the commit;
/// an argument rejected up front fails nothing; an abort leaves the database
/// as it was and ready for the next transaction.
#[test]
fn a_failed_transaction_refuses_every_later_call() {
    use larch::Error;
    let failed = |r: larch::Result<()>| matches!(r, Err(Error::TxnFailed));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.larch");
    let db = open_small(&path, 4096, 24);
    let w = db.begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"base", b"1").unwrap();
    w.commit().unwrap();
    let model = larch::testing::read_model(&db).unwrap();

    let mut w = db.begin_write().unwrap();
    // Rejected arguments leave the transaction as it was.
    let long = vec![b'n'; 65_537];
    let name = String::from_utf8(long.clone()).unwrap();
    assert!(matches!(
        w.open_table(&name).err(),
        Some(Error::KeyTooLarge { .. })
    ));
    {
        let mut t = w.open_table("t").unwrap();
        assert!(matches!(
            t.insert(&long, b"v"),
            Err(Error::KeyTooLarge { .. })
        ));
        assert!(!t.remove(&long).unwrap());
        t.insert(b"still", b"fine").unwrap();
        let mut i = 0u32;
        let err = loop {
            match t.insert(&i.to_be_bytes(), &[5u8; 300]) {
                Ok(_) => i += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::MapFull { .. }), "{err:?}");
        // The count from before the failed insert.
        assert_eq!(t.len(), u64::from(i) + 2);
        assert!(failed(t.insert(b"x", b"y").map(drop)));
        assert!(failed(t.insert(&long, b"y").map(drop)));
        assert!(failed(t.remove(b"base").map(drop)));
        assert!(failed(t.get(b"base").map(drop)));
        assert!(failed(t.range(&b"a"[..]..).map(drop)));
        assert!(failed(t.iter().map(drop)));
        let mut c = t.cursor();
        assert!(failed(c.first().map(drop)));
        assert!(failed(c.seek(b"base").map(drop)));
        assert!(failed(c.last().map(drop)));
    }
    assert!(failed(w.open_table("t").map(drop)));
    assert!(failed(w.open_table("new").map(drop)));
    assert!(failed(w.delete_table("t").map(drop)));
    assert!(failed(w.list_tables().map(drop)));
    assert!(failed(w.commit()));
    assert_eq!(larch::testing::read_model(&db).unwrap(), model);

    // The next transaction starts from the last commit and commits.
    let w = db.begin_write().unwrap();
    {
        let t = w.open_table("t").unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(b"still").unwrap(), None);
    }
    w.open_table("t").unwrap().insert(b"next", b"2").unwrap();
    w.commit().unwrap();
    drop(db);
    let db = open_small(&path, 4096, 24);
    db.check().unwrap();
    let got = larch::testing::read_model(&db).unwrap();
    assert_eq!(got["t"].len(), 2);
}

/// A file of 512-byte pages whose table "t" holds a 3,000-byte value under
/// "big", the header of its overflow run damaged to claim 40 pages (with
/// enough pages after it that the claimed run lies in the file); its last
/// commit is 2. Returns the directory that holds it, and its path.
fn a_file_with_an_overlong_run() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = common::TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        // A run of its own: longer than the 32 pages values are packed into.
        tab.insert(b"big", &[7u8; 20_000]).unwrap();
        // Enough pages after the run that the longer run it will claim lies
        // within the file.
        for k in b'a'..=b'z' {
            for i in 0..100u32 {
                tab.insert(&[&[k][..], &i.to_be_bytes()].concat(), &[k; 40])
                    .unwrap();
            }
        }
    }
    w.commit().unwrap();
    let w = t.db().begin_write().unwrap();
    w.open_table("u").unwrap().insert(b"x", b"y").unwrap();
    w.commit().unwrap();
    let path = t.path();
    drop(t.db);
    let mut image = std::fs::read(&path).unwrap();
    let run = (2..image.len() / 512)
        .find(|&p| image[p * 512] == 3)
        .expect("an overflow run");
    image[run * 512 + 16..run * 512 + 20].copy_from_slice(&60u32.to_le_bytes());
    std::fs::write(&path, &image).unwrap();

    (t.dir, path)
}

/// A damaged overflow header claiming a longer run than its value needs:
/// removing the value freed every page the header claimed, live ones
/// included, and four commits later neither meta opened. A run must be
/// exactly the length its value needs, so the remove is refused instead.
#[test]
fn an_overflow_run_longer_than_its_value_is_not_freed() {
    let (_dir, path) = a_file_with_an_overlong_run();
    let db = common::open(&path, 512);
    assert_eq!(db.last_txn_id(), 2);
    let w = db.begin_write().unwrap();
    let removed = w.open_table("t").unwrap().remove(b"big");
    assert!(
        matches!(removed, Err(larch::Error::Corrupted { .. })),
        "{removed:?}"
    );
    assert!(w.commit().is_err());
    drop(db);
    let db = common::open(&path, 512);
    assert_eq!(db.last_txn_id(), 2);
    let r = db.begin_read().unwrap();
    let key = [&[b'q'][..], &7u32.to_be_bytes()].concat();
    assert_eq!(
        r.open_table("t").unwrap().get(&key).unwrap(),
        Some(&[b'q'; 40][..])
    );
}

/// The same damaged run, read by the table's statistics: they counted the
/// pages the header claimed, where every other path refuses the run.
#[test]
fn statistics_refuse_an_overflow_run_longer_than_its_value() {
    let (_dir, path) = a_file_with_an_overlong_run();
    let db = common::open(&path, 512);
    let r = db.begin_read().unwrap();
    let stat = r.open_table("t").unwrap().stat();
    assert!(
        matches!(stat, Err(larch::Error::Corrupted { .. })),
        "{stat:?}"
    );
}

/// A reader holding one snapshot while the writer commits one small change
/// at a time: each commit's free list used to be longer by the chain it
/// replaced (kept pending behind the reader although only the one snapshot
/// before it reaches that chain), so the list, and the file, grew
/// geometrically: 1,081 pages after 200 commits, 44,608 after 1,000. It
/// must grow in proportion to the commits.
#[test]
fn a_pinned_reader_makes_the_file_grow_linearly_not_geometrically() {
    let t = TestDb::new(4096);
    let db = t.db();
    let put = |i: u64| {
        let w = db.begin_write().unwrap();
        w.open_table("t")
            .unwrap()
            .insert(&(i % 100).to_be_bytes(), &[i as u8; 200])
            .unwrap();
        w.commit().unwrap();
    };
    for i in 0..100 {
        put(i);
    }
    let pinned = db.begin_read().unwrap();
    let pages = || db.stat().unwrap().pages;
    let start = pages();
    for i in 0..400 {
        put(i);
    }
    let half = pages();
    for i in 0..400 {
        put(i);
    }
    let end = pages();
    let (first, second) = (half - start, end - half);
    assert!(
        second <= first + first / 4 + 16,
        "400 commits grew the file by {first} pages, the next 400 by {second}"
    );
    assert_eq!(pinned.open_table("t").unwrap().len(), 100);
    pinned.check().unwrap();
    drop(pinned);
    db.check().unwrap();
}
