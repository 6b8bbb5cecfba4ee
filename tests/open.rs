//! Opening: locking, meta fallback, broken files, map limits.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use common::{Rng, TestDb, open, sealed_pages};
use larch::{Error, Options};

fn try_open(path: &Path) -> larch::Result<larch::Database> {
    // SAFETY: the test owns the file.
    unsafe { Options::new().map_size(1 << 30).open(path) }
}

fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Commits `value` under key "k" in one transaction.
fn commit_value(db: &larch::Database, value: &[u8]) {
    let w = db.begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"k", value).unwrap();
    w.commit().unwrap();
}

fn read_value(db: &larch::Database) -> Vec<u8> {
    let r = db.begin_read().unwrap();
    r.open_table("t")
        .unwrap()
        .get(b"k")
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Two handles of one file in one process act as two processes: one writer
/// between them, each sees the other's commits, and a snapshot of one keeps
/// the other's writer off its pages.
#[test]
fn a_second_open_in_this_process_shares_the_file() {
    let t = TestDb::new(4096);
    let a = t.db();
    let b = try_open(&t.path()).unwrap();
    commit_value(a, b"from a");
    assert_eq!(read_value(&b), b"from a");
    assert_eq!(b.last_txn_id(), a.last_txn_id());

    // One writer across both handles.
    let w = a.begin_write().unwrap();
    assert!(b.try_begin_write().unwrap().is_none());
    drop(w);
    let w = b
        .try_begin_write()
        .unwrap()
        .expect("the writer lock is free");
    assert!(a.try_begin_write().unwrap().is_none());
    drop(w);

    // A reader of `a` pins its snapshot against `b`'s writer.
    let pinned = a.begin_read().unwrap();
    for i in 0..50u32 {
        commit_value(&b, &i.to_be_bytes().repeat(300));
    }
    let value = pinned.open_table("t").unwrap().get(b"k").unwrap();
    assert_eq!(value, Some(&b"from a"[..]));
    assert_eq!(pinned.check().unwrap().pages, pinned.stat().unwrap().pages);
    assert_eq!(b.readers().unwrap().len(), 1);
    assert_eq!(b.readers().unwrap()[0].pid, std::process::id());
    drop(pinned);
    assert!(b.readers().unwrap().is_empty());
    assert_eq!(read_value(a), 49u32.to_be_bytes().repeat(300));
    a.check().unwrap();
}

/// The child half of `a_second_open_from_another_process_shares_the_file`:
/// reads what the parent committed, commits on top and exits with 42.
#[test]
fn child_open_probe() {
    let Ok(path) = std::env::var("LARCH_OPEN_PROBE") else {
        return;
    };
    let db = try_open(Path::new(&path)).unwrap();
    assert_eq!(read_value(&db), b"parent");
    commit_value(&db, b"child");
    std::process::exit(42);
}

#[test]
fn a_second_open_from_another_process_shares_the_file() {
    let t = TestDb::new(4096);
    commit_value(t.db(), b"parent");
    let child = {
        let _spawning = common::spawn_lock();
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_open_probe",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LARCH_OPEN_PROBE", t.path())
            .spawn()
    };
    let status = child.unwrap().wait().unwrap();
    assert_eq!(status.code(), Some(42));
    // The child's commit is visible here without reopening.
    assert_eq!(read_value(t.db()), b"child");
    commit_value(t.db(), b"parent again");
    t.db().check().unwrap();
    let path = t.path();
    drop(t.db);
    assert_eq!(read_value(&try_open(&path).unwrap()), b"parent again");
}

#[test]
fn a_new_file_is_initialised_and_an_empty_one_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.larch");
    std::fs::File::create(&path).unwrap();
    let db = try_open(&path).unwrap();
    assert_eq!(db.last_txn_id(), 0);
    assert_eq!(
        db.begin_read().unwrap().list_tables().unwrap(),
        Vec::<String>::new()
    );
    drop(db);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * 4096);
    // The page size of an existing file wins over the option.
    let db = unsafe { Options::new().page_size(512).open(&path) }.unwrap();
    assert_eq!(db.page_size(), 4096);
}

