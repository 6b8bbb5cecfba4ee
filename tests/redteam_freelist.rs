//! Red team of the two-level free list (format 8): kept leaves, the
//! persisted layout kept between transactions, weak commits, failed
//! commits, crafted lists, list size.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::free_pages::{
    Newest, count, fill, forget_other_slot, full_check, list_pages, list_pages_written,
    newest_meta, not_refused, page, page_mut, set_count, set_u64, spread_key as key, thin, u64_at,
    written_by,
};
use common::{Rng, TestDb};
use larch::testing::faults::{Fault, Kind, Trap};
use larch::testing::{edit_meta, image_state, restamp};
use larch::{Database, Durability, Error};

const PS: usize = 512;

/// Every valid meta slot of the file as it is now (the page cache: what a
/// process crash leaves; the slots are what a power loss falls back to)
/// must reach an intact snapshot: no page it reaches, its free list's
/// included, was written over by a later commit.
fn metas_intact(path: &Path, ps: usize, what: &str) {
    let image = std::fs::read(path).unwrap();
    let states = image_state(&image, ps);
    assert!(!states.is_empty(), "{what}: no valid meta");
    for s in &states {
        assert!(
            s.reachable.is_some(),
            "{what}: meta of slot {} (txn {}) no longer checks",
            s.slot,
            s.txn_id
        );
    }
}

fn value(rng: &mut Rng, round: u64) -> Vec<u8> {
    let len = [4usize, 40, 300, 700, 2_000, 9_000][rng.below(6) as usize];
    vec![(round % 251) as u8; len]
}

/// One random write transaction: inserts and removes, sometimes a
/// savepoint restored, then commit (at a random durability) or abort.
/// Returns whether it committed.
fn random_txn(
    db: &Database,
    rng: &mut Rng,
    round: u64,
    model: &mut BTreeMap<u64, Vec<u8>>,
) -> bool {
    let mut w = db.begin_write().unwrap();
    w.set_durability(match rng.below(3) {
        0 => Durability::Immediate,
        1 => Durability::Eventual,
        _ => Durability::None,
    });
    let mut next = model.clone();
    let ops = match rng.below(12) {
        0 => 3_000,
        1..=3 => 200,
        _ => 3,
    };
    let sp_at = if rng.below(4) == 0 {
        Some(rng.below(ops))
    } else {
        None
    };
    let mut sp = None;
    let mut at_sp = None;
    for i in 0..ops {
        if sp_at == Some(i) {
            sp = Some(w.savepoint().unwrap());
            at_sp = Some(next.clone());
        }
        let mut tab = w.open_table("t").unwrap();
        let k = rng.below(8_000);
        match rng.below(10) {
            0..=3 => {
                tab.remove(&key(k)).unwrap();
                next.remove(&k);
            }
            4 if k.is_multiple_of(50) => {
                // A wide removal: a huge delete.
                let lo = key(0);
                let n = tab.remove_range(&lo[..]..).unwrap();
                let _ = n;
                next.clear();
            }
            _ => {
                let v = value(rng, round);
                tab.insert(&key(k), &v).unwrap();
                next.insert(k, v);
            }
        }
    }
    if let Some(sp) = sp
        && rng.below(2) == 0
    {
        w.restore_savepoint(&sp).unwrap();
        next = at_sp.unwrap();
    }
    if rng.below(15) == 0 {
        drop(w);
        false
    } else {
        w.commit().unwrap();
        *model = next;
        true
    }
}

fn model_matches(db: &Database, model: &BTreeMap<u64, Vec<u8>>, what: &str) {
    let r = db.begin_read().unwrap();
    let Ok(tab) = r.open_table("t") else {
        assert!(model.is_empty(), "{what}");
        return;
    };
    assert_eq!(tab.iter().unwrap().count(), model.len(), "{what}");
    for (k, v) in model {
        assert_eq!(tab.get(&key(*k)).unwrap(), Some(&v[..]), "{what}: key {k}");
    }
}

