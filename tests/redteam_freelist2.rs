//! Red team, second pass, of the free list: the commit that applies the
//! list in place and gives it back on failure (`TxnFreeList::apply`,
//! `give_back`, `FreeList::unapply`), and the lone leaf that the meta names
//! without a directory.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::free_pages::{
    Newest, count, crafted_outcome, forget_other_slot, full_check, newest_meta, not_refused, page,
    page_mut, set_count, set_u64, spread_key as key, u64_at,
};
use common::{Rng, TestDb};
use larch::testing::edit_meta;
use larch::testing::faults::{Fault, Kind, Trap};
use larch::{Database, Error};

const PS: usize = 512;

/// `shared_tree_image` builds in one scratch directory per process.
static SHARED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn shared_tree_image() -> Vec<u8> {
    let _one = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    larch::testing::corrupt::shared_tree_image()
}

fn model_matches(db: &Database, model: &BTreeMap<u64, Vec<u8>>, what: &str) {
    let r = db.begin_read().unwrap();
    let Ok(t) = r.open_table("t") else {
        assert!(model.is_empty(), "{what}: table missing");
        return;
    };
    assert_eq!(t.len(), model.len() as u64, "{what}: count");
    for (k, v) in model {
        let got = t.get(&key(*k)).unwrap();
        assert_eq!(got, Some(&v[..]), "{what}: key {k}");
    }
}

// ---------------------------------------------------------------------
// Reading the list in an image, independently of the library.

/// The newest meta's list as the file holds it: the head's kind (0 when
/// there is no list), the directory pages, the leaves, and the entries.
struct ListShape {
    head_kind: u8,
    dir: Vec<u64>,
    leaves: Vec<u64>,
    entries: u64,
    /// Directory pages that name no leaf.
    empty_dir_pages: usize,
}

fn shape(path: &Path, ps: usize) -> ListShape {
    let mut image = std::fs::read(path).unwrap();
    let Newest { head, .. } = newest_meta(&mut image, ps);
    let mut s = ListShape {
        head_kind: 0,
        dir: Vec::new(),
        leaves: Vec::new(),
        entries: 0,
        empty_dir_pages: 0,
    };
    if head == 0 {
        return s;
    }
    s.head_kind = page(&image, ps, head)[0];
    let mut id = head;
    if s.head_kind == 4 {
        s.leaves.push(head);
    } else {
        while id != 0 {
            let p = page(&image, ps, id);
            assert_eq!(p[0], 6, "page {id} of the directory");
            s.dir.push(id);
            if count(p) == 0 {
                s.empty_dir_pages += 1;
            }
            for i in 0..count(p) {
                s.leaves.push(u64_at(p, 24 + 8 * i));
            }
            id = u64_at(p, 16);
        }
    }
    for &l in &s.leaves {
        let p = page(&image, ps, l);
        assert_eq!(p[0], 4, "leaf {l}");
        assert_eq!(u64_at(p, 16), 0, "leaf {l} next");
        s.entries += count(p) as u64;
    }
    s
}

/// The figures the library gives for the list against the file itself.
fn figures_agree(db: &Database, path: &Path, what: &str) -> ListShape {
    let s = shape(path, PS);
    let stat = db.stat().unwrap();
    let report = db.check_report().unwrap();
    let pages = (s.dir.len() + s.leaves.len()) as u64;
    assert_eq!(stat.freelist_pages, pages, "{what}: stat freelist_pages");
    assert_eq!(report.freelist_pages, pages, "{what}: check freelist_pages");
    assert_eq!(stat.free_pages, s.entries, "{what}: stat free_pages");
    assert_eq!(report.free_pages, s.entries, "{what}: check free_pages");
    s
}

// ---------------------------------------------------------------------
// 1. Failures after `apply`.

/// A transaction that adds much to the list: it frees committed pages
/// (removals of big values), allocates and frees its own (inserts it
/// removes again: leftovers), and grows the file (a new big value), with a
/// savepoint restored in the middle.
fn heavy_txn(
    db: &Database,
    rng: &mut Rng,
    round: u64,
    model: &BTreeMap<u64, Vec<u8>>,
    big: usize,
) -> larch::Result<BTreeMap<u64, Vec<u8>>> {
    let mut next = model.clone();
    let mut w = db.begin_write()?;
    {
        let mut t = w.open_table("t")?;
        for _ in 0..60 {
            let k = rng.below(600);
            t.remove(&key(k))?;
            next.remove(&k);
        }
        // Leftovers: written and removed in the same transaction.
        for i in 0..40 {
            t.insert(&key(10_000 + i), &vec![3u8; 700])?;
        }
        for i in 0..40 {
            t.remove(&key(10_000 + i))?;
        }
    }
    let sp = w.savepoint()?;
    {
        let mut t = w.open_table("t")?;
        for i in 0..30 {
            t.insert(&key(20_000 + i), &vec![4u8; 2_000])?;
        }
        for k in 0..50 {
            t.remove(&key(k * 7))?;
        }
    }
    w.restore_savepoint(&sp)?;
    w.open_table("big")?
        .insert(&round.to_be_bytes(), &vec![7u8; big])?;
    w.commit()?;
    Ok(next)
}

