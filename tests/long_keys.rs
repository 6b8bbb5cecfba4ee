//! Long keys: a key longer than a quarter page (the longest kept whole in a
//! node) and at most 64 KiB keeps a prefix in its node and its bytes out of
//! line, beside its value. Every length round-trips at every page size,
//! longer keys are refused, order holds across long shared prefixes, reads
//! stay zero-copy under old snapshots, and every out-of-line byte (a key's,
//! a separator's copy) comes back when its key or table goes.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use common::heap_image::assert_clean;
use common::{Rng, TestDb, seeded_bytes, show_key, shuffle};
use larch::{Database, Entry, Error, Result, Table};

/// The longest key larch accepts, at every page size.
const MAX_KEY: usize = 65_536;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// The longest key a node keeps whole at `ps`-byte pages.
fn inline_limit(ps: u32) -> usize {
    ps as usize / 4
}

/// `prefix` followed by the big-endian `i`.
fn counted(prefix: &[u8], i: u32) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// Asserts that `got` yields exactly the entries of `want`, in order,
/// without copying them out of the map.
fn assert_entries<'g, 'w>(
    got: impl Iterator<Item = Result<Entry<'g>>>,
    want: impl Iterator<Item = (&'w Vec<u8>, &'w Vec<u8>)>,
    what: &str,
) {
    let (mut got, mut want) = (got, want);
    for n in 0.. {
        match (got.next(), want.next()) {
            (None, None) => return,
            (Some(g), w) => {
                let (k, v) = g.unwrap_or_else(|e| panic!("{what}: entry {n}: {e}"));
                let Some((wk, wv)) = w else {
                    panic!("{what}: entry {n}: an extra key of {}", show_key(k));
                };
                assert!(
                    k == &wk[..],
                    "{what}: entry {n}: a key of {} where one of {} was due",
                    show_key(k),
                    show_key(wk)
                );
                assert!(
                    v == &wv[..],
                    "{what}: entry {n}: key of {}: a value of {} bytes, {} due",
                    show_key(k),
                    v.len(),
                    wv.len()
                );
            }
            (None, Some((wk, _))) => {
                panic!("{what}: entry {n}: ended where {} was due", show_key(wk))
            }
        }
    }
}

/// Asserts that a cursor move found `want` (or nothing).
fn assert_at(got: Result<Option<Entry<'_>>>, want: Option<(&Vec<u8>, &Vec<u8>)>, what: &str) {
    let got = got.unwrap_or_else(|e| panic!("{what}: {e}"));
    match (got, want) {
        (None, None) => {}
        (Some((k, v)), Some((wk, wv))) => {
            assert!(
                k == &wk[..],
                "{what}: at a key of {}, not {}",
                show_key(k),
                show_key(wk)
            );
            assert!(v == &wv[..], "{what}: at {}: the wrong value", show_key(k));
        }
        (Some((k, _)), None) => panic!("{what}: at a key of {}, past the end due", show_key(k)),
        (None, Some((wk, _))) => panic!("{what}: past the end, {} due", show_key(wk)),
    }
}

/// Whether the range `lo..hi` holds any key at all (`BTreeMap::range`
/// panics on the others).
fn well_formed(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a < b,
        _ => true,
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The entries of `model` in `lo..hi`.
fn model_range<'m>(
    model: &'m Model,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
) -> Vec<(&'m Vec<u8>, &'m Vec<u8>)> {
    if !well_formed(lo, hi) {
        return Vec::new();
    }
    model
        .range::<Vec<u8>, _>((lo.clone(), hi.clone()))
        .collect()
}

/// Entries compared at each end of a long range (its middle is the same
/// iteration that the whole table's is).
const ENDS: usize = 50;

/// Asserts that `tab`'s range `lo..hi` holds the entries of `model` there,
/// forwards and backwards: all of them in a short range; in a long one, the
/// first and the last `ENDS`, from a fresh range each way and from the two
/// ends of one.
fn assert_range(
    tab: &Table<'_>,
    model: &Model,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    what: &str,
) {
    let want = model_range(model, lo, hi);
    let range = (as_ref(lo), as_ref(hi));
    let forwards = format!("{what} forwards");
    let backwards = format!("{what} backwards");
    if want.len() <= 4 * ENDS {
        assert_entries(tab.range(range).unwrap(), want.iter().copied(), &forwards);
        assert_entries(
            tab.range(range).unwrap().rev(),
            want.iter().rev().copied(),
            &backwards,
        );
        return;
    }
    let (head, tail) = (&want[..ENDS], &want[want.len() - ENDS..]);
    let fresh = tab.range(range).unwrap();
    assert_entries(fresh.take(ENDS), head.iter().copied(), &forwards);
    let fresh = tab.range(range).unwrap().rev();
    assert_entries(fresh.take(ENDS), tail.iter().rev().copied(), &backwards);
    let mut both = tab.range(range).unwrap();
    assert_entries(both.by_ref().take(ENDS), head.iter().copied(), &forwards);
    assert_entries(
        both.by_ref().rev().take(ENDS),
        tail.iter().rev().copied(),
        &format!("{what} from both ends"),
    );
}

