//! Red team of the write cursor (`TableMut::cursor_mut`) and `drain`.
//!
//! Attacks: every short sequence of moves, removals and replacements on
//! tables of zero to four entries against a model of the documented
//! places (the ends, everything removed, a seek after a removal); the
//! write cursor against the read `Cursor` on the same data (long keys,
//! probes past the longest key); `replace_current` through every value
//! layout (inline, packed in a segment, an overflow run of more than 16
//! pages) under short, long and longest keys; thousands of random steps
//! against a `BTreeMap` at 512- and 4096-byte pages with drains,
//! `pop_first`, `pop_last` and `retain` between, commits, aborts and
//! `check()`; `drain` over every combination of bounds (inverted, empty,
//! unbounded, past the longest key), taken in part and dropped; a drain
//! of a large range in bounded memory; `MapFull` met by `replace_current`,
//! `remove_current` and a drain half-way (every later call refuses, the
//! commit too, the committed data stays); a cursor made on a transaction
//! that had failed already; savepoints around a cursor's changes; a
//! damaged page met by a drain or a removing cursor after removals.
//!
//! Defects found (the tests that fail): a cursor made on a failed
//! transaction answers `current`, `remove_current` and `replace_current`
//! with `Ok` instead of `TxnFailed`; a drain (and a removing cursor) whose
//! read of the next entry meets a damaged page returns `Corrupted` without
//! failing the transaction, which then commits the half-done drain.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Bound;

use common::{Rng, TestDb, small_map};
use larch::{CursorMut, Database, Error, Options};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Pair = (Vec<u8>, Vec<u8>);

// ---------------------------------------------------------------------------
// A per-thread count of heap bytes, for the bounded-memory attack.
// ---------------------------------------------------------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call is passed on to the system allocator as it came.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most heap this thread held while `f` ran, above what it held before.
fn peak_during(f: impl FnOnce()) -> isize {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    f();
    PEAK.with(Cell::get) - start
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

fn owned(e: larch::Result<Option<larch::Entry<'_>>>) -> Option<Pair> {
    e.unwrap().map(|(k, v)| (k.to_vec(), v.to_vec()))
}

fn contents(db: &Database, name: &str) -> Model {
    let r = db.begin_read().unwrap();
    let t = r.open_table(name).unwrap();
    let got: Model = t
        .iter()
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    assert_eq!(t.len(), got.len() as u64, "len disagrees with the entries");
    got
}

fn assert_clean(db: &Database) {
    let report = db.check_report().unwrap();
    assert!(report.is_clean(), "check: {:?}", report.errors);
    assert_eq!(report.leaked_pages, 0, "check: pages leaked");
}

fn short(k: &[u8]) -> String {
    if k.len() <= 24 {
        format!("{k:02x?}")
    } else {
        common::show_key(k)
    }
}

fn refused<T: std::fmt::Debug>(what: &str, r: larch::Result<T>) {
    assert!(
        matches!(r, Err(Error::TxnFailed)),
        "{what} on a failed transaction: {r:?} (TxnFailed expected)"
    );
}

/// Where the model's cursor is, as `CursorMut` documents it.
#[derive(Clone, Debug)]
enum At {
    Unset,
    On(Vec<u8>),
    Gap(Vec<u8>),
    AfterEnd,
    BeforeStart,
}

/// The model of a `CursorMut` over a model table.
struct ModelCursor {
    at: At,
}

impl ModelCursor {
    fn settle(&mut self, m: &Model, found: Option<Vec<u8>>, forward: bool) -> Option<Pair> {
        self.at = match &found {
            Some(k) => At::On(k.clone()),
            None if forward => At::AfterEnd,
            None => At::BeforeStart,
        };
        found.map(|k| {
            let v = m[&k].clone();
            (k, v)
        })
    }

    fn first(&mut self, m: &Model) -> Option<Pair> {
        let k = m.keys().next().cloned();
        self.settle(m, k, true)
    }

    fn last(&mut self, m: &Model) -> Option<Pair> {
        let k = m.keys().next_back().cloned();
        self.settle(m, k, false)
    }

    fn seek(&mut self, m: &Model, probe: &[u8]) -> Option<Pair> {
        let k = m
            .range::<[u8], _>((Bound::Included(probe), Bound::Unbounded))
            .next()
            .map(|(k, _)| k.clone());
        self.settle(m, k, true)
    }

    fn next(&mut self, m: &Model) -> Option<Pair> {
        let k = match &self.at {
            At::Unset | At::BeforeStart => m.keys().next().cloned(),
            At::On(k) | At::Gap(k) => m
                .range::<[u8], _>((Bound::Excluded(&k[..]), Bound::Unbounded))
                .next()
                .map(|(k, _)| k.clone()),
            At::AfterEnd => return None,
        };
        self.settle(m, k, true)
    }

    fn prev(&mut self, m: &Model) -> Option<Pair> {
        let k = match &self.at {
            At::Unset | At::AfterEnd => m.keys().next_back().cloned(),
            At::On(k) | At::Gap(k) => m
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(&k[..])))
                .next_back()
                .map(|(k, _)| k.clone()),
            At::BeforeStart => return None,
        };
        self.settle(m, k, false)
    }

    fn current(&self, m: &Model) -> Option<Pair> {
        match &self.at {
            At::On(k) => Some((k.clone(), m[k].clone())),
            _ => None,
        }
    }

    fn remove(&mut self, m: &mut Model) -> bool {
        let At::On(k) = &self.at else {
            return false;
        };
        let k = k.clone();
        assert!(m.remove(&k).is_some());
        self.at = At::Gap(k);
        true
    }

    fn replace(&mut self, m: &mut Model, v: &[u8]) -> bool {
        let At::On(k) = &self.at else {
            return false;
        };
        m.insert(k.clone(), v.to_vec());
        true
    }
}

/// One step of a cursor, run on both the cursor and its model.
#[derive(Clone, Debug)]
enum Op {
    First,
    Last,
    Next,
    Prev,
    Seek(Vec<u8>),
    Remove,
    Replace(Vec<u8>),
    Current,
}