/// A small transaction, committed or aborted.
fn small_txn(
    db: &Database,
    rng: &mut Rng,
    round: u64,
    model: &mut BTreeMap<u64, Vec<u8>>,
    commit: bool,
) {
    let w = db.begin_write().unwrap();
    let mut next = model.clone();
    {
        let mut t = w.open_table("t").unwrap();
        for _ in 0..20 {
            let k = rng.below(600);
            if rng.below(3) == 0 {
                t.remove(&key(k)).unwrap();
                next.remove(&k);
            } else {
                let v = vec![(round % 251) as u8; [10, 300, 900][rng.below(3) as usize]];
                t.insert(&key(k), &v).unwrap();
                next.insert(k, v);
            }
        }
    }
    if commit {
        w.commit().unwrap();
        *model = next;
    } else {
        drop(w);
    }
}

fn fill(db: &Database, model: &mut BTreeMap<u64, Vec<u8>>) {
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for k in 0..600 {
            let v = vec![(k % 200) as u8; [10, 300, 900, 3_000][(k % 4) as usize]];
            t.insert(&key(k), &v).unwrap();
            model.insert(k, v);
        }
    }
    w.commit().unwrap();
}

/// Every failure after `apply` that keeps the handle (a resize refused at
/// step 4: no space, EIO), then an abort, then commits on the same handle:
/// the list must be as if the failed transaction never ran. The file must
/// check with no leak and no page listed twice after each, reopen to the
/// same transaction (a kept leaf whose count disagreed with the meta would
/// make open fall back) and give the same figures.
#[test]
fn failed_commits_after_apply_leave_the_list_as_before() {
    for (fault, nth) in [(Fault::NoSpace, 1u64), (Fault::Eio, 1)] {
        let trap = Trap::new();
        let hook = trap.clone();
        let mut t = TestDb::with_options(
            common::small_map(PS as u32).storage(move |file| Ok(hook.storage(file))),
        );
        let mut rng = Rng(0x5eed_0001 + nth);
        let mut model = BTreeMap::new();
        fill(t.db(), &mut model);
        let what = |r: u64| format!("{fault:?}/{nth} round {r}");
        let mut failures = 0;
        for round in 0..12u64 {
            // A reader held over some failures: its snapshot's pages must
            // not be handed out by the failed commit's leftovers.
            let reader = (round % 3 == 0).then(|| t.db().begin_read().unwrap());
            let before = t.db().last_txn_id();
            trap.arm(Kind::Resize, fault, nth);
            let r = heavy_txn(t.db(), &mut rng, round, &model, 200_000);
            trap.disarm();
            match r {
                Ok(next) => model = next,
                Err(e) => {
                    failures += 1;
                    assert!(
                        matches!(e, Error::MapFull { .. } | Error::Io(_)),
                        "{}: {e:?}",
                        what(round)
                    );
                    assert_eq!(t.db().last_txn_id(), before, "{}", what(round));
                }
            }
            if let Some(r) = reader {
                // Its snapshot still reads whole.
                assert!(r.check().is_ok(), "{}: reader", what(round));
            }
            // An abort after the failure, then commits.
            small_txn(t.db(), &mut rng, round, &mut model, false);
            small_txn(t.db(), &mut rng, round, &mut model, true);
            full_check(t.db(), &what(round));
            figures_agree(t.db(), &t.path(), &what(round));
            model_matches(t.db(), &model, &what(round));
            let (id, free) = (t.db().last_txn_id(), t.db().stat().unwrap().free_pages);
            t.reopen();
            assert_eq!(t.db().last_txn_id(), id, "{}: reopened", what(round));
            assert_eq!(t.db().stat().unwrap().free_pages, free, "{}", what(round));
            full_check(t.db(), &format!("{} reopened", what(round)));
        }
        assert!(failures >= 6, "{fault:?}/{nth}: only {failures} failures");
    }
}

