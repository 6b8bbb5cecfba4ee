//! The tree against an in-memory page store: shape invariants after splits,
//! merges and redistribution.

use std::collections::{BTreeMap, HashMap};

use super::store::{PageStore, load_node};
use super::{Cursor, InsertHint, drop_tree, get, insert, remove};
use crate::error::{Result, corrupted};
use crate::format::meta::TableDesc;
use crate::format::node::{self, Keys, LongKey, ValueRef, usable};
use crate::format::page::{OVERFLOW_DATA, PageId, init_overflow, overflow_pages, overflow_run};
use crate::view::PageSource;

/// Pages in a hash map; every page is always writable.
struct Mem {
    page_size: usize,
    pages: HashMap<PageId, Vec<u8>>,
    next: PageId,
    freed: usize,
}

impl Mem {
    fn new(page_size: usize) -> Mem {
        Mem {
            page_size,
            pages: HashMap::new(),
            next: 2,
            freed: 0,
        }
    }

    fn alloc(&mut self, len: usize) -> PageId {
        let id = self.next;
        self.next += len.div_ceil(self.page_size) as u64;
        self.pages.insert(id, vec![0; len]);
        id
    }
}

impl<'a> PageSource<'a> for &'a Mem {
    fn page(&self, id: PageId) -> Result<&'a [u8]> {
        match self.pages.get(&id) {
            Some(p) => Ok(&p[..self.page_size]),
            None => corrupted(id, "no such page"),
        }
    }

    fn overflow_value(&self, id: PageId, len: usize) -> Result<&'a [u8]> {
        let p = &self.pages[&id];
        Ok(&p[OVERFLOW_DATA..OVERFLOW_DATA + len])
    }

    fn packed_value(&self, seg: PageId, _: u32, _: usize) -> Result<&'a [u8]> {
        corrupted(seg, "the in-memory store packs no value")
    }

    fn run_bytes(&self, id: PageId, n: u64) -> Result<&'a [u8]> {
        match self.pages.get(&id) {
            Some(p) if p.len() == n as usize * self.page_size => Ok(p),
            _ => corrupted(id, "no such run"),
        }
    }
}

impl Keys for Mem {
    fn long_key(&self, key: LongKey) -> Result<&[u8]> {
        (&self).long_key_of(key)
    }
}

impl Keys for &Mem {
    fn long_key(&self, key: LongKey) -> Result<&[u8]> {
        self.long_key_of(key)
    }
}

impl PageStore for Mem {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn txn_id(&self) -> u64 {
        1
    }

    fn page(&self, id: PageId) -> Result<&[u8]> {
        <&Mem as PageSource>::page(&self, id)
    }

    fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        let ps = self.page_size;
        Ok(&mut self.pages.get_mut(&id).expect("page exists")[..ps])
    }

    fn cow(&mut self, id: PageId) -> Result<PageId> {
        Ok(id)
    }

    fn alloc_node(&mut self, page: Box<[u8]>) -> Result<PageId> {
        assert_eq!(page.len(), self.page_size);
        let id = self.alloc(self.page_size);
        self.page_mut(id)?.copy_from_slice(&page);
        Ok(id)
    }

    fn alloc_value(&mut self, value: &[u8]) -> Result<ValueRef> {
        let n = overflow_pages(value.len(), self.page_size);
        let id = self.alloc(n as usize * self.page_size);
        let buf = self.pages.get_mut(&id).expect("just allocated");
        init_overflow(buf, n as u32, 1);
        buf[OVERFLOW_DATA..OVERFLOW_DATA + value.len()].copy_from_slice(value);
        Ok(ValueRef::Run(id))
    }

    fn free(&mut self, id: PageId, pages: u64) -> Result<()> {
        let buf = self.pages.remove(&id).expect("freed page exists");
        assert!(buf.len() as u64 >= pages * self.page_size as u64 || pages == 1);
        self.freed += pages as usize;
        Ok(())
    }
}

