//! The integrity checker's own test (docs/reliability.md, suite 2): damage a
//! valid image in one way at a time and require `check` to notice.

use std::fmt;
use std::path::Path;

use crate::format::meta::{Meta, TableDesc};
use crate::format::node::{LeafValue, Node, ValueRef};
use crate::format::page::{PageId, stamp_checksum};
use crate::view::{PageSource, SliceView};
use crate::{Database, Options};

const PS: usize = 512;

/// One way of damaging a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Two branch cells point at the same child.
    DoubleReference,
    /// A page is neither reachable nor free.
    LeakedPage,
    /// A branch points back at the root.
    Cycle,
    /// Keys inside a leaf out of order.
    UnsortedKeys,
    /// A reachable page is listed free.
    FreeAlsoReachable,
    /// An overflow value longer than its run.
    BadOverflowLength,
    /// A table's entry count differs from its entries.
    CountMismatch,
    /// A packed value's offset points past the end of its segment.
    PackedOutsideSegment,
    /// Two cells point at the same bytes of a segment.
    PackedOverlap,
    /// The heap's tree counts one value more in a segment than the cells
    /// that point at it.
    SegmentCountMismatch,
    /// A byte of a tree page changed without its checksum (every other class
    /// re-stamps the checksums of the pages it edits, so that the structural
    /// checks are what must notice).
    StaleChecksum,
}

/// Every class.
pub const CLASSES: [Class; 11] = [
    Class::DoubleReference,
    Class::LeakedPage,
    Class::Cycle,
    Class::UnsortedKeys,
    Class::FreeAlsoReachable,
    Class::BadOverflowLength,
    Class::CountMismatch,
    Class::PackedOutsideSegment,
    Class::PackedOverlap,
    Class::SegmentCountMismatch,
    Class::StaleChecksum,
];

/// What the run measured.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Classes injected.
    pub classes_injected: u64,
    /// Classes `check` (or open) reported.
    pub classes_detected: u64,
    /// How each detected class was reported.
    pub reasons: Vec<String>,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RELIABILITY suite=checker classes_injected={} classes_detected={}",
            self.classes_injected, self.classes_detected
        )
    }
}

fn open(path: &Path) -> crate::Result<Database> {
    Options::new()
        .page_size(PS as u32)
        .map_size(1 << 28)
        .open_scratch(path)
}

/// A database with a deep table, overflow values and a non-empty free list.
fn build(path: &Path) -> crate::Result<()> {
    let db = open(path)?;
    let w = db.begin_write()?;
    {
        let mut t = w.open_table("t")?;
        for i in 0..2000u32 {
            // Inline, packed into segments, and runs of their own.
            let v = match i % 50 {
                0 | 10 | 20 | 30 => vec![i as u8; 1500],
                25 => vec![i as u8; 20_000],
                _ => vec![i as u8; 20],
            };
            t.insert(format!("key{i:05}").as_bytes(), &v)?;
        }
    }
    w.commit()?;
    let w = db.begin_write()?;
    {
        let mut t = w.open_table("t")?;
        for i in (0..2000u32).step_by(3) {
            t.remove(format!("key{i:05}").as_bytes())?;
        }
    }
    w.commit()?;
    db.check()?;
    Ok(())
}

/// The newest valid meta of an image.
fn newest(image: &[u8]) -> Meta {
    (0..2)
        .filter_map(|slot| {
            Meta::decode(&image[slot * PS..(slot + 1) * PS], image.len() as u64).ok()
        })
        .max_by_key(|m| m.txn_id)
        .expect("the base image has a valid meta")
}

fn write_meta(image: &mut [u8], meta: &Meta) {
    let slot = (meta.txn_id % 2) as usize;
    let bytes = meta.encode();
    image[slot * PS..slot * PS + bytes.len()].copy_from_slice(&bytes);
}

/// Re-stamps the checksum of page `id` after an edit.
fn restamp(image: &mut [u8], id: PageId) {
    let at = id as usize * PS;
    stamp_checksum(&mut image[at..at + PS]);
}

fn view<'a>(image: &'a [u8], meta: &Meta) -> SliceView<'a> {
    SliceView::new(image, PS, meta.high_water, meta.txn_id)
}

fn node<'a>(image: &'a [u8], meta: &Meta, id: PageId) -> Node<'a> {
    Node::parse(view(image, meta).page(id).expect("page"), id).expect("node")
}

/// The table's descriptor and the offset of its bytes in the image.
fn table(image: &[u8], meta: &Meta) -> (TableDesc, usize) {
    let leaf = node(image, meta, meta.catalog.root);
    let (_, value) = leaf.entry(0).expect("catalog entry");
    let LeafValue::Inline(bytes) = value else {
        panic!("descriptor inline")
    };
    let offset = bytes.as_ptr() as usize - image.as_ptr() as usize;
    (TableDesc::decode(bytes).expect("descriptor"), offset)
}