/// Inserts `entries` into table `name`, `per_txn` to a transaction.
fn load(db: &Database, name: &str, entries: &[(Vec<u8>, Vec<u8>)], per_txn: usize) {
    for chunk in entries.chunks(per_txn) {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table(name).unwrap();
            for (k, v) in chunk {
                tab.insert(k, v)
                    .unwrap_or_else(|e| panic!("insert of a key of {}: {e}", show_key(k)));
            }
        }
        w.commit().unwrap();
    }
}

/// A table's figures show nothing kept out of its leaves.
fn assert_nothing_out_of_line(stat: &larch::TableStat, ps: u32) {
    assert_eq!(
        (stat.packed_values, stat.packed_bytes, stat.overflow_pages),
        (0, 0, 0),
        "{ps}: {stat:?}"
    );
}

/// `model` holds in table "t" and `check` is clean, before and after a
/// reopen; returns the last report.
fn holds_through_reopen(t: &mut TestDb, model: &Model) -> larch::CheckReport {
    assert_holds(t.db(), "t", model);
    assert_clean(t.db());
    t.reopen();
    assert_holds(t.db(), "t", model);
    assert_clean(t.db())
}

/// Asserts that table `name` of the last commit holds exactly `model`,
/// read forwards, backwards and key by key.
fn assert_holds(db: &Database, name: &str, model: &Model) {
    let r = db.begin_read().unwrap();
    let tab = r.open_table(name).unwrap();
    assert_eq!(tab.len(), model.len() as u64);
    assert_entries(tab.iter().unwrap(), model.iter(), "forwards");
    assert_entries(tab.iter().unwrap().rev(), model.iter().rev(), "backwards");
    for (k, v) in model {
        assert!(
            tab.get(k).unwrap() == Some(&v[..]),
            "get of a key of {}",
            show_key(k)
        );
    }
}

/// Values of assorted sizes for the `i`-th key: mostly a few bytes, some
/// packed, a few of several pages.
fn assorted_value(ps: u32, i: u64) -> Vec<u8> {
    let len = match i % 16 {
        0..=9 => (i % 64) as usize,
        10..=13 => 100 + (i as usize * 37) % 1500,
        14 => 0,
        _ => 3 * ps as usize,
    };
    seeded_bytes(i, len)
}

/// Keys that share long prefixes, mixed with short ones: 3,000 bytes of
/// `p` then a big-endian counter (`counters` of them); keys that are
/// prefixes of each other (`p`, `p + [0]`, `p + [0, 0]`..., and `p`'s own
/// prefixes on both sides of the inline limit); keys one byte either side
/// of the inline limit that share all but their last two bytes (one kept
/// whole, the next out of line); 5,000 bytes of `q` and one last byte,
/// every value of it; keys of exactly 64 KiB differing in their last byte;
/// random keys sharing a random part of `p`; short keys around all of them.
/// Without duplicates, in random order.
fn tangled_keys(ps: u32, counters: u32, rng: &mut Rng) -> Vec<Vec<u8>> {
    let limit = inline_limit(ps);
    let p = vec![b'p'; 3000];
    let mut keys = Vec::new();
    for i in 0..counters {
        keys.push(counted(&p, i));
    }
    for n in 0..6 {
        let mut k = p.clone();
        k.resize(p.len() + n, 0);
        keys.push(k);
    }
    for n in [1, 2, limit - 1, limit, limit + 1, 1500, 2999] {
        keys.push(p[..n].to_vec());
    }
    // Across the inline limit: keys of `limit` and `limit + 1` bytes, a
    // shared prefix and a counter.
    for i in 0..150u16 {
        for share in [limit - 2, limit - 1] {
            let mut k = p[..share].to_vec();
            k.extend_from_slice(&(i * 300).to_be_bytes());
            keys.push(k);
        }
    }
    for b in 0..=255u8 {
        let mut k = vec![b'q'; 5000];
        k.push(b);
        keys.push(k);
    }
    for b in [0, 1, 0x7f, 0xfe, 0xff] {
        let mut k = vec![b'p'; MAX_KEY - 1];
        k.push(b);
        keys.push(k);
    }
    for i in 0..counters / 4 {
        keys.push(format!("k{i:05}").into_bytes());
        keys.push(format!("p{i:05}").into_bytes());
    }
    for _ in 0..200 {
        let share = rng.below(p.len() as u64 + 1) as usize;
        let mut k = p[..share].to_vec();
        let len = 1 + rng.below(6000) as usize;
        let tail = rng.bytes(len);
        k.extend_from_slice(&tail);
        keys.push(k);
    }
    keys.sort();
    keys.dedup();
    shuffle(&mut keys, rng);
    keys
}

