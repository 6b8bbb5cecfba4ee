//! The free list's pages in a file image, read and edited byte by byte,
//! independently of the library (DESIGN.md, "Free-list pages"): a
//! directory chain (kind 6) of leaf ids, or a lone leaf (kind 4) the meta
//! names itself.

use std::path::Path;

use larch::Database;

/// Page kind of a free-list leaf.
pub const LEAF: u8 = 4;
/// Page kind of a free-list directory page.
pub const DIR: u8 = 6;

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

pub fn set_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A page header's `count`.
pub fn count(b: &[u8]) -> usize {
    usize::from(u16::from_le_bytes([b[2], b[3]]))
}

pub fn set_count(b: &mut [u8], n: u16) {
    b[2..4].copy_from_slice(&n.to_le_bytes());
}

pub fn page(image: &[u8], ps: usize, id: u64) -> &[u8] {
    &image[id as usize * ps..(id as usize + 1) * ps]
}

pub fn page_mut(image: &mut [u8], ps: usize, id: u64) -> &mut [u8] {
    &mut image[id as usize * ps..(id as usize + 1) * ps]
}

/// The directory pages and the leaves of the list whose head is `head`.
pub fn list_pages(image: &[u8], ps: usize, head: u64) -> (Vec<u64>, Vec<u64>) {
    let mut dir = Vec::new();
    let mut leaves = Vec::new();
    let mut id = head;
    while id != 0 {
        let p = page(image, ps, id);
        if p[0] == LEAF && dir.is_empty() {
            return (dir, vec![id]);
        }
        assert_eq!(p[0], DIR, "page {id} is not a directory page");
        dir.push(id);
        for i in 0..count(p) {
            leaves.push(u64_at(p, 24 + 8 * i));
        }
        id = u64_at(p, 16);
    }
    (dir, leaves)
}

/// Pages of the file at `path` whose header names transaction `txn` as
/// their writer: the pages that commit wrote (a page freed earlier keeps
/// the id of an older writer).
pub fn written_by(path: &Path, ps: usize, txn: u64) -> usize {
    let image = std::fs::read(path).unwrap();
    image
        .chunks_exact(ps)
        .skip(2)
        .filter(|p| u64_at(p, 8) == txn)
        .count()
}

/// `check_report` finds no problem and no leaked page.
pub fn full_check(db: &Database, what: &str) {
    let r = db.check_report().unwrap();
    assert!(
        r.errors.is_empty() && r.leaked_pages == 0,
        "{what}: {} errors ({:?}), {} leaked",
        r.errors.len(),
        r.errors.iter().take(3).collect::<Vec<_>>(),
        r.leaked_pages
    );
}

/// Of the pages transaction `txn` wrote, those of the free list.
pub fn list_pages_written(path: &Path, ps: usize, txn: u64) -> usize {
    let image = std::fs::read(path).unwrap();
    image
        .chunks_exact(ps)
        .skip(2)
        .filter(|p| u64_at(p, 8) == txn && (p[0] == LEAF || p[0] == DIR))
        .count()
}

/// The key of number `i`: spread over the key space, so that consecutive
/// numbers land in different leaves.
pub fn spread_key(i: u64) -> [u8; 8] {
    i.wrapping_mul(7919).to_be_bytes()
}

/// Inserts keys `0..n` (`spread_key`) with `value` into table "t", in one
/// commit.
pub fn fill(db: &Database, n: u64, value: &[u8]) {
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..n {
            tab.insert(&spread_key(i), value).unwrap();
        }
    }
    w.commit().unwrap();
}

/// Removes from table "t" every key of `0..n` that `keep` does not keep,
/// in one commit: the pages they held go to the free list.
pub fn thin(db: &Database, n: u64, keep: impl Fn(u64) -> bool) {
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in (0..n).filter(|&i| !keep(i)) {
            tab.remove(&spread_key(i)).unwrap();
        }
    }
    w.commit().unwrap();
}

/// Writes `image` as `name` in `dir`, opens it (pages of `ps` bytes) and
/// goes through every path that reads the free list: the checker, stat,
/// the readers' figures, a write transaction and its commit. Returns what
/// each gave (the open's error alone if it failed): a crafted list must
/// give `Corrupted`, never a panic or a hang.
pub fn crafted_outcome(dir: &Path, name: &str, image: &[u8], ps: usize) -> Vec<larch::Result<()>> {
    let path = dir.join(format!("{name}.larch"));
    std::fs::write(&path, image).unwrap();
    let _ = std::fs::remove_file(dir.join(format!("{name}.larch-lock")));
    // SAFETY: the test owns the file.
    let db = match unsafe {
        larch::Options::new()
            .page_size(ps as u32)
            .map_size(1 << 30)
            .open(&path)
    } {
        Ok(db) => db,
        Err(e) => return vec![Err(e)],
    };
    vec![
        db.check().map(|_| ()),
        db.stat().map(|_| ()),
        db.readers().map(|_| ()),
        (|| {
            let w = db.begin_write()?;
            w.open_table("t")?.insert(b"crafted", b"v")?;
            w.commit()
        })(),
    ]
}

/// `image` crafted one way (its pages `2..hw` restamped, so that only the
/// craft is wrong) goes through [`crafted_outcome`]: `None` when every path
/// refuses it as `Corrupted`, else what happened instead (a panic
/// included).
pub fn not_refused(
    dir: &Path,
    name: &str,
    mut image: Vec<u8>,
    ps: usize,
    hw: u64,
) -> Option<String> {
    for id in 2..hw {
        if (id as usize + 1) * ps <= image.len() {
            larch::testing::restamp(&mut image, ps, id);
        }
    }
    let file = name.replace([' ', ','], "_");
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crafted_outcome(dir, &file, &image, ps)
    }));
    match got {
        Err(_) => Some(format!("{name}: panicked")),
        Ok(got)
            if got
                .iter()
                .all(|r| matches!(r, Err(larch::Error::Corrupted { .. }))) =>
        {
            None
        }
        Ok(got) => Some(format!("{name}: {got:?}")),
    }
}

/// The newest valid meta of an image, as [`newest_meta`] finds it.
pub struct Newest {
    pub slot: usize,
    pub txn_id: u64,
    pub high_water: u64,
    /// Its free list's head (a directory page, a lone leaf, or 0).
    pub head: u64,
    /// Its free list's entry count.
    pub entries: u64,
}

/// The newest valid meta of `image` (pages of `ps` bytes).
pub fn newest_meta(image: &mut [u8], ps: usize) -> Newest {
    let mut best: Option<Newest> = None;
    for slot in 0..2 {
        let mut got = None;
        larch::testing::edit_meta(image, ps, slot, |m| {
            got = Some(Newest {
                slot,
                txn_id: m.txn_id,
                high_water: m.high_water,
                head: m.freelist_head,
                entries: m.freelist_entries,
            })
        });
        if let Some(n) = got
            && best.as_ref().is_none_or(|b| n.txn_id >= b.txn_id)
        {
            best = Some(n);
        }
    }
    best.expect("a valid meta")
}

/// Zeroes the meta slot other than `slot`, so that open can take only the
/// commit in `slot`.
pub fn forget_other_slot(image: &mut [u8], ps: usize, slot: usize) {
    let other = 1 - slot;
    image[other * ps..(other + 1) * ps].fill(0);
}