/// Byte offset of cell `i` of page `id`.
fn cell_offset(image: &[u8], meta: &Meta, id: PageId, i: usize) -> usize {
    let cell = node(image, meta, id).cell(i).expect("cell");
    cell.as_ptr() as usize - image.as_ptr() as usize
}

/// Every leaf cell of the tree at `root` whose value is packed: its leaf,
/// the offset of its reference in the image, its segment and offset.
fn packed_cells(image: &[u8], meta: &Meta, root: PageId) -> Vec<(PageId, usize, PageId, u32)> {
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        let n = node(image, meta, id);
        for i in 0..n.count() {
            if !n.is_leaf() {
                stack.push(n.child(i).expect("child"));
                continue;
            }
            if let (
                key,
                LeafValue::Spilled {
                    at: ValueRef::Packed { seg, off },
                    key: 0,
                    ..
                },
            ) = n.entry(i).expect("entry")
            {
                let ref_at = cell_offset(image, meta, id, i) + 8 + key.len();
                found.push((id, ref_at, seg, off));
            }
        }
    }
    assert!(!found.is_empty(), "no packed value in the base image");
    found
}

/// Damages `image` in the way of `class`.
fn inject(image: &mut Vec<u8>, class: Class) {
    // The newest commit becomes one whose pages were synced before its meta:
    // otherwise damage to its pages reads as a torn commit, and open falls
    // back to the older meta instead of reporting it.
    let meta = newest(image);
    write_meta(image, &meta);
    let (desc, desc_at) = table(image, &meta);
    let root = desc.root;
    match class {
        Class::DoubleReference => {
            // Cell 1's child := cell 2's child.
            let child2 = node(image, &meta, root).child(2).expect("child");
            let at = cell_offset(image, &meta, root, 1);
            image[at..at + 8].copy_from_slice(&child2.to_le_bytes());
            restamp(image, root);
        }
        Class::LeakedPage => {
            let mut m = meta;
            m.high_water += 1;
            if image.len() < m.high_water as usize * PS {
                image.resize(m.high_water as usize * PS, 0);
            }
            write_meta(image, &m);
        }
        Class::Cycle => {
            let at = cell_offset(image, &meta, root, 0);
            image[at..at + 8].copy_from_slice(&root.to_le_bytes());
            restamp(image, root);
        }
        Class::UnsortedKeys => {
            // Find the leftmost leaf and make its last key smaller than its first.
            let mut id = root;
            let leaf = loop {
                let n = node(image, &meta, id);
                if n.is_leaf() {
                    break n;
                }
                id = n.child(0).expect("child");
            };
            let last = leaf.count() - 1;
            let at = cell_offset(image, &meta, id, last) + 8;
            image[at..at + 3].copy_from_slice(b"aaa");
            restamp(image, id);
        }
        Class::FreeAlsoReachable => {
            // Replace a free-list entry's page (after `freed_by` and
            // `written_by`) with the table's root: the one just below it in
            // page order (or else just above), so that the entries stay in
            // order and only the double claim is wrong.
            let head = meta.freelist_head as usize;
            assert!(head != 0 && meta.freelist_entries > 0);
            let u64_at = |image: &[u8], at: usize| {
                u64::from_le_bytes(image[at..at + 8].try_into().expect("8 bytes"))
            };
            let count = |image: &[u8], page: usize| {
                usize::from(u16::from_le_bytes([
                    image[page * PS + 2],
                    image[page * PS + 3],
                ]))
            };
            // The meta names a lone leaf itself, else a directory.
            let leaves: Vec<usize> = if image[head * PS] == 4 {
                vec![head]
            } else {
                (0..count(image, head))
                    .map(|l| u64_at(image, head * PS + 24 + 8 * l) as usize)
                    .collect()
            };
            let mut slots = Vec::new();
            for leaf in leaves {
                for i in 0..count(image, leaf) {
                    let at = leaf * PS + 24 + 24 * i + 16;
                    slots.push((u64_at(image, at), at, leaf));
                }
            }
            let below = slots.iter().rfind(|s| s.0 < root);
            let &(_, at, leaf) = below
                .or(slots.iter().find(|s| s.0 > root))
                .expect("an entry");
            image[at..at + 8].copy_from_slice(&root.to_le_bytes());
            restamp(image, leaf as PageId);
        }
        Class::BadOverflowLength => {
            // The first overflow value claims to be far longer than its run.
            let mut stack = vec![root];
            while let Some(id) = stack.pop() {
                let n = node(image, &meta, id);
                for i in 0..n.count() {
                    if !n.is_leaf() {
                        stack.push(n.child(i).expect("child"));
                        continue;
                    }
                    if let (
                        _,
                        LeafValue::Spilled {
                            at: ValueRef::Run(_),
                            ..
                        },
                    ) = n.entry(i).expect("entry")
                    {
                        let at = cell_offset(image, &meta, id, i) + 4;
                        image[at..at + 4].copy_from_slice(&100_000u32.to_le_bytes());
                        restamp(image, id);
                        return;
                    }
                }
            }
            panic!("no overflow value in the base image");
        }
        Class::PackedOutsideSegment => {
            let (leaf, ref_at, _, _) = packed_cells(image, &meta, root)[0];
            image[ref_at + 8..ref_at + 12].copy_from_slice(&60_000u32.to_le_bytes());
            restamp(image, leaf);
        }
        Class::PackedOverlap => {
            // The second value of a segment made to point at the first's
            // bytes (values of one length: the counts still agree).
            let cells = packed_cells(image, &meta, root);
            let (_, from, seg, _) = cells[0];
            let (leaf, to, _, _) = *cells[1..]
                .iter()
                .find(|c| c.2 == seg)
                .expect("two values in one segment");
            image.copy_within(from..from + 12, to);
            restamp(image, leaf);
        }
        Class::SegmentCountMismatch => {
            let heap = meta.heap.tree.root;
            assert!(meta.heap.tree.depth == 1, "a one-leaf heap tree");
            let at = cell_offset(image, &meta, heap, 0) + 8 + 8;
            let values = u32::from_le_bytes(image[at + 4..at + 8].try_into().expect("4 bytes"));
            image[at + 4..at + 8].copy_from_slice(&(values + 1).to_le_bytes());
            restamp(image, heap);
        }
        Class::CountMismatch => {
            let mut d = desc;
            d.entries += 1;
            image[desc_at..desc_at + d.encode().len()].copy_from_slice(&d.encode());
            restamp(image, meta.catalog.root);
        }
        Class::StaleChecksum => {
            // One byte of the root's first child.
            let child = node(image, &meta, root).child(0).expect("child");
            let at = cell_offset(image, &meta, child, 1) - 1;
            image[at] ^= 0x20;
        }
    }
}