#[test]
fn a_meta_with_a_bad_checksum_falls_back_to_the_other() {
    for page_size in [512u32, 4096] {
        let mut t = TestDb::new(page_size);
        commit_value(t.db(), b"one"); // txn 1, slot 1
        commit_value(t.db(), b"two"); // txn 2, slot 0
        t.db = None;
        // Flip a byte inside slot 0's checksummed fields.
        poke(&t.path(), 20, &[0x5a]);
        t.reopen();
        assert_eq!(t.db().last_txn_id(), 1);
        assert_eq!(read_value(t.db()), b"one");
        // The database says which slot it set aside, and why.
        let aside = t.db().stat().unwrap().set_aside;
        assert_eq!(
            aside,
            Some(larch::SetAside {
                slot: 0,
                txn_id: None,
                reason: "meta checksum mismatch"
            })
        );
        // Writing goes on from there, and the next commit rewrites slot 0.
        commit_value(t.db(), b"three");
        t.reopen();
        assert_eq!(read_value(t.db()), b"three");
        assert_eq!(t.db().last_txn_id(), 2);
        assert_eq!(t.db().stat().unwrap().set_aside, None);

        // Now corrupt slot 0 (txn 2) differently: a torn write of zeros over
        // its checksum. Slot 1 (txn 1) is used.
        t.db = None;
        poke(&t.path(), 80, &[0, 0, 0, 0]);
        t.reopen();
        assert_eq!(read_value(t.db()), b"one");

        // And slot 1 with a bad magic while slot 0 is fine.
        commit_value(t.db(), b"four"); // txn 2 again, slot 0
        t.db = None;
        poke(&t.path(), page_size as u64, b"garbage!");
        t.reopen();
        assert_eq!(read_value(t.db()), b"four");
    }
}

#[test]
fn a_torn_single_sync_commit_falls_back_to_the_previous_one() {
    for page_size in [512u32, 4096] {
        let ps = u64::from(page_size);
        let mut t = TestDb::new(page_size);
        commit_value(t.db(), b"one"); // txn 1, slot 1
        commit_value(t.db(), &[7u8; 3000]); // txn 2, slot 0, an overflow run
        t.db = None;
        let sealed = sealed_pages(&t.path(), ps, 0);
        assert!(sealed.len() >= 2, "{sealed:?}");
        assert!(sealed.iter().any(|&(_, n)| n > 1) || page_size == 4096);
        // Any one page of the commit that did not reach the disk, even in its
        // last byte, and even in the middle of a run, sends recovery back to
        // transaction 1.
        for &(page, pages) in &sealed {
            let at = (page + pages) * ps - 1;
            let image = std::fs::read(t.path()).unwrap();
            poke(&t.path(), at, &[image[at as usize] ^ 1]);
            t.reopen();
            assert_eq!(t.db().last_txn_id(), 1, "page {page}");
            assert_eq!(read_value(t.db()), b"one");
            t.db().check().unwrap();
            assert_eq!(
                t.db().stat().unwrap().set_aside,
                Some(larch::SetAside {
                    slot: 0,
                    txn_id: Some(2),
                    reason: "page does not match its commit's seal (torn commit)"
                })
            );
            t.db = None;
            poke(&t.path(), at, &[image[at as usize]]);
            t.reopen();
            assert_eq!(t.db().last_txn_id(), 2, "page {page} restored");
            assert_eq!(t.db().stat().unwrap().set_aside, None);
            assert_eq!(read_value(t.db()), [7u8; 3000]);
            t.db = None;
        }
        // After a fallback, the next commit takes transaction 2's place.
        let (page, _) = sealed[0];
        poke(&t.path(), page * ps + 100, b"torn");
        t.reopen();
        commit_value(t.db(), b"three");
        t.reopen();
        assert_eq!(t.db().last_txn_id(), 2);
        assert_eq!(read_value(t.db()), b"three");
        t.db().check().unwrap();
    }
}

