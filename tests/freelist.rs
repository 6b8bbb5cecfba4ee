//! The free list in the file: a small commit rewrites only the parts of it
//! that changed, however long it is, and the list stays whole through long
//! runs of commits that free and reuse pages at random.

mod common;

use common::free_pages::{count, fill, list_pages, page, spread_key, thin, u64_at, written_by};
use common::{Rng, TestDb};

fn key(i: u32) -> [u8; 8] {
    spread_key(u64::from(i))
}

/// Half of a large table removed leaves a free list of hundreds of pages;
/// a commit of one insert after it writes its path through the tree and
/// the few pages of the list it changed, not the whole list.
#[test]
fn a_small_commit_does_not_rewrite_a_long_free_list() {
    let t = TestDb::new(512);
    fill(t.db(), 40_000, &[7u8; 12]);
    thin(t.db(), 40_000, |i| i % 2 == 1);
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

/// A file whose newest commit has a free list crafted one way: the image,
/// its page size, the newest commit's slot and id, and its list's pages.
struct Crafted {
    image: Vec<u8>,
    slot: usize,
    newest: u64,
    dir: u64,
}

const PS: usize = 512;

/// A database of 512-byte pages whose newest commit's free list has a
/// directory and several leaves, closed; the newest meta's seal list is
/// emptied, so that pages edited afterwards are not a torn commit.
fn crafted() -> Crafted {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.larch");
    {
        let db = common::open(&path, PS as u32);
        fill(&db, 3_000, &[1u8; 30]);
        thin(&db, 3_000, |i| i % 3 == 0);
        for i in 0..3 {
            let w = db.begin_write().unwrap();
            w.open_table("u").unwrap().insert(&key(i), b"x").unwrap();
            w.commit().unwrap();
        }
    }
    let mut image = std::fs::read(&path).unwrap();
    let states = larch::testing::image_state(&image, PS);
    let newest = states.iter().max_by_key(|s| s.txn_id).unwrap().clone();
    let mut head = 0;
    assert!(larch::testing::edit_meta(
        &mut image,
        PS,
        newest.slot as usize,
        |m| {
            head = m.freelist_head;
            m.seal.clear();
        }
    ));
    assert_eq!(image[head as usize * PS], 6, "a directory");
    Crafted {
        image,
        slot: newest.slot as usize,
        newest: newest.txn_id,
        dir: head,
    }
}

/// Opens `image` and returns the commit it opened to and whether it set
/// the newest aside.
fn opened(image: &[u8]) -> (u64, bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.larch");
    std::fs::write(&path, image).unwrap();
    let db = common::open(&path, PS as u32);
    let stat = db.stat().unwrap();
    db.check().unwrap();
    (db.last_txn_id(), stat.set_aside.is_some())
}

/// Every rule of the list in the file, broken one at a time in the newest
/// commit: open sets that commit aside (`Corrupted` to the reader of its
/// list) and opens the one before, whole. The image unedited opens to the
/// newest.
#[test]
fn a_crafted_free_list_is_set_aside_whatever_rule_it_breaks() {
    let base = crafted();
    assert_eq!(opened(&base.image), (base.newest, false));
    let leaves = list_pages(&base.image, PS, base.dir).1;
    assert!(leaves.len() >= 3, "{} leaves", leaves.len());
    let (first, second) = (leaves[0], leaves[1]);
    let dir = base.dir;
    let dir_at = dir as usize * PS;
    type Edit = Box<dyn Fn(&mut Vec<u8>) -> Vec<u64>>;
    let set = |image: &mut Vec<u8>, at: usize, v: u64| {
        image[at..at + 8].copy_from_slice(&v.to_le_bytes());
    };
    let cases: Vec<(&str, Edit)> = vec![
        (
            "the directory points at itself",
            Box::new(move |im| {
                set(im, dir_at + 16, dir);
                vec![dir]
            }),
        ),
        (
            "a leaf listed twice",
            Box::new(move |im| {
                set(im, dir_at + 24 + 8, first);
                vec![dir]
            }),
        ),
        (
            "the directory lists itself as a leaf",
            Box::new(move |im| {
                set(im, dir_at + 24, dir);
                vec![dir]
            }),
        ),
        (
            "two leaves out of order",
            Box::new(move |im| {
                set(im, dir_at + 24, second);
                set(im, dir_at + 24 + 8, first);
                vec![dir]
            }),
        ),
        (
            "a leaf that points on",
            Box::new(move |im| {
                set(im, first as usize * PS + 16, second);
                vec![first]
            }),
        ),
        (
            "an empty leaf",
            Box::new(move |im| {
                im[first as usize * PS + 2..first as usize * PS + 4].copy_from_slice(&[0, 0]);
                vec![first]
            }),
        ),
        (
            "a leaf's count past its page",
            Box::new(move |im| {
                im[first as usize * PS + 2..first as usize * PS + 4]
                    .copy_from_slice(&100u16.to_le_bytes());
                vec![first]
            }),
        ),
        (
            "the directory's count past its page",
            Box::new(move |im| {
                im[dir_at + 2..dir_at + 4].copy_from_slice(&100u16.to_le_bytes());
                vec![dir]
            }),
        ),
        (
            "an entry naming a leaf of the list",
            Box::new(move |im| {
                // The entry just below the first leaf's page in page order
                // (or the first entry) becomes that page: order holds.
                let mut slots = Vec::new();
                for leaf in list_pages(im, PS, dir).1 {
                    for i in 0..count(page(im, PS, leaf)) {
                        let at = leaf as usize * PS + 24 + 24 * i + 16;
                        slots.push((u64_at(im, at), at, leaf));
                    }
                }
                let below = slots.iter().rfind(|s| s.0 < first);
                let &(_, at, leaf) = below.unwrap_or(&slots[0]);
                set(im, at, first);
                vec![leaf]
            }),
        ),
        (
            "entries out of order within a leaf",
            Box::new(move |im| {
                let at = first as usize * PS + 24;
                let a = u64_at(im, at + 16);
                let b = u64_at(im, at + 24 + 16);
                set(im, at + 16, b);
                set(im, at + 24 + 16, a);
                vec![first]
            }),
        ),
        (
            "a directory page of the wrong kind",
            Box::new(move |im| {
                im[dir_at] = 4;
                vec![dir]
            }),
        ),
        (
            "a leaf past the high-water mark",
            Box::new(move |im| {
                set(im, dir_at + 24, u64::MAX / 2);
                vec![dir]
            }),
        ),
    ];
    for (name, edit) in &cases {
        let mut image = base.image.clone();
        let touched = edit(&mut image);
        for page in touched {
            larch::testing::restamp(&mut image, PS, page);
        }
        let (txn, aside) = opened(&image);
        assert!(
            txn < base.newest && aside,
            "{name}: opened to {txn} (newest {}), set aside {aside}",
            base.newest
        );
    }
    // The entry count in the meta that disagrees with the leaves.
    let mut image = base.image.clone();
    assert!(larch::testing::edit_meta(&mut image, PS, base.slot, |m| {
        m.freelist_entries += 1;
    }));
    let (txn, aside) = opened(&image);
    assert!(txn < base.newest && aside, "count: opened to {txn}");
}
