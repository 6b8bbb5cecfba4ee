//! Red-team checks of interval reuse (DESIGN.md, "The page reuse rule").
//!
//! The oracle is independent of the free list: when a reader begins, the
//! bytes of every page its snapshot reaches are read from the file; after
//! every commit, of either of two handles, none of those bytes may have
//! changed while the reader lives. Many readers are held at once, at
//! scattered snapshots and for scattered spans, so that the intervals
//! `A..T` of freed pages fall on every side of them; the workload mixes
//! overflow runs of several lengths, table deletes, aborted and empty
//! transactions, and reopens.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::Rng;
use larch::testing::image_state;
use larch::{Database, ReadTxn};

type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

const PS: usize = 512;

struct Held {
    txn: ReadTxn,
    until: u64,
    /// Page id and its bytes when the reader began.
    pages: Vec<(u64, Vec<u8>)>,
    model: Model,
}

fn snapshot_model(r: &ReadTxn) -> Model {
    let mut m = Model::new();
    for name in r.list_tables().unwrap() {
        let t = r.open_table(&name).unwrap();
        let mut tm = BTreeMap::new();
        for e in t.iter().unwrap() {
            let (k, v) = e.unwrap();
            tm.insert(k.to_vec(), v.to_vec());
        }
        m.insert(name, tm);
    }
    m
}

fn begin(db: &Database, path: &Path, until: u64) -> Held {
    let txn = db.begin_read().unwrap();
    let image = std::fs::read(path).unwrap();
    let reach = image_state(&image, PS)
        .into_iter()
        .find(|s| s.txn_id == txn.id())
        .and_then(|s| s.reachable)
        .unwrap_or_else(|| panic!("snapshot {} not in the file", txn.id()));
    let pages = reach
        .into_iter()
        .map(|p| {
            let at = p as usize * PS;
            (p, image[at..at + PS].to_vec())
        })
        .collect();
    let model = snapshot_model(&txn);
    Held {
        txn,
        until,
        pages,
        model,
    }
}

/// Every page any held reader reaches is as it was when the reader began.
fn verify_untouched(path: &Path, held: &[Held], commit: u64) {
    let image = std::fs::read(path).unwrap();
    for h in held {
        for (p, bytes) in &h.pages {
            let at = *p as usize * PS;
            assert!(
                image.get(at..at + PS) == Some(&bytes[..]),
                "commit {commit}: page {p} reached by live snapshot {} was overwritten",
                h.txn.id()
            );
        }
    }
}

/// One random write transaction on `db`; returns whether it committed.
fn random_txn(db: &Database, model: &mut Model, rng: &mut Rng) -> bool {
    let mut w = db.begin_write().unwrap();
    let mut next = model.clone();
    let names = ["a", "b", "c"];
    let kind = rng.below(20);
    if kind == 0 {
        // Delete a table whole (its overflow runs included).
        let name = names[rng.below(3) as usize];
        let existed = w.delete_table(name).unwrap();
        assert_eq!(existed, next.remove(name).is_some());
    } else {
        let n = 1 + rng.below(if kind == 1 { 120 } else { 12 });
        for _ in 0..n {
            let name = names[rng.below(3) as usize];
            let mut t = w.open_table(name).unwrap();
            let tm = next.entry(name.to_owned()).or_default();
            let k = format!("k{:03}", rng.below(150)).into_bytes();
            match rng.below(10) {
                0 | 1 => {
                    let removed = t.remove(&k).unwrap();
                    assert_eq!(removed, tm.remove(&k).is_some());
                }
                2 | 3 => {
                    // Overflow runs of 1 to 6 pages.
                    let len = 300 + rng.below(6 * PS as u64) as usize;
                    let v = rng.bytes(len);
                    t.insert(&k, &v).unwrap();
                    tm.insert(k, v);
                }
                _ => {
                    let len = 1 + rng.below(80) as usize;
                    let v = rng.bytes(len);
                    t.insert(&k, &v).unwrap();
                    tm.insert(k, v);
                }
            }
        }
    }
    match rng.below(15) {
        0 => {
            w.abort();
            false
        }
        _ => {
            w.commit().unwrap();
            *model = next;
            true
        }
    }
}

