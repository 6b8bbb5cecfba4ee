//! The interval reuse rule (DESIGN.md, "The page reuse rule"): a page
//! written by transaction `A` and freed by `T` waits only for the live
//! snapshots in `A..T`. A long reader keeps what it sees and nothing more;
//! a page written after a snapshot is corruption to it; a free list whose
//! written-by its pages' headers do not confirm frees nothing early.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{Rng, TestDb};
use larch::testing::{image_state, restamp};
use larch::{Database, Error, ReadTxn};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every entry of table `name` in `r`, which must hold exactly `model`.
fn verify(r: &ReadTxn, name: &str, model: &Model) {
    let t = r.open_table(name).unwrap();
    assert_eq!(t.len(), model.len() as u64);
    for (k, v) in model {
        assert_eq!(t.get(k).unwrap(), Some(&v[..]), "key {k:?}");
    }
    let all: Model = t
        .iter()
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    assert_eq!(&all, model);
}

/// Rewrites `n` random keys of `model` in table `name` in one commit, a
/// tenth of them with values on overflow pages.
fn rewrite(db: &Database, name: &str, model: &mut Model, rng: &mut Rng, n: u64, keys: u64) {
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(name).unwrap();
        for _ in 0..n {
            let k = format!("key{:04}", rng.below(keys)).into_bytes();
            let len = if rng.below(10) == 0 { 1500 } else { 60 };
            let v = rng.bytes(len);
            t.insert(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
    w.commit().unwrap();
}

/// A reader pinned at one snapshot while thousands of commits rewrite the
/// same keys. Under the old rule every page freed after the snapshot waited
/// for it and the file grew with every commit; now only the pages the
/// snapshot reaches wait, the pages written after it are reused once freed,
/// and the file stops growing. The reader still reads every value it saw.
#[test]
fn a_pinned_reader_keeps_only_what_it_sees_through_thousands_of_commits() {
    let t = TestDb::new(512);
    let db = t.db();
    let mut rng = Rng(7);
    let keys = 300;
    let mut model = Model::new();
    for _ in 0..10 {
        rewrite(db, "t", &mut model, &mut rng, 60, keys);
    }
    let pinned = db.begin_read().unwrap();
    let seen = model.clone();
    let pages = || db.stat().unwrap().pages;
    for _ in 0..300 {
        rewrite(db, "t", &mut model, &mut rng, 8, keys);
    }
    let warm = pages();
    for _ in 0..3000 {
        rewrite(db, "t", &mut model, &mut rng, 8, keys);
    }
    let end = pages();
    assert!(
        end <= warm + warm / 10 + 32,
        "3,000 commits under a pinned reader grew the file from {warm} to {end} pages"
    );
    // What the reader alone holds is at most what its snapshot reaches.
    let reached = pinned.check().unwrap();
    let listed = db.readers().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].txn_id, pinned.id());
    assert!(listed[0].pinned_pages > 0, "{listed:?}");
    assert!(
        listed[0].pinned_pages <= reached.pages,
        "{listed:?} pins more than the {} pages it reaches",
        reached.pages
    );
    // `stat` tells the same, without the transaction that took the figures.
    let stat = db.stat().unwrap();
    assert_eq!(stat.live_readers, 1);
    assert_eq!(stat.readers.len(), 1);
    assert_eq!(stat.readers[0].txn_id, pinned.id());
    assert_eq!(stat.readers[0].pinned_pages, listed[0].pinned_pages);
    // A reader's own figures list it among the readers.
    let own = pinned.stat().unwrap();
    assert_eq!(own.readers.len(), 1);
    assert_eq!(own.readers[0].txn_id, pinned.id());
    verify(&pinned, "t", &seen);
    drop(pinned);
    verify(&db.begin_read().unwrap(), "t", &model);
    db.check().unwrap();
}

/// Pages reached in both the snapshots of `a` and `b` (transaction ids) of
/// the image at `path`.
fn reached_by_both(path: &Path, ps: usize, a: u64, b: u64) -> Vec<u64> {
    let image = std::fs::read(path).unwrap();
    let states = image_state(&image, ps);
    let reach = |id: u64| {
        states
            .iter()
            .find(|s| s.txn_id == id)
            .and_then(|s| s.reachable.clone())
            .unwrap()
    };
    let later = reach(b);
    reach(a).into_iter().filter(|p| later.contains(p)).collect()
}

/// Writes `edit` of page `id` of the file at `path` back, checksum restamped.
fn edit_page(path: &Path, ps: usize, id: u64, edit: impl FnOnce(&mut [u8])) {
    let f = File::options().read(true).write(true).open(path).unwrap();
    let mut page = vec![0u8; ps];
    f.read_exact_at(&mut page, id * ps as u64).unwrap();
    edit(&mut page);
    restamp(&mut page, ps, 0);
    f.write_all_at(&page, id * ps as u64).unwrap();
    f.sync_all().unwrap();
}