/// A valid image (page size 512) with `class` of damage injected.
pub fn damaged_image(class: Class) -> Vec<u8> {
    // A directory per call: tests in one process build images at once.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "larch-damaged-{}-{class:?}-{call}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = dir.join("base.larch");
    let _ = std::fs::remove_file(&path);
    build(&path).expect("build the base image");
    let mut image = std::fs::read(&path).expect("read the base image");
    let _ = std::fs::remove_dir_all(&dir);
    inject(&mut image, class);
    image
}

/// A valid image (page size 512) of two tables, "a" and "b", then damaged:
/// "b"'s descriptor is made a copy of "a"'s, so every page of "a"'s tree
/// belongs to both tables. The newest meta is marked pages-synced, as in
/// [`damaged_image`], so that open uses it.
pub fn shared_tree_image() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("larch-shared-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = dir.join("base.larch");
    let _ = std::fs::remove_file(&path);
    let built = (|| -> crate::Result<()> {
        let db = open(&path)?;
        let w = db.begin_write()?;
        for name in ["a", "b"] {
            let mut t = w.open_table(name)?;
            for i in 0..300u32 {
                t.insert(format!("{name}{i:05}").as_bytes(), &[i as u8; 30])?;
            }
        }
        w.commit()
    })();
    built.expect("build the base image");
    let mut image = std::fs::read(&path).expect("read the base image");
    let _ = std::fs::remove_dir_all(&dir);
    let meta = newest(&image);
    write_meta(&mut image, &meta);
    let catalog = meta.catalog.root;
    let leaf = node(&image, &meta, catalog);
    let desc = |i: usize| {
        let (_, value) = leaf.entry(i).expect("catalog entry");
        let LeafValue::Inline(bytes) = value else {
            panic!("descriptor inline")
        };
        bytes.as_ptr() as usize - image.as_ptr() as usize
    };
    let (a, b) = (desc(0), desc(1));
    let len = TableDesc::default().encode().len();
    image.copy_within(a..a + len, b);
    restamp(&mut image, catalog);
    image
}

/// Injects every class into a fresh copy of a valid image; returns the figures
/// and the classes that went unnoticed.
pub fn run() -> (Figures, Vec<Class>) {
    let dir = std::env::temp_dir().join(format!("larch-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let base_path = dir.join("base.larch");
    let _ = std::fs::remove_file(&base_path);
    build(&base_path).expect("build the base image");
    let base = std::fs::read(&base_path).expect("read the base image");
    let mut figures = Figures::default();
    let mut missed = Vec::new();
    for class in CLASSES {
        let mut image = base.clone();
        inject(&mut image, class);
        figures.classes_injected += 1;
        let path = dir.join("damaged.larch");
        std::fs::write(&path, &image).expect("write the damaged image");
        assert!(image != base, "{class:?} changed nothing");
        let found = match open(&path) {
            Err(e) => Some(format!("open: {e}")),
            Ok(db) => db.check().err().map(|e| format!("check: {e}")),
        };
        if let Some(how) = found {
            figures.reasons.push(format!("{class:?}: {how}"));
            figures.classes_detected += 1;
        } else {
            missed.push(class);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (figures, missed)
}