/// Walks the tree and checks: uniform depth, every non-root node non-empty and
/// (with `min_fill`) at least an eighth full, keys sorted. Returns the number
/// of nodes.
fn shape(mem: &Mem, desc: &TableDesc, min_fill: bool) -> usize {
    if desc.root == 0 {
        assert_eq!(desc.depth, 0);
        return 0;
    }
    let min_used = usable(mem.page_size) / 8;
    let mut nodes = 0;
    let mut stack = vec![(desc.root, 0usize)];
    while let Some((id, level)) = stack.pop() {
        let n = load_node(PageStore::page(mem, id).unwrap(), id, level, desc.depth).unwrap();
        nodes += 1;
        assert!(n.count() > 0);
        if level > 0 && min_fill {
            assert!(
                n.used() >= min_used,
                "node {id} at level {level} holds {} bytes",
                n.used()
            );
        } else if !n.is_leaf() {
            assert!(n.count() >= 2, "root branch with one child");
        }
        if !n.is_leaf() {
            for i in 0..n.count() {
                stack.push((n.child(i).unwrap(), level + 1));
            }
        }
    }
    let mut c = Cursor::new(mem, *desc);
    let mut last: Option<Vec<u8>> = None;
    let mut count = 0;
    while let Some((k, _)) = c.next().unwrap() {
        assert!(last.as_deref().is_none_or(|l| l < k));
        last = Some(k.to_vec());
        count += 1;
    }
    assert_eq!(count, desc.entries);
    nodes
}

fn key(i: u32) -> Vec<u8> {
    format!("{:08}", i.wrapping_mul(2_654_435_761) % 100_000_000).into_bytes()
}

#[test]
fn splits_merges_and_shrinks() {
    let mut mem = Mem::new(512);
    let mut desc = TableDesc::default();
    let mut model = BTreeMap::new();
    let mut hint = InsertHint::default();
    for i in 0..5000u32 {
        let v = vec![i as u8; (i % 40) as usize];
        assert!(!insert(&mut mem, &mut desc, &mut hint, &key(i), &v).unwrap());
        model.insert(key(i), v);
    }
    assert!(desc.depth >= 3, "depth {}", desc.depth);
    shape(&mem, &desc, true);
    let full_depth = desc.depth;

    // Delete 95% in a scattered order, checking the shape as it goes.
    for i in 0..4750u32 {
        let k = key((i * 7919) % 5000);
        assert!(remove(&mut mem, &mut desc, &k).unwrap());
        model.remove(&k);
        if i % 500 == 0 {
            shape(&mem, &desc, true);
        }
    }
    let nodes = shape(&mem, &desc, true);
    assert!(desc.depth < full_depth, "tree did not get shorter");
    // With every node an eighth full, 250 entries need few nodes.
    let bytes: usize = model
        .iter()
        .map(|(k, v)| node::cell_cost(8 + k.len() + v.len()))
        .sum();
    assert!(
        nodes <= 2 + bytes / (usable(512) / 8),
        "{nodes} nodes for {bytes} bytes"
    );
    for (k, v) in &model {
        assert_eq!(get(&mem, &desc, k).unwrap(), Some(v.as_slice()));
    }

    for k in model.keys() {
        assert!(remove(&mut mem, &mut desc, k).unwrap());
    }
    assert_eq!(desc, TableDesc::default());
    assert!(mem.pages.is_empty(), "{} pages left", mem.pages.len());
}

#[test]
fn sorted_appends_fill_leaves() {
    let mut mem = Mem::new(4096);
    let mut desc = TableDesc::default();
    let mut hint = InsertHint::default();
    for i in 0..20_000u32 {
        insert(&mut mem, &mut desc, &mut hint, &i.to_be_bytes(), &[7u8; 20]).unwrap();
    }
    // The last leaf of a sorted load holds what is left: no fill bound.
    let nodes = shape(&mem, &desc, false);
    // Each cell costs 2 + 8 + 4 + 20 = 34 bytes: 119 fit in 4072 bytes.
    let leaves_needed = 20_000usize.div_ceil(usable(4096) / 34);
    assert!(
        nodes <= leaves_needed + 3,
        "{nodes} nodes, {leaves_needed} leaves needed"
    );
}