/// Range bounds for `tangled_keys`: present and absent long keys, prefixes
/// of present keys, short keys, keys at 64 KiB and one longer than any key.
fn tangled_bounds(ps: u32, counters: u32) -> Vec<Vec<u8>> {
    let limit = inline_limit(ps);
    let p = vec![b'p'; 3000];
    let with = |base: &[u8], tail: &[u8]| [base, tail].concat();
    let q = vec![b'q'; 5000];
    vec![
        Vec::new(),
        b"k00100".to_vec(),
        b"k00100\0".to_vec(),
        b"p".to_vec(),
        p[..limit].to_vec(),
        p[..limit + 1].to_vec(),
        p[..2000].to_vec(),
        p.clone(),
        with(&p, &[0, 0]),
        with(&p, &[0, 0, 0, 0, 0, 0, 0]),
        counted(&p, counters / 2),
        with(&counted(&p, counters / 2), &[0]),
        counted(&p, counters),
        with(&p[..1000], b"q"),
        with(&q, &[100]),
        q,
        vec![b'p'; MAX_KEY],
        with(&vec![b'p'; MAX_KEY - 1], &[0xff]),
        vec![b'p'; MAX_KEY + 4000],
        b"z".to_vec(),
    ]
}

/// Keys up to a quarter page stay whole in their node, as before long keys:
/// a table of keys of a quarter page and one byte less, with empty values,
/// has no byte in the heap or in overflow runs, and reads back.
#[test]
fn keys_up_to_a_quarter_page_stay_in_their_node() {
    for ps in [512u32, 4096, 65536] {
        let mut t = TestDb::new(ps);
        let limit = inline_limit(ps);
        let mut model = Model::new();
        for len in [limit - 1, limit] {
            for i in 0..200u32 {
                let mut k = seeded_bytes(len as u64, len - 4);
                k.extend_from_slice(&i.to_be_bytes());
                model.insert(k, Vec::new());
            }
        }
        let entries: Vec<_> = model.clone().into_iter().collect();
        load(t.db(), "t", &entries, 150);
        t.reopen();
        assert_holds(t.db(), "t", &model);
        let r = t.db().begin_read().unwrap();
        let stat = r.open_table("t").unwrap().stat().unwrap();
        assert_nothing_out_of_line(&stat, ps);
        drop(r);
        let report = assert_clean(t.db());
        assert_eq!((report.segments, report.overflow_pages), (0, 0), "{ps}");
    }
}

/// The key lengths of the round trip at `ps`-byte pages: both sides of the
/// inline limit, two pages, 10,000 bytes and the longest key (those over
/// 64 KiB left out).
fn key_lengths(ps: u32) -> Vec<usize> {
    let limit = inline_limit(ps);
    let mut lens = vec![
        limit - 1,
        limit,
        limit + 1,
        2 * ps as usize,
        10_000,
        MAX_KEY,
    ];
    lens.retain(|&len| len <= MAX_KEY);
    lens.sort();
    lens.dedup();
    lens
}

/// The value lengths of the round trip: empty, tiny, the longest that stays
/// inline under a short (8-byte) key, a page, and packed and run lengths.
fn value_lengths(ps: u32) -> Vec<usize> {
    let inline_max = larch::testing::boundary_lengths(ps as usize, 8)[1];
    let ps = ps as usize;
    vec![0, 1, 100, inline_max, ps, 5 * ps, 40 * ps]
}

/// Every key length around the inline limit and up to 64 KiB, with every
/// kind of value, at 512, 4096 and 65536-byte pages: read back inside the
/// writing transaction, after its commit and after a reopen, forwards,
/// backwards and by key; `check` clean; and once all are removed, nothing
/// left in the heap or in runs. Keys of one length differ only in their last
/// byte, so separators between them are as long as the keys.
#[test]
fn every_key_length_round_trips_with_every_value_length() {
    for ps in [512u32, 4096, 65536] {
        let mut t = TestDb::new(ps);
        let mut model = Model::new();
        for (ki, &klen) in key_lengths(ps).iter().enumerate() {
            for (vi, &vlen) in value_lengths(ps).iter().enumerate() {
                let mut k = seeded_bytes(ki as u64 + 1, klen);
                k[klen - 1] = vi as u8;
                model.insert(k, seeded_bytes(1000 * ki as u64 + vi as u64, vlen));
            }
        }
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for (k, v) in &model {
                tab.insert(k, v)
                    .unwrap_or_else(|e| panic!("{ps}: insert of a key of {}: {e}", show_key(k)));
                assert!(tab.get(k).unwrap() == Some(&v[..]), "{ps}: {}", show_key(k));
            }
            for (k, v) in &model {
                assert!(tab.get(k).unwrap() == Some(&v[..]), "{ps}: {}", show_key(k));
            }
            assert_entries(tab.iter().unwrap(), model.iter(), "in the transaction");
            assert_entries(
                tab.iter().unwrap().rev(),
                model.iter().rev(),
                "in the transaction, backwards",
            );
        }
        w.commit().unwrap();
        holds_through_reopen(&mut t, &model);

        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for k in model.keys() {
                assert!(tab.remove(k).unwrap(), "{ps}: remove {}", show_key(k));
            }
        }
        w.commit().unwrap();
        let report = assert_clean(t.db());
        assert_eq!(report.entries, 0);
        assert_eq!((report.segments, report.packed_bytes), (0, 0), "{ps}");
        assert_eq!(report.overflow_pages, 0, "{ps}");
    }
}