/// The same, without reopening between failures: the writer keeps its
/// in-memory list (and the layout of its last commit) through many failed
/// commits in a row, then commits; and a second handle, which loads the
/// list from the file, must agree with it.
#[test]
fn many_failures_in_a_row_then_commits() {
    let trap = Trap::new();
    let hook = trap.clone();
    let t = TestDb::with_options(
        common::small_map(PS as u32).storage(move |file| Ok(hook.storage(file))),
    );
    let mut rng = Rng(0x5eed_0002);
    let mut model = BTreeMap::new();
    fill(t.db(), &mut model);
    for round in 0..6u64 {
        for _ in 0..4 {
            trap.arm(Kind::Resize, Fault::NoSpace, 1);
            let r = heavy_txn(t.db(), &mut rng, round, &model, 3 << 20);
            assert!(r.is_err(), "round {round}: the fault did not fire");
            trap.disarm();
        }
        for _ in 0..3 {
            small_txn(t.db(), &mut rng, round, &mut model, true);
        }
        let what = format!("round {round}");
        full_check(t.db(), &what);
        figures_agree(t.db(), &t.path(), &what);
        model_matches(t.db(), &model, &what);
        // A second handle loads the list from the file and writes.
        let other = common::open(&t.path(), PS as u32);
        small_txn(&other, &mut rng, round, &mut model, true);
        full_check(&other, &what);
        drop(other);
        small_txn(t.db(), &mut rng, round, &mut model, true);
        full_check(t.db(), &what);
        model_matches(t.db(), &model, &what);
        if round % 2 == 1 {
            // A compaction right after failed commits.
            trap.arm(Kind::Resize, Fault::NoSpace, 1);
            assert!(heavy_txn(t.db(), &mut rng, round, &model, 3 << 20).is_err());
            trap.disarm();
            t.db().compact().unwrap();
            full_check(t.db(), &format!("{what} compacted"));
            figures_agree(t.db(), &t.path(), &what);
        }
    }
}

/// A write or a sync that fails after `apply` poisons the handle; the list
/// it gave back is dropped with it, and the file reopens to the commit
/// before (or this one, when only the last sync failed), whole.
#[test]
fn failed_writes_after_apply_reopen_whole() {
    for (kind, nth) in [
        (Kind::Write, 1u64),
        (Kind::Write, 3),
        (Kind::Sync, 1),
        (Kind::Sync, 2),
    ] {
        let trap = Trap::new();
        let hook = trap.clone();
        let mut t = TestDb::with_options(
            common::small_map(PS as u32).storage(move |file| Ok(hook.storage(file))),
        );
        let mut rng = Rng(0x5eed_0006);
        let mut model = BTreeMap::new();
        fill(t.db(), &mut model);
        small_txn(t.db(), &mut rng, 0, &mut model, true);
        let before = t.db().last_txn_id();
        trap.arm(kind, Fault::Eio, nth);
        let r = heavy_txn(t.db(), &mut rng, 1, &model, 100);
        trap.disarm();
        let what = format!("{kind:?}/{nth}");
        assert!(matches!(r, Err(Error::Io(_))), "{what}: {r:?}");
        assert!(
            matches!(t.db().begin_write().err(), Some(Error::Poisoned)),
            "{what}"
        );
        t.reopen();
        let id = t.db().last_txn_id();
        assert!(id == before || id == before + 1, "{what}: {id}");
        full_check(t.db(), &what);
        figures_agree(t.db(), &t.path(), &what);
        small_txn(t.db(), &mut rng, 2, &mut model, true);
        full_check(t.db(), &what);
    }
}

/// `Options::max_size` too small for the commit's free-list pages or its
/// growth: the commit fails (`MapFull`) while writing the list or at the
/// resize, and the handle commits smaller transactions after.
#[test]
fn max_size_failures_leave_the_list_as_before() {
    let mut t = TestDb::with_options(common::small_map(PS as u32).max_size(1_000 * PS as u64));
    let mut rng = Rng(0x5eed_0003);
    let mut model = BTreeMap::new();
    // A table that nearly fills the limit.
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for k in 0..300 {
            let v = vec![(k % 200) as u8; 600];
            tab.insert(&key(k), &v).unwrap();
            model.insert(k, v);
        }
    }
    w.commit().unwrap();
    let mut failures = 0;
    for round in 0..60u64 {
        // Frees much and writes up to the limit.
        let mut next = model.clone();
        let size = 100_000 + rng.below(800) * 256;
        let r = (|| -> larch::Result<()> {
            let w = t.db().begin_write()?;
            {
                let mut tab = w.open_table("t")?;
                for _ in 0..40 {
                    let k = rng.below(300);
                    tab.remove(&key(k))?;
                    next.remove(&k);
                }
                for i in 0..20 {
                    tab.insert(&key(5_000 + i), &[1u8; 400])?;
                    tab.remove(&key(5_000 + i))?;
                }
            }
            w.open_table("big")?
                .insert(b"v", &vec![9u8; size as usize])?;
            w.commit()
        })();
        match r {
            Ok(()) => model = next,
            Err(Error::MapFull { .. }) => failures += 1,
            Err(e) => panic!("round {round}: {e:?}"),
        }
        // Shrink the big value back so that later rounds fit again.
        let w = t.db().begin_write().unwrap();
        let _ = w.open_table("big").unwrap().remove(b"v").unwrap();
        w.commit().unwrap();
        small_txn(t.db(), &mut rng, round, &mut model, true);
        let what = format!("round {round}");
        full_check(t.db(), &what);
        figures_agree(t.db(), &t.path(), &what);
        model_matches(t.db(), &model, &what);
    }
    assert!(failures > 0, "no commit failed");
    let id = t.db().last_txn_id();
    t.reopen();
    assert_eq!(t.db().last_txn_id(), id);
    full_check(t.db(), "reopened");
}