#[test]
fn a_commit_too_big_for_the_seal_list_syncs_its_pages_first() {
    let mut t = TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    {
        let mut table = w.open_table("t").unwrap();
        for i in 0..2000u32 {
            table.insert(&i.to_be_bytes(), &[1u8; 40]).unwrap();
        }
    }
    w.commit().unwrap();
    t.db = None;
    // Transaction 1 lives in slot 1: flagged as synced, no seal list.
    let image = std::fs::read(t.path()).unwrap();
    assert_eq!(&image[512 + 72..512 + 80], &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert!(sealed_pages(&t.path(), 512, 1).is_empty());
    t.reopen();
    assert_eq!(
        t.db().begin_read().unwrap().open_table("t").unwrap().len(),
        2000
    );
}

#[test]
fn both_metas_bad_is_corrupted() {
    let mut t = TestDb::new(4096);
    commit_value(t.db(), b"one");
    t.db = None;
    poke(&t.path(), 20, &[1]);
    poke(&t.path(), 4096 + 20, &[1]);
    let err = try_open(&t.path()).err().unwrap();
    assert!(matches!(err, Error::Corrupted { page: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("corrupted"));
}

#[test]
fn files_of_garbage_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(99);
    for (i, len) in [
        1usize, 100, 511, 512, 4095, 4096, 8191, 8192, 65536, 300_000,
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("garbage{i}"));
        std::fs::write(&path, rng.bytes(len)).unwrap();
        let err = try_open(&path).err().unwrap();
        assert!(matches!(err, Error::Corrupted { .. }), "len {len}: {err:?}");
        // Whatever its length, a file without the magic is named for what it is.
        assert!(
            err.to_string().contains("not a larch database"),
            "len {len}: {err}"
        );
        // Nothing was written to it.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len as u64);
    }
}

#[test]
fn a_meta_pointing_past_the_end_of_the_file_is_rejected() {
    let mut t = TestDb::new(4096);
    let fill = |db: &larch::Database, byte: u8| {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..10_000u32 {
                tab.insert(&i.to_be_bytes(), &[byte; 100]).unwrap();
            }
        }
        w.commit().unwrap();
    };
    let cut = |t: &mut TestDb| {
        t.db = None;
        let f = OpenOptions::new().write(true).open(t.path()).unwrap();
        f.set_len(3 * 4096).unwrap();
    };
    // One commit: slot 1 (txn 1) points past the cut, slot 0 still holds the
    // empty transaction 0, which fits: open falls back to it.
    fill(t.db(), 1);
    cut(&mut t);
    let db = try_open(&t.path()).unwrap();
    assert_eq!(db.last_txn_id(), 0);
    assert!(db.begin_read().unwrap().list_tables().unwrap().is_empty());
    drop(db);

    // Two commits: both slots point past the cut.
    t.reopen();
    fill(t.db(), 2);
    fill(t.db(), 3);
    cut(&mut t);
    let err = try_open(&t.path()).err().unwrap();
    assert!(
        matches!(err, Error::Corrupted { page: 0, reason } if reason.contains("outside the file")),
        "{err:?}"
    );
}

#[test]
fn map_full_leaves_the_committed_state_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.larch");
    // SAFETY: the test owns the file.
    let db = unsafe {
        Options::new()
            .page_size(4096)
            .map_size(16 * 4096)
            .max_size(256 * 4096)
            .open(&path)
    }
    .unwrap();
    commit_value(&db, b"kept");
    let w = db.begin_write().unwrap();
    let err = {
        let mut tab = w.open_table("t").unwrap();
        let mut i = 0u32;
        loop {
            match tab.insert(&i.to_be_bytes(), &[1u8; 500]) {
                Ok(_) => i += 1,
                Err(e) => break e,
            }
        }
    };
    assert!(matches!(err, Error::MapFull { .. }), "{err:?}");
    assert!(err.to_string().contains("max_size"), "{err}");
    w.abort();
    assert_eq!(read_value(&db), b"kept");
    // A transaction that fits still commits.
    commit_value(&db, b"after");
    drop(db);
    let db = open(&path, 4096);
    assert_eq!(read_value(&db), b"after");
}

/// A map bigger than the address space (`u64::MAX`, which does not fit a
/// `usize` map length, and 2^60, which does but that no system can reserve)
/// is an invalid option that names `map_size`, not an I/O error from the
/// map; the file opens as usual afterwards.
#[test]
fn a_map_size_beyond_the_address_space_is_an_invalid_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    for size in [u64::MAX, 1 << 63, 1 << 60] {
        // SAFETY: the test owns the file.
        let err = unsafe { Options::new().map_size(size).open(&path) }
            .err()
            .unwrap();
        assert!(
            matches!(err, Error::InvalidOption(what) if what.starts_with("map_size")),
            "{size}: {err:?}"
        );
        // A size no map can have is refused before the file is created.
        if size >= 1 << 63 {
            assert!(!path.exists(), "{size}");
        }
    }
    commit_value(&try_open(&path).unwrap(), b"opens");
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    for ps in [0u32, 256, 1000, 131072] {
        let err = unsafe { Options::new().page_size(ps).open(&path) }
            .err()
            .unwrap();
        assert!(matches!(err, Error::InvalidOption(_)), "{ps}: {err:?}");
    }
}
