//! Second hostile review of the value heap, aimed at the fixes of the first
//! (tests/redteam_heap.rs): the spare segment, the "own" set, early frees,
//! `highest_target`, cleaning's room.
//!
//! Tests named `redteam_*` fail (each one's comment says what and why);
//! tests named `held_*` are attacks the heap withstood.

mod common;

use std::path::Path;

use common::{TestDb, seeded_bytes as bytes};
use larch::testing::{edit_meta, image_state, restamp};
use larch::{Database, Error, Options};

const PS: u32 = 4096;

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

fn metas_high_water(path: &Path, ps: u32) -> u64 {
    let image = std::fs::read(path).unwrap();
    image_state(&image, ps as usize)
        .iter()
        .map(|s| s.high_water)
        .max()
        .unwrap()
}

fn assert_clean(db: &Database) -> larch::CheckReport {
    let report = db.check_report().unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.leaked_pages, 0, "{report:?}");
    report
}

fn newest_slot(image: &[u8], ps: usize) -> usize {
    image_state(image, ps)
        .iter()
        .max_by_key(|s| s.txn_id)
        .unwrap()
        .slot as usize
}

fn heap_root(image: &mut [u8], ps: usize) -> (u64, u32) {
    let slot = newest_slot(image, ps);
    let mut root = (0, 0);
    assert!(edit_meta(image, ps, slot, |m| root = (m.heap_root, m.heap_depth)));
    root
}

fn leaf_cells(image: &[u8], ps: usize, id: u64) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
    let at = id as usize * ps;
    let page = &image[at..at + ps];
    assert_eq!(page[0], 2, "a leaf");
    let count = u16::from_le_bytes([page[2], page[3]]) as usize;
    (0..count)
        .map(|i| {
            let off = u16::from_le_bytes([page[24 + 2 * i], page[25 + 2 * i]]) as usize;
            let klen = u16::from_le_bytes([page[off + 2], page[off + 3]]) as usize;
            let vlen = u32::from_le_bytes(page[off + 4..off + 8].try_into().unwrap()) as usize;
            let key = page[off + 8..off + 8 + klen].to_vec();
            let value = page[off + 8 + klen..off + 8 + klen + vlen].to_vec();
            (at + off, key, value)
        })
        .collect()
}

fn heap_entry(image: &mut [u8], ps: usize, seg: u64) -> (usize, (u32, u32, u64)) {
    let (root, depth) = heap_root(image, ps);
    assert_eq!(depth, 1, "a heap tree of one leaf");
    let (cell, _, v) = leaf_cells(image, ps, root)
        .into_iter()
        .find(|(_, k, _)| k[..] == seg.to_be_bytes())
        .expect("the segment's entry");
    let at = cell + 8 + 8;
    let pages = u32::from_le_bytes(v[0..4].try_into().unwrap());
    let values = u32::from_le_bytes(v[4..8].try_into().unwrap());
    let live = u64::from_le_bytes(v[8..16].try_into().unwrap());
    (at, (pages, values, live))
}

/// Leaf cells with a packed value: (offset of the reference in the image,
/// leaf page, value length, key).
fn packed_refs(image: &[u8], ps: usize) -> Vec<(usize, u64, usize, Vec<u8>)> {
    let mut out = Vec::new();
    for p in 2..image.len() / ps {
        let page = &image[p * ps..(p + 1) * ps];
        if page[0] != 2 {
            continue;
        }
        let count = u16::from_le_bytes([page[2], page[3]]) as usize;
        for i in 0..count {
            let off = u16::from_le_bytes([page[24 + 2 * i], page[25 + 2 * i]]) as usize;
            if page[off] != 2 {
                continue;
            }
            let klen = u16::from_le_bytes([page[off + 2], page[off + 3]]) as usize;
            let vlen = u32::from_le_bytes(page[off + 4..off + 8].try_into().unwrap()) as usize;
            let k = page[off + 8..off + 8 + klen].to_vec();
            out.push((p * ps + off + 8 + klen, p as u64, vlen, k));
        }
    }
    out
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
        let mut w = db.begin_write().unwrap();
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
        let mut w = db.begin_write().unwrap();
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
            let mut w = db.begin_write().unwrap();
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
    let mut w = db.begin_write()?;
    {
        let mut tab = w.open_table("t")?;
        tab.insert(b"A", &bytes(98, 1100))?;
        tab.insert(&key(3), &bytes(99, 1100))?;
    }
    w.commit()
}

/// DEFECT. A crafted packed reference in a committed leaf names `(F, 24)`,
/// where F is the first page of a free run below the high-water mark
/// (so `Node::highest_target` lets the leaf be copied), and the rest of the
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
    let (seg, _) = ref_at(&image, at);
    image[at..at + 8].copy_from_slice(&a_ref.0.to_le_bytes());
    image[at + 8..at + 12].copy_from_slice(&a_ref.1.to_le_bytes());
    restamp(&mut image, ps, leaf);
    let (entry, (_, values, live)) = heap_entry(&mut image, ps, seg);
    image[entry + 4..entry + 8].copy_from_slice(&(values - 1).to_le_bytes());
    image[entry + 8..entry + 16].copy_from_slice(&(live - 1100).to_le_bytes());
    let (root, _) = heap_root(&mut image, ps);
    restamp(&mut image, ps, root);
    let slot = newest_slot(&image, ps);
    assert!(edit_meta(&mut image, ps, slot, |m| {
        m.heap_live -= 1100;
        m.seal.clear();
    }));
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
    let mut w = db.begin_write().unwrap();
    assert!(w.open_table("t").unwrap().remove(b"A").unwrap());
    w.commit().unwrap();
    for round in 0..3u32 {
        let mut w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("u").unwrap();
            for i in 0..20u32 {
                tab.insert(&key(1000 + round * 100 + i), &[round as u8; 1100])
                    .unwrap();
            }
        }
        w.commit().unwrap();
    }
    let got = db
        .begin_read()
        .unwrap()
        .open_table("t")
        .unwrap()
        .get(&key(3))
        .map(|v| v.map(<[u8]>::to_vec));
    eprintln!(
        "read back: {:?}",
        got.as_ref().map(|v| v.as_ref().map(|v| v[..8].to_vec()))
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(got.unwrap().as_deref(), Some(&bytes(99, 1100)[..]));
}