/// Inserts through one hint in orders that keep it valid for a while and then
/// leave its leaf: ascending, descending, runs inside gaps, and random; with
/// replacements that grow values until leaves split.
#[test]
fn the_insert_hint_never_misplaces_a_key() {
    let orders: [fn(u32) -> u32; 4] = [
        |i| i,
        |i| 100_000 - i,
        |i| (i % 7) * 10_000 + i / 7,
        |i| i.wrapping_mul(2_654_435_761) % 60_000,
    ];
    for order in orders {
        let mut mem = Mem::new(512);
        let mut desc = TableDesc::default();
        let mut hint = InsertHint::default();
        let mut model = BTreeMap::new();
        for i in 0..6000u32 {
            let k = order(i).to_be_bytes().to_vec();
            let v = vec![i as u8; (i % 13) as usize * 3];
            let replaced = insert(&mut mem, &mut desc, &mut hint, &k, &v).unwrap();
            assert_eq!(replaced, model.insert(k, v).is_some());
        }
        // Replace every fifth key with a longer value, in key order.
        for (k, v) in model.iter_mut().step_by(5) {
            v.resize(v.len() + 25, 1);
            assert!(insert(&mut mem, &mut desc, &mut hint, k, v).unwrap());
        }
        shape(&mem, &desc, false);
        let mut c = Cursor::new(&mem, desc);
        for (k, v) in &model {
            let (gk, gv) = c.next().unwrap().expect("an entry per model key");
            assert_eq!((gk, gv), (k.as_slice(), v.as_slice()));
        }
        assert!(c.next().unwrap().is_none());
    }
}

#[test]
fn overflow_values_are_freed_with_their_runs() {
    let mut mem = Mem::new(512);
    let mut desc = TableDesc::default();
    let hint = &mut InsertHint::default();
    insert(&mut mem, &mut desc, hint, b"a", &[1u8; 5000]).unwrap();
    insert(&mut mem, &mut desc, hint, b"b", &[2u8; 100]).unwrap();
    let run_pages = overflow_pages(5000, 512) as usize;
    assert_eq!(get(&mem, &desc, b"a").unwrap().unwrap(), &[1u8; 5000][..]);
    let id = mem.pages.keys().copied().min().unwrap();
    assert_eq!(
        overflow_run(&mem.pages[&id], id).unwrap() as usize,
        run_pages
    );
    // Replacing the value frees its run.
    insert(
        &mut mem,
        &mut desc,
        &mut InsertHint::default(),
        b"a",
        b"small",
    )
    .unwrap();
    assert_eq!(mem.freed, run_pages);
    let before = mem.freed;
    drop_tree(&mut mem, &mut desc).unwrap();
    assert!(mem.pages.is_empty());
    assert!(mem.freed > before);
}

#[test]
fn values_of_the_same_size_replace_each_other_in_place() {
    let mut mem = Mem::new(512);
    let mut desc = TableDesc::default();
    let hint = &mut InsertHint::default();
    let n = 300u32;
    for i in 0..n {
        insert(&mut mem, &mut desc, hint, &key(i), &[0u8; 20]).unwrap();
    }
    insert(&mut mem, &mut desc, hint, b"big", &[0u8; 2000]).unwrap();
    let nodes = shape(&mem, &desc, true);
    let run_pages = overflow_pages(2000, 512) as usize;
    // Every value rewritten with another of its size, in another order than
    // it was loaded: the tree keeps its shape and every value is the new one.
    for round in 1..=3u8 {
        for i in (0..n).rev() {
            let replaced = insert(&mut mem, &mut desc, hint, &key(i), &[round; 20]).unwrap();
            assert!(replaced);
        }
        let freed = mem.freed;
        assert!(insert(&mut mem, &mut desc, hint, b"big", &[round; 2000]).unwrap());
        // The old run is freed, the new one holds the value.
        assert_eq!(mem.freed, freed + run_pages);
        assert_eq!(
            get(&mem, &desc, b"big").unwrap().unwrap(),
            &[round; 2000][..]
        );
        for i in 0..n {
            assert_eq!(
                get(&mem, &desc, &key(i)).unwrap().unwrap(),
                &[round; 20][..]
            );
        }
        assert_eq!(desc.entries, u64::from(n) + 1);
        assert_eq!(shape(&mem, &desc, true), nodes);
    }
}

#[test]
fn a_cycle_is_an_error_not_a_hang() {
    let mut mem = Mem::new(512);
    let mut desc = TableDesc::default();
    for i in 0..400u32 {
        insert(
            &mut mem,
            &mut desc,
            &mut InsertHint::default(),
            &key(i),
            b"v",
        )
        .unwrap();
    }
    assert!(desc.depth >= 2);
    // Point the root's first child back at the root.
    let root = desc.root;
    node::set_child(mem.page_mut(root).unwrap(), root, 0, root).unwrap();
    let err = get(&mem, &desc, b"").unwrap_err();
    assert!(matches!(err, crate::Error::Corrupted { .. }));
    let mut c = Cursor::new(&mem, desc);
    assert!(c.first().is_err());
    assert!(drop_tree(&mut mem, &mut desc).is_err());
}
