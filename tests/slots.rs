//! Meta slots under attack: the empty database a crash left in one slot,
//! "twins" of the wrong parity, the set-aside report after later commits, and
//! crafted files whose claimed size would make the checker allocate without
//! bound. Each was found by trying to break larch, and failed before its fix.

use std::sync::{Arc, Mutex};

use larch::testing::{Fate, Op, Recorder, apply};
use larch::{Database, Options};

/// The durable image and the pending writes at the last sync.
type LastSync = (Vec<u8>, Vec<Op>);

/// Opens `path` with a recorder that keeps the state of the last sync.
fn open_recorded(path: &std::path::Path, o: Options) -> (Database, Arc<Mutex<Option<LastSync>>>) {
    let last: Arc<Mutex<Option<LastSync>>> = Arc::default();
    let at_sync = last.clone();
    let recorder = Recorder::new(move |cp| {
        *at_sync.lock().unwrap() = Some((cp.durable.to_vec(), cp.pending.to_vec()));
    });
    let db = open_with(path, o.storage(move |f| recorder.wrap(f))).unwrap();
    (db, last)
}

/// A new file at 4 KiB pages as a crash while it was first written can leave
/// it: transaction 0 in slot 1 only (slot 0's sector lost).
fn lone_empty_meta_in_slot_1() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(open_with(&path, Options::new().page_size(4096).map_size(1 << 30)).unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..4096].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    (dir, path)
}

fn open_with(path: &std::path::Path, o: Options) -> larch::Result<Database> {
    // SAFETY: the test owns the file.
    unsafe { o.open(path) }
}

/// A crash during the creation of the file kept slot 1 (txn 0) only. The
/// first commit (txn 1) writes that very slot: a torn meta of txn 1 must not
/// leave the file without a valid meta.
#[test]
fn a_lone_empty_meta_in_slot_1_survives_a_torn_first_commit() {
    let (dir, path) = lone_empty_meta_in_slot_1();

    let (db, last) = open_recorded(&path, Options::new().map_size(1 << 30));
    assert_eq!(db.last_txn_id(), 0);
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..40u32 {
            t.insert(&i.to_be_bytes(), &vec![i as u8; 2000]).unwrap();
        }
    }
    w.commit().unwrap();
    drop(db);
    let (durable, pending) = last.lock().unwrap().take().unwrap();
    // Find the meta write (offset 4096, slot 1) and tear it: first sector on
    // disk, the rest not. Every page write applied.
    let fates: Vec<Fate> = pending
        .iter()
        .map(|op| match op {
            Op::Write { offset: 4096, data } if data.len() > 512 => {
                // seed chosen below so sector 0 applied, sector 1 not
                Fate::Torn {
                    seed: find_seed(),
                    garble: false,
                }
            }
            _ => Fate::Applied,
        })
        .collect();
    let image = apply(&durable, &pending, &fates);
    let p2 = dir.path().join("img");
    std::fs::write(&p2, &image).unwrap();
    let r = open_with(&p2, Options::new().map_size(1 << 30));
    assert!(
        r.is_ok(),
        "a crash of an unacknowledged first commit bricks the file: {:?}",
        r.err()
    );
}

/// A Torn seed whose first sector is applied and second dropped.
fn find_seed() -> u64 {
    for s in 0.. {
        let mut r = larch::testing::Rng(s);
        if r.below(2) == 0 && r.below(2) == 1 {
            return s;
        }
    }
    unreachable!()
}

