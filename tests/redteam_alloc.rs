//! Hostile review of page choice (DESIGN.md, "Choosing pages"), the commit
//! that stamps each buffer as it writes it, `pwritev`, and in-place
//! overwrites of same-size values.
//!
//! The first three tests found a defect of the allocator as first written:
//! past its 64th page a transaction grew the file instead of taking free
//! pages without a free neighbour, and fell back on them only when
//! `max_size` stopped the allocator, so (1) on a full disk a commit that fit
//! in the free pages failed with `MapFull` at step 4, every time it was
//! retried, and (2, 3) the room under `max_size` went to single pages,
//! leaving none for an overflow run of the same or a later transaction.
//! Lone free pages are now taken before the file grows. The other tests are
//! attacks that held, kept as guards.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::full_disk::full_disk;
use common::{Rng, TestDb};
use larch::testing::{FileStorage, Storage, image_state};
use larch::{Database, Error};

const PS: u32 = 4096;
/// Values of 100 bytes: 35 cells to a 4 KiB leaf.
const VLEN: usize = 100;
const PER_LEAF: u32 = 35;
/// Leaves of the loaded table.
const LEAVES: u32 = 3000;

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

fn value(i: u32, round: u8, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = i.to_le_bytes().iter().copied().cycle().take(len).collect();
    if let Some(b) = v.first_mut() {
        *b = round;
    }
    v
}

fn no_leaks(db: &Database) {
    let report = db.check().unwrap();
    assert_eq!(report.leaked_pages, 0, "{report:?}");
}

/// One small commit in another table (a page or two), so that what earlier
/// commits freed gets past the metas.
fn tick(db: &Database, i: u32) {
    let w = db.begin_write().unwrap();
    w.open_table("u").unwrap().insert(&key(i), b"x").unwrap();
    w.commit().unwrap();
}

/// Rewrites one key in each leaf `first, first + every, ..` of the loaded
/// table (one transaction).
fn touch_leaves(db: &Database, first: u32, every: u32, count: u32, round: u8) -> larch::Result<()> {
    let w = db.begin_write()?;
    {
        let mut t = w.open_table("t")?;
        for j in 0..count {
            let leaf = first + j * every;
            let k = leaf * PER_LEAF + PER_LEAF / 2;
            t.insert(&key(k), &value(k, round, VLEN))?;
        }
    }
    w.commit()
}

/// The larger high-water mark of the two metas on disk.
fn metas_high_water(path: &Path) -> u64 {
    let image = std::fs::read(path).unwrap();
    image_state(&image, PS as usize)
        .iter()
        .map(|s| s.high_water)
        .max()
        .unwrap()
}

/// A database whose table "t" fills `LEAVES` leaves, laid out in key order,
/// with every 16th leaf rewritten once (its old page free, between two
/// leaves in use), the frees reusable, and the file cut to the metas'
/// high-water mark (no room ahead). Returns the test database, closed.
fn fragmented() -> TestDb {
    let mut t = TestDb::new(PS);
    {
        let db = t.db();
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..LEAVES * PER_LEAF {
                tab.insert(&key(i), &value(i, 0, VLEN)).unwrap();
            }
        }
        w.commit().unwrap();
        touch_leaves(db, 0, 16, LEAVES / 16, 1).unwrap();
        for i in 0..3 {
            tick(db, i);
        }
        // Pending: only what the last two ticks freed, each a path of two
        // pages and the pages of the free list it rewrote (two leaves and
        // the directory).
        let s = db.stat().unwrap();
        assert!(s.pending_free_pages <= 10, "{s:?}");
    }
    t.db = None;
    let hw = metas_high_water(&t.path());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(t.path())
        .unwrap();
    f.set_len(hw * u64::from(PS)).unwrap();
    drop(f);
    t
}

