//! Shrinking the file: the free tail is cut at commit, `compact` moves pages
//! down so that it is, and nothing a snapshot or a meta reaches is ever cut
//! (DESIGN.md, "Shrinking the file").

mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::sized::{holds, key, load, touch, value};
use common::{Rng, TestDb};
use larch::Database;
use larch::testing::{FileStorage, Storage};

const PS: u32 = 4096;

fn remove(db: &Database, keys: &[u32], per_commit: usize) {
    for chunk in keys.chunks(per_commit) {
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for &i in chunk {
                assert!(t.remove(&key(i)).unwrap());
            }
        }
        w.commit().unwrap();
    }
}

fn file_len(db: &TestDb) -> u64 {
    db.file_size()
}

/// Pages in use: the high-water mark less the free pages.
fn live_pages(db: &Database) -> u64 {
    let s = db.stat().unwrap();
    s.pages - s.free_pages
}

/// 90% of the keys deleted at random: `compact` leaves a file at most 1.2
/// times its pages in use, and a reopen finds everything.
#[test]
fn compact_after_deleting_ninety_percent() {
    let mut t = TestDb::new(PS);
    let n = 6000;
    load(t.db(), 0..n, 500);
    let mut rng = Rng(7);
    let mut gone = Vec::new();
    let mut kept = Vec::new();
    for i in 0..n {
        if rng.below(10) == 0 {
            kept.push(i);
        } else {
            gone.push(i);
        }
    }
    remove(t.db(), &gone, 2000);
    let before = file_len(&t);
    let returned = t.db().compact().unwrap();
    let after = file_len(&t);
    let live = live_pages(t.db());
    eprintln!("before {before} after {after} returned {returned} live {live} pages");
    assert_eq!(returned, before - after);
    assert!(
        after <= live * u64::from(PS) * 12 / 10,
        "file {after} bytes for {live} pages in use"
    );
    holds(t.db(), &kept);
    t.reopen();
    holds(t.db(), &kept);
    assert_eq!(file_len(&t), after);
}

fn sample(n: u32, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = Rng(seed);
    (0..n).partition(|_| rng.below(10) != 0)
}

/// A reader holding a snapshot from before the deletes keeps the file at
/// least as long as its snapshot, and reads it whole throughout; once it
/// ends, the next `compact` returns the rest.
#[test]
fn a_reader_keeps_its_pages_and_the_shrink_follows_its_end() {
    let t = TestDb::new(PS);
    let db = t.db();
    let n = 4000;
    load(db, 0..n, 500);
    let (gone, kept) = sample(n, 11);
    let all: Vec<u32> = (0..n).collect();
    let r = db.begin_read().unwrap();
    let held_pages = r.stat().unwrap().pages;
    let slice = r.open_table("t").unwrap().get(&key(1)).unwrap().unwrap();
    remove(db, &gone, 1000);
    db.compact().unwrap();
    assert!(file_len(&t) >= held_pages * u64::from(PS));
    // The old snapshot, and a slice taken from it before, are intact.
    assert_eq!(slice, &value(1)[..]);
    let table = r.open_table("t").unwrap();
    for &i in &all {
        assert_eq!(table.get(&key(i)).unwrap(), Some(&value(i)[..]), "key {i}");
    }
    r.check().unwrap();
    drop(r);
    let returned = db.compact().unwrap();
    assert!(returned > 0);
    let live = live_pages(db);
    assert!(file_len(&t) <= live * u64::from(PS) * 12 / 10);
    holds(db, &kept);
}

/// Threads read whole snapshots while `compact` runs: every snapshot shows
/// the same data (compaction changes where pages lie, nothing else), and a
/// snapshot held through the whole run stays readable.
#[test]
fn threads_read_on_while_compact_runs() {
    let t = TestDb::new(PS);
    let db = t.db();
    let n = 4000;
    load(db, 0..n, 500);
    let (gone, kept) = sample(n, 13);
    remove(db, &gone, 1000);
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let long = db.begin_read().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    for r in [&db.begin_read().unwrap(), &long] {
                        let table = r.open_table("t").unwrap();
                        assert_eq!(table.len(), kept.len() as u64);
                        for (e, &i) in table.iter().unwrap().zip(&kept) {
                            let (k, v) = e.unwrap();
                            assert_eq!((k, v), (&key(i)[..], &value(i)[..]));
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Two compactions: the second shrinks under readers that come and go.
        db.compact().unwrap();
        db.compact().unwrap();
        stop.store(true, Ordering::Relaxed);
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    holds(db, &kept);
}

/// Without `compact`, a commit cuts the file once its free tail is a
/// growth step long: here after deleting the last keys of a sorted load.
#[test]
fn a_commit_cuts_a_free_tail() {
    let mut t = TestDb::new(PS);
    let n = 3000;
    load(t.db(), 0..n, 500);
    let before = file_len(&t);
    let gone: Vec<u32> = (n / 5..n).collect();
    remove(t.db(), &gone, 1000);
    // The freed pages become reusable two commits later, and the file is
    // cut the commit after the high-water mark drops.
    for i in 0..4 {
        touch(t.db(), i);
    }
    // (Pages the deletes copied past the end of the file then still hold
    // part of the tail: that is what `compact` moves.)
    let after = file_len(&t);
    assert!(after <= before * 3 / 4, "{before} -> {after}");
    let s = t.db().stat().unwrap();
    assert!(after >= s.pages * u64::from(PS));
    let kept: Vec<u32> = (0..n / 5).collect();
    holds(t.db(), &kept);
    t.reopen();
    holds(t.db(), &kept);
}

/// A live snapshot of a commit a writer never saw (another handle's, here
/// in the same process, which behaves as another process) stops the cut:
/// the writer does not know how far that snapshot reads.
#[test]
fn an_unknown_snapshot_stops_the_cut() {
    let t = TestDb::new(PS);
    let a = t.db();
    let n = 4000;
    load(a, 0..n, 500);
    // SAFETY: the test owns the file; larch handles share it.
    let b = unsafe { common::small_map(PS).open(t.path()) }.unwrap();
    let (gone, kept) = sample(n, 17);
    remove(a, &gone, 1000);
    // `a` commits once more and a reader of `a` holds that commit, which
    // `b` never reads.
    touch(a, 0);
    let r = a.begin_read().unwrap();
    touch(a, 1);
    let before = file_len(&t);
    assert_eq!(b.compact().unwrap(), 0);
    assert_eq!(file_len(&t), before);
    let table = r.open_table("t").unwrap();
    for &i in &kept {
        assert_eq!(table.get(&key(i)).unwrap(), Some(&value(i)[..]));
    }
    drop(r);
    assert!(b.compact().unwrap() > 0);
    // `a` learnt nothing of the cut; its next writer grows from the real
    // length, and its commits survive a reopen.
    let more: Vec<u32> = (n..n + 2000).collect();
    load(a, more.iter().copied(), 500);
    let all: Vec<u32> = kept.iter().chain(&more).copied().collect();
    holds(a, &all);
    holds(&b, &all);
    drop(b);
    let mut t = t;
    t.reopen();
    holds(t.db(), &all);
}

/// Fails every `set_len` that would shorten the file while `fail` is set.
struct NoCut(FileStorage, Arc<AtomicBool>, Arc<AtomicU64>);

impl Storage for NoCut {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, data)
    }
    fn write_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        self.0.write_vectored_at(offset, bufs)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.1.load(Ordering::SeqCst) {
            self.2.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.0.set_len(len)
    }
    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        self.0.allocate(from, to)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync()
    }
}