/// Runs `op` on `c` and on the model; panics with `ctx` when they differ.
fn step(c: &mut CursorMut<'_, '_>, mc: &mut ModelCursor, m: &mut Model, op: &Op, ctx: &str) {
    match op {
        Op::First => assert_eq!(owned(c.first()), mc.first(m), "{ctx}"),
        Op::Last => assert_eq!(owned(c.last()), mc.last(m), "{ctx}"),
        Op::Next => assert_eq!(owned(c.next()), mc.next(m), "{ctx}"),
        Op::Prev => assert_eq!(owned(c.prev()), mc.prev(m), "{ctx}"),
        Op::Seek(p) => assert_eq!(owned(c.seek(p)), mc.seek(m, p), "{ctx}"),
        Op::Remove => assert_eq!(c.remove_current().unwrap(), mc.remove(m), "{ctx}"),
        Op::Replace(v) => assert_eq!(c.replace_current(v).unwrap(), mc.replace(m, v), "{ctx}"),
        Op::Current => {}
    }
    // After every step, what is under the cursor agrees too.
    assert_eq!(owned(c.current()), mc.current(m), "{ctx}: current()");
}

// ---------------------------------------------------------------------------
// Every short sequence, at the ends and around removals.
// ---------------------------------------------------------------------------

/// Held: every sequence of up to four steps (first, last, next, prev,
/// seek before all / onto a key / into a gap / past all, remove,
/// replace) on tables of 0 to 4 entries agrees with the model of the
/// documented places: removing the first or last entry then moving
/// either way, removing everything then moving, removing then seeking,
/// removing or replacing in a gap or past an end (nothing changes, the
/// removed key is not put back). Each sequence runs in a transaction of
/// its own, aborted, and what the table holds after it is compared too.
#[test]
fn held_every_short_sequence_agrees_with_the_model() {
    let t = TestDb::new(512);
    let all: Vec<Vec<u8>> = [b"b", b"d", b"f", b"h"]
        .iter()
        .map(|k| k.to_vec())
        .collect();
    let ops = [
        Op::First,
        Op::Last,
        Op::Next,
        Op::Prev,
        Op::Seek(b"a".to_vec()),
        Op::Seek(b"d".to_vec()),
        Op::Seek(b"e".to_vec()),
        Op::Seek(b"z".to_vec()),
        Op::Remove,
        Op::Replace(b"new".to_vec()),
    ];
    let n = ops.len();
    let mut sequences = 0;
    for size in 0..=all.len() {
        let base: Model = all[..size]
            .iter()
            .map(|k| (k.clone(), [b"v".as_slice(), k].concat()))
            .collect();
        for len in 1..=4u32 {
            for code in 0..n.pow(len) {
                let seq: Vec<&Op> = (0..len).map(|i| &ops[(code / n.pow(i)) % n]).collect();
                let mut m = base.clone();
                let w = t.db().begin_write().unwrap();
                {
                    let mut tab = w.open_table("t").unwrap();
                    for (k, v) in &base {
                        tab.insert(k, v).unwrap();
                    }
                    let mut c = tab.cursor_mut();
                    let mut mc = ModelCursor { at: At::Unset };
                    for (i, op) in seq.iter().enumerate() {
                        let ctx = format!("{size} entries, {seq:?}, step {i}");
                        step(&mut c, &mut mc, &mut m, op, &ctx);
                    }
                    drop(c);
                    let got: Model = tab
                        .iter()
                        .unwrap()
                        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                        .collect();
                    assert_eq!(got, m, "{size} entries, {seq:?}: the table after");
                    assert_eq!(tab.len(), m.len() as u64, "{size} entries, {seq:?}: len");
                }
                w.abort();
                sequences += 1;
            }
        }
    }
    assert!(sequences > 50_000);
}

/// Held: a cursor on an empty table, and on one it emptied: every move
/// is `None`, nothing is removed or replaced (a replace in the gap of
/// the entry removed does not put it back), and the empty table commits.
#[test]
fn held_a_cursor_on_an_empty_or_emptied_table() {
    for ps in [512u32, 4096] {
        let t = TestDb::new(ps);
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            let mut c = tab.cursor_mut();
            assert!(owned(c.current()).is_none());
            assert!(!c.remove_current().unwrap());
            assert!(!c.replace_current(b"v").unwrap());
            for _ in 0..2 {
                assert!(owned(c.next()).is_none());
                assert!(owned(c.prev()).is_none());
                assert!(owned(c.first()).is_none());
                assert!(owned(c.last()).is_none());
                assert!(owned(c.seek(b"")).is_none());
                assert!(owned(c.seek(&[0xff; 70_000])).is_none());
                assert!(!c.remove_current().unwrap());
                assert!(!c.replace_current(b"v").unwrap());
            }
            drop(c);
            assert!(tab.is_empty());
            assert_eq!(tab.drain(..).count(), 0);

            // Emptied by the cursor, walking backwards: a long key and a
            // value in a run.
            let long = vec![b'L'; ps as usize];
            tab.insert(b"a", b"1").unwrap();
            tab.insert(&long, &vec![7; 20 * ps as usize]).unwrap();
            let mut c = tab.cursor_mut();
            while let Some((k, _)) = owned(c.prev()) {
                assert!(c.remove_current().unwrap(), "{}", short(&k));
                assert!(owned(c.current()).is_none());
                assert!(!c.remove_current().unwrap());
                assert!(!c.replace_current(b"back?").unwrap());
            }
            assert!(owned(c.next()).is_none());
            assert!(owned(c.prev()).is_none());
            assert!(owned(c.first()).is_none());
            assert!(owned(c.last()).is_none());
            assert!(owned(c.seek(b"a")).is_none());
            drop(c);
            assert!(tab.is_empty());
            assert_eq!(tab.get(b"a").unwrap(), None);
            assert_eq!(tab.get(&long).unwrap(), None);
        }
        w.commit().unwrap();
        assert!(contents(t.db(), "t").is_empty());
        assert_clean(t.db());
    }
}

// ---------------------------------------------------------------------------
// The write cursor against the read cursor.
// ---------------------------------------------------------------------------

