//! Second hostile review of the value heap, aimed at the fixes of the first
//! (tests/redteam_heap.rs): the spare segment, the "own" set, early frees,
//! the check of committed nodes, cleaning's room.
//!
//! Tests named `redteam_*` failed when written (each one's comment says what
//! and why) and pass since the fix: a committed node may not point at a page
//! that was free when the transaction started. Tests named `held_*` are
//! attacks the heap withstood.

mod common;

use std::path::Path;

use common::heap_image::{
    assert_clean, metas_high_water, packed_refs, redirect_packed, reuse_then_read,
};
use common::{TestDb, seeded_bytes as bytes};
use larch::{Database, Error, Options};

const PS: u32 = 4096;

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

fn ref_at(image: &[u8], at: usize) -> (u64, u32) {
    (
        u64::from_le_bytes(image[at..at + 8].try_into().unwrap()),
        u32::from_le_bytes(image[at + 8..at + 12].try_into().unwrap()),
    )
}

// ---------------------------------------------------------------------------
// The "own" set trusted for a committed cell.
// ---------------------------------------------------------------------------

fn open_at(path: &Path) -> Database {
    // SAFETY: the test owns the file.
    unsafe { Options::new().page_size(PS).map_size(1 << 30).open(path) }.unwrap()
}

/// Table "t": seven values of 1,100 bytes in one segment; table "o": 300
/// small values; a segment of table "x" written, then freed, and two more
/// commits so that its pages are reusable. Returns it closed.
fn file_with_free_segment() -> TestDb {
    let mut t = TestDb::with_options(Options::new().page_size(PS).map_size(1 << 30));
    {
        let db = t.db();
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..7u32 {
                tab.insert(&key(i), &[9u8; 1100]).unwrap();
            }
            let mut o = w.open_table("o").unwrap();
            for i in 0..300u32 {
                o.insert(&key(i), &[0xEE; 100]).unwrap();
            }
        }
        w.commit().unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut x = w.open_table("x").unwrap();
            for i in 0..6u32 {
                x.insert(&key(i), &[7u8; 1100]).unwrap();
            }
        }
        w.commit().unwrap();
        let mut w = db.begin_write().unwrap();
        assert!(w.delete_table("x").unwrap());
        w.commit().unwrap();
        for i in 0..3u32 {
            let w = db.begin_write().unwrap();
            w.open_table("u").unwrap().insert(&key(i), b"x").unwrap();
            w.commit().unwrap();
        }
        assert_clean(db);
    }
    t.db = None;
    t
}

/// The one transaction of the crafted-own test: a new key "A" packed, then
/// key 3 overwritten.
fn insert_a_then_overwrite_3(db: &Database) -> larch::Result<()> {
    let w = db.begin_write()?;
    {
        let mut tab = w.open_table("t")?;
        tab.insert(b"A", &bytes(98, 1100))?;
        tab.insert(&key(3), &bytes(99, 1100))?;
    }
    w.commit()
}

/// Found a defect (fixed). A crafted packed reference in a committed leaf names `(F, 24)`,
/// where F is the first page of a free run below the high-water mark
/// (so a check of the high-water mark alone let the leaf be copied; the
/// check now refuses a page that was free at the transaction's start), and the rest of the
/// file is consistent (the old segment's count and the meta's totals no
/// longer count that value). In one transaction the user inserts "A" (1,100
/// bytes): the writer takes that free run for a new segment and packs A at
/// `(F, 24)`. Then the crafted key is overwritten: `free_packed`
/// (src/dirty/pages.rs, `if !d.heap.owns(seg, off)`) finds `(F, 24)` in the
/// own set and skips the base-snapshot check, so the crafted cell releases
/// A's place: the segment ends the commit counting one value while two
/// cells point into it. The commit succeeds; once A is removed the segment
/// is freed with the overwritten key still in it, and later commits reuse
/// its pages: key 3 reads other bytes. The own set says which places this
/// transaction filled, not which cell holds them: a committed cell (one
/// read from the base snapshot) must never be matched against it.
#[test]
fn redteam_crafted_reference_matching_an_own_value_releases_it() {
    let mut t = file_with_free_segment();
    let ps = PS as usize;
    let base = std::fs::read(t.path()).unwrap();
    // Dry run on a copy: where does A land?
    let dry = tempfile::tempdir().unwrap();
    let dry_path = dry.path().join("db");
    std::fs::write(&dry_path, &base).unwrap();
    {
        let db = open_at(&dry_path);
        insert_a_then_overwrite_3(&db).unwrap();
    }
    let after = std::fs::read(&dry_path).unwrap();
    let a_ref = packed_refs(&after, ps)
        .into_iter()
        .find(|r| r.3 == b"A")
        .map(|r| ref_at(&after, r.0))
        .unwrap();
    let hw = metas_high_water(&t.path(), PS);
    eprintln!("A lands at {a_ref:?}; base high-water mark {hw}");
    assert!(a_ref.0 < hw, "A's segment must be a reused free run");
    // Craft key 3 to point at A's place.
    let mut image = base.clone();
    let (at, leaf, len, _) = packed_refs(&image, ps)
        .into_iter()
        .find(|r| r.3 == key(3))
        .unwrap();
    assert_eq!(len, 1100);
    redirect_packed(&mut image, ps, at, leaf, a_ref, 1100);
    std::fs::write(t.path(), &image).unwrap();
    t.reopen();
    let db = t.db();
    eprintln!("crafted: {:?}", db.check_report().unwrap().errors);
    let r = insert_a_then_overwrite_3(db);
    eprintln!("overwrite: {r:?}");
    if let Err(e) = r {
        assert!(matches!(e, Error::Corrupted { .. }), "{e:?}");
        return;
    }
    let report = db.check_report().unwrap();
    eprintln!("check after: {:?}", report.errors);
    let got = reuse_then_read(db, 1000, &key(3));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(got.unwrap().as_deref(), Some(&bytes(99, 1100)[..]));
}