/// A long key's bytes live out of its node: 200 keys of eight pages each,
/// with empty values, take fewer tree pages than half their bytes would
/// fill, and the heap's segments and runs hold at least all their bytes.
#[test]
fn long_keys_keep_their_bytes_out_of_their_nodes() {
    for ps in [512u32, 4096] {
        let t = TestDb::new(ps);
        let klen = 8 * ps as usize;
        let mut rng = Rng(u64::from(ps));
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = (0..200)
            .map(|i| (counted(&vec![b'x'; klen - 4], i), Vec::new()))
            .collect();
        shuffle(&mut entries, &mut rng);
        load(t.db(), "t", &entries, 50);
        let model: Model = entries.into_iter().collect();
        assert_holds(t.db(), "t", &model);
        let r = t.db().begin_read().unwrap();
        let stat = r.open_table("t").unwrap().stat().unwrap();
        let key_bytes = 200 * klen as u64;
        let ps = u64::from(ps);
        assert!(
            (stat.leaf_pages + stat.branch_pages) * ps * 2 < key_bytes,
            "{ps}: the tree holds the keys: {stat:?}"
        );
        drop(r);
        let report = assert_clean(t.db());
        assert!(
            (report.segment_pages + report.overflow_pages) * ps >= key_bytes,
            "{ps}: the keys are not out of line: {report:?}"
        );
    }
}

/// A key of 64 KiB and one byte is refused with `KeyTooLarge` at every page
/// size, naming 64 KiB as the longest; the refusal changes nothing (the same
/// key sharing a 64 KiB key's bytes is not there, removing it removes
/// nothing), and the transaction goes on, commits and checks clean.
#[test]
fn keys_over_64_kib_are_refused_and_change_nothing() {
    for ps in [512u32, 4096, 65536] {
        let mut t = TestDb::new(ps);
        let longest = seeded_bytes(7, MAX_KEY);
        let over = [&longest[..], &[0u8][..]].concat();
        let mut model = Model::new();
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            tab.insert(b"a", b"short").unwrap();
            tab.insert(&longest, b"longest").unwrap();
            model.insert(b"a".to_vec(), b"short".to_vec());
            model.insert(longest.clone(), b"longest".to_vec());
            for key in [&over, &vec![1u8; MAX_KEY + 1], &vec![0u8; 3 * MAX_KEY]] {
                match tab.insert(key, b"refused") {
                    Err(Error::KeyTooLarge { len, max }) => {
                        assert_eq!((len, max), (key.len(), MAX_KEY), "{ps}");
                    }
                    other => panic!("{ps}: a key of {} bytes: {other:?}", key.len()),
                }
                assert_eq!(tab.get(key).unwrap(), None, "{ps}");
                assert!(!tab.remove(key).unwrap(), "{ps}");
            }
            assert_eq!(tab.len(), 2);
            assert_entries(tab.iter().unwrap(), model.iter(), "after the refusals");
            // The transaction goes on.
            tab.insert(b"b", b"after").unwrap();
            model.insert(b"b".to_vec(), b"after".to_vec());
        }
        w.commit().unwrap();
        holds_through_reopen(&mut t, &model);
    }
}