fn mixed_key(rng: &mut Rng, ps: usize) -> Vec<u8> {
    match rng.below(16) {
        0 => Vec::new(),
        1 => vec![0; 1 + rng.below(3) as usize],
        2 => {
            // Long keys that share a long prefix: long separators.
            let mut k = vec![b'L'; ps / 4 + 1 + rng.below(ps as u64) as usize];
            k.extend(format!("{:03}", rng.below(40)).bytes());
            k
        }
        3 => vec![0xff; 1 + rng.below(4) as usize],
        4 => {
            let mut k = format!("{:04}", rng.below(500)).into_bytes();
            k.push(0);
            k.push(rng.below(3) as u8);
            k
        }
        _ => format!("{:04}", rng.below(500)).into_bytes(),
    }
}

fn probe(rng: &mut Rng, ps: usize, m: &Model) -> Vec<u8> {
    match rng.below(8) {
        0 if !m.is_empty() => {
            // An existing key, maybe one byte longer or shorter.
            let i = rng.below(m.len() as u64) as usize;
            let mut k = m.keys().nth(i).unwrap().clone();
            match rng.below(3) {
                0 => k.push(0),
                1 => {
                    k.pop();
                }
                _ => {}
            }
            k
        }
        1 => vec![0xff; larch::MAX_KEY_LEN + 1 + rng.below(10) as usize],
        2 => vec![b'L'; larch::MAX_KEY_LEN + 5],
        _ => mixed_key(rng, ps),
    }
}

/// Held: on the same data (committed; a write transaction's `CursorMut`
/// beside a read transaction's `Cursor`), thousands of random moves give
/// the same entries from both, with empty keys, zero bytes, long keys
/// sharing long prefixes, and seeks past the longest key there can be.
#[test]
fn held_the_write_cursor_moves_as_the_read_cursor_does() {
    for ps in [512u32, 4096] {
        let mut rng = Rng(0xC0FFEE + u64::from(ps));
        let t = TestDb::new(ps);
        let ps = ps as usize;
        let mut m = Model::new();
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for _ in 0..1500 {
                let k = mixed_key(&mut rng, ps);
                let len = rng.below(3 * ps as u64) as usize;
                let v = rng.bytes(len);
                tab.insert(&k, &v).unwrap();
                m.insert(k, v);
            }
        }
        w.commit().unwrap();
        let r = t.db().begin_read().unwrap();
        let rt = r.open_table("t").unwrap();
        let mut rc = rt.cursor();
        let w = t.db().begin_write().unwrap();
        let mut tab = w.open_table("t").unwrap();
        let mut c = tab.cursor_mut();
        for i in 0..6000 {
            let (got, want, what) = match rng.below(10) {
                0 => (owned(c.first()), owned(rc.first()), "first".to_string()),
                1 => (owned(c.last()), owned(rc.last()), "last".to_string()),
                2 | 3 => {
                    let p = probe(&mut rng, ps, &m);
                    (
                        owned(c.seek(&p)),
                        owned(rc.seek(&p)),
                        format!("seek {}", short(&p)),
                    )
                }
                4..=6 => (owned(c.next()), owned(rc.next()), "next".to_string()),
                _ => (owned(c.prev()), owned(rc.prev()), "prev".to_string()),
            };
            assert_eq!(
                got.as_ref().map(|(k, _)| short(k)),
                want.as_ref().map(|(k, _)| short(k)),
                "ps {ps} move {i}: {what}"
            );
            assert_eq!(got, want, "ps {ps} move {i}: {what}: values");
        }
    }
}

// ---------------------------------------------------------------------------
// replace_current through every layout.
// ---------------------------------------------------------------------------

/// Held: the entry under the cursor takes values of every layout in turn
/// (empty, inline, each side of the inline limit, a page, packed in a
/// segment up to the longest, runs of 16 pages and more) and back, under a
/// short key, a long key (> page/4) and the longest key, between
/// neighbours: after each replace `current` is the new value, `next` and
/// `prev` find the neighbours, and the committed file checks clean with
/// no page leaked.
#[test]
fn held_replace_current_through_every_value_layout() {
    for ps in [512u32, 4096] {
        let t = TestDb::new(ps);
        let psz = ps as usize;
        let mut model = Model::new();
        let keys: Vec<Vec<u8>> = vec![
            b"m-short".to_vec(),
            [b"m-long-".as_slice(), &vec![b'k'; psz / 4 + 3]].concat(),
            {
                let mut k = vec![b'm'; larch::MAX_KEY_LEN];
                k[1] = b'~';
                k
            },
        ];
        let mut rng = Rng(u64::from(ps) ^ 0x5EED);
        for (ki, key) in keys.iter().enumerate() {
            let mut lens: Vec<usize> = vec![0, 1, 17];
            lens.extend(larch::testing::boundary_lengths(psz, key.len()));
            // Runs: one byte either side of 16 pages less a run header, and
            // longer.
            lens.extend([16 * psz - 25, 16 * psz - 24, 16 * psz - 23, 40 * psz + 3]);
            let mut order = lens.clone();
            common::shuffle(&mut order, &mut rng);
            order.extend(lens.iter().rev());
            order.push(3);
            let w = t.db().begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                let (before, after) = (format!("a{ki}"), format!("z{ki}"));
                for (k, v) in [
                    (before.as_bytes(), b"before".as_slice()),
                    (&key[..], b"first".as_slice()),
                    (after.as_bytes(), b"after".as_slice()),
                ] {
                    tab.insert(k, v).unwrap();
                    model.insert(k.to_vec(), v.to_vec());
                }
                let after = model
                    .range::<[u8], _>((Bound::Excluded(&key[..]), Bound::Unbounded))
                    .next()
                    .map(|(k, _)| k.clone())
                    .unwrap();
                let mut c = tab.cursor_mut();
                assert_eq!(owned(c.seek(key)).unwrap().0, *key);
                for (i, &len) in order.iter().enumerate() {
                    let v = common::seeded_bytes((ki * 1000 + i) as u64, len);
                    let ctx = format!("ps {ps} key {} len {len} (#{i})", short(key));
                    assert!(c.replace_current(&v).unwrap(), "{ctx}");
                    let (k, got) = owned(c.current()).unwrap();
                    assert!(k == *key && got == v, "{ctx}: current after replace");
                    let next = owned(c.next()).unwrap();
                    assert!(next.0 == after, "{ctx}: next");
                    let back = owned(c.prev()).unwrap();
                    assert!(back.0 == *key && back.1 == v, "{ctx}: prev");
                    model.insert(key.clone(), v);
                }
            }
            w.commit().unwrap();
            assert!(
                contents(t.db(), "t") == model,
                "ps {ps}: committed contents"
            );
            assert_clean(t.db());
        }
        // Every value back to nothing, by the cursor: the file keeps no run
        // or segment of theirs.
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            let mut c = tab.cursor_mut();
            while owned(c.next()).is_some() {
                assert!(c.replace_current(b"").unwrap());
            }
            drop(c);
            let st = tab.iter().unwrap().count();
            assert_eq!(st, model.len());
        }
        w.commit().unwrap();
        for v in model.values_mut() {
            v.clear();
        }
        assert!(contents(t.db(), "t") == model);
        // As many runs and packed bytes as the same entries written afresh
        // (long keys keep theirs): the old values left nothing behind.
        let w = t.db().begin_write().unwrap();
        {
            let mut fresh = w.open_table("fresh").unwrap();
            for (k, v) in &model {
                fresh.insert(k, v).unwrap();
            }
        }
        w.commit().unwrap();
        let r = t.db().begin_read().unwrap();
        let st = r.open_table("t").unwrap().stat().unwrap();
        let want = r.open_table("fresh").unwrap().stat().unwrap();
        assert_eq!(
            (
                st.overflow_pages,
                st.packed_values,
                st.packed_bytes,
                st.entries
            ),
            (
                want.overflow_pages,
                want.packed_values,
                want.packed_bytes,
                want.entries
            ),
            "ps {ps}: values emptied by the cursor keep runs or packed bytes: {st:?} vs {want:?}"
        );
        drop(r);
        assert_clean(t.db());
    }
}