fn run(seed: u64, commits: u64, max_readers: usize) {
    let mut t = common::TestDb::new(PS as u32);
    let path = t.path();
    let mut rng = Rng(seed);
    let mut model = Model::new();
    let mut done = 0u64;
    while done < commits {
        // One epoch: two handles on the file, readers on both.
        let a = t.db.take().unwrap();
        let b = common::open(&path, PS as u32);
        {
            let dbs = [&a, &b];
            let mut held: Vec<Held> = Vec::new();
            let epoch_end = done + 200 + rng.below(300);
            while done < epoch_end.min(commits) {
                held.retain(|h| {
                    if h.until > done {
                        return true;
                    }
                    assert_eq!(snapshot_model(&h.txn), h.model, "snapshot {}", h.txn.id());
                    false
                });
                if held.len() < max_readers && rng.below(3) == 0 {
                    // Spans from one commit to a few hundred.
                    let span = match rng.below(4) {
                        0 => 1,
                        1 => 1 + rng.below(5),
                        2 => 5 + rng.below(40),
                        _ => 40 + rng.below(300),
                    };
                    let db = dbs[rng.below(2) as usize];
                    held.push(begin(db, &path, done + span));
                }
                let db = dbs[rng.below(2) as usize];
                if random_txn(db, &mut model, &mut rng) {
                    done += 1;
                    verify_untouched(&path, &held, done);
                }
            }
            for h in held.drain(..) {
                assert_eq!(snapshot_model(&h.txn), h.model, "snapshot {}", h.txn.id());
            }
            let r = b.begin_read().unwrap();
            assert_eq!(snapshot_model(&r), model);
            r.check().unwrap();
        }
        drop(b);
        drop(a);
        t.reopen();
    }
    t.db().check().unwrap();
}

#[test]
fn many_readers_at_scattered_snapshots_never_see_their_pages_rewritten() {
    for seed in 1..=3 {
        run(seed, 1500, 8);
    }
}

/// A crafted overflow run whose header names a writer newer than the
/// snapshot reaching it: every read path (point read, scan, cursor, check)
/// reports `Corrupted` rather than serving it; what a plain copy does with
/// it is printed.
#[test]
fn a_newer_overflow_header_is_corrupted_on_every_read_path() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.larch");
    let opts = larch::Options::new().page_size(PS as u32).verify(false);
    let big = vec![7u8; 3 * PS];
    {
        let db = unsafe { opts.open(&path) }.unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            t.insert(b"a", b"1").unwrap();
            t.insert(b"big", &big).unwrap();
            t.insert(b"z", b"2").unwrap();
        }
        w.commit().unwrap();
        let w = db.begin_write().unwrap();
        w.open_table("u").unwrap().insert(b"k", b"v").unwrap();
        w.commit().unwrap();
    }
    // The run's first page: the value starts after its 24-byte header.
    let image = std::fs::read(&path).unwrap();
    let run = (2..image.len() / PS)
        .find(|&p| image[p * PS + 24..p * PS + 64] == big[..40])
        .unwrap();
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut page = vec![0u8; PS];
    f.read_exact_at(&mut page, (run * PS) as u64).unwrap();
    assert_eq!(
        &page[24..64],
        &big[..40],
        "page {run} is not the run's first"
    );
    page[8..16].copy_from_slice(&99u64.to_le_bytes());
    larch::testing::restamp(&mut page, PS, 0);
    f.write_all_at(&page, (run * PS) as u64).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let db = unsafe { opts.open(&path) }.unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    let corrupted = |e: &larch::Error| matches!(e, larch::Error::Corrupted { .. });
    assert!(t.get(b"big").is_err_and(|e| corrupted(&e)));
    assert_eq!(t.get(b"a").unwrap(), Some(&b"1"[..]));
    let scan: Vec<_> = t.iter().unwrap().collect();
    assert!(
        scan.iter().any(|e| e.as_ref().is_err_and(corrupted)),
        "{scan:?}"
    );
    assert!(
        scan.iter()
            .all(|e| e.as_ref().is_err() || e.as_ref().unwrap().1 != &big[..])
    );
    let ranged: Vec<_> = t.range(&b"b"[..]..&b"c"[..]).unwrap().collect();
    assert!(
        ranged.iter().any(|e| e.as_ref().is_err_and(corrupted)),
        "{ranged:?}"
    );
    assert!(r.check().is_err());
    let copy = dir.path().join("copy.larch");
    eprintln!(
        "plain copy of a snapshot that fails its check: {:?}",
        r.copy_to(&copy, false)
    );
}