/// The oracle of a twin: a file where a commit failed at its resize and
/// was then retried against one where it ran once. The retry must use the
/// same pages in use, and the list must hold every other page.
#[test]
fn a_failed_commit_then_its_retry_matches_the_commit_alone() {
    let trap = Trap::new();
    let hook = trap.clone();
    let x = TestDb::with_options(
        common::small_map(PS as u32).storage(move |file| Ok(hook.storage(file))),
    );
    let y = TestDb::new(PS as u32);
    let (mut mx, mut my) = (BTreeMap::new(), BTreeMap::new());
    fill(x.db(), &mut mx);
    fill(y.db(), &mut my);
    let used = |db: &Database| {
        let s = db.stat().unwrap();
        s.pages - s.free_pages - s.freelist_pages
    };
    for round in 0..8u64 {
        let seed = 0x5eed_0100 + round;
        // A reader in both, over the failure.
        let (_rx, _ry) = (x.db().begin_read().unwrap(), y.db().begin_read().unwrap());
        trap.arm(Kind::Resize, Fault::NoSpace, 1);
        let failed = heavy_txn(x.db(), &mut Rng(seed), round, &mx, 3 << 20);
        trap.disarm();
        assert!(failed.is_err(), "round {round}: the fault did not fire");
        mx = heavy_txn(x.db(), &mut Rng(seed), round, &mx, 3 << 20).unwrap();
        my = heavy_txn(y.db(), &mut Rng(seed), round, &my, 3 << 20).unwrap();
        let mut r = Rng(seed);
        small_txn(x.db(), &mut r, round, &mut mx, true);
        let mut r = Rng(seed);
        small_txn(y.db(), &mut r, round, &mut my, true);
        assert_eq!(mx, my);
        let what = format!("round {round}");
        assert_eq!(used(x.db()), used(y.db()), "{what}: pages in use");
        full_check(x.db(), &what);
        figures_agree(x.db(), &x.path(), &what);
        model_matches(x.db(), &mx, &what);
    }
}

// ---------------------------------------------------------------------
// 2. A page freed twice (a damaged file): the commit refuses it, and the
// handle goes on.

/// Two tables share one tree (a damaged file). Deleting both frees every
/// shared page twice: `Corrupted`. The same transaction also freed other
/// pages and left leftovers, which `unapply` must take out again. The
/// handle then commits transactions that touch neither table, many of
/// them, aborts between; reopened, the file is at the same transaction
/// and its figures are the handle's.
#[test]
fn a_page_freed_twice_is_refused_and_the_handle_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.larch");
    std::fs::write(&path, shared_tree_image()).unwrap();
    let db = common::open(&path, 512);
    let first = db.check_report().unwrap();
    let (errors_before, leaked_before) = (first.errors.len(), first.leaked_pages);
    // Pages of "c" to free in the failing commit.
    let w = db.begin_write().unwrap();
    {
        let mut c = w.open_table("c").unwrap();
        for i in 0..300u64 {
            c.insert(&key(i), &[6u8; 200]).unwrap();
        }
    }
    w.commit().unwrap();
    let stat_before = db.stat().unwrap();
    let mut rng = Rng(0x5eed_0004);
    for attempt in 0..3 {
        let before = db.last_txn_id();
        let mut w = db.begin_write().unwrap();
        {
            let mut c = w.open_table("c").unwrap();
            for i in 0..100u64 {
                c.remove(&key(i * 3)).unwrap();
            }
            for i in 0..50u64 {
                c.insert(&key(90_000 + i), &[8u8; 900]).unwrap();
            }
            for i in 0..50u64 {
                c.remove(&key(90_000 + i)).unwrap();
            }
        }
        assert!(w.delete_table("a").unwrap());
        assert!(w.delete_table("b").unwrap());
        let r = w.commit();
        assert!(
            matches!(r, Err(Error::Corrupted { .. })),
            "attempt {attempt}: {r:?}"
        );
        assert_eq!(db.last_txn_id(), before);
        // An aborted transaction after the failed one.
        let w = db.begin_write().unwrap();
        w.open_table("c")
            .unwrap()
            .insert(b"zz", b"aborted")
            .unwrap();
        drop(w);
        assert_eq!(db.stat().unwrap().free_pages, stat_before.free_pages);
    }
    // Transactions that touch neither "a" nor "b".
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for round in 0..30u64 {
        let w = db.begin_write().unwrap();
        {
            let mut d = w.open_table("t").unwrap();
            for _ in 0..30 {
                let k = rng.below(400);
                if rng.below(3) == 0 {
                    d.remove(&key(k)).unwrap();
                    model.remove(&k);
                } else {
                    let v = vec![round as u8; 300];
                    d.insert(&key(k), &v).unwrap();
                    model.insert(k, v);
                }
            }
        }
        w.commit().unwrap();
        let r = db.check_report().unwrap();
        assert_eq!(
            r.errors.len(),
            errors_before,
            "round {round}: {:?}",
            r.errors
        );
        assert_eq!(r.leaked_pages, leaked_before, "round {round}");
    }
    model_matches(&db, &model, "after");
    let (id, free, fl) = (
        db.last_txn_id(),
        db.stat().unwrap().free_pages,
        db.stat().unwrap().freelist_pages,
    );
    drop(db);
    let db = common::open(&path, 512);
    assert_eq!(db.last_txn_id(), id, "open fell back");
    assert_eq!(db.stat().unwrap().free_pages, free);
    assert_eq!(db.stat().unwrap().freelist_pages, fl);
    model_matches(&db, &model, "reopened");
    let r = db.check_report().unwrap();
    assert_eq!(r.errors.len(), errors_before);
    assert_eq!(r.leaked_pages, leaked_before);
}