// ---------------------------------------------------------------------------
// Churn in one transaction: spare segments, early frees, aborts.
// ---------------------------------------------------------------------------

use std::collections::BTreeMap;

type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

fn table_name(i: u64, ps: usize) -> String {
    // Odd tables have names long enough to pack their descriptor.
    if i % 2 == 1 {
        format!("{i:0>width$}", width = ps / 4 - 2)
    } else {
        format!("t{i}")
    }
}

fn value_len(rng: &mut larch::testing::Rng, ps: usize) -> usize {
    match rng.below(10) {
        0 => rng.below(20) as usize,
        1..=5 => ps / 4 + rng.below(ps as u64) as usize,
        6..=8 => ps + rng.below(6 * ps as u64) as usize,
        _ => 33 * ps + rng.below(ps as u64) as usize,
    }
}

fn check_model(db: &Database, model: &Model, what: &str) {
    let r = db.begin_read().unwrap();
    let names: Vec<String> = r.list_tables().unwrap();
    let want: Vec<&String> = model.keys().collect();
    let mut got: Vec<&String> = names.iter().collect();
    got.sort();
    assert_eq!(got, want, "{what}: tables");
    for (name, rows) in model {
        let t = r.open_table(name).unwrap();
        let mut n = 0;
        for e in t.iter().unwrap() {
            let (k, v) = e.unwrap();
            assert_eq!(
                rows.get(k).map(|v| v.as_slice()),
                Some(v),
                "{what}: {name} {k:?}"
            );
            n += 1;
        }
        assert_eq!(n, rows.len(), "{what}: {name} count");
    }
}

fn stat_key(db: &Database) -> (u64, u64, u64) {
    let s = db.stat().unwrap();
    (s.pages, s.free_pages, s.pending_free_pages)
}

/// One transaction of random changes on a few keys of a few tables
/// (overwrites of the same key with other lengths, removals, deletion of
/// tables whose values this transaction packed); commits or aborts.
fn churn_txn(
    db: &Database,
    rng: &mut larch::testing::Rng,
    model: &mut Model,
    ps: usize,
    ops: u32,
    commit: bool,
) -> larch::Result<()> {
    let mut next = model.clone();
    let mut w = db.begin_write()?;
    let r: larch::Result<()> = (|| {
        for _ in 0..ops {
            let ti = rng.below(4);
            let name = table_name(ti, ps);
            match rng.below(100) {
                0 => {
                    w.delete_table(&name)?;
                    next.remove(&name);
                }
                1..=20 => {
                    let k = key(rng.below(8) as u32);
                    w.open_table(&name)?.remove(&k)?;
                    if let Some(rows) = next.get_mut(&name) {
                        rows.remove(&k[..]);
                    } else {
                        next.insert(name.clone(), BTreeMap::new());
                    }
                }
                _ => {
                    let k = key(rng.below(8) as u32);
                    let len = value_len(rng, ps);
                    let v = bytes(rng.next_u64(), len);
                    w.open_table(&name)?.insert(&k, &v)?;
                    next.entry(name.clone()).or_default().insert(k.to_vec(), v);
                }
            }
        }
        Ok(())
    })();
    r?;
    if commit {
        w.commit()?;
        *model = next;
    } else {
        w.abort();
    }
    Ok(())
}

fn churn(ps: u32, seed: u64, txns: u32, max_size: Option<u64>) {
    let mut opts = Options::new().page_size(ps).map_size(1 << 28);
    if let Some(m) = max_size {
        opts = opts.max_size(m);
    }
    let t = TestDb::with_options(opts);
    let db = t.db();
    let mut rng = larch::testing::Rng(seed);
    let mut model = Model::new();
    let mut full = 0;
    for i in 0..txns {
        let commit = rng.below(4) != 0;
        let ops = [10, 200, 2000][rng.below(3) as usize];
        let before = stat_key(db);
        let r = churn_txn(db, &mut rng, &mut model, ps as usize, ops, commit);
        let what = format!("seed {seed} txn {i} commit {commit} ops {ops}");
        match r {
            Ok(()) => {}
            Err(Error::MapFull { .. }) => full += 1,
            Err(e) => panic!("{what}: {e:?}"),
        }
        if !commit || r.is_err() {
            assert_eq!(stat_key(db), before, "{what}: abort changed the free list");
        }
        let report = db.check_report().unwrap();
        assert!(report.errors.is_empty(), "{what}: {:?}", report.errors);
        assert_eq!(report.leaked_pages, 0, "{what}: {report:?}");
        check_model(db, &model, &what);
    }
    eprintln!("seed {seed}: {full} MapFull");
}