/// On a full disk, a transaction whose pages all fit in the reusable pages
/// of the file needs no growth and must commit. The allocator grows the
/// file past the 64th page instead of taking free pages without a free
/// neighbour, and only falls back on them when `max_size` stops it, not when
/// the disk does: the commit fails with `MapFull` at step 4, every time it
/// is retried.
#[test]
fn a_full_disk_does_not_refuse_a_commit_that_fits_in_free_pages() {
    let mut t = fragmented();
    let full = Arc::new(AtomicBool::new(false));
    t.set_options(full_disk(common::small_map(PS), &full));
    t.reopen();
    let db = t.db();
    let s = db.stat().unwrap();
    eprintln!("before: {s:?}");
    let reusable = s.free_pages - s.pending_free_pages;
    full.store(true, Ordering::SeqCst);
    // Leaves 8, 24, 40, ..: their pages, the branches above them and the
    // list's chain take fewer pages than are reusable.
    let count = (reusable as u32).saturating_sub(40);
    assert!(count > 100, "{count}");
    let mut r = touch_leaves(db, 8, 16, count, 2);
    // Retried, it fails the same way: the disk stays full.
    for _ in 0..2 {
        if r.is_err() {
            r = touch_leaves(db, 8, 16, count, 2);
        }
    }
    let after = db.stat().unwrap();
    eprintln!("after: {r:?} {after:?}");
    r.unwrap();
    assert!(after.pages <= s.pages);
    no_leaks(db);
}

/// The fragmented database reopened with `max_size` leaving room for one
/// run of 64 new pages past its high-water mark (and two more), a value
/// that needs that run, and how many leaves to rewrite so that their copies
/// fit in the reusable pages with 40 to spare.
fn room_for_one_run() -> (TestDb, Vec<u8>, u32) {
    let mut t = fragmented();
    let hw = metas_high_water(&t.path());
    let run_pages = 64u64;
    let big = vec![7u8; (run_pages as usize - 1) * PS as usize];
    t.set_options(common::small_map(PS).max_size((hw + run_pages + 2) * u64::from(PS)));
    t.reopen();
    let s = t.db().stat().unwrap();
    let reusable = s.free_pages - s.pending_free_pages;
    let count = (reusable as u32).saturating_sub(40);
    (t, big, count)
}

/// With `max_size` just above the file, a transaction that rewrites leaves
/// (all of which fit in reusable pages) and then stores a value needing a
/// run of new pages at the end of the file must commit: the free pages hold
/// the leaves, the room left under `max_size` the run. The allocator spends
/// that room on single pages instead (it takes free pages without a
/// neighbour only once the file cannot grow), and the run finds none left:
/// `MapFull`.
#[test]
fn max_size_headroom_is_not_spent_on_pages_the_free_list_holds() {
    let (t, big, count) = room_for_one_run();
    let db = t.db();
    let w = db.begin_write().unwrap();
    let r = (|| {
        let mut tab = w.open_table("t")?;
        for j in 0..count {
            let leaf = 8 + j * 16;
            let k = leaf * PER_LEAF + PER_LEAF / 2;
            tab.insert(&key(k), &value(k, 2, VLEN))?;
        }
        tab.insert(b"big", &big)
    })();
    eprintln!("insert: {r:?}");
    r.unwrap();
    w.commit().unwrap();
    no_leaks(db);
}

/// The same across two transactions: a bulk rewrite whose pages all fit in
/// the reusable ones commits, and leaves the room under `max_size` spent
/// (the file grew while the free pages without a neighbour stayed free); a
/// value that needs a run of new pages then fails with `MapFull` in the
/// next transaction, however often it is retried. Lowest-first reuse kept
/// the room for it.
#[test]
fn a_bulk_rewrite_does_not_spend_the_room_a_later_value_needs() {
    let (t, big, count) = room_for_one_run();
    let db = t.db();
    let s = db.stat().unwrap();
    touch_leaves(db, 8, 16, count, 2).unwrap();
    let after = db.stat().unwrap();
    eprintln!(
        "after the rewrite: {} pages, {} before",
        after.pages, s.pages
    );
    let w = db.begin_write().unwrap();
    let r = w
        .open_table("t")
        .and_then(|mut tab| tab.insert(b"big", &big));
    eprintln!("insert: {r:?}");
    r.unwrap();
    w.commit().unwrap();
    no_leaks(db);
}