/// The second free of a shared page finds it pending already (its first
/// free was an earlier commit): `unapply` must keep the older entry, and
/// the group the failed commit added must go.
#[test]
fn a_page_freed_again_while_pending_keeps_its_first_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.larch");
    let image = shared_tree_image();
    std::fs::write(&path, &image).unwrap();
    let db = common::open(&path, 512);
    // The first free: "a" goes, its pages pending (the metas reach them).
    let mut w = db.begin_write().unwrap();
    assert!(w.delete_table("a").unwrap());
    w.commit().unwrap();
    // The second: "b" frees the same pages again.
    let before = db.last_txn_id();
    let mut w = db.begin_write().unwrap();
    w.open_table("c")
        .unwrap()
        .insert(b"k", &[1u8; 2000])
        .unwrap();
    assert!(w.delete_table("b").unwrap());
    let r = w.commit();
    assert!(matches!(r, Err(Error::Corrupted { .. })), "{r:?}");
    assert_eq!(db.last_txn_id(), before);
    // A savepoint restored past the second free: the commit goes through.
    let mut w = db.begin_write().unwrap();
    let sp = w.savepoint().unwrap();
    assert!(w.delete_table("b").unwrap());
    w.restore_savepoint(&sp).unwrap();
    w.open_table("c").unwrap().insert(b"k", b"v").unwrap();
    w.commit().unwrap();
    let stat = db.stat().unwrap();
    let id = db.last_txn_id();
    drop(db);
    // The same file without the failed commit: the same figures.
    let twin = dir.path().join("twin.larch");
    std::fs::write(&twin, &image).unwrap();
    let db2 = common::open(&twin, 512);
    let mut w = db2.begin_write().unwrap();
    assert!(w.delete_table("a").unwrap());
    w.commit().unwrap();
    let w = db2.begin_write().unwrap();
    w.open_table("c").unwrap().insert(b"k", b"v").unwrap();
    w.commit().unwrap();
    let stat2 = db2.stat().unwrap();
    // The pages in use are the same. (The failed commit leaves the pages
    // it added marked changed, so the next commit may rewrite a leaf more:
    // a page more, listed pending; see `FreeList::unapply`.)
    let used = |s: &larch::Stat| s.pages - s.free_pages - s.freelist_pages;
    assert_eq!(
        used(&stat),
        used(&stat2),
        "the failed commit changed the list"
    );
    let (r1, r2) = (db2.check_report().unwrap(), {
        let db = common::open(&path, 512);
        db.check_report().unwrap()
    });
    assert_eq!(r1.leaked_pages, r2.leaked_pages);
    assert_eq!(r1.errors.len(), r2.errors.len());
    let db = common::open(&path, 512);
    assert_eq!(db.last_txn_id(), id, "open fell back");
    assert_eq!(db.stat().unwrap().free_pages, stat.free_pages);
}

// ---------------------------------------------------------------------
// 3. A lone leaf.

