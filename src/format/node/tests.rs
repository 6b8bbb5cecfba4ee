//! Unit tests of the node layout, its reads and its writes.

use zerocopy::little_endian::U16;

use super::layout::{BRANCH_CELL_HEADER, FLAG_LONG_KEY, LEAF_CELL_HEADER};
use super::write::{header, init, set_slot, slot};
use super::*;
use crate::error::{Result, corrupted};

/// Long keys for the node's searches: the one stored at `at`, or none.
struct OneLong<'k>(&'k [u8]);

impl Keys for OneLong<'_> {
    fn long_key(&self, key: LongKey) -> Result<&[u8]> {
        if key.len != self.0.len() {
            return corrupted(key.at.page(), "no such long key");
        }
        Ok(self.0)
    }
}

const NONE: OneLong<'static> = OneLong(b"");

fn leaf_with(keys: &[&[u8]]) -> Vec<u8> {
    let mut page = vec![0u8; 512];
    init(&mut page, true, 1);
    let mut cell = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        leaf_cell_inline(&mut cell, k, b"v");
        assert!(insert_cell(&mut page, 9, i, &cell).unwrap());
    }
    page
}

#[test]
fn insert_search_remove() {
    let mut page = leaf_with(&[b"b", b"d", b"f"]);
    let n = Node::parse(&page, 9).unwrap();
    assert_eq!(n.search_leaf(b"d", &NONE).unwrap(), (1, true));
    assert_eq!(n.search_leaf(b"e", &NONE).unwrap(), (2, false));
    assert_eq!(n.search_leaf(b"a", &NONE).unwrap(), (0, false));
    assert_eq!(n.search_leaf(b"z", &NONE).unwrap(), (3, false));
    let used = n.used();
    remove_cell(&mut page, 9, 1).unwrap();
    let n = Node::parse(&page, 9).unwrap();
    assert_eq!(n.count(), 2);
    assert_eq!(n.key(0).unwrap(), NodeKey::Inline(b"b"));
    assert_eq!(n.key(1).unwrap(), NodeKey::Inline(b"f"));
    assert_eq!(n.entry(1).unwrap().1, LeafValue::Inline(b"v"));
    assert_eq!(n.used(), used - cell_cost(10));
}

#[test]
fn replace_overwrites_a_cell_of_the_same_length_only() {
    let mut page = leaf_with(&[b"b", b"d", b"f"]);
    let before = Node::parse(&page, 9).unwrap().used();
    let mut cell = Vec::new();
    leaf_cell_inline(&mut cell, b"d", b"w");
    replace_cell(&mut page, 9, 1, &cell).unwrap();
    let n = Node::parse(&page, 9).unwrap();
    assert_eq!(n.count(), 3);
    assert_eq!(n.used(), before);
    assert_eq!(n.entry(1).unwrap(), (&b"d"[..], LeafValue::Inline(b"w")));
    assert_eq!(n.entry(0).unwrap(), (&b"b"[..], LeafValue::Inline(b"v")));
    assert_eq!(n.entry(2).unwrap(), (&b"f"[..], LeafValue::Inline(b"v")));
    // Another length, or a cell past the end, changes nothing.
    let untouched = page.clone();
    leaf_cell_inline(&mut cell, b"d", b"ww");
    assert!(replace_cell(&mut page, 9, 1, &cell).is_err());
    leaf_cell_inline(&mut cell, b"d", b"w");
    assert!(replace_cell(&mut page, 9, 3, &cell).is_err());
    assert_eq!(page, untouched);
}

#[test]
fn insert_refuses_when_full() {
    let mut page = vec![0u8; 512];
    init(&mut page, true, 1);
    let mut cell = Vec::new();
    leaf_cell_inline(&mut cell, &[7u8; 100], &[1u8; 10]);
    let mut n = 0;
    while insert_cell(&mut page, 9, 0, &cell).unwrap() {
        n += 1;
    }
    assert_eq!(n, usable(512) / cell_cost(cell.len()));
    assert_eq!(Node::parse(&page, 9).unwrap().count(), n);
}