/// Figures of a churn: (highest high-water mark, pages in use at the end,
/// pages after compact, file bytes after compact).
fn churn(seed: u64, rounds: u32, pin: bool) -> (u64, u64, u64, u64) {
    let t = TestDb::new(PS);
    let db = t.db();
    let n = 20_000u32;
    let mut rng = Rng(seed);
    {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..n {
                tab.insert(&key(i), &value(i, 0, VLEN)).unwrap();
            }
        }
        w.commit().unwrap();
    }
    let mut max_hw = 0;
    let mut held = None;
    for round in 0..rounds {
        if pin && round % 7 == 0 {
            held = Some(db.begin_read().unwrap());
        }
        if round % 7 == 3 {
            held = None;
        }
        let size = match rng.below(4) {
            0 => 20,
            1 => 300,
            _ => 3000,
        };
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for _ in 0..size {
                let i = rng.below(u64::from(n)) as u32;
                match rng.below(10) {
                    0 => {
                        tab.remove(&key(i)).unwrap();
                    }
                    1 => {
                        tab.insert(&key(i), &value(i, round as u8, 5000)).unwrap();
                    }
                    _ => {
                        tab.insert(&key(i), &value(i, round as u8, VLEN)).unwrap();
                    }
                }
            }
        }
        w.commit().unwrap();
        max_hw = max_hw.max(db.stat().unwrap().pages);
    }
    drop(held);
    let s = db.stat().unwrap();
    let in_use = s.pages - s.free_pages;
    db.compact().unwrap();
    no_leaks(db);
    let c = db.stat().unwrap();
    (max_hw, in_use, c.pages, c.file_size)
}

// Attacks that held, kept as guards.

/// A churn of small and large transactions, overflow values, deletes and a
/// reader pinned now and then: the file stays within a sixteenth (and a
/// little) of what lowest-first reuse gave on the same seed (7,738 pages
/// against 7,936 here), and compaction brings it down as far as before
/// (4,603 pages then, 4,637 here).
#[test]
fn churn_grows_little_more_than_lowest_first_and_compacts_as_well() {
    // The highest mark with lowest-first reuse on this seed, and the pages
    // after compact with it.
    let (seed, old_hw, old_after) = (2, 7738, 4603);
    let (hw, in_use, after, _) = churn(seed, 120, true);
    assert!(
        hw <= old_hw + old_hw / 16,
        "seed {seed}: grew to {hw} pages, {old_hw} before"
    );
    assert!(
        after <= old_after + old_after / 32 && after <= in_use + in_use / 16,
        "seed {seed}: {after} pages after compact ({old_after} before, {in_use} in use)"
    );
}

/// A large transaction that took free pages in runs and grew the file,
/// aborted, gives every page back: the same transaction then commits with
/// nothing leaked, and the free list is as it was in between.
#[test]
fn an_aborted_large_transaction_gives_its_pages_back() {
    let mut t = fragmented();
    t.reopen();
    let db = t.db();
    let before = db.stat().unwrap();
    {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for j in 0..400 {
                let k = (3 + j * 7) * PER_LEAF + 1;
                tab.insert(&key(k), &value(k, 9, VLEN)).unwrap();
            }
        }
        w.abort();
    }
    let again = db.stat().unwrap();
    assert_eq!(
        (again.pages, again.free_pages, again.pending_free_pages),
        (before.pages, before.free_pages, before.pending_free_pages)
    );
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for j in 0..400 {
            let k = (3 + j * 7) * PER_LEAF + 1;
            tab.insert(&key(k), &value(k, 9, VLEN)).unwrap();
        }
    }
    w.commit().unwrap();
    no_leaks(db);
    t.reopen();
    no_leaks(t.db());
    let r = t.db().begin_read().unwrap();
    let k = (3 + 399 * 7) * PER_LEAF + 1;
    assert_eq!(
        r.open_table("t").unwrap().get(&key(k)).unwrap().unwrap(),
        &value(k, 9, VLEN)[..]
    );
}

/// Commits whose writes cross every bound of `write_pages` (1 MiB chunks,
/// which with 64 KiB pages are 16 pages; an overflow run of 3 MiB, larger
/// than a chunk; runs and lone pages), single-sync: the seal list the meta
/// carries matches the pages on disk, so a reopen takes the commit and sets
/// nothing aside. With 512-byte pages, runs of more than `MAX_SLICES`
/// buffers (two-sync).
#[test]
fn the_seal_list_matches_what_was_written() {
    for (ps, n, big) in [(65536u32, 600u32, 3 << 20), (512, 3000, 300_000)] {
        let mut t = TestDb::new(ps);
        for round in 0..4u8 {
            let db = t.db();
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for i in 0..n {
                    if round == 0 || i % (u32::from(round) + 2) == 0 {
                        tab.insert(&key(i), &value(i, round, 60)).unwrap();
                    }
                }
                for b in 0..3u32 {
                    tab.insert(&key(1_000_000 + b), &value(b, round, big + b as usize * 7))
                        .unwrap();
                }
            }
            w.commit().unwrap();
            let id = db.last_txn_id();
            t.reopen();
            let s = t.db().stat().unwrap();
            assert_eq!((s.txn_id, s.set_aside), (id, None), "ps {ps} round {round}");
            let r = t.db().begin_read().unwrap();
            let tab = r.open_table("t").unwrap();
            assert_eq!(
                tab.get(&key(1_000_002)).unwrap().unwrap(),
                &value(2, round, big + 14)[..]
            );
        }
        no_leaks(t.db());
    }
}