/// Empty list, one leaf (named by the meta), leaves under a directory, one
/// leaf again, empty again: at every step the file reopens to the same
/// commit, checks, and the figures of stat and check are the file's.
#[test]
fn the_list_goes_from_none_to_one_leaf_to_many_and_back() {
    let mut t = TestDb::new(PS as u32);
    let mut seen = BTreeMap::<u8, u32>::new();
    let mut kinds = Vec::new();
    let mut step = |t: &mut TestDb, what: &str| {
        let s = figures_agree(t.db(), &t.path(), what);
        full_check(t.db(), what);
        let id = t.db().last_txn_id();
        t.reopen();
        assert_eq!(t.db().last_txn_id(), id, "{what}: reopened");
        figures_agree(t.db(), &t.path(), what);
        *seen.entry(s.head_kind).or_default() += 1;
        if kinds.last() != Some(&s.head_kind) {
            kinds.push(s.head_kind);
        }
        s
    };
    let put = |db: &Database, range: std::ops::Range<u64>, len: usize| {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for k in range {
                tab.insert(&key(k), &vec![1u8; len]).unwrap();
            }
        }
        w.commit().unwrap();
    };
    let del = |db: &Database, range: std::ops::Range<u64>| {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for k in range {
                tab.remove(&key(k)).unwrap();
            }
        }
        w.commit().unwrap();
    };
    put(t.db(), 0..4, 10);
    step(&mut t, "fresh");
    // A few pages freed: one leaf.
    put(t.db(), 0..4, 20);
    step(&mut t, "one rewrite");
    put(t.db(), 0..4, 30);
    let s = step(&mut t, "two rewrites");
    assert!(s.leaves.len() <= 1, "{} leaves", s.leaves.len());
    // Many pages freed: a directory.
    put(t.db(), 0..3_000, 100);
    del(t.db(), 0..3_000);
    put(t.db(), 0..1, 100);
    put(t.db(), 0..1, 100);
    let s = step(&mut t, "a huge delete");
    assert_eq!(s.head_kind, 6, "{} leaves", s.leaves.len());
    assert!(s.leaves.len() >= 2);
    // Reusing the free pages shrinks the list back to one leaf, then none.
    for round in 0..60u64 {
        put(t.db(), 10_000 + round * 40..10_000 + (round + 1) * 40, 100);
        let s = step(&mut t, &format!("refill {round}"));
        if s.head_kind == 0 {
            break;
        }
    }
    // And a compaction.
    del(t.db(), 0..20_000);
    t.db().compact().unwrap();
    step(&mut t, "compacted");
    for round in 0..10 {
        put(t.db(), 0..1, 10 + round);
        step(&mut t, &format!("after compaction {round}"));
    }
    for k in [0u8, 4, 6] {
        assert!(seen.contains_key(&k), "head kind {k} never seen: {kinds:?}");
    }
    // none -> leaf -> dir -> leaf, in this order at least. (Back to none
    // never comes: every commit frees pages, pending while a meta on disk
    // reaches them.)
    let want = [0u8, 4, 6, 4];
    let mut it = kinds.iter();
    for w in want {
        assert!(
            it.any(|&k| k == w),
            "kinds {kinds:?}: no {w} after the rest"
        );
    }
}

/// Thousands of small random commits at 512-byte pages (leaves of 20
/// entries), readers held now and then: after each, the list in the file
/// obeys the shapes (a lone leaf named by the meta or a directory; surplus
/// directory pages naming nothing), and stat and check count its pages as
/// the file holds them.
#[test]
fn list_shapes_through_random_commits() {
    let mut t = TestDb::new(PS as u32);
    let mut rng = Rng(0x5eed_0005);
    let mut model = BTreeMap::new();
    let mut reader = None;
    let mut surplus = 0;
    let mut lone = 0;
    for round in 0..400u64 {
        if rng.below(10) == 0 {
            reader = Some(t.db().begin_read().unwrap());
        } else if rng.below(5) == 0 {
            reader = None;
        }
        let w = t.db().begin_write().unwrap();
        let saved = model.clone();
        {
            let mut tab = w.open_table("t").unwrap();
            let n = [1, 3, 10, 200][rng.below(4) as usize];
            for _ in 0..n {
                let k = rng.below(2_000);
                if rng.below(2) == 0 {
                    tab.remove(&key(k)).unwrap();
                    model.remove(&k);
                } else {
                    let v = vec![round as u8; [5, 100, 400][rng.below(3) as usize]];
                    tab.insert(&key(k), &v).unwrap();
                    model.insert(k, v);
                }
            }
        }
        if rng.below(20) == 0 {
            drop(w);
            model = saved;
        } else {
            w.commit().unwrap();
        }
        let s = figures_agree(t.db(), &t.path(), &format!("round {round}"));
        surplus += s.empty_dir_pages;
        lone += usize::from(s.head_kind == 4);
        if round % 50 == 49 {
            full_check(t.db(), &format!("round {round}"));
            model_matches(t.db(), &model, &format!("round {round}"));
        }
    }
    drop(reader);
    let id = t.db().last_txn_id();
    t.reopen();
    assert_eq!(t.db().last_txn_id(), id);
    full_check(t.db(), "reopened");
    eprintln!("lone leaf in {lone} commits; {surplus} empty directory pages seen");
}

// ---------------------------------------------------------------------
// 4. Crafted lists around a lone leaf.