// ---------------------------------------------------------------------------
// A long random walk against the model.
// ---------------------------------------------------------------------------

fn mixed_value(rng: &mut Rng, ps: usize) -> Vec<u8> {
    let len = match rng.below(16) {
        0 => 16 * ps + rng.below(4 * ps as u64) as usize,
        1 | 2 => ps / 4 + rng.below(2 * ps as u64) as usize,
        3 => 0,
        _ => rng.below(60) as usize,
    };
    rng.bytes(len)
}

fn bound(rng: &mut Rng, ps: usize, m: &Model) -> Bound<Vec<u8>> {
    match rng.below(5) {
        0 => Bound::Unbounded,
        1 | 2 => Bound::Included(probe(rng, ps, m)),
        _ => Bound::Excluded(probe(rng, ps, m)),
    }
}

fn within(k: &[u8], start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    let after_start = match start {
        Bound::Included(s) => k >= &s[..],
        Bound::Excluded(s) => k > &s[..],
        Bound::Unbounded => true,
    };
    let before_end = match end {
        Bound::Included(e) => k <= &e[..],
        Bound::Excluded(e) => k < &e[..],
        Bound::Unbounded => true,
    };
    after_start && before_end
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Held: many transactions of random steps, thousands in all per page
/// size: cursor moves, removals and replacements (values of every layout,
/// keys long and short, with zero bytes, empty), and between cursors
/// `drain` over random bounds taken in part, `pop_first`, `pop_last` and
/// `retain`; some transactions aborted (the model goes back), the rest
/// committed and compared whole, the file checked clean.
#[test]
fn held_a_long_random_walk_against_the_model() {
    for ps in [512u32, 4096] {
        let mut rng = Rng(0xD7A1 + u64::from(ps));
        let t = TestDb::new(ps);
        let ps = ps as usize;
        let mut committed = Model::new();
        let mut steps = 0;
        for round in 0..14 {
            let mut m = committed.clone();
            let w = t.db().begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for _ in 0..rng.below(250) {
                    let (k, v) = (mixed_key(&mut rng, ps), mixed_value(&mut rng, ps));
                    tab.insert(&k, &v).unwrap();
                    m.insert(k, v);
                }
                for burst in 0..6 {
                    let mut c = tab.cursor_mut();
                    let mut mc = ModelCursor { at: At::Unset };
                    for i in 0..(50 + rng.below(150)) {
                        let op = match rng.below(20) {
                            0 => Op::First,
                            1 => Op::Last,
                            2 | 3 => Op::Seek(probe(&mut rng, ps, &m)),
                            4..=8 => Op::Next,
                            9..=11 => Op::Prev,
                            12..=15 => Op::Remove,
                            16..=18 => Op::Replace(mixed_value(&mut rng, ps)),
                            _ => Op::Current,
                        };
                        let ctx = format!("ps {ps} round {round} burst {burst} step {i}: {op:?}");
                        let ctx = if ctx.len() > 200 {
                            format!("{}...", &ctx[..200])
                        } else {
                            ctx
                        };
                        step(&mut c, &mut mc, &mut m, &op, &ctx);
                        steps += 1;
                    }
                    drop(c);
                    assert_eq!(tab.len(), m.len() as u64);
                    let ctx = format!("ps {ps} round {round} burst {burst}");
                    match rng.below(5) {
                        0 | 1 => {
                            let (s, e) = (bound(&mut rng, ps, &m), bound(&mut rng, ps, &m));
                            let take = rng.below(80) as usize;
                            let want: Vec<Pair> = m
                                .iter()
                                .filter(|(k, _)| within(k, &s, &e))
                                .take(take)
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            let got: Vec<Pair> = tab
                                .drain((as_ref(&s), as_ref(&e)))
                                .take(take)
                                .map(Result::unwrap)
                                .collect();
                            assert!(got == want, "{ctx}: drain {take} of {s:?}..{e:?}");
                            for (k, _) in &want {
                                m.remove(k);
                            }
                        }
                        2 => {
                            let want = m.pop_first();
                            assert!(tab.pop_first().unwrap() == want, "{ctx}: pop_first");
                        }
                        3 => {
                            let want = m.pop_last();
                            assert!(tab.pop_last().unwrap() == want, "{ctx}: pop_last");
                        }
                        _ => {
                            let salt = rng.below(3) as u8;
                            let keep = |k: &[u8], v: &[u8]| (k.len() + v.len()) as u8 % 3 != salt;
                            let before = m.len();
                            m.retain(|k, v| keep(k, v));
                            let n = tab.retain(keep).unwrap();
                            assert_eq!(n as usize, before - m.len(), "{ctx}: retain");
                        }
                    }
                    assert_eq!(tab.len(), m.len() as u64, "{ctx}: len");
                }
            }
            if round % 4 == 3 {
                w.abort();
            } else {
                w.commit().unwrap();
                committed = m;
            }
            assert!(
                contents(t.db(), "t") == committed,
                "ps {ps} round {round}: committed contents"
            );
            if round % 3 == 2 {
                assert_clean(t.db());
            }
        }
        assert_clean(t.db());
        assert!(steps > 5_000, "{steps} steps");
    }
}