const EIO: i32 = 5;

/// A cut that fails leaves a longer file and nothing else: no poisoning,
/// nothing lost, and the next compaction cuts.
#[test]
fn a_failed_cut_loses_nothing() {
    let fail = Arc::new(AtomicBool::new(true));
    let failures = Arc::new(AtomicU64::new(0));
    let (f, c) = (fail.clone(), failures.clone());
    let opts = common::small_map(PS).storage(move |file| {
        Ok(Box::new(NoCut(FileStorage::new(file), f.clone(), c.clone())) as _)
    });
    let mut t = TestDb::with_options(opts);
    let n = 4000;
    load(t.db(), 0..n, 500);
    let (gone, kept) = sample(n, 19);
    remove(t.db(), &gone, 1000);
    let before = file_len(&t);
    assert_eq!(t.db().compact().unwrap(), 0);
    assert!(failures.load(Ordering::SeqCst) > 0);
    assert_eq!(file_len(&t), before);
    holds(t.db(), &kept);
    // Not poisoned: commits go on, and grow the file from its real length.
    let more: Vec<u32> = (n..n + 500).collect();
    load(t.db(), more.iter().copied(), 100);
    let all: Vec<u32> = kept.iter().chain(&more).copied().collect();
    holds(t.db(), &all);
    fail.store(false, Ordering::SeqCst);
    assert!(t.db().compact().unwrap() > 0);
    holds(t.db(), &all);
    t.reopen();
    holds(t.db(), &all);
}

/// Closing the handle gives back what growth allocated ahead and the free
/// tail, down to the pages the metas reach; another handle's live reader
/// keeps what it may read, and a writer running elsewhere keeps the file as
/// it is (the handle that closes never waits). A handle that wrote nothing
/// cuts nothing (`tests/open.rs`: the pages of a meta open set aside stay).
#[test]
fn closing_cuts_the_file_to_the_pages_in_use() {
    let mut t = TestDb::new(PS);
    load(t.db(), 0..400, 50);
    // Small commits until two in a row leave the same mark: both metas then
    // reach as far (a commit may lower the mark, as its free tail is cut).
    let mut pages = t.db().stat().unwrap().pages;
    for i in 0..10 {
        touch(t.db(), i);
        let now = t.db().stat().unwrap().pages;
        if now == pages && i > 0 {
            break;
        }
        pages = now;
    }
    let open_len = file_len(&t);
    // Growth allocates ahead: at least 1 MiB at a time.
    assert!(
        open_len > pages * u64::from(PS),
        "{open_len} bytes for {pages} pages"
    );
    t.db = None;
    assert_eq!(file_len(&t), pages * u64::from(PS));
    t.reopen();
    holds(t.db(), &(0..400).collect::<Vec<_>>());

    // Another handle reads a snapshot of a larger file while this one
    // removes most of it and closes: the cut stops at that snapshot.
    load(t.db(), 400..800, 50);
    let other = common::open(&t.path(), PS);
    let r = other.begin_read().unwrap();
    let held = t.db().stat().unwrap().pages;
    remove(t.db(), &(200..800).collect::<Vec<_>>(), 100);
    for i in 0..4 {
        touch(t.db(), i);
    }
    t.db = None;
    assert!(file_len(&t) >= held * u64::from(PS));
    assert_eq!(r.open_table("t").unwrap().len(), 800);
    drop(r);
    // Now a writer runs in the other handle: closing does not wait for it
    // and cuts nothing, not even what growth allocated ahead.
    t.reopen();
    load(t.db(), 800..1200, 50);
    let before = file_len(&t);
    assert!(before > t.db().stat().unwrap().pages * u64::from(PS));
    let w = other.begin_write().unwrap();
    t.db = None;
    assert_eq!(file_len(&t), before);
    drop(w);
    t.reopen();
    let mut kept: Vec<u32> = (0..200).collect();
    kept.extend(800..1200);
    holds(t.db(), &kept);
}