/// Thousands of keys that share 3,000-byte prefixes, are prefixes of each
/// other, differ only in their last byte or straddle the inline limit, mixed
/// with short keys and inserted in random order: the tree grows several
/// levels deep (separators between such keys are long), and iteration both
/// ways, `get`, `range` with every kind of bound (long keys present and
/// absent, prefixes of keys, a bound longer than any key) and cursor moves
/// all agree with a `BTreeMap`, in the writing transaction and after commit.
#[test]
fn long_shared_prefixes_keep_their_order() {
    for ps in [512u32, 4096] {
        let counters = 3000;
        let t = TestDb::new(ps);
        let mut rng = Rng(0x10E6 + u64::from(ps));
        let keys = tangled_keys(ps, counters, &mut rng);
        let entries: Vec<(Vec<u8>, Vec<u8>)> = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, assorted_value(ps, i as u64)))
            .collect();
        let model: Model = entries.iter().cloned().collect();
        let (head, last) = entries.split_at(entries.len() - 1000);
        load(t.db(), "t", head, 1000);

        // The last thousand in one transaction, read back before the commit.
        let bounds = tangled_bounds(ps, counters);
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for (k, v) in last {
                tab.insert(k, v).unwrap();
            }
            assert_eq!(tab.len(), model.len() as u64);
            assert_entries(tab.iter().unwrap(), model.iter(), "in the transaction");
            assert_entries(
                tab.iter().unwrap().rev(),
                model.iter().rev(),
                "in the transaction, backwards",
            );
            let mut c = tab.cursor();
            for b in &bounds {
                assert_at(
                    c.seek(b),
                    model.range(b.clone()..).next(),
                    &format!("{ps}: seek to {} in the transaction", show_key(b)),
                );
            }
        }
        w.commit().unwrap();

        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        // Separators between keys that share 3,000 bytes are long: at
        // 512-byte pages the tree is at least three levels deep.
        let depth = tab.stat().unwrap().depth;
        let deep = if ps == 512 { 3 } else { 2 };
        assert!(depth >= deep, "{ps}: a tree of {depth} levels");
        assert_eq!(tab.len(), model.len() as u64);
        assert_entries(tab.iter().unwrap(), model.iter(), "forwards");
        assert_entries(tab.iter().unwrap().rev(), model.iter().rev(), "backwards");
        for (k, v) in &model {
            assert!(
                tab.get(k).unwrap() == Some(&v[..]),
                "{ps}: get {}",
                show_key(k)
            );
        }
        for b in &bounds {
            assert!(
                tab.get(b).unwrap() == model.get(b).map(|v| &v[..]),
                "{ps}: get {}",
                show_key(b)
            );
        }

        // Ranges between every two bounds, of every kind, both ways.
        let mut ranges = vec![(Bound::Unbounded, Bound::Unbounded)];
        for a in &bounds {
            for b in &bounds {
                for (lo, hi) in [
                    (Bound::Included(a), Bound::Included(b)),
                    (Bound::Included(a), Bound::Excluded(b)),
                    (Bound::Excluded(a), Bound::Included(b)),
                    (Bound::Excluded(a), Bound::Excluded(b)),
                ] {
                    ranges.push((lo.cloned(), hi.cloned()));
                }
            }
            ranges.push((Bound::Included(a.clone()), Bound::Unbounded));
            ranges.push((Bound::Excluded(a.clone()), Bound::Unbounded));
            ranges.push((Bound::Unbounded, Bound::Included(a.clone())));
            ranges.push((Bound::Unbounded, Bound::Excluded(a.clone())));
        }
        for (lo, hi) in &ranges {
            let b = |b: &Bound<Vec<u8>>| b.as_ref().map(|k| show_key(k));
            assert_range(
                &tab,
                &model,
                lo,
                hi,
                &format!("{ps}: {:?}..{:?}", b(lo), b(hi)),
            );
        }

        // Cursors: a seek to each bound, then steps both ways from there.
        let mut c = tab.cursor();
        assert_at(c.first(), model.iter().next(), "first");
        assert_at(c.prev(), None, "before the first");
        assert_at(c.last(), model.iter().next_back(), "last");
        assert_at(c.next(), None, "past the last");
        for b in &bounds {
            let what = |how: &str| format!("{ps}: {how} from a seek to {}", show_key(b));
            let mut after = model.range(b.clone()..);
            let found = after.next();
            assert_at(c.seek(b), found, &what("the seek"));
            assert_at(c.next(), after.next(), &what("next"));
            assert_at(c.next(), after.next(), &what("a second next"));
            let Some((at, _)) = found else { continue };
            let mut before = model.range(..at.clone()).rev();
            assert_at(c.seek(b), found, &what("the seek again"));
            assert_at(c.prev(), before.next(), &what("prev"));
            assert_at(c.prev(), before.next(), &what("a second prev"));
        }
        drop(r);
        assert_clean(t.db());
    }
}

/// A table of long keys with long shared prefixes, emptied in random order
/// a few hundred removals to a commit: `check` stays clean after every
/// commit, the rest of the table reads back, and once the last key is gone
/// the heap holds no segment, no packed byte and no run: every out-of-line
/// byte of a key, and every separator's copy, was given back.
#[test]
fn removing_every_long_key_releases_every_out_of_line_byte() {
    for ps in [512u32, 4096] {
        let t = TestDb::new(ps);
        let mut rng = Rng(0xDE1 + u64::from(ps));
        let entries: Vec<(Vec<u8>, Vec<u8>)> = tangled_keys(ps, 1500, &mut rng)
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, assorted_value(ps, i as u64)))
            .collect();
        load(t.db(), "t", &entries, 500);
        let mut model: Model = entries.into_iter().collect();
        let report = assert_clean(t.db());
        assert!(report.segments > 0, "{ps}: {report:?}");

        let mut order: Vec<Vec<u8>> = model.keys().cloned().collect();
        shuffle(&mut order, &mut rng);
        for (n, chunk) in order.chunks(300).enumerate() {
            let w = t.db().begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for k in chunk {
                    assert!(tab.remove(k).unwrap(), "{ps}: remove {}", show_key(k));
                    assert!(
                        !tab.remove(k).unwrap(),
                        "{ps}: remove {} again",
                        show_key(k)
                    );
                    model.remove(k);
                }
                assert_eq!(tab.len(), model.len() as u64);
            }
            w.commit().unwrap();
            assert_clean(t.db());
            if n % 3 == 0 {
                assert_holds(t.db(), "t", &model);
            }
        }

        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        assert!(tab.is_empty());
        assert_eq!(tab.iter().unwrap().count(), 0);
        let stat = tab.stat().unwrap();
        assert_eq!(stat.depth, 0, "{ps}: {stat:?}");
        assert_nothing_out_of_line(&stat, ps);
        drop(r);
        let report = assert_clean(t.db());
        assert_eq!(
            (report.segments, report.segment_pages),
            (0, 0),
            "{ps}: {report:?}"
        );
        assert_eq!(report.packed_bytes, 0, "{ps}: {report:?}");
        assert_eq!(report.overflow_pages, 0, "{ps}: {report:?}");
        let stat = t.db().stat().unwrap();
        assert_eq!((stat.segments, stat.packed_bytes), (0, 0), "{ps}: {stat:?}");
    }
}