// ---------------------------------------------------------------------------
// drain.
// ---------------------------------------------------------------------------

/// Held: `drain` over every pair of bounds drawn from unbounded, included
/// and excluded probes (before all, on keys, between keys, the empty key,
/// a long key, past the longest key there can be): inverted and empty
/// ranges give and remove nothing, others give exactly the model's
/// entries in order; taken in part and dropped, the rest stays; a drain
/// made and dropped untouched removes nothing.
#[test]
fn held_drain_over_every_pair_of_bounds() {
    let t = TestDb::new(512);
    let long = [b"k".as_slice(), &[b'q'; 300]].concat();
    let mut base = Model::new();
    for i in 0..40u8 {
        base.insert(
            vec![b'k', b'0' + i / 10, b'0' + i % 10],
            vec![i; usize::from(i) * 13],
        );
    }
    base.insert(Vec::new(), b"empty key".to_vec());
    base.insert(vec![0], vec![0; 3000]);
    base.insert(long.clone(), vec![1; 9000]);
    base.insert(vec![0xff; 3], b"last".to_vec());
    let probes: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0],
        b"a".to_vec(),
        b"k00".to_vec(),
        b"k05".to_vec(),
        b"k055".to_vec(),
        b"k39".to_vec(),
        long.clone(),
        [long.as_slice(), &[0]].concat(),
        vec![0xff; 3],
        vec![0xff; larch::MAX_KEY_LEN + 1],
    ];
    let mut bounds = vec![Bound::Unbounded];
    for p in &probes {
        bounds.push(Bound::Included(p.clone()));
        bounds.push(Bound::Excluded(p.clone()));
    }
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for (k, v) in &base {
            tab.insert(k, v).unwrap();
        }
    }
    w.commit().unwrap();
    let mut checked = 0;
    for s in &bounds {
        for e in &bounds {
            let want: Vec<Pair> = base
                .iter()
                .filter(|(k, _)| within(k, s, e))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for take in [0, 1, 3, usize::MAX] {
                let w = t.db().begin_write().unwrap();
                {
                    let mut tab = w.open_table("t").unwrap();
                    let ctx = format!("drain({s:?}, {e:?}).take({take})");
                    let ctx = if ctx.len() > 300 {
                        ctx[..300].to_string()
                    } else {
                        ctx
                    };
                    let mut d = tab.drain((as_ref(s), as_ref(e)));
                    let mut got = Vec::new();
                    for _ in 0..take.min(want.len() + 2) {
                        match d.next() {
                            Some(item) => got.push(item.unwrap()),
                            None => break,
                        }
                    }
                    drop(d);
                    let n = take.min(want.len());
                    assert!(got[..] == want[..n], "{ctx}: given");
                    let mut rest = base.clone();
                    for (k, _) in &got {
                        rest.remove(k);
                    }
                    let now: Model = tab
                        .iter()
                        .unwrap()
                        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                        .collect();
                    assert!(now == rest, "{ctx}: what stays");
                    assert_eq!(tab.len(), rest.len() as u64, "{ctx}: len");
                    checked += 1;
                }
                w.abort();
            }
        }
    }
    assert!(checked > 1000);
    // An exhausted drain stays exhausted; a new one over the same range
    // finds what was put back in it since.
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        let mut d = tab.drain(&b"k1"[..]..&b"k2"[..]);
        assert_eq!(d.by_ref().count(), 10);
        assert!(d.next().is_none());
        drop(d);
        tab.insert(b"k15", b"again").unwrap();
        let again: Vec<Pair> = tab
            .drain(&b"k1"[..]..&b"k2"[..])
            .map(Result::unwrap)
            .collect();
        assert_eq!(again, vec![(b"k15".to_vec(), b"again".to_vec())]);
        assert_eq!(tab.len(), base.len() as u64 - 10);
    }
    w.commit().unwrap();
    assert_clean(t.db());
}

/// Held: draining every entry of a large table (tens of thousands of
/// entries, megabytes of values) needs about as much heap as
/// `remove_range` of the same range, and far less than the entries: it
/// holds one key at a time, not the range.
#[test]
fn held_a_large_drain_in_bounded_memory() {
    let t = TestDb::new(4096);
    let n = 30_000u32;
    let vlen = 400;
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..n {
            tab.insert(
                format!("key{i:08}").as_bytes(),
                &common::seeded_bytes(u64::from(i), vlen),
            )
            .unwrap();
        }
    }
    w.commit().unwrap();
    let data = (n as usize * (vlen + 11)) as isize;

    let w = t.db().begin_write().unwrap();
    let mut tab = w.open_table("t").unwrap();
    let mut count = 0u32;
    let drain_peak = peak_during(|| {
        for item in tab.drain(..) {
            let (k, v) = item.unwrap();
            assert_eq!(v.len(), vlen, "{}", short(&k));
            count += 1;
        }
    });
    assert_eq!(count, n);
    assert!(tab.is_empty());
    drop(tab);
    w.abort();

    let w = t.db().begin_write().unwrap();
    let mut tab = w.open_table("t").unwrap();
    let range_peak = peak_during(|| assert_eq!(tab.remove_range(..).unwrap(), u64::from(n)));
    drop(tab);
    w.abort();

    eprintln!("data {data} bytes; peak heap: drain {drain_peak}, remove_range {range_peak}");
    assert!(
        drain_peak <= range_peak + range_peak / 2 + (1 << 20),
        "drain held {drain_peak} bytes of heap, remove_range {range_peak}"
    );
    assert!(
        drain_peak < data / 2,
        "drain held {drain_peak} bytes of heap for {data} bytes of entries"
    );
    assert_eq!(contents(t.db(), "t").len(), n as usize);
}

// ---------------------------------------------------------------------------
// Failures: MapFull, and a transaction that failed already.
// ---------------------------------------------------------------------------