#[test]
fn branch_search_uses_separators() {
    let mut page = vec![0u8; 512];
    init(&mut page, false, 1);
    let mut cell = Vec::new();
    for (i, (child, key)) in [(10u64, &b""[..]), (11, b"m"), (12, b"t")]
        .into_iter()
        .enumerate()
    {
        branch_cell(&mut cell, child, key);
        assert!(insert_cell(&mut page, 9, i, &cell).unwrap());
    }
    let n = Node::parse(&page, 9).unwrap();
    assert_eq!(n.search_branch(b"a", &NONE).unwrap(), 0);
    assert_eq!(n.search_branch(b"m", &NONE).unwrap(), 1);
    assert_eq!(n.search_branch(b"s", &NONE).unwrap(), 1);
    assert_eq!(n.search_branch(b"zz", &NONE).unwrap(), 2);
    set_child(&mut page, 9, 2, 99).unwrap();
    assert_eq!(Node::parse(&page, 9).unwrap().child(2).unwrap(), 99);
}

#[test]
fn build_writes_what_rebuild_writes_on_a_zeroed_page() {
    let mut x = 7u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut cell = Vec::new();
    for round in 0..200 {
        let leaf = round % 2 == 0;
        let n = (next() % 12) as usize;
        let cells: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let key = vec![(next() % 256) as u8; (next() % 30) as usize];
                if leaf {
                    leaf_cell_inline(&mut cell, &key, &vec![i as u8; (next() % 20) as usize]);
                } else {
                    branch_cell(&mut cell, next() % 1000, &key);
                }
                cell.clone()
            })
            .collect();
        let iter = cells.iter().map(Vec::as_slice);
        let built = build(512, leaf, round, iter.clone()).unwrap();
        let mut page = vec![0u8; 512];
        rebuild(&mut page, 9, leaf, round, iter).unwrap();
        assert_eq!(&built[..], &page[..], "round {round}");
    }
    // Too much for one page: refused, as by rebuild.
    leaf_cell_inline(&mut cell, &[1; 100], &[2; 100]);
    let cells = [cell.as_slice(), cell.as_slice(), cell.as_slice()];
    assert!(build(512, true, 1, cells.iter().copied()).is_err());
}

#[test]
fn bad_offsets_are_corruption_not_panics() {
    let page = leaf_with(&[b"a", b"b"]);
    // A slot pointing past the page.
    let mut p = page.clone();
    set_slot(&mut p, 0, 511);
    let n = Node::parse(&p, 3).unwrap();
    assert!(matches!(
        n.key(0),
        Err(crate::Error::Corrupted { page: 3, .. })
    ));
    // A key length running past the page end.
    let mut p = page.clone();
    let off = slot(&p, 1);
    p[off + 2] = 0xff;
    p[off + 3] = 0xff;
    assert!(Node::parse(&p, 3).unwrap().key(1).is_err());
    // A count whose slots run into the cells.
    let mut p = page.clone();
    header(&mut p).page.count = U16::new(300);
    assert!(Node::parse(&p, 3).is_err());
    // Wrong kind.
    let mut p = page;
    p[0] = 9;
    assert!(Node::parse(&p, 3).is_err());
}

#[test]
fn limits_keep_cells_within_a_third() {
    for shift in 9..=16 {
        let ps = 1usize << shift;
        let k = max_inline_key(ps);
        let worst_leaf = cell_cost(LEAF_CELL_HEADER + k + 8).max(usable(ps) / 4);
        let worst_branch = cell_cost(BRANCH_CELL_HEADER + k);
        assert!(worst_leaf <= usable(ps) / 3, "page size {ps}");
        assert!(worst_branch <= usable(ps) / 3, "page size {ps}");
        assert!(value_inline(k, 8, ps));
        assert!(!value_inline(0, ps / 4, ps));
    }
}

