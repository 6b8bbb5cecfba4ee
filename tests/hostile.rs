//! Hostile files (docs/reliability.md, suite 7): metas with valid checksums
//! that point at garbage, wrong and absurd page sizes, truncated files, damaged
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
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(name).unwrap();
            for i in 0..n {
                // Runs of their own (longer than 32 pages) and packed values.
                let v = match i % 40 {
                    0 => vec![1u8; 20_000],
                    20 => vec![3u8; 2000],
                    _ => vec![2u8; 30],
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
    assert!(edit_meta(&mut image, 512, 0, |m| m.catalog_root = m.high_water + 100));
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
    // pages read at the wrong size give errors, not panics. The file is
    // doubled so that every page id of the commit still lies inside it.
    let mut image = base.clone();
    image.resize(image.len() * 2, 0);
    let len = image.len() as u64;
    assert!(edit_meta(&mut image, 512, 0, |m| {
        m.page_size = 1024;
        m.high_water = len / 1024;
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
        let w = db.begin_write().unwrap();
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

/// A file at 4 KiB pages whose second commit, single-sync, wrote a value of
/// 4 MiB (an overflow run of 1025 pages) and a few pages beside it. Returns
/// the image and the seal list of that commit's meta (slot 0).
fn sealed_commit(path: &Path) -> (Vec<u8>, Vec<(u64, u32, u32)>) {
    // SAFETY: the test owns the file.
    let db = unsafe { Options::new().map_size(1 << 30).open(path) }.unwrap();
    for (i, len) in [(0u8, 100), (1, 4 << 20)] {
        let w = db.begin_write().unwrap();
        w.open_table("t")
            .unwrap()
            .insert(&[i], &vec![i; len])
            .unwrap();
        w.commit().unwrap();
    }
    drop(db);
    let mut image = std::fs::read(path).unwrap();
    let mut seal = Vec::new();
    assert!(edit_meta(&mut image, 4096, 0, |m| {
        assert_eq!(m.txn_id, 2);
        seal = m.seal.clone();
    }));
    assert!(seal.iter().any(|e| e.1 == 1025), "{seal:?}");
    (image, seal)
}

/// Seal entries that repeat, overlap or go backwards: each holds the right
/// checksum, so an open that only checked them one by one would checksum
/// the same pages over and over (248 times the 4 MiB run here, a whole file
/// as many times in general) and then trust the meta. Such a meta is invalid:
/// open sets it aside, quickly, and uses the other one.
#[test]
fn a_seal_list_that_repeats_or_overlaps_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (base, seal) = sealed_commit(&path);
    let run = *seal.iter().find(|e| e.1 == 1025).unwrap();
    let mut reversed = seal.clone();
    reversed.reverse();
    let mut doubled = seal.clone();
    let at = seal.iter().position(|e| *e == run).unwrap();
    doubled.insert(at, run);
    for (what, list) in [
        ("repeated", vec![run; 248]),
        ("reversed", reversed),
        ("doubled", doubled),
    ] {
        let mut image = base.clone();
        assert!(edit_meta(&mut image, 4096, 0, |m| m.seal = list));
        std::fs::write(&path, &image).unwrap();
        let started = std::time::Instant::now();
        // SAFETY: the test owns the file.
        let db = unsafe { Options::new().map_size(1 << 30).open(&path) }.unwrap();
        let took = started.elapsed();
        assert_eq!(db.last_txn_id(), 1, "{what}");
        assert!(took < std::time::Duration::from_secs(2), "{what}: {took:?}");
        let r = db.begin_read().unwrap();
        assert_eq!(r.open_table("t").unwrap().len(), 1, "{what}");
        drop(r);
        db.check().unwrap();
    }
    // The list as written is accepted.
    std::fs::write(&path, &base).unwrap();
    // SAFETY: the test owns the file.
    let db = unsafe { Options::new().map_size(1 << 30).open(&path) }.unwrap();
    assert_eq!(db.last_txn_id(), 2);
}

/// Commits `key` into table "one" and returns the id it committed as.
fn commit_key(db: &Database, key: &[u8]) -> larch::Result<u64> {
    let w = db.begin_write()?;
    let id = w.id();
    w.open_table("one")?.insert(key, b"acknowledged")?;
    w.commit()?;
    Ok(id)
}

/// The newest meta claims a transaction id at the very top of the range
/// (correctly checksummed). The next transaction's id would wrap to 0: a
/// panic with overflow checks, and without them a commit acknowledged and
/// then lost at reopen (transaction 0 loses to the crafted meta), its freed
/// pages reused at once. Ids above 2^62 make a meta invalid: it is set aside,
/// and a commit made afterwards survives a reopen.
#[test]
fn a_transaction_id_at_the_top_of_the_range_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let base = two_commits(&path);
    for id in [u64::MAX, u64::MAX - 1, (1 << 62) + 1] {
        let mut image = base.clone();
        assert!(edit_meta(&mut image, 512, 0, |m| m.txn_id = id));
        std::fs::write(&path, &image).unwrap();
        let db = open(&path).unwrap();
        let committed = commit_key(&db, b"after").unwrap();
        drop(db);
        let db = open(&path).unwrap();
        let r = db.begin_read().unwrap();
        assert_eq!(
            r.open_table("one").unwrap().get(b"after").unwrap(),
            Some(&b"acknowledged"[..]),
            "{id}: the acknowledged commit was lost"
        );
        assert_eq!((committed, r.id()), (2, 2), "{id}");
        // The crafted meta was set aside: "two" exists only in it.
        assert_eq!(r.list_tables().unwrap(), ["one"], "{id}");
        drop(r);
        db.check().unwrap();
    }
}

/// A meta at the top of the accepted range (2^62) is valid and readable, but
/// no transaction may follow it: the commit is refused before anything is
/// written, and the file keeps its state.
#[test]
fn no_commit_goes_past_the_last_transaction_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut image = two_commits(&path);
    assert!(edit_meta(&mut image, 512, 0, |m| m.txn_id = 1 << 62));
    std::fs::write(&path, &image).unwrap();
    let db = open(&path).unwrap();
    assert_eq!(db.last_txn_id(), 1 << 62);
    assert_eq!(tables(&db), ["one", "two"]);
    let e = commit_key(&db, b"after").unwrap_err();
    assert!(corrupted(Some(e)));
    // Nothing was written: the handle is not poisoned, and a commit that
    // changes nothing still succeeds.
    db.begin_write().unwrap().commit().unwrap();
    drop(db);
    let db = open(&path).unwrap();
    assert_eq!(db.last_txn_id(), 1 << 62);
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("one").unwrap().get(b"after").unwrap(), None);
    drop(r);
    db.check().unwrap();
}

/// The catalog leaf of `image` (512-byte pages; newest meta in slot 0), and
/// for each table the offset of its descriptor's entry count.
fn entry_counts(image: &mut [u8]) -> (u64, Vec<(String, usize)>) {
    let mut root = 0;
    assert!(edit_meta(image, 512, 0, |m| {
        assert_eq!(m.catalog_depth, 1);
        root = m.catalog_root;
    }));
    let page = &image[root as usize * 512..][..512];
    let u16_at = |at: usize| u16::from_le_bytes([page[at], page[at + 1]]) as usize;
    let counts = (0..u16_at(2))
        .map(|i| {
            let cell = u16_at(24 + 2 * i);
            let klen = u16_at(cell + 2);
            let name = String::from_utf8(page[cell + 8..cell + 8 + klen].to_vec()).unwrap();
            (name, root as usize * 512 + cell + 8 + klen + 8)
        })
        .collect();
    (root, counts)
}

/// Descriptors whose entry counts sit at the top of the range (checksums
/// restamped, so only the structure is wrong): summing them in the checker
/// and counting an insert must not wrap. The checker reports the mismatch,
/// an insert is refused as corruption; neither panics.
#[test]
fn entry_counts_at_the_top_of_the_range_do_not_wrap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut image = two_commits(&path);
    let (root, counts) = entry_counts(&mut image);
    assert_eq!(counts.len(), 2);
    for (_, at) in &counts {
        image[*at..*at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    }
    larch::testing::restamp(&mut image, 512, root);
    std::fs::write(&path, &image).unwrap();
    let db = open(&path).unwrap();
    let report = db.check_report().unwrap();
    let reasons: Vec<_> = report.errors.iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons, ["entry count differs from the descriptor"; 2],
        "{report:?}"
    );
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("one").unwrap().len(), u64::MAX);
    assert_eq!(
        r.open_table("one").unwrap().stat().unwrap().entries,
        u64::MAX
    );
    drop(r);
    let w = db.begin_write().unwrap();
    let e = w
        .open_table("one")
        .unwrap()
        .insert(b"new", b"key")
        .unwrap_err();
    assert!(corrupted(Some(e)));
}