/// A database whose file may not grow past `pages` pages.
fn capped(ps: u32, pages: u64) -> TestDb {
    TestDb::with_options(
        Options::new()
            .page_size(ps)
            .map_size(8 * u64::from(ps))
            .max_size(pages * u64::from(ps)),
    )
}

/// Commits `entries` small entries to table `t`.
fn seed(db: &Database, entries: u32) -> Model {
    let mut m = Model::new();
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..entries {
            let (k, v) = (
                format!("k{i:05}").into_bytes(),
                format!("v{i}").into_bytes(),
            );
            tab.insert(&k, &v).unwrap();
            m.insert(k, v);
        }
    }
    w.commit().unwrap();
    m
}

/// Every call of a cursor over a failed transaction refuses.
fn cursor_refuses(c: &mut CursorMut<'_, '_>, ctx: &str) {
    refused(&format!("{ctx}: current"), owned_result(c.current()));
    refused(&format!("{ctx}: next"), owned_result(c.next()));
    refused(&format!("{ctx}: prev"), owned_result(c.prev()));
    refused(&format!("{ctx}: first"), owned_result(c.first()));
    refused(&format!("{ctx}: last"), owned_result(c.last()));
    refused(&format!("{ctx}: seek"), owned_result(c.seek(b"k")));
    refused(&format!("{ctx}: remove_current"), c.remove_current());
    refused(&format!("{ctx}: replace_current"), c.replace_current(b"x"));
}

fn owned_result(e: larch::Result<Option<larch::Entry<'_>>>) -> larch::Result<Option<Pair>> {
    e.map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
}

/// Held: `replace_current` with values too large for the capped file
/// meets `MapFull` (at both page sizes, after some replacements went
/// through); then every call of the cursor, of the table (a new cursor
/// and a drain included) and the commit refuse with `TxnFailed`, and the
/// committed data is as it was.
#[test]
fn held_map_full_in_replace_current_fails_everything_after() {
    for ps in [512u32, 4096] {
        let t = capped(ps, 160);
        let model = seed(t.db(), 40);
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            let mut c = tab.cursor_mut();
            let mut done = 0;
            let err = loop {
                let Some((k, _)) = owned(c.next()) else {
                    panic!("ps {ps}: every replacement fit");
                };
                match c.replace_current(&vec![9; 9 * ps as usize]) {
                    Ok(true) => done += 1,
                    Ok(false) => panic!("ps {ps}: not on {}", short(&k)),
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, Error::MapFull { .. }), "ps {ps}: {err:?}");
            assert!(done > 0, "ps {ps}: the first replacement failed");
            cursor_refuses(&mut c, &format!("ps {ps}, after MapFull"));
            drop(c);
            refused("get", tab.get(b"k00000"));
            refused("insert", tab.insert(b"k", b"v"));
            refused("remove", tab.remove(b"k00000"));
            refused("pop_first", tab.pop_first());
            match tab.drain(..).next() {
                Some(Err(Error::TxnFailed)) => {}
                other => panic!("ps {ps}: drain on a failed transaction: {other:?}"),
            }
            let mut c = tab.cursor_mut();
            refused("a new cursor's first", owned_result(c.first()));
            refused("a new cursor's next", owned_result(c.next()));
        }
        refused("commit", w.commit());
        assert!(
            contents(t.db(), "t") == model,
            "ps {ps}: committed data changed"
        );
        assert_clean(t.db());
    }
}

/// Held: `remove_current` in a full file meets `MapFull` (a removal
/// copies pages too); the cursor then refuses everything, the commit
/// too, and nothing committed is lost.
#[test]
fn held_map_full_in_remove_current() {
    for ps in [512u32, 4096] {
        let t = capped(ps, 48);
        // Fill the file, a commit at a time, until a commit does not fit.
        let mut model = Model::new();
        let mut i = 0u32;
        'fill: loop {
            let w = t.db().begin_write().unwrap();
            let mut batch = Vec::new();
            {
                let mut tab = w.open_table("t").unwrap();
                for _ in 0..8 {
                    let (k, v) = (format!("k{i:06}").into_bytes(), vec![i as u8; 40]);
                    i += 1;
                    if tab.insert(&k, &v).is_err() {
                        break 'fill;
                    }
                    batch.push((k, v));
                }
            }
            if w.commit().is_err() {
                break;
            }
            model.extend(batch);
        }
        assert!(model.len() > 20, "ps {ps}: {} entries", model.len());
        let w = t.db().begin_write().unwrap();
        let mut removed = 0;
        {
            let mut tab = w.open_table("t").unwrap();
            let mut c = tab.cursor_mut();
            // Every other entry, so that every leaf is copied.
            let err = loop {
                if owned(c.next()).is_none() || owned(c.next()).is_none() {
                    break None;
                }
                match c.remove_current() {
                    Ok(true) => removed += 1,
                    Ok(false) => panic!("ps {ps}: nothing to remove"),
                    Err(e) => break Some(e),
                }
            };
            match err {
                Some(Error::MapFull { .. }) => {
                    cursor_refuses(&mut c, &format!("ps {ps}, remove_current after MapFull"));
                }
                Some(e) => panic!("ps {ps}: {e:?}"),
                None => panic!("ps {ps}: removed {removed} in a full file without MapFull"),
            }
        }
        assert!(removed > 0, "ps {ps}: the first removal failed already");
        refused("commit after MapFull in remove_current", w.commit());
        assert!(
            contents(t.db(), "t") == model,
            "ps {ps}: committed data changed"
        );
        assert_clean(t.db());
    }
}

