//! Hostile files (RELIABILITY.md, suite 7): metas with valid checksums that
//! point at garbage, wrong and absurd page sizes, truncated files, damaged
//! pages. Each gives its documented outcome: a fallback to the other meta or a
//! typed error, never a panic or a hang.

mod common;

use std::path::Path;

use larch::testing::{corrupt, edit_meta, fuzz};
use larch::{Database, Error, Options};

fn open(path: &Path) -> larch::Result<Database> {
    // SAFETY: the test owns the file.
    unsafe { Options::new().page_size(512).map_size(1 << 30).open(path) }
}

/// A file with two commits: txn 1 in slot 1 holds table "one", txn 2 in slot 0
/// holds tables "one" and "two" with more data.
fn two_commits(path: &Path) -> Vec<u8> {
    let db = open(path).unwrap();
    for (name, n) in [("one", 300u32), ("two", 600)] {
        let mut w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(name).unwrap();
            for i in 0..n {
                let v = if i % 40 == 0 {
                    vec![1u8; 2000]
                } else {
                    vec![2u8; 30]
                };
                t.insert(format!("{i:05}").as_bytes(), &v).unwrap();
            }
        }
        w.commit().unwrap();
    }
    drop(db);
    std::fs::read(path).unwrap()
}

fn tables(db: &Database) -> Vec<String> {
    db.begin_read().unwrap().list_tables().unwrap()
}

/// Opens `image`; returns the open error, or the first error of reading,
/// checking and writing it.
fn outcome(path: &Path, image: &[u8]) -> Option<Error> {
    std::fs::write(path, image).unwrap();
    match open(path) {
        Err(e) => Some(e),
        Ok(db) => fuzz::exercise(&db).err(),
    }
}

fn corrupted(e: Option<Error>) -> bool {
    matches!(e, Some(Error::Corrupted { .. }))
}

#[test]
fn a_root_beyond_the_file_falls_back_then_is_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut image = two_commits(&path);
    assert!(edit_meta(&mut image, 512, 0, |m| m.catalog_root = m.pages + 100));
    std::fs::write(&path, &image).unwrap();
    let db = open(&path).unwrap();
    assert_eq!(db.last_txn_id(), 1);
    assert_eq!(tables(&db), ["one"]);
    drop(db);
    assert!(edit_meta(&mut image, 512, 1, |m| m.catalog_root = u64::MAX));
    std::fs::write(&path, &image).unwrap();
    assert!(matches!(
        open(&path).err(),
        Some(Error::Corrupted { page: 0, .. })
    ));
}

#[test]
fn a_root_of_the_wrong_kind_is_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let base = two_commits(&path);
    // The catalog root pointed at the free-list page, then at an overflow page.
    let mut image = base.clone();
    let mut freelist = 0;
    assert!(edit_meta(&mut image, 512, 0, |m| {
        freelist = m.freelist_head;
        m.catalog_root = m.freelist_head;
    }));
    assert!(freelist != 0);
    assert!(corrupted(outcome(&path, &image)));
    // A table root at a page of the wrong kind: find an overflow page by kind.
    let overflow = (2..image.len() / 512)
        .find(|&p| base[p * 512] == 3)
        .unwrap() as u64;
    let mut image = base.clone();
    assert!(edit_meta(&mut image, 512, 0, |m| m.catalog_root = overflow));
    assert!(corrupted(outcome(&path, &image)));
}

#[test]
fn a_depth_that_disagrees_with_the_tree_is_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut image = two_commits(&path);
    assert!(edit_meta(&mut image, 512, 0, |m| m.catalog_depth = 7));
    assert!(corrupted(outcome(&path, &image)));
}