/// Overflow runs whose headers claim 2^32 - 1 pages: `stat` counts a run's
/// pages from its header, and must refuse one that reaches past the
/// snapshot rather than count it.
#[test]
fn stat_refuses_an_overflow_run_longer_than_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut image = two_commits(&path);
    for p in 2..image.len() / 512 {
        if image[p * 512] == 3 {
            image[p * 512 + 16..p * 512 + 20].copy_from_slice(&u32::MAX.to_le_bytes());
            larch::testing::restamp(&mut image, 512, p as u64);
        }
    }
    std::fs::write(&path, &image).unwrap();
    let db = open(&path).unwrap();
    let r = db.begin_read().unwrap();
    for name in ["one", "two"] {
        let e = r.open_table(name).unwrap().stat().unwrap_err();
        assert!(corrupted(Some(e)), "{name}");
    }
}

/// Value segments whose headers claim 2^32 - 1 pages, or another kind: a
/// read of a value packed into one, and the writer's removal of it, are
/// `Corrupted`, never a read past the snapshot.
#[test]
fn a_segment_longer_than_the_file_is_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let base = two_commits(&path);
    let segments: Vec<usize> = (2..base.len() / 512)
        .filter(|&p| base[p * 512] == 5)
        .collect();
    assert!(!segments.is_empty());
    for edit in [0, 1] {
        let mut image = base.clone();
        for &p in &segments {
            if edit == 0 {
                image[p * 512 + 16..p * 512 + 20].copy_from_slice(&u32::MAX.to_le_bytes());
            } else {
                image[p * 512] = 3;
            }
            larch::testing::restamp(&mut image, 512, p as u64);
        }
        std::fs::write(&path, &image).unwrap();
        let db = open(&path).unwrap();
        let r = db.begin_read().unwrap();
        let e = r.open_table("one").unwrap().get(b"00020").unwrap_err();
        assert!(corrupted(Some(e)), "edit {edit}");
        drop(r);
        let w = db.begin_write().unwrap();
        let e = w.open_table("one").unwrap().remove(b"00020").unwrap_err();
        assert!(corrupted(Some(e)), "edit {edit}");
        drop(w);
        assert!(db.check().is_err());
    }
}