/// A file whose newest commit's list is one leaf, named by the meta; the
/// older slot zeroed so that open takes the newest.
fn lone_leaf_image(dir: &Path) -> Vec<u8> {
    let path = dir.join("lone.larch");
    let db = common::open(&path, PS as u32);
    // A branch, an overflow run and a segment in the snapshot.
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 100..160 {
            tab.insert(&key(i), &[9u8; 30]).unwrap();
        }
        tab.insert(&key(200), &[8u8; 20_000]).unwrap();
        tab.insert(&key(201), &[7u8; 1_000]).unwrap();
    }
    w.commit().unwrap();
    for round in 0..4u64 {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..4 {
                tab.insert(&key(i), &[round as u8; 100]).unwrap();
            }
        }
        w.commit().unwrap();
    }
    drop(db);
    let s = shape(&path, PS);
    assert_eq!(s.head_kind, 4, "the list is not a lone leaf");
    assert!(s.entries >= 2, "{} entries", s.entries);
    let mut image = std::fs::read(&path).unwrap();
    let Newest { slot, .. } = newest_meta(&mut image, PS);
    forget_other_slot(&mut image, PS, slot);
    image
}

#[test]
fn crafted_lone_leaves_are_corrupted_never_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let base = lone_leaf_image(tmp.path());
    let mut probe = base.clone();
    let Newest {
        slot,
        high_water: hw,
        head,
        entries,
        ..
    } = newest_meta(&mut probe, PS);
    // Pages of each kind in the snapshot.
    let of_kind = |k: u8| (2..hw).find(|&p| page(&base, PS, p)[0] == k && p != head);
    let tree_leaf = of_kind(2).expect("a tree leaf");
    let first_entry = u64_at(page(&base, PS, head), 24 + 16);
    type Craft = Box<dyn Fn(&mut Vec<u8>)>;
    let set_head = move |v: u64| {
        Box::new(move |im: &mut Vec<u8>| {
            edit_meta(im, PS, slot, |m| m.freelist_head = v);
        }) as Craft
    };
    let mut cases: Vec<(String, Craft)> = vec![
        (
            "lone leaf next to itself".into(),
            Box::new(move |im| set_u64(page_mut(im, PS, head), 16, head)),
        ),
        (
            "lone leaf next to a tree leaf".into(),
            Box::new(move |im| set_u64(page_mut(im, PS, head), 16, tree_leaf)),
        ),
        (
            "lone leaf next past the end".into(),
            Box::new(move |im| set_u64(page_mut(im, PS, head), 16, hw + 3)),
        ),
        (
            "lone leaf count 0".into(),
            Box::new(move |im| set_count(page_mut(im, PS, head), 0)),
        ),
        (
            "lone leaf count 0, meta count 0".into(),
            Box::new(move |im| {
                set_count(page_mut(im, PS, head), 0);
                edit_meta(im, PS, slot, |m| m.freelist_entries = 0);
            }),
        ),
        (
            "lone leaf count one more".into(),
            Box::new(move |im| {
                let p = page_mut(im, PS, head);
                let n = count(p);
                set_count(p, n as u16 + 1);
            }),
        ),
        (
            "lone leaf count huge".into(),
            Box::new(move |im| set_count(page_mut(im, PS, head), u16::MAX)),
        ),
        (
            "lone leaf lists itself".into(),
            Box::new(move |im| {
                let p = page_mut(im, PS, head);
                let n = count(p);
                // Its last entry becomes the leaf's own page, if it keeps
                // the page order; else the first.
                let at = if head > u64_at(p, 24 + 24 * (n - 2) + 16) {
                    24 + 24 * (n - 1)
                } else {
                    24
                };
                set_u64(p, at, 0);
                set_u64(p, at + 8, 0);
                set_u64(p, at + 16, head);
            }),
        ),
        (
            "lone leaf entry names the head, order ignored".into(),
            Box::new(move |im| set_u64(page_mut(im, PS, head), 24 + 16, head)),
        ),
        (
            "lone leaf entry count differs".into(),
            Box::new(move |im| {
                edit_meta(im, PS, slot, |m| m.freelist_entries = entries - 1);
            }),
        ),
        (
            "lone leaf entries 0 in the meta".into(),
            Box::new(move |im| {
                edit_meta(im, PS, slot, |m| m.freelist_entries = 0);
            }),
        ),
        (
            "lone leaf written in the future".into(),
            Box::new(move |im| set_u64(page_mut(im, PS, head), 8, 1 << 40)),
        ),
        (
            "lone leaf entry is page 1".into(),
            Box::new(move |im| set_u64(page_mut(im, PS, head), 24 + 16, 1)),
        ),
        (
            "lone leaf entry is a tree page".into(),
            Box::new(move |im| {
                // A live tree page, listed reusable where it keeps the order.
                let p = page_mut(im, PS, head);
                let n = count(p);
                let mut ids: Vec<u64> = (0..n).map(|i| u64_at(p, 24 + 24 * i + 16)).collect();
                ids.push(tree_leaf);
                ids.sort();
                let at = ids.iter().position(|&x| x == tree_leaf).unwrap().min(n - 1);
                set_u64(p, 24 + 24 * at, 0);
                set_u64(p, 24 + 24 * at + 8, 0);
                set_u64(p, 24 + 24 * at + 16, tree_leaf);
            }),
        ),
        (
            "head kind 4 page that is a dir kind".into(),
            Box::new(move |im| page_mut(im, PS, head)[0] = 6),
        ),
        ("head names page 1".into(), set_head(1)),
        ("head names the high-water mark".into(), set_head(hw)),
        ("head names a tree leaf".into(), set_head(tree_leaf)),
        (
            "head names an entry's page, made a leaf".into(),
            Box::new(move |im| {
                // The first free page dressed up as a copy of the leaf.
                let copy = page(im, PS, head).to_vec();
                page_mut(im, PS, first_entry).copy_from_slice(&copy);
                edit_meta(im, PS, slot, |m| m.freelist_head = first_entry);
            }),
        ),
        (
            "head is a dir naming itself as leaf".into(),
            Box::new(move |im| {
                let p = page_mut(im, PS, first_entry);
                p.fill(0);
                p[0] = 6;
                set_count(p, 1);
                set_u64(p, 24, first_entry);
                edit_meta(im, PS, slot, |m| m.freelist_head = first_entry);
            }),
        ),
        (
            "head is a dir whose next is the lone leaf".into(),
            Box::new(move |im| {
                let p = page_mut(im, PS, first_entry);
                p.fill(0);
                p[0] = 6;
                set_count(p, 1);
                set_u64(p, 16, head);
                set_u64(p, 24, head);
                edit_meta(im, PS, slot, |m| m.freelist_head = first_entry);
            }),
        ),
        (
            "head is a dir naming the leaf, the dir's page listed".into(),
            Box::new(move |im| {
                // A directory on a page the leaf lists as free.
                let p = page_mut(im, PS, first_entry);
                p.fill(0);
                p[0] = 6;
                set_count(p, 1);
                set_u64(p, 24, head);
                edit_meta(im, PS, slot, |m| m.freelist_head = first_entry);
            }),
        ),
    ];
    for k in [1u8, 3, 5] {
        let p = of_kind(k).unwrap_or_else(|| panic!("no page of kind {k}"));
        cases.push((format!("head names a page of kind {k}"), set_head(p)));
    }
    let mut failures = Vec::new();
    for (name, craft) in &cases {
        let mut im = base.clone();
        craft(&mut im);
        failures.extend(not_refused(tmp.path(), name, im, PS, hw));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The base itself is fine.
    let ok = crafted_outcome(tmp.path(), "base", &base, PS);
    assert!(ok.iter().all(Result::is_ok), "{ok:?}");
}

