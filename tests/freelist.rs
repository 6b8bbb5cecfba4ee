//! The free list in the file: a small commit rewrites only the parts of it
//! that changed, however long it is, and the list stays whole through long
//! runs of commits that free and reuse pages at random.

mod common;

use common::{Rng, TestDb};

/// Pages of the file at `path` whose header names transaction `txn` as
/// their writer: the pages that commit wrote (a page freed earlier keeps
/// the id of an older writer).
fn written_by(path: &std::path::Path, page_size: usize, txn: u64) -> usize {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks_exact(page_size)
        .skip(2)
        .filter(|p| u64::from_le_bytes(p[8..16].try_into().unwrap()) == txn)
        .count()
}

fn key(i: u32) -> [u8; 8] {
    (u64::from(i) * 7919).to_be_bytes()
}

/// Half of a large table removed leaves a free list of hundreds of pages;
/// a commit of one insert after it writes its path through the tree and
/// the few pages of the list it changed, not the whole list.
#[test]
fn a_small_commit_does_not_rewrite_a_long_free_list() {
    let t = TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..40_000 {
            tab.insert(&key(i), &[7u8; 12]).unwrap();
        }
    }
    w.commit().unwrap();
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in (0..40_000).step_by(2) {
            tab.remove(&key(i)).unwrap();
        }
    }
    w.commit().unwrap();
    let mut last = 0;
    for i in 0..10 {
        let w = t.db().begin_write().unwrap();
        w.open_table("t")
            .unwrap()
            .insert(&key(2 * i * 997), b"back")
            .unwrap();
        last = w.id();
        w.commit().unwrap();
    }
    let r = t.db().begin_read().unwrap();
    let stat = r.stat().unwrap();
    assert!(
        stat.freelist_pages >= 100,
        "the list holds {} free pages in {} pages",
        stat.free_pages,
        stat.freelist_pages
    );
    r.check().unwrap();
    drop(r);
    let wrote = written_by(&t.path(), 512, last);
    eprintln!(
        "one insert wrote {wrote} pages beside a free list of {} pages ({} free pages)",
        stat.freelist_pages, stat.free_pages
    );
    assert!(
        wrote <= 32,
        "one insert wrote {wrote} pages, with {} pages of free list",
        stat.freelist_pages
    );
}

/// Thousands of commits that insert, remove and replace at random, with
/// readers held across some of them and reopens between: every commit's
/// list is read back whole by `check`, which finds a page both free and in
/// use, listed twice, or leaked.
#[test]
fn the_list_stays_whole_through_random_commits() {
    for page_size in [512u32, 4096] {
        let mut t = TestDb::new(page_size);
        let mut rng = Rng(0x5eed_f4ee + u64::from(page_size));
        let mut model = std::collections::BTreeMap::new();
        let mut held = Vec::new();
        for round in 0..600u32 {
            let w = t.db().begin_write().unwrap();
            let mut next = model.clone();
            {
                let mut tab = w.open_table("t").unwrap();
                let ops = match rng.below(10) {
                    0 => 2_000,
                    1..=3 => 200,
                    _ => 5,
                };
                for _ in 0..ops {
                    let k = rng.below(6_000) as u32;
                    if rng.below(3) == 0 {
                        tab.remove(&key(k)).unwrap();
                        next.remove(&k);
                    } else {
                        let len = [4, 40, 300, 2_000][rng.below(4) as usize];
                        let v = vec![(round % 251) as u8; len];
                        tab.insert(&key(k), &v).unwrap();
                        next.insert(k, v);
                    }
                }
            }
            if rng.below(20) == 0 {
                drop(w);
            } else {
                w.commit().unwrap();
                model = next;
            }
            match rng.below(30) {
                0 => held.push(t.db().begin_read().unwrap()),
                1 => held.clear(),
                _ => {}
            }
            if round % 97 == 96 {
                held.clear();
                t.reopen();
            }
            if round % 25 == 24 {
                let r = t.db().begin_read().unwrap();
                r.check().unwrap();
                let tab = r.open_table("t").unwrap();
                let got = tab.iter().unwrap().count();
                assert_eq!(got, model.len(), "round {round}");
            }
        }
        held.clear();
        let r = t.db().begin_read().unwrap();
        r.check().unwrap();
        let tab = r.open_table("t").unwrap();
        for (k, v) in &model {
            assert_eq!(tab.get(&key(*k)).unwrap(), Some(&v[..]));
        }
    }
}