fn model(db: &Database) -> Vec<(Vec<u8>, Vec<u8>)> {
    let r = db.begin_read().unwrap();
    let t = match r.open_table("t") {
        Ok(t) => t,
        Err(_) => return vec![],
    };
    t.iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// A meta of the wrong parity counts only as an exact twin of the other slot.
/// Slot 0 relabelled (odd) T beside slot 1's T, with other contents: were it
/// taken, commit T+1 would overwrite the meta it builds on, and a power cut
/// during it would open slot 1's state, whose pages T+1 reused.
#[test]
fn a_twin_with_other_contents_is_not_a_twin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = open_with(&path, Options::new().page_size(4096).map_size(1 << 30)).unwrap();
        for round in 0..7u32 {
            let w = db.begin_write().unwrap();
            let mut t = w.open_table("t").unwrap();
            for i in 0..200u32 {
                t.insert(&i.to_be_bytes(), format!("r{round}-{i}").as_bytes())
                    .unwrap();
            }
            drop(t);
            w.commit().unwrap();
        }
        assert_eq!(db.last_txn_id() % 2, 1);
    }
    let mut img = std::fs::read(&path).unwrap();
    let states = larch::testing::image_state(&img, 4096);
    let t = states.iter().map(|s| s.txn_id).max().unwrap();
    // Slot 0 holds T-1; relabel it T: a "twin" of slot 1 with other contents.
    assert!(larch::testing::edit_meta(&mut img, 4096, 0, |m| m.txn_id = t));
    std::fs::write(&path, &img).unwrap();

    let (db, last) = open_recorded(&path, Options::new().map_size(1 << 30).verify(true));
    let acknowledged = model(&db);
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..200u32 {
            t.insert(&i.to_be_bytes(), format!("new-{i}").as_bytes())
                .unwrap();
        }
    }
    w.commit().unwrap();
    let in_flight = model(&db);
    drop(db);
    let (durable, pending) = last.lock().unwrap().take().unwrap();
    // Power cut during T+1's one sync: its pages reached the disk, its meta
    // (slot 0) was torn (a garbled sector).
    let fates = vec![Fate::Applied; pending.len()];
    let mut image = apply(&durable, &pending, &fates);
    image[100..512].fill(0xa5);
    let p2 = dir.path().join("img");
    std::fs::write(&p2, &image).unwrap();
    match open_with(&p2, Options::new().map_size(1 << 30)) {
        Err(e) => panic!("open failed: {e}"),
        Ok(db) => {
            let got = model(&db);
            let check = db.check();
            assert!(
                got == acknowledged || got == in_flight,
                "opened neither the acknowledged state nor the one in flight (txn {}, check {:?}, first {:?})",
                db.last_txn_id(),
                check.err(),
                got.first()
            );
        }
    }
}

/// Same file state (txn 0 alone in slot 1, after a crash while the file was
/// created); no second crash: one EIO in commit 1 spoils the slot it was
/// writing, which must not be the only valid meta.
#[test]
fn a_lone_empty_meta_in_slot_1_survives_a_failed_first_commit() {
    use larch::testing::faults::{Fault, Kind, Trap};
    let (_dir, path) = lone_empty_meta_in_slot_1();
    let trap = Trap::new();
    let t2 = trap.clone();
    {
        let db = open_with(
            &path,
            Options::new()
                .map_size(1 << 30)
                .storage(move |f| Ok(t2.storage(f))),
        )
        .unwrap();
        trap.arm(Kind::Sync, Fault::Eio, 1);
        let w = db.begin_write().unwrap();
        w.open_table("t").unwrap().insert(b"k", b"v").unwrap();
        assert!(w.commit().is_err());
    }
    let r = open_with(&path, Options::new().map_size(1 << 30));
    assert!(r.is_ok(), "one EIO bricks the file: {:?}", r.err());
}

/// `Stat::set_aside` names the damaged slot only until a commit overwrites it.
#[test]
fn set_aside_ends_with_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = open_with(&path, Options::new().page_size(4096).map_size(1 << 30)).unwrap();
        for i in 0..3u32 {
            let w = db.begin_write().unwrap();
            w.open_table("t")
                .unwrap()
                .insert(&i.to_be_bytes(), b"v")
                .unwrap();
            w.commit().unwrap();
        }
    }
    // Damage the newest commit's slot (txn 3, slot 1).
    let mut img = std::fs::read(&path).unwrap();
    img[4096 + 80] ^= 1;
    std::fs::write(&path, &img).unwrap();
    let db = open_with(&path, Options::new().map_size(1 << 30)).unwrap();
    assert!(db.stat().unwrap().set_aside.is_some());
    for _ in 0..2 {
        let w = db.begin_write().unwrap();
        w.open_table("t").unwrap().insert(b"x", b"y").unwrap();
        w.commit().unwrap();
    }
    let s = db.stat().unwrap();
    assert!(
        s.set_aside.is_none(),
        "txn {} still reports {:?}",
        s.txn_id,
        s.set_aside
    );
}