/// `Options::max_size` reached exactly by the commit's own list pages: the
/// tree's writes fit, the leaf (or directory) the list needs does not.
/// Swept over value sizes so that every site fails once: the writes, the
/// catalog, the list pages of `write_chain`. The handle then commits
/// smaller transactions, and the file checks and reopens.
#[test]
fn max_size_reached_by_the_list_pages_themselves() {
    let limit = 64u64;
    let mut failed_sizes = 0;
    for size in (20_000..30_000).step_by(97) {
        let mut t = TestDb::with_options(common::small_map(PS as u32).max_size(limit * PS as u64));
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for k in 0..8 {
                tab.insert(&key(k), &[1u8; 40]).unwrap();
            }
        }
        w.commit().unwrap();
        // Pages freed, pending: the list has entries but nothing reusable.
        let w = t.db().begin_write().unwrap();
        w.open_table("t")
            .unwrap()
            .insert(&key(0), &[2u8; 40])
            .unwrap();
        w.commit().unwrap();
        let before = t.db().last_txn_id();
        let r = (|| -> larch::Result<()> {
            let w = t.db().begin_write()?;
            {
                let mut tab = w.open_table("t")?;
                tab.remove(&key(1))?;
                tab.insert(&key(2), &vec![3u8; size])?;
            }
            w.commit()
        })();
        match r {
            Ok(()) => continue,
            Err(Error::MapFull { .. }) => failed_sizes += 1,
            Err(e) => panic!("size {size}: {e:?}"),
        }
        assert_eq!(t.db().last_txn_id(), before);
        for i in 0..3u64 {
            let w = t.db().begin_write().unwrap();
            w.open_table("t")
                .unwrap()
                .insert(&key(3 + i), &[4u8; 60])
                .unwrap();
            w.commit().unwrap();
        }
        let what = format!("size {size}");
        full_check(t.db(), &what);
        figures_agree(t.db(), &t.path(), &what);
        let id = t.db().last_txn_id();
        t.reopen();
        assert_eq!(t.db().last_txn_id(), id, "{what}");
        full_check(t.db(), &what);
    }
    assert!(failed_sizes > 0);
}