/// A write or sync that fails in the middle of a commit of many runs
/// (after some buffers were stamped and written, before others) poisons the
/// handle, and the file reopens to the commit before, checked, nothing
/// leaked.
#[test]
fn a_failure_in_the_middle_of_the_writes_keeps_the_commit_before() {
    use larch::testing::faults::{Fault, Kind, Trap};
    for (kind, fault, nth) in [
        (Kind::Write, Fault::Eio, 1),
        (Kind::Write, Fault::Short, 2),
        (Kind::Write, Fault::NoSpace, 3),
        (Kind::Sync, Fault::Eio, 1),
        (Kind::Sync, Fault::Eio, 2),
    ] {
        let trap = Trap::new();
        let hook = trap.clone();
        let mut t =
            TestDb::with_options(common::small_map(PS).storage(move |file| Ok(hook.storage(file))));
        {
            let db = t.db();
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for i in 0..20_000 {
                    tab.insert(&key(i), &value(i, 0, VLEN)).unwrap();
                }
            }
            w.commit().unwrap();
            let id = db.last_txn_id();
            trap.arm(kind, fault, nth);
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for i in (0..20_000).step_by(3) {
                    tab.insert(&key(i), &value(i, 1, VLEN)).unwrap();
                }
                tab.insert(b"big", &vec![1u8; 2 << 20]).unwrap();
            }
            assert!(w.commit().is_err(), "{kind:?} {nth}");
            assert_eq!(trap.fired(), 1);
            assert!(matches!(db.begin_write(), Err(Error::Poisoned)));
            trap.disarm();
            t.reopen();
            let db = t.db();
            assert_eq!(db.last_txn_id(), id, "{kind:?} {fault:?} {nth}");
            no_leaks(db);
            let r = db.begin_read().unwrap();
            let tab = r.open_table("t").unwrap();
            assert_eq!(tab.get(&key(3)).unwrap().unwrap(), &value(3, 0, VLEN)[..]);
            assert_eq!(tab.get(b"big").unwrap(), None);
        }
    }
}

/// `FileStorage::write_vectored_at` (`pwritev`) past 4 GiB, with more
/// buffers than `IOV_MAX` and of uneven sizes: the bytes land where a plain
/// write would put them; an offset past `off_t` is an error, not a panic.
#[test]
fn pwritev_past_4_gib_and_iov_max() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let s = FileStorage::new(file.try_clone().unwrap());
    let mut rng = Rng(7);
    let bufs: Vec<Vec<u8>> = (0..2500).map(|i| rng.bytes(1 + (i * 37) % 3000)).collect();
    let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
    let whole = bufs.concat();
    for offset in [(5u64 << 30) + 3, (1 << 31) - 1000] {
        s.write_vectored_at(offset, &slices).unwrap();
        let mut back = vec![0u8; whole.len()];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut back, offset).unwrap();
        assert!(back == whole, "offset {offset}");
    }
    assert!(s.write_vectored_at(u64::MAX - 10, &slices).is_err());
    assert!(s.write_vectored_at(1 << 63, &slices).is_err());
}