/// Overwrites `keys`' values, `rounds` commits of `per_txn` overwrites each
/// (a key chosen at random, a value of a size cycling through inline,
/// packed and run lengths), recording them in `model`.
fn overwrite(
    db: &Database,
    keys: &[Vec<u8>],
    model: &mut Model,
    rng: &mut Rng,
    (rounds, per_txn): (usize, usize),
) {
    let ps = db.page_size() as usize;
    let lens = [0, 10, 300, ps, 3 * ps, 40 * ps];
    for _ in 0..rounds {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for _ in 0..per_txn {
                let k = &keys[rng.below(keys.len() as u64) as usize];
                let v = seeded_bytes(rng.next_u64(), lens[rng.below(6) as usize]);
                tab.insert(k, &v).unwrap();
                model.insert(k.clone(), v);
            }
        }
        w.commit().unwrap();
    }
}

/// Overwrites a few keys' values again and again, many times in one
/// transaction and across hundreds: the file stays within twice its size
/// after a warm-up, the last values read back, `check` is clean.
fn overwrites_stay_bounded(ps: u32, keys: &[Vec<u8>]) {
    let mut t = TestDb::new(ps);
    let mut rng = Rng(0x0E4 + u64::from(ps));
    let mut model = Model::new();
    overwrite(t.db(), keys, &mut model, &mut rng, (30, 40));
    let warm = t.db().stat().unwrap().pages;
    // Many times in one transaction, then across many.
    overwrite(t.db(), keys, &mut model, &mut rng, (1, 2000));
    overwrite(t.db(), keys, &mut model, &mut rng, (300, 10));
    let end = t.db().stat().unwrap().pages;
    eprintln!("{ps}: {warm} pages after the warm-up, {end} at the end");
    assert!(
        end <= 2 * warm,
        "{ps}: the file grew from {warm} to {end} pages"
    );
    holds_through_reopen(&mut t, &model);
}

/// Long keys sharing a 2,000-byte prefix, and one of 64 KiB, overwritten
/// again and again: the file stays bounded, as it does for short keys
/// (`overwriting_under_short_keys_stays_bounded`).
#[test]
fn overwriting_long_keys_stays_bounded() {
    for ps in [512u32, 4096] {
        let mut keys: Vec<Vec<u8>> = (0..16).map(|i| counted(&[b'o'; 2000], i)).collect();
        keys.push(vec![b'o'; MAX_KEY]);
        overwrites_stay_bounded(ps, &keys);
    }
}

/// The bound `overwriting_long_keys_stays_bounded` holds long keys to, met
/// by short keys with the same values.
#[test]
fn overwriting_under_short_keys_stays_bounded() {
    for ps in [512u32, 4096] {
        let keys: Vec<Vec<u8>> = (0..17u32).map(|i| i.to_be_bytes().to_vec()).collect();
        overwrites_stay_bounded(ps, &keys);
    }
}

/// A table of long keys deleted with `delete_table`: once the reuse rule
/// has let two more commits pass, the heap holds what the other table
/// holds and no more (no segment, packed byte or run left for the deleted
/// table's keys, their values or its separators' copies); alone, it
/// leaves the heap empty.
#[test]
fn deleting_a_table_of_long_keys_gives_back_its_heap() {
    for ps in [512u32, 4096] {
        for with_other in [false, true] {
            let t = TestDb::new(ps);
            let what = format!("{ps}, another table: {with_other}");
            let mut rng = Rng(0xDE7 + u64::from(ps));
            let mut keep = Model::new();
            if with_other {
                // Short keys, values inline, packed and in runs.
                for i in 0..400u64 {
                    let len = [10, 700, 2500, 40 * ps as usize][i as usize % 4];
                    keep.insert(i.to_be_bytes().to_vec(), seeded_bytes(i, len));
                }
                let entries: Vec<_> = keep.clone().into_iter().collect();
                load(t.db(), "keep", &entries, 200);
            }
            let before = assert_clean(t.db());

            let entries: Vec<(Vec<u8>, Vec<u8>)> = tangled_keys(ps, 1000, &mut rng)
                .into_iter()
                .enumerate()
                .map(|(i, k)| (k, assorted_value(ps, i as u64)))
                .collect();
            load(t.db(), "long", &entries, 400);
            let full = assert_clean(t.db());
            assert!(full.packed_bytes > before.packed_bytes, "{what}");

            let mut w = t.db().begin_write().unwrap();
            assert!(w.delete_table("long").unwrap());
            w.commit().unwrap();
            for i in 0..2u8 {
                let w = t.db().begin_write().unwrap();
                w.open_table("tick").unwrap().insert(&[i], b"").unwrap();
                w.commit().unwrap();
            }
            let after = assert_clean(t.db());
            assert_eq!(after.packed_bytes, before.packed_bytes, "{what}: {after:?}");
            assert_eq!(
                after.overflow_pages, before.overflow_pages,
                "{what}: {after:?}"
            );
            assert!(after.segments <= before.segments, "{what}: {after:?}");
            let stat = t.db().stat().unwrap();
            assert_eq!(stat.packed_bytes, before.packed_bytes, "{what}: {stat:?}");
            if with_other {
                assert_holds(t.db(), "keep", &keep);
                let r = t.db().begin_read().unwrap();
                let kept = r.open_table("keep").unwrap().stat().unwrap();
                assert_eq!(kept.packed_bytes, stat.packed_bytes, "{what}: {kept:?}");
            } else {
                assert_eq!(
                    (stat.segments, stat.packed_bytes),
                    (0, 0),
                    "{what}: {stat:?}"
                );
                assert_eq!(after.overflow_pages, 0, "{what}: {after:?}");
            }
        }
    }
}