#[test]
fn held_churn_in_one_txn_512() {
    for seed in 1..4 {
        churn(512, seed, 100, None);
    }
}

#[test]
fn held_churn_in_one_txn_4096() {
    for seed in 10..12 {
        churn(4096, seed, 30, None);
    }
}

#[test]
fn held_churn_in_one_txn_at_max_size() {
    for seed in 20..23 {
        churn(512, seed, 150, Some(3 << 19));
    }
}

// ---------------------------------------------------------------------------
// Cleaning that grows the file, then a commit that fails.
// ---------------------------------------------------------------------------

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use larch::testing::{FileStorage, Storage};

/// Storage whose writes fail once `fail` counts down to zero (0: never).
struct FailWrite {
    inner: FileStorage,
    fail: Arc<AtomicU32>,
    grows: Arc<AtomicU32>,
}

impl FailWrite {
    fn tick(&self) -> io::Result<()> {
        let n = self.fail.load(Ordering::SeqCst);
        if n == 1 {
            self.fail.store(0, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if n > 1 {
            self.fail.store(n - 1, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl Storage for FailWrite {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.tick()?;
        self.inner.write_at(offset, data)
    }
    fn write_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        self.tick()?;
        self.inner.write_vectored_at(offset, bufs)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        self.grows.fetch_add(1, Ordering::SeqCst);
        self.inner.allocate(from, to)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

const N: u32 = 1200;

fn packed_rows(db: &Database) -> Vec<(Vec<u8>, Vec<u8>)> {
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    t.iter()
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
}

fn remove_two_thirds(db: &Database) -> larch::Result<()> {
    let w = db.begin_write()?;
    {
        let mut t = w.open_table("t")?;
        for i in (0..N).filter(|i| i % 3 != 0) {
            t.remove(&key(i))?;
        }
    }
    w.commit()
}

/// Held: a commit whose cleaning grows the file (the file cut to its
/// high-water mark first, so the room must be grown) and whose first write
/// then fails: after reopening, the file checks clean and holds the
/// previous commit; the same removal then commits, cleans, and the file
/// checks clean with nothing leaked. Each write of the commit is failed in
/// turn.
#[test]
fn held_cleaning_that_grew_the_file_then_a_failed_write() {
    for nth in 1..6u32 {
        let fail = Arc::new(AtomicU32::new(0));
        let grows = Arc::new(AtomicU32::new(0));
        let (f, g) = (fail.clone(), grows.clone());
        let opts = Options::new()
            .page_size(PS)
            .map_size(1 << 28)
            .storage(move |file| {
                Ok(Box::new(FailWrite {
                    inner: FileStorage::new(file),
                    fail: f.clone(),
                    grows: g.clone(),
                }) as Box<dyn Storage>)
            });
        let mut t = TestDb::with_options(opts);
        {
            let db = t.db();
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for i in 0..N {
                    tab.insert(&key(i), &bytes(u64::from(i), 1100)).unwrap();
                }
            }
            w.commit().unwrap();
            for i in 0..2u32 {
                let w = db.begin_write().unwrap();
                w.open_table("u").unwrap().insert(&key(i), b"x").unwrap();
                w.commit().unwrap();
            }
        }
        t.db = None;
        let hw = metas_high_water(&t.path(), PS);
        std::fs::OpenOptions::new()
            .write(true)
            .open(t.path())
            .unwrap()
            .set_len(hw * u64::from(PS))
            .unwrap();
        t.reopen();
        let before = packed_rows(t.db());
        let heap_before = t.db().stat().unwrap().heap_tree;
        grows.store(0, Ordering::SeqCst);
        fail.store(nth, Ordering::SeqCst);
        let r = remove_two_thirds(t.db());
        eprintln!("nth {nth}: {r:?}, grows {}", grows.load(Ordering::SeqCst));
        fail.store(0, Ordering::SeqCst);
        t.reopen();
        let db = t.db();
        assert_clean(db);
        if r.is_err() {
            assert_eq!(packed_rows(db), before, "nth {nth}");
        }
        remove_two_thirds(db).unwrap();
        let report = assert_clean(db);
        let rows = packed_rows(db);
        assert_eq!(rows.len(), N.div_ceil(3) as usize);
        for (k, v) in rows {
            let i = u32::from_be_bytes(k[..].try_into().unwrap());
            assert_eq!(v, bytes(u64::from(i), 1100));
        }
        let s = db.stat().unwrap();
        eprintln!(
            "nth {nth}: heap before {heap_before:?} after {:?}; pages {} free {} pending {}; {report:?}",
            s.heap_tree, s.pages, s.free_pages, s.pending_free_pages
        );
    }
}