#[test]
fn long_keys_keep_their_first_bytes_and_compare_whole() {
    let ps = 512;
    let p = long_prefix(ps);
    let mut key = vec![b'k'; 3000];
    key[2999] = b'5';
    let at = ValueRef::Packed { seg: 40, off: 24 };
    let mut cell = Vec::new();
    leaf_cell_long(&mut cell, &key, p, 7, at);
    assert_eq!(cell.len(), LEAF_CELL_HEADER + p + LONG_REF);
    let mut page = vec![0u8; ps];
    init(&mut page, true, 1);
    assert!(insert_cell(&mut page, 9, 0, &cell).unwrap());
    let n = Node::parse(&page, 9).unwrap();
    let long = LongKey {
        at,
        len: 3000,
        blob: 3007,
    };
    assert_eq!(
        n.key(0).unwrap(),
        NodeKey::Long {
            prefix: &key[..p],
            key: long
        }
    );
    assert_eq!(
        n.entry(0).unwrap(),
        (
            &key[..p],
            LeafValue::Spilled {
                at,
                len: 3007,
                key: 3000
            }
        )
    );
    assert_eq!(leaf_cell_value_ref(&cell), Some((at, 3007)));
    // The first bytes decide where they differ; the whole key only on a tie.
    let keys = OneLong(&key);
    assert_eq!(n.search_leaf(b"a", &NONE).unwrap(), (0, false));
    assert_eq!(n.search_leaf(b"z", &NONE).unwrap(), (1, false));
    assert_eq!(n.search_leaf(&key[..10], &NONE).unwrap(), (0, false));
    assert!(n.search_leaf(&key[..p + 1], &NONE).is_err());
    assert_eq!(n.search_leaf(&key[..p + 1], &keys).unwrap(), (0, false));
    assert_eq!(n.search_leaf(&key, &keys).unwrap(), (0, true));
    let mut after = key.clone();
    after[2999] = b'6';
    assert_eq!(n.search_leaf(&after, &keys).unwrap(), (1, false));
    after.truncate(2999);
    after.push(b'4');
    after.push(0);
    assert_eq!(n.search_leaf(&after, &keys).unwrap(), (0, false));

    // A branch's long separator, moved in a key part.
    let mut part = Vec::new();
    branch_key_long(&mut part, &key, p, ValueRef::Run(77));
    let mut bcell = Vec::new();
    branch_cell_from_part(&mut bcell, 5, &part);
    assert_eq!(branch_key_part(&bcell), &part[..]);
    let mut head = Vec::new();
    branch_cell(&mut head, 4, b"");
    let mut page = vec![0u8; ps];
    init(&mut page, false, 1);
    assert!(insert_cell(&mut page, 9, 0, &head).unwrap());
    assert!(insert_cell(&mut page, 9, 1, &bcell).unwrap());
    let n = Node::parse(&page, 9).unwrap();
    let sep = LongKey {
        at: ValueRef::Run(77),
        len: 3000,
        blob: 3000,
    };
    assert_eq!(branch_cell_long_key(&bcell), Some(sep));
    assert_eq!(n.search_branch(b"a", &NONE).unwrap(), 0);
    assert_eq!(n.search_branch(&key, &keys).unwrap(), 1);
    let mut targets = Vec::new();
    n.for_each_target(|t| {
        targets.push(t);
        Ok(())
    })
    .unwrap();
    assert_eq!(targets, [4, 5, 77]);
}

#[test]
fn a_long_key_no_longer_than_its_first_bytes_is_corrupted() {
    let ps = 512;
    let p = long_prefix(ps);
    let key = vec![b'k'; 300];
    let mut cell = Vec::new();
    leaf_cell_long(&mut cell, &key, p, 0, ValueRef::Run(40));
    // The reference's key length: as long as the first bytes held.
    let len_at = cell.len() - LONG_REF;
    cell[len_at..len_at + 4].copy_from_slice(&(p as u32).to_le_bytes());
    let mut page = vec![0u8; ps];
    init(&mut page, true, 1);
    assert!(insert_cell(&mut page, 9, 0, &cell).unwrap());
    let n = Node::parse(&page, 9).unwrap();
    assert!(n.key(0).is_err());
    assert!(n.entry(0).is_err());
    // A long key's flag beside a value's: no cell has both.
    cell[len_at..len_at + 4].copy_from_slice(&300u32.to_le_bytes());
    cell[0] = FLAG_LONG_KEY | 1;
    let mut page = vec![0u8; ps];
    init(&mut page, true, 1);
    assert!(insert_cell(&mut page, 9, 0, &cell).unwrap());
    assert!(Node::parse(&page, 9).unwrap().cell(0).is_err());
}