/// Long keys inserted, read back and then discarded (dropped, and aborted)
/// leave nothing: the last commit, the tables, the heap's figures and the
/// file as they were; `check` clean; and the same keys commit afterwards.
#[test]
fn an_aborted_transaction_of_long_keys_leaves_nothing() {
    for ps in [512u32, 4096] {
        let mut t = TestDb::new(ps);
        let mut rng = Rng(0xAB0 + u64::from(ps));
        let mut model = Model::new();
        for i in 0..50u64 {
            model.insert(format!("k{i:03}").into_bytes(), seeded_bytes(i, 30));
        }
        let entries: Vec<_> = model.clone().into_iter().collect();
        load(t.db(), "t", &entries, 50);
        let last = t.db().last_txn_id();
        let size = t.file_size();
        let before = assert_clean(t.db());

        let long: Vec<(Vec<u8>, Vec<u8>)> = tangled_keys(ps, 300, &mut rng)
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, assorted_value(ps, i as u64)))
            .collect();
        for abort in [false, true] {
            let w = t.db().begin_write().unwrap();
            for name in ["t", "new"] {
                let mut tab = w.open_table(name).unwrap();
                for (k, v) in &long {
                    tab.insert(k, v).unwrap();
                }
                for (k, v) in &long {
                    assert!(tab.get(k).unwrap() == Some(&v[..]), "{ps}: {}", show_key(k));
                }
            }
            if abort {
                w.abort();
            } else {
                drop(w);
            }
            assert_eq!(t.db().last_txn_id(), last);
            let r = t.db().begin_read().unwrap();
            assert_eq!(r.list_tables().unwrap(), ["t"]);
            drop(r);
            assert_holds(t.db(), "t", &model);
            let report = assert_clean(t.db());
            assert_eq!(report, before, "{ps}");
        }
        assert_eq!(t.file_size(), size, "{ps}");
        t.reopen();
        assert_holds(t.db(), "t", &model);
        assert_eq!(assert_clean(t.db()), before, "{ps}");

        load(t.db(), "t", &long, 400);
        model.extend(long);
        assert_holds(t.db(), "t", &model);
        assert_clean(t.db());
    }
}

/// `Database::compact` after most of a table of long keys was deleted (the
/// keys written last, nearest the end of the file, stay, and every tenth of
/// the others): every remaining key and value reads back, before and after
/// a reopen, `check` is clean, and the file is at least a third shorter.
#[test]
fn compact_keeps_every_remaining_long_key() {
    for ps in [512u32, 4096] {
        let mut t = TestDb::new(ps);
        let mut rng = Rng(0xC0 + u64::from(ps));
        let mut model = Model::new();
        let mut doomed = Vec::new();
        let rounds = 4u32;
        for round in 0..rounds {
            let mut entries = Vec::new();
            for i in 0..800u32 {
                let share = 1200 + rng.below(800) as usize;
                let mut k = counted(&vec![b'c'; share], round);
                k.extend_from_slice(&i.to_be_bytes());
                let len = rng.below(4000) as usize;
                k.extend_from_slice(&rng.bytes(len));
                let v = assorted_value(ps, rng.next_u64() % 1000);
                if round + 1 < rounds && i % 10 != 0 {
                    doomed.push(k.clone());
                }
                entries.push((k, v));
            }
            load(t.db(), "t", &entries, 400);
            model.extend(entries);
        }
        shuffle(&mut doomed, &mut rng);
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for k in &doomed {
                assert!(tab.remove(k).unwrap(), "{ps}: remove {}", show_key(k));
                model.remove(k);
            }
        }
        w.commit().unwrap();
        let before = t.file_size();
        t.db().compact().unwrap();
        let after = t.file_size();
        assert!(after * 3 <= before * 2, "{ps}: {before} -> {after} bytes");
        holds_through_reopen(&mut t, &model);
    }
}