/// A meta in the slot of the other parity would have the next commit
/// overwrite it in place (transaction `N` writes slot `N % 2`): a torn commit
/// then loses it. Unless the other slot holds the same transaction (a new
/// file, a plain copy), it is set aside.
#[test]
fn a_meta_in_the_slot_of_the_other_parity_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parity.larch");
    let mut image = two_commits(&path);
    // Slot 0 holds txn 2; make it claim txn 3.
    assert!(edit_meta(&mut image, 512, 0, |m| m.txn_id = 3));
    std::fs::write(&path, &image).unwrap();
    let db = open(&path).unwrap();
    assert_eq!(db.last_txn_id(), 1);
    assert_eq!(tables(&db), ["one"]);
    let aside = db.stat().unwrap().set_aside.unwrap();
    assert_eq!(
        (aside.slot, aside.txn_id, aside.reason),
        (0, None, "meta in the slot of the other parity")
    );
    db.check().unwrap();
}

/// A file whose newest meta sits in the slot of the other parity
/// (transaction 3 in slot 0, correctly checksummed; the tree is transaction
/// 2's, slot 1 holds transaction 1). Were it taken, the first commit (4)
/// would overwrite the very meta it builds on, and the reuse rule, which
/// takes the other slot for transaction 3, would hand it pages transaction 1
/// still reaches: a power cut tearing that commit's meta would leave a file
/// that does not open. The misplaced meta is set aside instead, and a torn
/// first commit opens at the state open showed or at the commit.
#[test]
fn a_torn_first_commit_after_a_meta_in_the_other_slot_keeps_the_opened_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut image = two_commits(&path);
    assert!(edit_meta(&mut image, 512, 0, |m| {
        assert_eq!(m.txn_id, 2);
        m.txn_id = 3;
    }));
    std::fs::write(&path, &image).unwrap();
    let verified = |path: &Path| {
        // SAFETY: the test owns the file; its contents are checked by verify.
        unsafe { Options::new().verify(true).map_size(1 << 30).open(path) }
    };
    let db = verified(&path).unwrap();
    assert_eq!(db.last_txn_id(), 1, "the misplaced meta is set aside");
    let opened = larch::testing::read_model(&db).unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("three").unwrap();
        for i in 0..400u32 {
            t.insert(format!("{i:05}").as_bytes(), &[9u8; 256]).unwrap();
        }
    }
    w.commit().unwrap();
    let committed = larch::testing::read_model(&db).unwrap();
    drop(db);

    let mut torn = std::fs::read(&path).unwrap();
    let slot = (0..2)
        .find(|&s| torn[s * 512..(s + 1) * 512] != image[s * 512..(s + 1) * 512])
        .expect("the commit wrote a meta slot");
    torn[slot * 512..(slot + 1) * 512].fill(0xa5);
    std::fs::write(&path, &torn).unwrap();
    let db = verified(&path).expect("a torn meta falls back to an intact commit");
    let model = larch::testing::read_model(&db).unwrap();
    assert!(model == opened || model == committed, "neither state");
}