#[test]
fn wrong_and_absurd_page_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let base = two_commits(&path);
    // Absurd in slot 0: fall back to slot 1.
    let mut image = base.clone();
    assert!(edit_meta(&mut image, 512, 0, |m| m.page_size = 1 << 20));
    std::fs::write(&path, &image).unwrap();
    assert_eq!(open(&path).unwrap().last_txn_id(), 1);
    // Absurd in both: corrupted.
    assert!(edit_meta(&mut image, 512, 1, |m| m.page_size = 3));
    assert!(matches!(
        outcome(&path, &image),
        Some(Error::Corrupted { page: 0, .. })
    ));
    // Wrong but plausible (1024 in a 512 file, geometry within the file): the
    // pages read at the wrong size give errors, not panics.
    let mut image = base.clone();
    let len = image.len() as u64;
    assert!(edit_meta(&mut image, 512, 0, |m| {
        m.page_size = 1024;
        m.pages = len / 1024;
    }));
    let e = outcome(&path, &image);
    assert!(corrupted(e), "a wrong page size was not noticed");
}

#[test]
fn a_key_length_past_the_page_end_is_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut image = two_commits(&path);
    // Every leaf cell's key_len becomes 0xffff in the first leaf page found.
    let leaf = (2..image.len() / 512)
        .find(|&p| image[p * 512] == 2)
        .unwrap();
    let page = &mut image[leaf * 512..(leaf + 1) * 512];
    let count = u16::from_le_bytes([page[2], page[3]]) as usize;
    for i in 0..count {
        let at = u16::from_le_bytes([page[24 + 2 * i], page[25 + 2 * i]]) as usize;
        page[at + 2] = 0xff;
        page[at + 3] = 0xff;
    }
    assert!(corrupted(outcome(&path, &image)));
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let image = two_commits(&path);
    for len in [700, 1024, 1500] {
        assert!(
            matches!(outcome(&path, &image[..len]), Some(Error::Corrupted { .. })),
            "length {len}"
        );
    }
}

#[test]
fn every_class_of_damaged_page_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut typed = 0;
    for class in corrupt::CLASSES {
        let image = corrupt::damaged_image(class);
        let e = outcome(&path, &image);
        assert!(corrupted(e), "{class:?} went unnoticed");
        typed += 1;
    }
    // Reaching this line means no case panicked.
    larch::testing::report(&format!(
        "RELIABILITY suite=hostile damaged_classes={} typed_errors={typed} panics=0",
        corrupt::CLASSES.len()
    ));
}

/// A crafted free list that names a live page of the newest commit. Opened as
/// trusted, larch would hand that page to the writer while readers hold it;
/// `Options::verify` checks the commit first, sets it aside and uses the
/// older one, and a reader's values then survive commits that reuse every
/// free page.
#[test]
fn verify_sets_aside_a_free_list_that_names_a_live_page() {
    let image = corrupt::damaged_image(corrupt::Class::FreeAlsoReachable);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted.larch");
    std::fs::write(&path, &image).unwrap();
    let verified = |path: &Path| {
        // SAFETY: the test owns the file; its contents are checked by verify.
        unsafe { Options::new().verify(true).map_size(1 << 30).open(path) }
    };

    let db = verified(&path).unwrap();
    assert_eq!(db.last_txn_id(), 1);
    let aside = db
        .stat()
        .unwrap()
        .set_aside
        .expect("the crafted commit is set aside");
    assert_eq!((aside.slot, aside.txn_id), (0, Some(2)));
    db.check().unwrap();

    let r = db.begin_read().unwrap();
    let table = r.open_table("t").unwrap();
    let held: Vec<(&[u8], &[u8])> = table.iter().unwrap().map(|e| e.unwrap()).collect();
    let copies: Vec<(Vec<u8>, Vec<u8>)> =
        held.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    assert!(held.len() > 1000);
    for round in 0..6u32 {
        let mut w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for i in 0..300u32 {
                t.insert(
                    format!("key{i:05}").as_bytes(),
                    &round.to_le_bytes().repeat(8),
                )
                .unwrap();
            }
        }
        w.commit().unwrap();
    }
    for ((k, v), (ck, cv)) in held.iter().zip(&copies) {
        assert_eq!((*k, *v), (&ck[..], &cv[..]));
    }
    drop(r);
    db.check().unwrap();
    drop(db);

    // With the older meta gone too, a verified open is refused.
    let mut both = image.clone();
    both[512..1024].fill(0);
    std::fs::write(&path, &both).unwrap();
    assert!(matches!(verified(&path), Err(Error::Corrupted { .. })));
}