/// A reader's snapshot of long keys outlives a writer that removes half of
/// them, overwrites the rest with values of other sizes, adds keys under
/// the same prefixes and then deletes the table, over commits enough for
/// every page the reader does not hold to be reused: the keys and values it
/// was handed (slices of the map) and those it reads again are unchanged.
#[test]
fn a_reader_keeps_its_long_keys_while_the_writer_changes_them() {
    for ps in [512u32, 4096] {
        let t = TestDb::new(ps);
        let db = t.db();
        let mut rng = Rng(0x5AA + u64::from(ps));
        let entries: Vec<(Vec<u8>, Vec<u8>)> = tangled_keys(ps, 400, &mut rng)
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, assorted_value(ps, i as u64)))
            .collect();
        load(db, "t", &entries, 500);
        let old: Model = entries.into_iter().collect();

        let r = db.begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        let held: Vec<Entry<'_>> = tab.iter().unwrap().map(|e| e.unwrap()).collect();
        let got: Vec<&[u8]> = old.keys().map(|k| tab.get(k).unwrap().unwrap()).collect();

        let mut now = old.clone();
        let keys: Vec<Vec<u8>> = old.keys().cloned().collect();
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for (n, k) in keys.iter().enumerate() {
                if n % 2 == 0 {
                    assert!(tab.remove(k).unwrap());
                    now.remove(k);
                } else {
                    let v = assorted_value(ps, n as u64 + 7);
                    tab.insert(k, &v).unwrap();
                    now.insert(k.clone(), v);
                }
            }
        }
        w.commit().unwrap();
        let added: Vec<(Vec<u8>, Vec<u8>)> = keys
            .iter()
            .step_by(3)
            .filter(|k| k.len() < MAX_KEY)
            .map(|k| {
                (
                    [&k[..], &b"+"[..]].concat(),
                    seeded_bytes(k.len() as u64, 2 * ps as usize),
                )
            })
            .collect();
        load(db, "t", &added, 500);
        now.extend(added);
        assert_holds(db, "t", &now);
        let mut w = db.begin_write().unwrap();
        assert!(w.delete_table("t").unwrap());
        w.commit().unwrap();
        // Commits that would reuse whatever the reader does not pin.
        let fill: Vec<(Vec<u8>, Vec<u8>)> = (0..300u64)
            .map(|i| {
                (
                    counted(&[b'f'; 2000], i as u32),
                    seeded_bytes(i, 3 * ps as usize),
                )
            })
            .collect();
        load(db, "u", &fill, 50);

        assert_entries(held.iter().map(|&e| Ok(e)), old.iter(), "the entries held");
        for ((k, v), g) in old.iter().zip(&got) {
            assert!(*g == &v[..], "{ps}: the value held for {}", show_key(k));
        }
        assert_entries(tab.iter().unwrap(), old.iter(), "read again");
        assert_entries(
            tab.iter().unwrap().rev(),
            old.iter().rev(),
            "read again, backwards",
        );
        drop(r);
        let r = db.begin_read().unwrap();
        assert!(matches!(r.open_table("t"), Err(Error::TableNotFound(_))));
        drop(r);
        assert_clean(db);
    }
}

/// Keys of exactly 64 KiB at 512-byte pages, where each is longer than the
/// longest packed value (32 pages) and goes into a run of its own: 200 of
/// them, differing in their first bytes, only in their last, in the middle,
/// or at one byte somewhere, round-trip in order, both ways, after a reopen,
/// with `range` bounds among them; then all removed, the runs go too.
#[test]
fn keys_of_64_kib_at_512_byte_pages() {
    let ps = 512u32;
    let mut t = TestDb::new(ps);
    let mut rng = Rng(0x64);
    let mut keys = Vec::new();
    for i in 0..50u32 {
        keys.push(seeded_bytes(u64::from(i) + 1, MAX_KEY));
        let mut k = vec![b'a'; MAX_KEY];
        k[MAX_KEY - 1] = i as u8;
        keys.push(k);
        let mut k = vec![b'b'; MAX_KEY];
        k[MAX_KEY / 2..MAX_KEY / 2 + 4].copy_from_slice(&i.to_be_bytes());
        keys.push(k);
        let mut k = vec![b'c'; MAX_KEY];
        k[1000 * i as usize + 500] = b'd';
        keys.push(k);
    }
    shuffle(&mut keys, &mut rng);
    let lens = [0, 1, 100, 600, 5000, 40 * ps as usize];
    let entries: Vec<(Vec<u8>, Vec<u8>)> = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, seeded_bytes(i as u64, lens[i % lens.len()])))
        .collect();
    let model: Model = entries.iter().cloned().collect();
    assert_eq!(model.len(), 200);

    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for (k, v) in &entries {
            tab.insert(k, v).unwrap();
            assert!(tab.get(k).unwrap() == Some(&v[..]), "{}", show_key(k));
        }
        assert_entries(tab.iter().unwrap(), model.iter(), "in the transaction");
    }
    w.commit().unwrap();
    assert_holds(t.db(), "t", &model);
    t.reopen();
    assert_holds(t.db(), "t", &model);
    let report = assert_clean(t.db());
    let key_pages = (MAX_KEY as u64).div_ceil(u64::from(ps));
    assert!(
        report.overflow_pages >= 200 * key_pages,
        "the keys are not in runs: {report:?}"
    );

    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    let mut a = vec![b'a'; MAX_KEY];
    a[MAX_KEY - 1] = 20;
    let bounds = [
        a.clone(),
        vec![b'a'; MAX_KEY - 1],
        vec![b'a'; MAX_KEY + 1],
        vec![b'b'; MAX_KEY],
        vec![b'c'; MAX_KEY / 2],
    ];
    for lo in &bounds {
        for hi in &bounds {
            let (lo, hi) = (Bound::Included(lo.clone()), Bound::Excluded(hi.clone()));
            assert_range(&tab, &model, &lo, &hi, "a range");
        }
    }
    drop(r);

    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for k in model.keys() {
            assert!(tab.remove(k).unwrap());
        }
    }
    w.commit().unwrap();
    let report = assert_clean(t.db());
    assert_eq!(report.overflow_pages, 0, "{report:?}");
    assert_eq!((report.segments, report.packed_bytes), (0, 0), "{report:?}");
}