/// Overwrites of a key whose old and new cells have the same length but
/// different kinds or lengths of value: an overflow value by another
/// overflow value of another length, by an inline value of 8 bytes (the
/// length of an overflow reference), and back, in one transaction and
/// across transactions, against a model, with readers holding old
/// snapshots and the hint used by neighbours. Nothing is leaked and every
/// snapshot reads its own values.
#[test]
fn same_length_cells_of_other_values_replace_correctly() {
    for ps in [512u32, 4096] {
        let t = TestDb::new(ps);
        let db = t.db();
        let mut rng = Rng(u64::from(ps));
        let mut model = std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new();
        let lens = [0usize, 7, 8, 9, 60, 127, 128, 129, 300, 1000, 5000, 6000];
        let mut held = Vec::new();
        for round in 0..60u32 {
            let w = db.begin_write().unwrap();
            let mut m = model.clone();
            {
                let mut tab = w.open_table("t").unwrap();
                for _ in 0..40 {
                    let k = key(rng.below(50) as u32 * 3).to_vec();
                    let len = lens[rng.below(lens.len() as u64) as usize];
                    let v = rng.bytes(len);
                    tab.insert(&k, &v).unwrap();
                    // Its neighbours, through the hint.
                    let n = key(u32::from_be_bytes(k[..].try_into().unwrap()) + 1).to_vec();
                    tab.insert(&n, &v[..v.len().min(8)]).unwrap();
                    m.insert(n, v[..v.len().min(8)].to_vec());
                    if rng.below(5) == 0 {
                        tab.remove(&k).unwrap();
                        m.remove(&k);
                    } else {
                        m.insert(k.clone(), v);
                    }
                    assert_eq!(tab.get(&k).unwrap().map(<[u8]>::to_vec), m.get(&k).cloned());
                }
            }
            if round % 9 == 8 {
                w.abort();
            } else {
                w.commit().unwrap();
                model = m;
            }
            if round % 5 == 0 {
                held.push((db.begin_read().unwrap(), model.clone()));
            }
            if held.len() > 3 {
                held.remove(0);
            }
            for (r, snap) in &held {
                let tab = r.open_table("t").unwrap();
                let got: Vec<(Vec<u8>, Vec<u8>)> = common::collect(tab.iter().unwrap());
                let want: Vec<(Vec<u8>, Vec<u8>)> =
                    snap.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                assert!(got == want, "ps {ps} round {round}");
            }
        }
        drop(held);
        let r = db.begin_read().unwrap();
        let got = common::collect(r.open_table("t").unwrap().iter().unwrap());
        assert!(got == model.into_iter().collect::<Vec<_>>());
        drop(r);
        no_leaks(db);
    }
}

/// Large transactions (runs, continued runs, then lone free pages, then the
/// file grown) beside readers held at scattered snapshots for scattered
/// spans: no page a live snapshot reaches changes on disk while the reader
/// lives.
#[test]
fn grouped_pages_are_never_ones_a_reader_reaches() {
    let t = TestDb::new(PS);
    let db = t.db();
    let path = t.path();
    let n = 20_000u32;
    let mut rng = Rng(11);
    {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..n {
                tab.insert(&key(i), &value(i, 0, VLEN)).unwrap();
            }
        }
        w.commit().unwrap();
    }
    // Each reader, the round it ends, and the pages of its snapshot with
    // their bytes.
    type Pages = Vec<(u64, Vec<u8>)>;
    let mut held: Vec<(larch::ReadTxn, u32, Pages)> = Vec::new();
    for round in 0..35u32 {
        if rng.below(3) == 0 {
            let r = db.begin_read().unwrap();
            let image = std::fs::read(&path).unwrap();
            let reach = image_state(&image, PS as usize)
                .into_iter()
                .find(|s| s.txn_id == r.id())
                .and_then(|s| s.reachable)
                .unwrap();
            let pages = reach
                .into_iter()
                .map(|p| {
                    let at = p as usize * PS as usize;
                    (p, image[at..at + PS as usize].to_vec())
                })
                .collect();
            held.push((r, round + 1 + rng.below(6) as u32, pages));
        }
        let size = [30, 400, 1500][rng.below(3) as usize];
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for _ in 0..size {
                let i = rng.below(u64::from(n)) as u32;
                match rng.below(12) {
                    0 => {
                        tab.remove(&key(i)).unwrap();
                    }
                    1 => {
                        tab.insert(&key(i), &value(i, round as u8, 9000)).unwrap();
                    }
                    _ => {
                        tab.insert(&key(i), &value(i, round as u8, VLEN)).unwrap();
                    }
                }
            }
        }
        w.commit().unwrap();
        let image = std::fs::read(&path).unwrap();
        for (r, _, pages) in &held {
            for (p, bytes) in pages {
                let at = *p as usize * PS as usize;
                assert!(
                    image[at..at + PS as usize] == bytes[..],
                    "round {round}: page {p} of snapshot {} changed",
                    r.id()
                );
            }
        }
        held.retain(|(_, until, _)| *until > round);
    }
    drop(held);
    no_leaks(db);
}