/// Weak and durable commits mixed, `sync`, readers held, savepoints,
/// aborts, compaction and reopens: after every commit both metas on disk
/// still read whole (a kept leaf they reach was never reused), and the
/// newest state checks with no leak.
#[test]
fn weak_commits_never_spoil_the_metas_on_disk() {
    let mut t = TestDb::new(PS as u32);
    let mut rng = Rng(0xfee1_0001);
    let mut model = BTreeMap::new();
    let mut held = Vec::new();
    for round in 0..700u64 {
        random_txn(t.db(), &mut rng, round, &mut model);
        metas_intact(&t.path(), PS, &format!("round {round}"));
        match rng.below(25) {
            0 => held.push(t.db().begin_read().unwrap()),
            1 => held.clear(),
            2 => t.db().sync().unwrap(),
            3 => {
                t.db().compact().unwrap();
                metas_intact(&t.path(), PS, &format!("round {round} compacted"));
            }
            _ => {}
        }
        if round % 50 == 49 {
            full_check(t.db(), &format!("round {round}"));
            model_matches(t.db(), &model, &format!("round {round}"));
        }
        if round % 111 == 110 {
            held.clear();
            t.reopen();
            full_check(t.db(), &format!("round {round} reopened"));
        }
    }
    held.clear();
    full_check(t.db(), "end");
    model_matches(t.db(), &model, "end");
}

