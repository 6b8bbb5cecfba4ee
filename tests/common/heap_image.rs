//! Reading and editing the value heap in a whole-file image: the newest
//! meta's heap root, a leaf's cells, a segment's heap entry, the metas' mark.

use std::path::Path;

use larch::Database;
use larch::testing::{edit_meta, image_state};

/// The larger high-water mark of the two metas on disk.
pub fn metas_high_water(path: &Path, ps: u32) -> u64 {
    let image = std::fs::read(path).unwrap();
    image_state(&image, ps as usize)
        .iter()
        .map(|s| s.high_water)
        .max()
        .unwrap()
}

/// Checks `db`: no problem, no leaked page.
pub fn assert_clean(db: &Database) -> larch::CheckReport {
    let report = db.check_report().unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.leaked_pages, 0, "{report:?}");
    report
}

/// The slot of the newest valid meta.
pub fn newest_slot(image: &[u8], ps: usize) -> usize {
    image_state(image, ps)
        .iter()
        .max_by_key(|s| s.txn_id)
        .unwrap()
        .slot as usize
}

/// The heap tree's root, read from the newest meta (the slot is rewritten
/// unchanged).
pub fn heap_root(image: &mut [u8], ps: usize) -> (u64, u32) {
    let slot = newest_slot(image, ps);
    let mut root = (0, 0);
    assert!(edit_meta(image, ps, slot, |m| root = (m.heap_root, m.heap_depth)));
    root
}

/// The cells of leaf page `id`: `(offset of the cell, key, value)`.
pub fn leaf_cells(image: &[u8], ps: usize, id: u64) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
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

/// The heap entry of segment `seg`: where its value lies in the image, and
/// `(pages, values, live)`.
pub fn heap_entry(image: &mut [u8], ps: usize, seg: u64) -> (usize, (u32, u32, u64)) {
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

/// Points the packed reference at `at` (a cell of leaf `leaf`) to `to`
/// (segment, offset), and takes the `len`-byte value it named out of its
/// old segment's heap entry and the meta's totals, so that the rest of the
/// file agrees; the newest meta's seal list is emptied, so the edited pages
/// need no seal check. Returns the old segment's length in pages.
pub fn redirect_packed(
    image: &mut [u8],
    ps: usize,
    at: usize,
    leaf: u64,
    to: (u64, u32),
    len: u64,
) -> u32 {
    let seg = u64::from_le_bytes(image[at..at + 8].try_into().unwrap());
    image[at..at + 8].copy_from_slice(&to.0.to_le_bytes());
    image[at + 8..at + 12].copy_from_slice(&to.1.to_le_bytes());
    larch::testing::restamp(image, ps, leaf);
    let (entry, (pages, values, live)) = heap_entry(image, ps, seg);
    image[entry + 4..entry + 8].copy_from_slice(&(values - 1).to_le_bytes());
    image[entry + 8..entry + 16].copy_from_slice(&(live - len).to_le_bytes());
    let (root, _) = heap_root(image, ps);
    larch::testing::restamp(image, ps, root);
    let slot = newest_slot(image, ps);
    assert!(edit_meta(image, ps, slot, |m| {
        m.heap_live -= len;
        m.seal.clear();
    }));
    pages
}

/// Removes key "A" of table "t", then makes three commits of twenty values
/// of 1,100 bytes in table "u" (keys from `first`, big-endian), so that
/// freed pages are reused; returns the value of key `k` of "t" then.
pub fn reuse_then_read(db: &Database, first: u32, k: &[u8]) -> larch::Result<Option<Vec<u8>>> {
    let w = db.begin_write().unwrap();
    assert!(w.open_table("t").unwrap().remove(b"A").unwrap());
    w.commit().unwrap();
    for round in 0..3u32 {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("u").unwrap();
            for i in 0..20u32 {
                let key = (first + round * 100 + i).to_be_bytes();
                tab.insert(&key, &[round as u8; 1100]).unwrap();
            }
        }
        w.commit().unwrap();
    }
    let got = db
        .begin_read()?
        .open_table("t")?
        .get(k)?
        .map(<[u8]>::to_vec);
    eprintln!("read back: {:?}", got.as_ref().map(|v| v[..8].to_vec()));
    Ok(got)
}

/// The leaf cells of `image` whose value is packed: the offset of the
/// reference in the image (8 bytes of segment, 4 of offset), its leaf, the
/// value's length and the key.
pub fn packed_refs(image: &[u8], ps: usize) -> Vec<(usize, u64, usize, Vec<u8>)> {
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