/// A crafted meta may claim a high-water mark of terabytes over a sparse file
/// that costs nothing on disk. The checker, `stat` and a verified open keep
/// their memory to what the trees reach: before, each allocated a byte per
/// claimed page (30 GiB here) and the process aborted.
#[test]
fn a_sparse_file_claiming_terabytes_is_checked_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.larch");
    {
        let db = open_with(&path, Options::new().page_size(512).map_size(1 << 30)).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table("t").unwrap().insert(b"k", b"v").unwrap();
        w.commit().unwrap();
    }
    let len: u64 = 15 << 40;
    let mut image = std::fs::read(&path).unwrap();
    let newest = larch::testing::image_state(&image, 512)
        .into_iter()
        .max_by_key(|s| s.txn_id)
        .unwrap();
    assert!(larch::testing::edit_meta(
        &mut image,
        512,
        newest.slot as usize,
        |m| m.high_water = len / 512
    ));
    std::fs::write(&path, &image).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len)
        .unwrap();

    let db = open_with(&path, Options::new().map_size(len + (1 << 30))).unwrap();
    assert_eq!(db.last_txn_id(), newest.txn_id);
    let report = db.check_report().unwrap();
    let accounted = report.branch_pages
        + report.leaf_pages
        + report.overflow_pages
        + report.freelist_pages
        + report.free_pages;
    assert_eq!(report.pages, len / 512);
    assert_eq!(report.leaked_pages, report.pages - 2 - accounted);
    assert!(accounted < 10);
    assert!(!report.is_clean());
    db.stat().unwrap();
    let r = db.begin_read().unwrap();
    r.open_table("t").unwrap().stat().unwrap();
    drop(r);
    drop(db);
    // A verified open sets the crafted commit aside for the one before it.
    let db = open_with(&path, Options::new().verify(true).map_size(len + (1 << 30))).unwrap();
    assert_eq!(db.last_txn_id(), newest.txn_id - 1);
    assert!(db.stat().unwrap().set_aside.is_some());
}

/// A plain copy holds one meta in both slots; made at an odd transaction,
/// its slot 0 holds a meta of the other parity. With slot 1 damaged, that
/// lone meta still opens, and a writable open gives it its twin before the
/// next commit overwrites one of them.
#[test]
fn a_plain_copy_at_an_odd_transaction_survives_a_damaged_slot_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_with(&path, Options::new().page_size(4096).map_size(1 << 30)).unwrap();
    let w = db.begin_write().unwrap();
    for i in 0..10u32 {
        w.open_table("t")
            .unwrap()
            .insert(&i.to_be_bytes(), b"a")
            .unwrap();
    }
    w.commit().unwrap();
    assert_eq!(db.last_txn_id(), 1);
    let copy = dir.path().join("copy");
    db.begin_read().unwrap().copy_to(&copy, false).unwrap();
    drop(db);
    let mut image = std::fs::read(&copy).unwrap();
    image[4096 + 40] ^= 1; // slot 1: checksum mismatch
    std::fs::write(&copy, &image).unwrap();

    let ro = open_with(&copy, Options::new().read_only(true)).unwrap();
    assert_eq!((ro.last_txn_id(), model(&ro).len()), (1, 10));
    drop(ro);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        image,
        "a read-only open writes nothing"
    );

    let db = open_with(&copy, Options::new().map_size(1 << 30)).unwrap();
    assert_eq!(
        db.stat().unwrap().set_aside,
        None,
        "slot 1 holds the twin now"
    );
    let w = db.begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"new", b"b").unwrap();
    w.commit().unwrap();
    drop(db);
    let db = open_with(&copy, Options::new().map_size(1 << 30)).unwrap();
    assert_eq!((db.last_txn_id(), model(&db).len()), (2, 11));
    db.check().unwrap();
}