/// A process crash at any point of a run of weak commits: a copy of the
/// file as the page cache holds it, opened alone (no lock file), falls back
/// to the durable meta, checks whole, and takes more commits that check.
#[test]
fn a_crash_after_weak_commits_reopens_whole() {
    let t = TestDb::new(PS as u32);
    let mut rng = Rng(0xfee1_0002);
    let mut model = BTreeMap::new();
    let copy_dir = tempfile::tempdir().unwrap();
    for round in 0..300u64 {
        random_txn(t.db(), &mut rng, round, &mut model);
        if rng.below(7) == 0 {
            t.db().sync().unwrap();
        }
        if round % 10 == 9 {
            let image = std::fs::read(t.path()).unwrap();
            let path = copy_dir.path().join(format!("crash{round}.larch"));
            std::fs::write(&path, &image).unwrap();
            let db = common::open(&path, PS as u32);
            full_check(&db, &format!("crash copy {round}"));
            let mut m2 = BTreeMap::new();
            let mut r2 = Rng(round);
            for j in 0..20 {
                random_txn(&db, &mut r2, 1000 + j, &mut m2);
            }
            full_check(&db, &format!("crash copy {round} after commits"));
            drop(db);
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Two handles on one file alternate as writers, each loading the list
/// the other left (`Core::adopt`), with weak commits between: the layout a
/// handle kept from its own last commit must not be used once the other
/// wrote.
#[test]
fn two_handles_alternate_writers() {
    let t = TestDb::new(PS as u32);
    let second = common::open(&t.path(), PS as u32);
    let mut rng = Rng(0xfee1_0003);
    let mut model = BTreeMap::new();
    let mut held = Vec::new();
    for round in 0..500u64 {
        let db = if rng.below(3) == 0 { &second } else { t.db() };
        random_txn(db, &mut rng, round, &mut model);
        metas_intact(&t.path(), PS, &format!("round {round}"));
        match rng.below(20) {
            0 => held.push(t.db().begin_read().unwrap()),
            1 => held.push(second.begin_read().unwrap()),
            2 => held.clear(),
            3 => second.sync().unwrap(),
            _ => {}
        }
        if round % 50 == 49 {
            full_check(t.db(), &format!("round {round}"));
            full_check(&second, &format!("round {round} (second)"));
            model_matches(&second, &model, &format!("round {round}"));
        }
    }
}

/// A commit that fails before anything is written (a resize refused: the
/// disk full) keeps the handle; the layout it kept and the list it gives
/// back must still match the file, through many more commits and a reopen.
#[test]
fn failed_commits_keep_the_layout_consistent() {
    for nth in 1..=3u64 {
        let trap = Trap::new();
        let hook = trap.clone();
        let mut t = TestDb::with_options(
            common::small_map(PS as u32).storage(move |file| Ok(hook.storage(file))),
        );
        let mut rng = Rng(0xfee1_0004 + nth);
        let mut model = BTreeMap::new();
        for round in 0..200u64 {
            if round % 7 == 3 {
                trap.arm(Kind::Resize, Fault::NoSpace, nth);
                // A transaction that grows the file: a big value in another
                // table, and removals from "t".
                let mut next = model.clone();
                let w = t.db().begin_write().unwrap();
                let ok = (|| -> larch::Result<()> {
                    let mut tab = w.open_table("t")?;
                    for _ in 0..100 {
                        let k = rng.below(8_000);
                        tab.remove(&key(k))?;
                        next.remove(&k);
                    }
                    drop(tab);
                    let mut big = w.open_table("big")?;
                    big.insert(&round.to_be_bytes(), &vec![7u8; 300_000])?;
                    Ok(())
                })();
                let r = match ok {
                    Ok(()) => w.commit(),
                    Err(e) => Err(e),
                };
                trap.disarm();
                match r {
                    Ok(()) => model = next,
                    Err(e) => assert!(!matches!(e, Error::Poisoned), "{e:?}"),
                }
                metas_intact(&t.path(), PS, &format!("nth {nth} round {round} failed"));
            } else {
                random_txn(t.db(), &mut rng, round, &mut model);
            }
            metas_intact(&t.path(), PS, &format!("nth {nth} round {round}"));
            if round % 20 == 19 {
                full_check(t.db(), &format!("nth {nth} round {round}"));
                model_matches(t.db(), &model, &format!("nth {nth} round {round}"));
            }
        }
        t.reopen();
        full_check(t.db(), &format!("nth {nth} reopened"));
        model_matches(t.db(), &model, &format!("nth {nth} reopened"));
    }
}

// ---------------------------------------------------------------------
// Crafted lists.

/// A file at 512-byte pages whose newest commit has a list of many leaves
/// and more than one directory page; its older meta slot zeroed, so that
/// open takes the newest.
fn long_list_image(dir: &Path) -> Vec<u8> {
    let path = dir.join("base.larch");
    let db = common::open(&path, PS as u32);
    fill(&db, 20_000, &[5u8; 100]);
    thin(&db, 20_000, |i| i % 10 == 0);
    for i in 0..4 {
        let w = db.begin_write().unwrap();
        w.open_table("t").unwrap().insert(&key(i), b"x").unwrap();
        w.commit().unwrap();
    }
    drop(db);
    let mut image = std::fs::read(&path).unwrap();
    let Newest { slot, head, .. } = newest_meta(&mut image, PS);
    let (d, l) = list_pages(&image, PS, head);
    assert!(
        d.len() >= 2 && l.len() >= 100,
        "{} dir pages, {} leaves",
        d.len(),
        l.len()
    );
    forget_other_slot(&mut image, PS, slot);
    image
}

#[test]
fn crafted_lists_are_corrupted_never_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let base = long_list_image(tmp.path());
    let mut probe = base.clone();
    let Newest {
        slot,
        high_water: hw,
        head,
        entries,
        ..
    } = newest_meta(&mut probe, PS);
    let (dir, leaves) = list_pages(&base, PS, head);
    let _ = slot;
    // Every crafted case, as a function of a copy of the image.
    type Craft = Box<dyn Fn(&mut Vec<u8>)>;
    let d0 = dir[0];
    let d1 = dir[1];
    let l0 = leaves[0];
    let l1 = leaves[1];
    let l5 = leaves[5];
    let cases: Vec<(&str, Craft)> = vec![
        (
            "dir loops to itself",
            Box::new(move |im| set_u64(page_mut(im, PS, d0), 16, d0)),
        ),
        (
            "dir loops back",
            Box::new(move |im| {
                let last = list_pages(im, PS, head).0.last().copied().unwrap();
                set_u64(page_mut(im, PS, last), 16, d0)
            }),
        ),
        (
            "dir next past the end",
            Box::new(move |im| set_u64(page_mut(im, PS, d0), 16, hw + 5)),
        ),
        (
            "dir next is a leaf",
            Box::new(move |im| set_u64(page_mut(im, PS, d0), 16, l1)),
        ),
        (
            "leaf listed twice",
            Box::new(move |im| set_u64(page_mut(im, PS, d0), 24 + 8, l0)),
        ),
        (
            "leaf listed twice across dir pages",
            Box::new(move |im| set_u64(page_mut(im, PS, d1), 24, l0)),
        ),
        (
            "leaf id is a dir page",
            Box::new(move |im| set_u64(page_mut(im, PS, d0), 24, d1)),
        ),
        (
            "leaf id is its own dir page",
            Box::new(move |im| set_u64(page_mut(im, PS, d0), 24, d0)),
        ),
        (
            "leaf id 0",
            Box::new(move |im| set_u64(page_mut(im, PS, d0), 24, 0)),
        ),
        (
            "leaf id 1 (a meta)",
            Box::new(move |im| set_u64(page_mut(im, PS, d0), 24, 1)),
        ),
        (
            "leaf id past the end",
            Box::new(move |im| set_u64(page_mut(im, PS, d0), 24, hw)),
        ),
        (
            "leaves swapped",
            Box::new(move |im| {
                let p = page_mut(im, PS, d0);
                set_u64(p, 24, l1);
                set_u64(p, 32, l0);
            }),
        ),
        (
            "leaf id is a tree page",
            Box::new(move |im| {
                // A page of kind 2 (a tree leaf).
                let tree = (2..hw).find(|&p| page(im, PS, p)[0] == 2).unwrap();
                set_u64(page_mut(im, PS, d0), 24, tree)
            }),
        ),
        (
            "dir count past the page end",
            Box::new(move |im| set_count(page_mut(im, PS, d0), 62)),
        ),
        (
            "dir count huge",
            Box::new(move |im| set_count(page_mut(im, PS, d0), u16::MAX)),
        ),
        (
            "leaf count past the page end",
            Box::new(move |im| set_count(page_mut(im, PS, l0), 21)),
        ),
        (
            "leaf count huge",
            Box::new(move |im| set_count(page_mut(im, PS, l5), u16::MAX)),
        ),
        (
            "empty leaf",
            Box::new(move |im| set_count(page_mut(im, PS, l5), 0)),
        ),
        (
            "leaf next non-zero",
            Box::new(move |im| set_u64(page_mut(im, PS, l5), 16, l1)),
        ),
        (
            "leaf next to itself",
            Box::new(move |im| set_u64(page_mut(im, PS, l5), 16, l5)),
        ),
        (
            "leaf kind is a dir",
            Box::new(move |im| page_mut(im, PS, l5)[0] = 6),
        ),
        (
            "head is a leaf",
            Box::new(move |im| {
                let Newest { slot, .. } = newest_meta(im, PS);
                edit_meta(im, PS, slot, |m| m.freelist_head = l0);
            }),
        ),
        (
            "entry count differs",
            Box::new(move |im| {
                let Newest { slot, .. } = newest_meta(im, PS);
                edit_meta(im, PS, slot, |m| m.freelist_entries = entries + 1);
            }),
        ),
        (
            "entries out of order in a leaf",
            Box::new(move |im| {
                let p = page_mut(im, PS, l5);
                let a = u64_at(p, 24 + 16);
                let b = u64_at(p, 48 + 16);
                set_u64(p, 24 + 16, b);
                set_u64(p, 48 + 16, a);
            }),
        ),
        (
            "entry repeated across leaves",
            Box::new(move |im| {
                let first = u64_at(page(im, PS, l0), 24 + 16);
                set_u64(page_mut(im, PS, l5), 24 + 16, first);
            }),
        ),
        (
            "entry names a leaf",
            Box::new(move |im| {
                // The last entry of the last leaf: a leaf page, past every entry.
                let (_, leaves) = list_pages(im, PS, head);
                let last = *leaves.last().unwrap();
                let top = *leaves.iter().max().unwrap();
                let p = page_mut(im, PS, last);
                let n = count(p);
                let at = 24 + 24 * (n - 1);
                set_u64(p, at + 16, top);
            }),
        ),
        (
            "entry names a dir page",
            Box::new(move |im| {
                let (dir, leaves) = list_pages(im, PS, head);
                let last = *leaves.last().unwrap();
                let top = *dir.iter().max().unwrap();
                let p = page_mut(im, PS, last);
                let n = count(p);
                set_u64(p, 24 + 24 * (n - 1) + 16, top);
            }),
        ),
        (
            "entry page 0",
            Box::new(move |im| set_u64(page_mut(im, PS, l0), 24 + 16, 0)),
        ),
        (
            "entry past the end",
            Box::new(move |im| {
                let p = page_mut(im, PS, *leaves.last().unwrap());
                let n = count(p);
                set_u64(p, 24 + 24 * (n - 1) + 16, hw + 1000);
            }),
        ),
        (
            "entry freed in the future",
            Box::new(move |im| set_u64(page_mut(im, PS, l5), 24, 1 << 40)),
        ),
        (
            "entry written after freed",
            Box::new(move |im| {
                let p = page_mut(im, PS, l5);
                let f = u64_at(p, 24).max(1);
                set_u64(p, 24, f);
                set_u64(p, 32, f + 1);
            }),
        ),
        (
            "reusable entry names a writer",
            Box::new(move |im| {
                let p = page_mut(im, PS, l5);
                set_u64(p, 24, 0);
                set_u64(p, 32, 1);
            }),
        ),
        (
            "dir page written in the future",
            Box::new(move |im| set_u64(page_mut(im, PS, d1), 8, 1 << 40)),
        ),
        (
            "leaf written in the future",
            Box::new(move |im| set_u64(page_mut(im, PS, l5), 8, 1 << 40)),
        ),
    ];
    let mut failures = Vec::new();
    for (name, craft) in &cases {
        let mut im = base.clone();
        craft(&mut im);
        failures.extend(not_refused(tmp.path(), name, im, PS, hw));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------
// Size and cost of the list.

/// The list's pages against its entries: leaves at least half full (but a
/// lone one) and a directory for them, plus a little slack.
fn list_size_bounded(db: &Database, what: &str) {
    let s = db.stat().unwrap();
    let cap = ((PS - 24) / 24) as u64;
    let dcap = ((PS - 24) / 8) as u64;
    let leaves = (2 * s.free_pages).div_ceil(cap) + 1;
    let bound = leaves + leaves.div_ceil(dcap) + 4;
    assert!(
        s.freelist_pages <= bound,
        "{what}: {} list pages for {} free pages (bound {bound})",
        s.freelist_pages,
        s.free_pages
    );
}

/// A huge delete, then thousands of tiny commits that insert and remove at
/// random across the key space (so across the file), with a reader held
/// now and then: each commit writes a bounded number of pages, and the list
/// stays within twice the packed size.
#[test]
fn tiny_commits_after_a_huge_delete_stay_cheap() {
    let t = TestDb::new(PS as u32);
    fill(t.db(), 40_000, &[3u8; 60]);
    thin(t.db(), 40_000, |i| i % 3 == 0);
    let mut rng = Rng(0xfee1_0010);
    let mut worst = 0;
    let mut total = 0;
    let mut held = None;
    for round in 0..1500u64 {
        let w = t.db().begin_write().unwrap();
        let id = w.id();
        {
            let mut tab = w.open_table("t").unwrap();
            for _ in 0..2 {
                let k = rng.below(40_000);
                if rng.below(2) == 0 {
                    tab.remove(&key(k)).unwrap();
                } else {
                    tab.insert(&key(k), &[4u8; 60]).unwrap();
                }
            }
        }
        w.commit().unwrap();
        if round % 10 == 0 {
            let n = written_by(&t.path(), PS, id);
            worst = worst.max(n);
            total += n;
        }
        match rng.below(100) {
            0 => held = Some(t.db().begin_read().unwrap()),
            1..=3 => held = None,
            _ => {}
        }
        if round % 100 == 99 {
            list_size_bounded(t.db(), &format!("round {round}"));
        }
    }
    drop(held);
    full_check(t.db(), "end");
    let s = t.db().stat().unwrap();
    eprintln!(
        "tiny commits: worst {worst} pages written, mean {} ; list {} pages for {} free",
        total / 150,
        s.freelist_pages,
        s.free_pages
    );
    assert!(worst <= 60, "a tiny commit wrote {worst} pages");
}

/// Thousands of commits that each take and give back pages all over the
/// list: the list never holds much more than its packed size.
#[test]
fn the_list_does_not_grow_past_its_entries() {
    let t = TestDb::new(PS as u32);
    let mut rng = Rng(0xfee1_0011);
    let mut model = BTreeMap::new();
    for round in 0..800u64 {
        random_txn(t.db(), &mut rng, round, &mut model);
        if round % 20 == 19 {
            list_size_bounded(t.db(), &format!("round {round}"));
        }
    }
}

/// A huge delete then `compact`: the file comes down to about the pages in
/// use; no kept leaf of the list stays stranded high in the file.
#[test]
fn compaction_strands_no_leaf() {
    for seed in 0..3u64 {
        let mut t = TestDb::new(PS as u32);
        let mut rng = Rng(0xfee1_0020 + seed);
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..30_000 {
                tab.insert(&key(i), &vec![1u8; 40 + (i % 7) as usize * 100])
                    .unwrap();
            }
        }
        w.commit().unwrap();
        // Many commits of removals, so that the list has many kept leaves
        // scattered through the file.
        for _ in 0..60 {
            let w = t.db().begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for _ in 0..400 {
                    tab.remove(&key(rng.below(30_000))).unwrap();
                }
                for _ in 0..20 {
                    tab.insert(&key(rng.below(30_000)), &[2u8; 300]).unwrap();
                }
            }
            w.commit().unwrap();
        }
        t.db().compact().unwrap();
        let s = t.db().stat().unwrap();
        let r = t.db().check_report().unwrap();
        let in_use = s.pages - s.free_pages;
        let file_pages = t.file_size() / PS as u64;
        eprintln!(
            "seed {seed}: file {file_pages} pages, hw {}, free {}, list {}, in use {in_use} (check pages {})",
            s.pages, s.free_pages, s.freelist_pages, r.pages
        );
        assert!(
            s.pages <= in_use + in_use / 20 + 64,
            "seed {seed}: high-water {} for {in_use} pages in use ({} free)",
            s.pages,
            s.free_pages
        );
        t.reopen();
        full_check(t.db(), "reopened");
    }
}

/// A directory chain thousands of pages long, all but the last without an
/// id: valid, read in time linear in it, and rewritten small by the next
/// commit, after which every page of it comes back.
#[test]
fn a_huge_empty_directory_is_read_and_shed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut image = long_list_image(tmp.path());
    let Newest {
        slot,
        high_water: hw,
        head,
        ..
    } = newest_meta(&mut image, PS);
    let extra = 5_000u64;
    let txn = u64_at(page(&image, PS, head), 8);
    image.resize((hw + extra) as usize * PS, 0);
    for i in 0..extra {
        let id = hw + i;
        let next = if i + 1 == extra { head } else { id + 1 };
        let p = page_mut(&mut image, PS, id);
        p.fill(0);
        p[0] = 6;
        set_u64(p, 8, txn);
        set_u64(p, 16, next);
        restamp(&mut image, PS, id);
    }
    edit_meta(&mut image, PS, slot, |m| {
        m.high_water = hw + extra;
        m.freelist_head = hw;
    });
    let path = tmp.path().join("huge.larch");

    std::fs::write(&path, &image).unwrap();
    let db = common::open(&path, PS as u32);
    let s = db.stat().unwrap();
    assert!(s.freelist_pages >= extra, "{}", s.freelist_pages);
    full_check(&db, "crafted");
    for i in 0..8 {
        let w = db.begin_write().unwrap();
        w.open_table("t").unwrap().insert(&key(i), b"y").unwrap();
        w.commit().unwrap();
    }
    let s = db.stat().unwrap();
    assert!(s.freelist_pages < 1_000, "{} list pages", s.freelist_pages);
    full_check(&db, "after commits");
}

// ---------------------------------------------------------------------
// No page an on-disk meta reaches is written over, byte for byte.

fn hash(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// The pages each meta on disk reached when first seen in its slot, with a
/// hash of their bytes: while the meta stays in its slot, none may change.
#[derive(Default)]
struct Watch {
    seen: BTreeMap<u64, Vec<(u64, u64)>>,
}

impl Watch {
    fn look(&mut self, path: &Path, ps: usize, what: &str) {
        let image = std::fs::read(path).unwrap();
        let states = image_state(&image, ps);
        let live: Vec<u64> = states.iter().map(|s| s.txn_id).collect();
        self.seen.retain(|t, _| live.contains(t));
        for s in &states {
            let reach = s
                .reachable
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: meta {} no longer checks", s.txn_id));
            match self.seen.get(&s.txn_id) {
                None => {
                    let pages = reach
                        .iter()
                        .map(|&p| (p, hash(&image[p as usize * ps..(p as usize + 1) * ps])))
                        .collect();
                    self.seen.insert(s.txn_id, pages);
                }
                Some(pages) => {
                    for &(p, h) in pages {
                        let now = image.get(p as usize * ps..(p as usize + 1) * ps).map(hash);
                        assert_eq!(
                            now,
                            Some(h),
                            "{what}: page {p}, reached by meta {} on disk, was written over",
                            s.txn_id
                        );
                    }
                }
            }
        }
    }
}

/// The strong form of the weak-commit attack: byte-for-byte, with held
/// readers whose values are compared with copies, two handles, aborts,
/// savepoints, compaction and `sync`.
#[test]
fn no_page_an_on_disk_meta_or_reader_reaches_is_written_over() {
    for seed in 0..3u64 {
        let t = TestDb::new(PS as u32);
        let second = common::open(&t.path(), PS as u32);
        let mut rng = Rng(0xfee1_0030 + seed);
        let mut model = BTreeMap::new();
        let mut watch = Watch::default();
        let mut held: Vec<(larch::ReadTxn, BTreeMap<u64, Vec<u8>>)> = Vec::new();
        for round in 0..400u64 {
            let db = if rng.below(4) == 0 { &second } else { t.db() };
            random_txn(db, &mut rng, round, &mut model);
            watch.look(&t.path(), PS, &format!("seed {seed} round {round}"));
            match rng.below(20) {
                0 | 1 => held.push((db.begin_read().unwrap(), model.clone())),
                2 => {
                    for (r, m) in held.drain(..) {
                        let tab = match r.open_table("t") {
                            Ok(tab) => tab,
                            Err(_) => {
                                assert!(m.is_empty());
                                continue;
                            }
                        };
                        assert_eq!(
                            tab.iter().unwrap().count(),
                            m.len(),
                            "seed {seed} round {round}"
                        );
                        for (k, v) in &m {
                            assert_eq!(
                                tab.get(&key(*k)).unwrap(),
                                Some(&v[..]),
                                "seed {seed} round {round} held reader"
                            );
                        }
                    }
                }
                3 => db.sync().unwrap(),
                4 => {
                    db.compact().unwrap();
                    watch.look(&t.path(), PS, &format!("seed {seed} round {round} compact"));
                }
                _ => {}
            }
        }
        held.clear();
        full_check(t.db(), "end");
        model_matches(&second, &model, "end");
    }
}

// ---------------------------------------------------------------------
// Two processes.

/// Child: commits at random (weak and durable) on the file of
/// `LARCH_RT_FL`, `LARCH_RT_FL_N` transactions, then dies by SIGKILL
/// without closing when `LARCH_RT_FL_KILL` is set.
#[test]
fn child_freelist_writer() {
    let Ok(path) = std::env::var("LARCH_RT_FL") else {
        return;
    };
    let n: u64 = std::env::var("LARCH_RT_FL_N").unwrap().parse().unwrap();
    let seed: u64 = std::env::var("LARCH_RT_FL_SEED").unwrap().parse().unwrap();
    let db = common::open(Path::new(&path), PS as u32);
    let mut rng = Rng(seed);
    let mut model = BTreeMap::new();
    let _held = db.begin_read().unwrap();
    for round in 0..n {
        random_txn(&db, &mut rng, round, &mut model);
    }
    if std::env::var("LARCH_RT_FL_KILL").is_ok() {
        // SAFETY: ends this child process at once.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// Two processes alternate as writers on one file, each loading the list
/// the other left; some children die without closing after weak commits.
/// The parent's handle stays open throughout, and its writer must reload.
#[test]
fn two_processes_alternate_writers() {
    let t = TestDb::new(PS as u32);
    let mut rng = Rng(0xfee1_0040);
    let mut model = BTreeMap::new();
    let mut watch = Watch::default();
    for turn in 0..12u64 {
        for round in 0..30 {
            random_txn(t.db(), &mut rng, turn * 100 + round, &mut model);
        }
        watch.look(&t.path(), PS, &format!("turn {turn} parent"));
        let path = t.path().to_str().unwrap().to_string();
        let n = (40 + turn).to_string();
        let seed = (turn * 7 + 1).to_string();
        let mut envs = vec![
            ("LARCH_RT_FL", path.as_str()),
            ("LARCH_RT_FL_N", n.as_str()),
            ("LARCH_RT_FL_SEED", seed.as_str()),
        ];
        if turn % 2 == 1 {
            envs.push(("LARCH_RT_FL_KILL", "1"));
        }
        let status = {
            let _g = common::spawn_lock();
            let mut child = common::test_command("child_freelist_writer", &envs)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            drop(_g);
            child.wait().unwrap()
        };
        assert!(turn % 2 == 1 || status.success(), "turn {turn}: {status:?}");
        watch.look(&t.path(), PS, &format!("turn {turn} child"));
        full_check(t.db(), &format!("turn {turn} after the child"));
        // The child rewrote table "t": the parent's model is the file's.
        model.clear();
        let r = t.db().begin_read().unwrap();
        if let Ok(tab) = r.open_table("t") {
            for e in tab.iter().unwrap() {
                let (k, v) = e.unwrap();
                let k = u64::from_be_bytes(k.try_into().unwrap());
                // key(i) = i * 7919 (mod 2^64): invert.
                let inv = inverse(7919);
                model.insert(k.wrapping_mul(inv), v.to_vec());
            }
        }
    }
    full_check(t.db(), "end");
}

/// The inverse of odd `a` modulo 2^64.
fn inverse(a: u64) -> u64 {
    let mut x: u64 = 1;
    for _ in 0..7 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

/// A reader held across a huge delete and then thousands of tiny commits:
/// the deleted pages stay pending, the commits take only pages freed after
/// the reader; each tiny commit must still write few pages (no leaf
/// bouncing in the tail of the file every commit), and the file must not
/// grow without bound.
#[test]
fn tiny_commits_under_a_held_reader_stay_cheap() {
    for (durability, what) in [
        (Durability::Immediate, "immediate"),
        (Durability::None, "none"),
    ] {
        let t = TestDb::new(PS as u32);
        fill(t.db(), 30_000, &[3u8; 60]);
        let reader = t.db().begin_read().unwrap();
        thin(t.db(), 30_000, |i| i % 4 == 0);
        let mut rng = Rng(0xfee1_0050);
        let mut worst = 0;
        let mut sum = 0;
        let mut hw_at = Vec::new();
        for round in 0..2000u64 {
            let mut w = t.db().begin_write().unwrap();
            w.set_durability(durability);
            let id = w.id();
            {
                let mut tab = w.open_table("t").unwrap();
                let k = rng.below(30_000) / 4 * 4;
                tab.insert(&key(k), &[(round % 200) as u8; 60]).unwrap();
            }
            w.commit().unwrap();
            if round % 20 == 0 {
                let n = written_by(&t.path(), PS, id);
                if round % 400 == 0 {
                    eprintln!(
                        "{what} round {round}: {n} pages, {} of the list",
                        list_pages_written(&t.path(), PS, id)
                    );
                }
                worst = worst.max(n);
                sum += n;
            }
            if round % 200 == 199 {
                hw_at.push(t.db().stat().unwrap().pages);
            }
        }
        let s = t.db().stat().unwrap();
        eprintln!(
            "{what}: worst {worst}, mean {} pages per tiny commit; list {} pages for {} free ({} pending); hw over time {hw_at:?}",
            sum / 100,
            s.freelist_pages,
            s.free_pages,
            s.pending_free_pages
        );
        drop(reader);
        full_check(t.db(), what);
        assert!(worst <= 40, "{what}: a tiny commit wrote {worst} pages");
        // Commits that are never durable keep every page the durable meta
        // reaches from reuse: the file grows (as it did before format 8).
        let grew = hw_at.last().unwrap() - hw_at[0];
        assert!(
            durability != Durability::Immediate || grew < 200,
            "{what}: the file grew {grew} pages in 1800 tiny commits: {hw_at:?}"
        );
    }
}

/// The tail pathology, minimal: commits that are not durable (or a held
/// reader) keep the top of the file pending; every list leaf lying among
/// those pending pages is "in the tail" and moved, each commit, to the
/// lowest reusable page, which lies in the same pending tail: so the same
/// leaves are rewritten by every commit, and more of them as time goes.
/// Here without any reader: `Durability::None` alone.
#[test]
fn weak_tiny_commits_do_not_rewrite_the_list_again_and_again() {
    let t = TestDb::new(PS as u32);
    fill(t.db(), 30_000, &[3u8; 60]);
    thin(t.db(), 30_000, |i| i % 4 == 0);
    let mut rng = Rng(0xfee1_0060);
    let mut seen = Vec::new();
    for round in 0..2000u64 {
        let mut w = t.db().begin_write().unwrap();
        w.set_durability(Durability::None);
        let id = w.id();
        {
            let mut tab = w.open_table("t").unwrap();
            let k = rng.below(30_000) / 4 * 4;
            tab.insert(&key(k), &[(round % 200) as u8; 60]).unwrap();
        }
        w.commit().unwrap();
        if round % 250 == 249 {
            seen.push(list_pages_written(&t.path(), PS, id));
        }
    }
    let s = t.db().stat().unwrap();
    eprintln!(
        "list pages written by one-key commits, every 250: {seen:?}; list {} pages",
        s.freelist_pages
    );
    full_check(t.db(), "end");
    assert!(
        seen.iter().all(|&n| n <= 16),
        "one-key commits rewrite {seen:?} list pages (of {})",
        s.freelist_pages
    );
}