/// Held: a drain meets `MapFull` after it gave entries (the file capped,
/// the transaction first filling it with pages of another table to a
/// varying degree, so that some drain runs out of room part-way): the
/// error is an item, the drain ends, the table refuses, the commit
/// refuses, and every entry (those given before the error included) is
/// still in the committed file.
#[test]
fn held_map_full_half_way_through_a_drain() {
    let mut midway = 0;
    for (ps, pages, vlen) in [(512u32, 200u64, 30usize), (512, 200, 200), (4096, 120, 300)] {
        let t = capped(ps, pages);
        let mut model = Model::new();
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..(40 * ps / vlen as u32) {
                let (k, v) = (format!("k{i:06}").into_bytes(), vec![i as u8; vlen]);
                tab.insert(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        w.commit().unwrap();
        for pad in 0.. {
            let w = t.db().begin_write().unwrap();
            let padded = {
                let mut p = w.open_table("pad").unwrap();
                (0..pad).all(|i: u32| {
                    p.insert(&i.to_be_bytes(), &vec![1; ps as usize / 2])
                        .is_ok()
                })
            };
            if !padded {
                break;
            }
            let (mut given, mut err) = (0, None);
            {
                let mut tab = w.open_table("t").unwrap();
                let before = tab.len();
                let mut d = tab.drain(..);
                for item in d.by_ref() {
                    match item {
                        Ok(_) => given += 1,
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                if err.is_some() {
                    assert!(
                        d.next().is_none(),
                        "ps {ps}: a drain goes on after its error"
                    );
                }
                drop(d);
                match &err {
                    None => assert!(tab.is_empty()),
                    Some(Error::MapFull { .. }) => {
                        if given > 0 {
                            midway += 1;
                        }
                        assert_eq!(
                            tab.len(),
                            before - given as u64,
                            "ps {ps}: len after the error"
                        );
                        refused("get after a failed drain", tab.get(b"k000000"));
                        refused("drain after a failed drain", tab.drain(..).next().unwrap());
                    }
                    Some(e) => panic!("ps {ps}: {e:?}"),
                }
            }
            if err.is_some() {
                refused("commit after a failed drain", w.commit());
            } else {
                w.abort();
            }
            assert!(
                contents(t.db(), "t") == model,
                "ps {ps} pad {pad}: committed data changed"
            );
            if err.is_some() && given > 0 {
                eprintln!(
                    "ps {ps} pad {pad}: MapFull after {given} of {} entries",
                    model.len()
                );
            }
        }
        assert_clean(t.db());
    }
    assert!(midway > 0, "no drain met MapFull half-way");
}

/// Defect if it fails: a `CursorMut` made on a transaction that had
/// already failed answers `current`, `remove_current` and
/// `replace_current` with `Ok(None)` / `Ok(false)` when it is not on an
/// entry (unset, before the start, in a gap), where `TableMut` promises
/// `TxnFailed` for every later call and the read `Cursor` of a failed
/// transaction refuses every move.
#[test]
fn a_cursor_on_a_failed_transaction_refuses_every_call() {
    let t = capped(512, 24);
    seed(t.db(), 4);
    let w = t.db().begin_write().unwrap();
    let mut tab = w.open_table("t").unwrap();
    let mut failed = false;
    for i in 0..1000 {
        if let Err(e) = tab.insert(format!("x{i}").as_bytes(), &[1; 2000]) {
            assert!(matches!(e, Error::MapFull { .. }), "{e:?}");
            failed = true;
            break;
        }
    }
    assert!(failed, "the capped file never filled");
    let mut c = tab.cursor_mut();
    let mut wrong = Vec::new();
    match c.current() {
        Err(Error::TxnFailed) => {}
        other => wrong.push(format!("current() = {:?}", owned_result(other))),
    }
    match c.remove_current() {
        Err(Error::TxnFailed) => {}
        other => wrong.push(format!("remove_current() = {other:?}")),
    }
    match c.replace_current(b"v") {
        Err(Error::TxnFailed) => {}
        other => wrong.push(format!("replace_current() = {other:?}")),
    }
    refused("next", owned_result(c.next()));
    drop(c);
    drop(tab);
    refused("commit", w.commit());
    assert!(
        wrong.is_empty(),
        "a write cursor on a failed transaction answers instead of refusing: {}",
        wrong.join(", ")
    );
}

// ---------------------------------------------------------------------------
// Savepoints.
// ---------------------------------------------------------------------------

/// Held: a cursor's removals and replacements (runs and packed values
/// among them) after a savepoint are undone by restoring it, and so is a
/// `MapFull` met by the cursor: the transaction goes on and commits what
/// was there before the savepoint and after the restore.
#[test]
fn held_savepoints_undo_a_cursors_changes_and_its_failure() {
    let t = capped(512, 400);
    let mut model = Model::new();
    let mut w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..60u32 {
            let (k, v) = (
                format!("k{i:03}").into_bytes(),
                vec![i as u8; (i as usize % 5) * 300],
            );
            tab.insert(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
    let sp = w.savepoint().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        let mut c = tab.cursor_mut();
        let mut n = 0;
        while owned(c.next()).is_some() {
            if n % 3 == 0 {
                assert!(c.remove_current().unwrap());
            } else {
                assert!(c.replace_current(&vec![7; n * 97]).unwrap());
            }
            n += 1;
        }
    }
    w.restore_savepoint(&sp).unwrap();
    {
        let tab = w.open_table("t").unwrap();
        let now: Model = tab
            .iter()
            .unwrap()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        assert!(now == model, "restore did not undo the cursor's changes");
        assert_eq!(tab.len(), model.len() as u64);
    }
    // Fail the transaction through the cursor, then restore.
    {
        let mut tab = w.open_table("t").unwrap();
        let mut c = tab.cursor_mut();
        let mut failed = false;
        while owned(c.next()).is_some() {
            if c.replace_current(&vec![3; 30 * 512]).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "the capped file took every replacement");
        refused("next after MapFull", owned_result(c.next()));
    }
    w.restore_savepoint(&sp).unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        let drained: Vec<Pair> = tab
            .drain(&b"k010"[..]..&b"k020"[..])
            .map(Result::unwrap)
            .collect();
        assert_eq!(drained.len(), 10);
        for (k, v) in drained {
            assert_eq!(model.remove(&k), Some(v));
        }
    }
    w.commit().unwrap();
    assert!(contents(t.db(), "t") == model);
    assert_clean(t.db());
}

/// Held: tables of long keys only (each > page/4, stored out of their
/// leaves, sharing long prefixes), walked by a cursor that removes every
/// second and replaces the rest with values of every size, then drained
/// in slices from both halves; committed and checked.
#[test]
fn held_long_keys_only_under_a_cursor_and_a_drain() {
    for ps in [512u32, 4096] {
        let t = TestDb::with_options(small_map(ps));
        let ps = ps as usize;
        let mut rng = Rng(ps as u64 * 7);
        let mut m = Model::new();
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..300u32 {
                let mut k = vec![b'P'; ps / 4 + 1 + (i as usize % 7) * ps / 3];
                k.extend(format!("{:05}", (i * 7919) % 300).bytes());
                let v = mixed_value(&mut rng, ps);
                tab.insert(&k, &v).unwrap();
                m.insert(k, v);
            }
            let mut c = tab.cursor_mut();
            let mut mc = ModelCursor { at: At::Unset };
            let mut n = 0;
            loop {
                let ctx = format!("ps {ps} entry {n}");
                step(&mut c, &mut mc, &mut m, &Op::Prev, &ctx);
                if matches!(mc.at, At::BeforeStart) {
                    break;
                }
                let op = if n % 2 == 0 {
                    Op::Remove
                } else {
                    Op::Replace(mixed_value(&mut rng, ps))
                };
                step(&mut c, &mut mc, &mut m, &op, &ctx);
                n += 1;
            }
            drop(c);
            let mid = m.keys().nth(m.len() / 2).unwrap().clone();
            let want: Vec<Pair> = m
                .range(mid.clone()..)
                .take(20)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let got: Vec<Pair> = tab.drain(&mid[..]..).take(20).map(Result::unwrap).collect();
            assert!(got == want, "ps {ps}: drain from the middle");
            for (k, _) in &want {
                m.remove(k);
            }
            let want: Vec<Pair> = m
                .range(..mid.clone())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let got: Vec<Pair> = tab.drain(..&mid[..]).map(Result::unwrap).collect();
            assert!(got == want, "ps {ps}: drain of the first half");
            for (k, _) in &want {
                m.remove(k);
            }
        }
        w.commit().unwrap();
        assert!(contents(t.db(), "t") == m, "ps {ps}");
        assert_clean(t.db());
    }
}

// ---------------------------------------------------------------------------
// A damaged page met half-way.
// ---------------------------------------------------------------------------

/// A committed file of table "t" (keys `k00000`..) at 512-byte pages
/// whose leaf holding `k00300` is damaged (its kind byte is no node's):
/// the entries before it read, that one does not. Also the first key of
/// that leaf.
fn damaged_at_k00300() -> (TestDb, u32, u32) {
    let mut t = TestDb::new(512);
    let n = 400u32;
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..n {
            tab.insert(format!("k{i:05}").as_bytes(), &[b'v'; 20])
                .unwrap();
        }
    }
    w.commit().unwrap();
    {
        let _no_spawn = common::spawn_lock();
        t.db = None;
    }
    let mut image = std::fs::read(t.path()).unwrap();
    let leaves: Vec<usize> = image
        .chunks(512)
        .enumerate()
        .filter(|(_, p)| p[0] == 2 && p.windows(6).any(|w| w == b"k00300"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(leaves.len(), 1, "one leaf holds k00300");
    let page = &image[leaves[0] * 512..][..512];
    let first = (0..n)
        .find(|i| page.windows(6).any(|w| w == format!("k{i:05}").as_bytes()))
        .unwrap();
    image[leaves[0] * 512] = 0x7e;
    larch::testing::restamp(&mut image, 512, leaves[0] as u64);
    std::fs::write(t.path(), &image).unwrap();
    t.reopen();
    (t, n, first)
}

/// Defect if it fails: a drain that meets a damaged page after it
/// removed entries returns `Corrupted` but leaves the transaction live,
/// so the commit writes the half-done drain. `TableMut::drain` says its
/// errors are as for `remove` ("any error fails the transaction"), and
/// `remove_range` of the same range fails the transaction (checked
/// first, as the reference). The drain's read of the next entry meets
/// the damage (its two removals touched only the leaf before), and
/// `Drain::take` returns that error without failing the transaction.
#[test]
fn a_drain_that_meets_a_damaged_page_fails_the_transaction() {
    let (t, n, first) = damaged_at_k00300();
    // Two entries before the damaged leaf: removing them empties no leaf
    // (no removal reads the damaged one), and the next read meets it.
    let start = format!("k{:05}", first - 2).into_bytes();
    // remove_range of the same range: the error fails the transaction.
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        let e = tab.remove_range(&start[..]..).unwrap_err();
        assert!(matches!(e, Error::Corrupted { .. }), "{e:?}");
    }
    refused("commit after remove_range met a damaged page", w.commit());

    let w = t.db().begin_write().unwrap();
    let given;
    {
        let mut tab = w.open_table("t").unwrap();
        let mut ok = 0;
        let mut err = None;
        for item in tab.drain(&start[..]..) {
            match item {
                Ok(_) => ok += 1,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        given = ok;
        assert!(
            matches!(err, Some(Error::Corrupted { .. })),
            "the drain ended with {err:?} after {ok} entries"
        );
        assert!(given > 0, "the drain met the damage at once");
    }
    let r = w.commit();
    let left = {
        let r = t.db().begin_read().unwrap();
        r.open_table("t").unwrap().len()
    };
    assert!(
        matches!(r, Err(Error::TxnFailed)),
        "a drain met Corrupted after removing {given} entries, yet the transaction \
         committed ({r:?}): {left} of {n} entries are left"
    );
}

/// Defect if it fails: the same for a write cursor removing as it goes: a
/// `next` that meets the damaged page returns `Corrupted`, and the
/// transaction commits the removals made before it. (A move is a read,
/// but `remove_range` and `pop_first` fail the transaction on the same
/// read error.)
#[test]
fn a_removing_cursor_that_meets_a_damaged_page_fails_the_transaction() {
    let (t, _, first) = damaged_at_k00300();
    let start = format!("k{:05}", first - 2).into_bytes();
    let w = t.db().begin_write().unwrap();
    let mut removed = 0;
    {
        let mut tab = w.open_table("t").unwrap();
        let mut c = tab.cursor_mut();
        assert!(owned(c.seek(&start)).is_some());
        assert!(c.remove_current().unwrap());
        removed += 1;
        let err = loop {
            match c.next() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the walk did not meet the damage"),
                Err(e) => break e,
            }
            assert!(c.remove_current().unwrap());
            removed += 1;
        };
        assert!(matches!(err, Error::Corrupted { .. }), "{err:?}");
    }
    let r = w.commit();
    assert!(
        matches!(r, Err(Error::TxnFailed)),
        "a removing cursor met Corrupted after {removed} removals, yet the transaction \
         committed them ({r:?})"
    );
}