/// A page whose header says a transaction later than the snapshot reading
/// it wrote it is not that snapshot's (its slot was reused, or the file was
/// crafted): reads, the writer and the checker report `Corrupted`, and
/// nothing panics. The writer's free list relies on it: a snapshot that
/// reads a page is never older than the page's writer.
#[test]
fn a_page_written_after_the_snapshot_is_corrupted() {
    let mut t = TestDb::new(512);
    let db = t.db();
    for (name, txn) in [("a", 1), ("b", 2)] {
        let w = db.begin_write().unwrap();
        w.open_table(name).unwrap().insert(b"k", b"v").unwrap();
        w.commit().unwrap();
        assert_eq!(db.last_txn_id(), txn);
    }
    // Table "a"'s leaf, written by 1 and still reached by 2.
    let path = t.path();
    let both = reached_by_both(&path, 512, 1, 2);
    assert!(!both.is_empty());
    t.db = None;
    for &p in &both {
        edit_page(&path, 512, p, |page| {
            page[8..16].copy_from_slice(&9u64.to_le_bytes());
        });
    }
    t.reopen();
    let db = t.db();
    let r = db.begin_read().unwrap();
    assert_eq!(r.id(), 2);
    let got = r
        .open_table("a")
        .and_then(|a| a.get(b"k").map(|v| v.is_some()));
    assert!(matches!(got, Err(Error::Corrupted { .. })), "{got:?}");
    let report = r.check_report();
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.reason.contains("written after")),
        "{:?}",
        report.errors
    );
    drop(r);
    let w = db.begin_write().unwrap();
    let put = w.open_table("a").and_then(|mut a| a.insert(b"k", b"w"));
    assert!(matches!(put, Err(Error::Corrupted { .. })), "{put:?}");
}

/// Meta slot of the newest commit of the file at `path`: its free-list head.
fn freelist_head(path: &Path, ps: usize, txn: u64) -> u64 {
    let f = File::open(path).unwrap();
    let mut meta = vec![0u8; 64];
    f.read_exact_at(&mut meta, (txn % 2) * ps as u64).unwrap();
    assert_eq!(u64::from_le_bytes(meta[16..24].try_into().unwrap()), txn);
    u64::from_le_bytes(meta[32..40].try_into().unwrap())
}

/// A free list whose written-by is later than the page's real writer (a
/// damaged file, or another process's writer gone wrong) would have the
/// interval rule free a page a live reader still reads. The writer checks
/// the page's header before it releases a page on its written-by alone,
/// finds the lie, and keeps the page: the reader's values survive commits
/// that reuse every page they can.
#[test]
fn a_crafted_written_by_frees_nothing_a_reader_holds() {
    let t = TestDb::new(512);
    let path = t.path();
    let a = t.db();
    // A second handle, whose writer will load the list from the file.
    let b = common::open(&path, 512);
    let mut rng = Rng(11);
    let mut model = Model::new();
    rewrite(a, "t", &mut model, &mut rng, 80, 40);
    let r = a.begin_read().unwrap();
    let s = r.id();
    let mut other = Model::new();
    for _ in 0..3 {
        rewrite(a, "u", &mut other, &mut rng, 1, 10);
    }
    // Transaction T = s + 4 frees every page of table "t" snapshot s reads.
    let seen = model.clone();
    let w = a.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for k in seen.keys() {
            tab.insert(k, b"new").unwrap();
            model.insert(k.clone(), b"new".to_vec());
        }
    }
    w.commit().unwrap();
    let freer = a.last_txn_id();
    assert_eq!(freer, s + 4);
    // Say that freer - 1, newer than the reader, wrote them.
    let mut forged = 0;
    let image = std::fs::read(&path).unwrap();
    let head = freelist_head(&path, 512, freer);
    for leaf in common::free_pages::list_pages(&image, 512, head).1 {
        edit_page(&path, 512, leaf, |page| {
            let count = u16::from_le_bytes([page[2], page[3]]) as usize;
            for e in 0..count {
                let at = 24 + 24 * e;
                let freed_by = u64::from_le_bytes(page[at..at + 8].try_into().unwrap());
                let by = u64::from_le_bytes(page[at + 8..at + 16].try_into().unwrap());
                if freed_by == freer && by <= s {
                    page[at + 8..at + 16].copy_from_slice(&(freer - 1).to_le_bytes());
                    forged += 1;
                }
            }
        });
    }
    assert!(forged > 3, "only {forged} entries to forge");
    // The other handle's writers take the forged list and allocate plenty.
    for _ in 0..20 {
        rewrite(&b, "u", &mut other, &mut rng, 30, 400);
    }
    verify(&r, "t", &seen);
    r.check().unwrap();
    drop(r);
    for _ in 0..3 {
        rewrite(&b, "u", &mut other, &mut rng, 30, 400);
    }
    verify(&b.begin_read().unwrap(), "t", &model);
    verify(&b.begin_read().unwrap(), "u", &other);
    b.check().unwrap();
}
