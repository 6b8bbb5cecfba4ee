//! Red team of owned handles, owned transactions and owned ranges
//! (commit f1d73cb): `Database` as a clonable handle, `ReadTxn` as a shared
//! snapshot, `WriteTxn` that moves between threads, and `OwnedRange` /
//! `OwnedEntry` that keep entries by their place in the snapshot's map.
//!
//! Each test says what it attacks, and whether the attack held. A test
//! that fails here found a defect.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use common::{Rng, TestDb, seeded_bytes, shuffle, spawn_lock};
use larch::{Database, Error, OwnedEntry, OwnedRange, Table, WriteTxn};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

fn open_at(path: &Path, ps: u32) -> Database {
    let _no_spawn = spawn_lock();
    common::open(path, ps)
}

/// Keys of every shape (the empty key, 0xFF runs, short keys, long keys
/// stored out of line) with inline, packed and overflow values, in one
/// transaction.
fn fill_mixed(db: &Database, n: usize, seed: u64) -> Model {
    let ps = db.page_size() as usize;
    let mut rng = Rng(seed);
    let mut keys: Vec<Vec<u8>> = (0..n).map(|i| format!("k{i:06}").into_bytes()).collect();
    keys.push(Vec::new());
    keys.push(vec![0xFF]);
    keys.push(vec![0xFF, 0xFF]);
    keys.push(vec![0xFF, 0xFF, 0x00]);
    keys.push(vec![0xFE, 0xFF]);
    keys.push(vec![0xFF; ps / 4 + 40]);
    for i in (0..n).step_by(29) {
        let mut k = format!("k{i:06}").into_bytes();
        k.extend(std::iter::repeat_n(b'L', ps / 4 + 1 + i % 200));
        keys.push(k);
    }
    shuffle(&mut keys, &mut rng);
    let mut model = Model::new();
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for (i, k) in keys.into_iter().enumerate() {
            let len = match i % 17 {
                0 => ps * 2 + i % (ps * 3),
                1 | 2 => ps / 3 + i % ps,
                3 => 0,
                _ => i % 40,
            };
            let v = seeded_bytes(i as u64 + seed * 1_000_003, len);
            t.insert(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
    w.commit().unwrap();
    model
}

fn model_range<'m>(
    model: &'m Model,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> Vec<(&'m Vec<u8>, &'m Vec<u8>)> {
    let inverted = match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    };
    if inverted {
        return Vec::new();
    }
    model.range::<[u8], _>((start, end)).collect()
}

/// How a caller takes the two ends of a range: `runs[i]` entries from the
/// front when `i` is even, from the back when odd, then the pattern repeats.
#[derive(Clone, Copy, Debug)]
enum Take {
    Forward,
    Backward,
    Runs(&'static [usize]),
}

/// Drains `it` as `take` says, comparing each entry in place with the
/// model (no copies); panics with `what` on the first difference.
fn drain_against(mut it: OwnedRange, want: &[(&Vec<u8>, &Vec<u8>)], take: Take, what: &str) {
    let (mut lo, mut hi) = (0usize, want.len());
    let mut kept: Vec<(usize, OwnedEntry)> = Vec::new();
    let mut check = |e: Option<larch::Result<OwnedEntry>>,
                     front: bool,
                     lo: &mut usize,
                     hi: &mut usize|
     -> bool {
        let Some(e) = e else {
            assert_eq!(
                lo,
                hi,
                "{what} ({take:?}): the range ended with {} entries not given",
                *hi - *lo
            );
            return false;
        };
        let e = e.unwrap_or_else(|e| panic!("{what} ({take:?}): {e:?}"));
        assert!(
            *lo < *hi,
            "{what} ({take:?}): an entry past the end of the range ({} bytes key, front {front})",
            e.key().len()
        );
        let at = if front {
            *lo += 1;
            *lo - 1
        } else {
            *hi -= 1;
            *hi
        };
        let (k, v) = want[at];
        assert!(
            e.key() == k.as_slice(),
            "{what} ({take:?}): entry {at} from the {}: key {} != {}",
            if front { "front" } else { "back" },
            common::show_key(e.key()),
            common::show_key(k)
        );
        assert!(
            e.value() == v.as_slice(),
            "{what} ({take:?}): entry {at}: value of {} bytes differs",
            v.len()
        );
        // Keep every 7th: read again once the range is gone.
        if at % 7 == 0 {
            kept.push((at, e));
        }
        true
    };
    match take {
        Take::Forward => while check(it.next(), true, &mut lo, &mut hi) {},
        Take::Backward => while check(it.next_back(), false, &mut lo, &mut hi) {},
        Take::Runs(runs) => 'outer: loop {
            for (i, &n) in runs.iter().enumerate() {
                for _ in 0..n {
                    let front = i % 2 == 0;
                    let e = if front { it.next() } else { it.next_back() };
                    if !check(e, front, &mut lo, &mut hi) {
                        break 'outer;
                    }
                }
            }
        },
    }
    assert!(
        it.next().is_none() && it.next_back().is_none(),
        "{what} ({take:?}): an ended range gave more"
    );
    drop(it);
    for (at, e) in kept {
        assert!(
            e.key() == want[at].0.as_slice() && e.value() == want[at].1.as_slice(),
            "{what}: a kept entry changed after its range was dropped"
        );
    }
}

fn borrowed_range(
    tab: &Table<'_>,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    tab.range((start, end))
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

const TAKES: &[Take] = &[
    Take::Forward,
    Take::Backward,
    Take::Runs(&[1, 1]),
    // Exactly the batch sizes, alternating ends.
    Take::Runs(&[16, 16, 32, 32, 64, 64, 128, 128, 256, 256, 512, 512]),
    Take::Runs(&[16, 32, 64, 128, 256, 512]),
    // One short of and one past each boundary.
    Take::Runs(&[15, 17, 31, 33, 63, 65, 127, 129, 511, 513]),
    Take::Runs(&[0, 1, 16, 0, 0, 48]),
    Take::Runs(&[496, 1, 1, 512]),
];

/// Held: owned ranges of exactly the sizes around every batch boundary
/// (16, 48, 112, 240, 496, 1008, 1520 cumulative), at many offsets, with
/// every pattern of front and back takes, give what a model gives, with
/// long keys, the empty key, 0xFF keys, and inline, packed and overflow
/// values; `Table::range` agrees.
#[test]
fn batch_boundaries_in_every_take_pattern() {
    let t = TestDb::new(512);
    let model = fill_mixed(t.db(), 1700, 1);
    let keys: Vec<&Vec<u8>> = model.keys().collect();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    let sizes = [
        0usize, 1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 49, 111, 112, 113, 239, 240, 241, 495, 496,
        497, 1007, 1008, 1009, 1519, 1520, 1521,
    ];
    for &n in &sizes {
        for off in [0usize, 1, 5, 97] {
            if off + n >= keys.len() {
                continue;
            }
            // [keys[off], keys[off + n]) and (keys[off - 1], keys[off + n - 1]].
            let cases: [Bounds<'_>; 2] = [
                (Bound::Included(keys[off]), Bound::Excluded(keys[off + n])),
                (
                    if off == 0 {
                        Bound::Unbounded
                    } else {
                        Bound::Excluded(keys[off - 1])
                    },
                    if n == 0 {
                        Bound::Excluded(keys[off])
                    } else {
                        Bound::Included(keys[off + n - 1])
                    },
                ),
            ];
            for (start, end) in cases {
                let want = model_range(&model, start, end);
                assert_eq!(want.len(), n);
                for &take in TAKES {
                    let it = tab.range_owned((start, end)).unwrap();
                    drain_against(it, &want, take, &format!("{n} entries from {off}"));
                }
            }
        }
    }
    // The whole table, and the tail from each boundary, every way.
    for &take in TAKES {
        let want = model_range(&model, Bound::Unbounded, Bound::Unbounded);
        drain_against(tab.iter_owned().unwrap(), &want, take, "iter_owned");
    }
    for &n in &sizes {
        if n >= keys.len() {
            continue;
        }
        let from = keys[keys.len() - 1 - n];
        let want = model_range(&model, Bound::Excluded(from), Bound::Unbounded);
        for &take in TAKES {
            let it = tab
                .range_owned((Bound::Excluded(&from[..]), Bound::Unbounded))
                .unwrap();
            drain_against(it, &want, take, &format!("last {n}"));
        }
    }
}

/// Held: every combination of start and end bound (unbounded, included,
/// excluded) over probes that are keys, absent keys, the empty key, 0xFF
/// runs, a long key and a bound longer than any key may be, in both
/// directions and alternating; inverted and empty ranges give nothing from
/// either end; prefixes of 0xFF bytes end where they must.
#[test]
fn every_bound_combination_and_ff_prefixes() {
    let t = TestDb::new(512);
    let model = fill_mixed(t.db(), 300, 2);
    let keys: Vec<&Vec<u8>> = model.keys().collect();
    let long_ff = vec![0xFFu8; 512 / 4 + 40];
    let huge = vec![0xFFu8; larch::MAX_KEY_LEN + 10];
    let mut probes: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x00],
        keys[1].clone(),
        keys[2].clone(),
        b"k000150".to_vec(),
        b"k000150\x00".to_vec(),
        b"k00015".to_vec(),
        keys[keys.len() / 3].clone(),
        vec![0xFE],
        vec![0xFF],
        vec![0xFF, 0xFF],
        vec![0xFF, 0xFF, 0x00],
        vec![0xFF, 0xFF, 0xFF],
        long_ff.clone(),
        huge.clone(),
    ];
    probes.push(keys[keys.len() - 1].clone());
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    let bound = |kind: usize, k: &[u8]| -> Bound<Vec<u8>> {
        match kind {
            0 => Bound::Unbounded,
            1 => Bound::Included(k.to_vec()),
            _ => Bound::Excluded(k.to_vec()),
        }
    };
    fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    let mut combos = 0;
    for (i, a) in probes.iter().enumerate() {
        for sk in 0..3 {
            if sk == 0 && i > 0 {
                continue;
            }
            for (j, b) in probes.iter().enumerate() {
                for ek in 0..3 {
                    if ek == 0 && j > 0 {
                        continue;
                    }
                    let (s, e) = (bound(sk, a), bound(ek, b));
                    let (s, e) = (as_ref(&s), as_ref(&e));
                    let want = model_range(&model, s, e);
                    let what = format!("start {sk}:{i} end {ek}:{j}");
                    let borrowed = borrowed_range(&tab, s, e);
                    assert!(
                        borrowed.len() == want.len()
                            && borrowed
                                .iter()
                                .zip(&want)
                                .all(|(g, w)| &g.0 == w.0 && &g.1 == w.1),
                        "{what}: Table::range differs from the model"
                    );
                    for take in [
                        Take::Forward,
                        Take::Backward,
                        Take::Runs(&[1, 1]),
                        Take::Runs(&[16, 3]),
                    ] {
                        drain_against(tab.range_owned((s, e)).unwrap(), &want, take, &what);
                    }
                    combos += 1;
                }
            }
        }
    }
    assert!(combos > 900);
    // Inverted and empty: nothing, from either end, and nothing after.
    let a: &[u8] = b"k000100";
    let b: &[u8] = b"k000200";
    let empties: [Bounds<'_>; 5] = [
        (Bound::Included(b), Bound::Excluded(a)),
        (Bound::Included(b), Bound::Included(a)),
        (Bound::Included(a), Bound::Excluded(a)),
        (Bound::Excluded(a), Bound::Excluded(a)),
        (Bound::Excluded(a), Bound::Included(a)),
    ];
    for (s, e) in empties {
        let mut it = tab.range_owned((s, e)).unwrap();
        assert!(it.next_back().is_none() && it.next().is_none() && it.next_back().is_none());
    }
    let mut one = tab.range_owned(a..=a).unwrap();
    assert_eq!(one.next_back().unwrap().unwrap().key(), a);
    assert!(one.next().is_none());
    // Prefixes.
    let mut prefixes: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0xFF],
        vec![0xFF, 0xFF],
        vec![0xFF, 0xFF, 0xFF],
        vec![0xFE],
        vec![0xFE, 0xFF],
        long_ff.clone(),
        long_ff[..long_ff.len() - 1].to_vec(),
        huge,
        b"k".to_vec(),
        b"k0001".to_vec(),
    ];
    prefixes.push(keys[5].clone());
    for p in &prefixes {
        let want: Vec<(&Vec<u8>, &Vec<u8>)> =
            model.iter().filter(|(k, _)| k.starts_with(p)).collect();
        let borrowed: Vec<Vec<u8>> = tab
            .prefix(p)
            .unwrap()
            .map(|e| e.unwrap().0.to_vec())
            .collect();
        assert_eq!(
            borrowed.len(),
            want.len(),
            "Table::prefix of {} bytes",
            p.len()
        );
        for take in [
            Take::Forward,
            Take::Backward,
            Take::Runs(&[1, 1]),
            Take::Runs(&[16, 16, 32]),
        ] {
            drain_against(
                tab.prefix_owned(p).unwrap(),
                &want,
                take,
                &format!("prefix {}", common::show_key(p)),
            );
        }
    }
}

/// Reads every kept entry on `threads` threads at once, in a loop until
/// `stop`, checking its bytes against `want`; counts the rounds.
fn watch(
    entries: Arc<Vec<OwnedEntry>>,
    want: Arc<Vec<(Vec<u8>, Vec<u8>)>>,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for (e, (k, v)) in entries.iter().zip(want.iter()) {
                assert!(
                    e.key() == k.as_slice() && e.value() == v.as_slice(),
                    "an owned entry's bytes changed under it ({} byte key, {} byte value)",
                    k.len(),
                    v.len()
                );
            }
            rounds.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Rewrites every key of `model` with new values (some removed, some of
/// many pages), `rounds` times.
fn churn(db: &Database, model: &Model, rounds: u64, seed: u64) {
    let ps = db.page_size() as usize;
    for round in 0..rounds {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for (i, k) in model.keys().enumerate() {
                if (i as u64 + round).is_multiple_of(4) {
                    tab.remove(k).unwrap();
                } else {
                    let len = if i % 23 == 0 {
                        ps * 4
                    } else {
                        (i * 7 + round as usize) % 300
                    };
                    tab.insert(k, &seeded_bytes(seed ^ (round << 32) ^ i as u64, len))
                        .unwrap();
                }
            }
        }
        w.commit().unwrap();
    }
}

/// Held: entries kept after their `Database` (every clone), `ReadTxn` and
/// `OwnedRange` are dropped, read on four threads at once while another
/// handle of the same file (opened after the first closed) churns, empties
/// the table, compacts and regrows the file through many remaps (a map of
/// 16 pages): their bytes never change, the file never gets shorter than
/// their snapshot, the other handle counts their reader, and once they go
/// the file shrinks and checks.
#[test]
fn entries_outlive_every_handle_through_churn_compaction_and_remaps() {
    let ps = 512u32;
    let mut t = TestDb::new(ps);
    let model = fill_mixed(t.db(), 1500, 3);
    // Grow it further so that compaction has a tail to cut.
    churn(t.db(), &model, 2, 99);
    let snap_pages = t.db().stat().unwrap().pages;
    let r = t.db().begin_read().unwrap();
    let snap_model = larch::testing::read_snapshot(&r).unwrap()["t"].clone();
    let (entries, want) = {
        let tab = r.open_table("t").unwrap();
        let mut it = tab.iter_owned().unwrap();
        let mut entries = Vec::new();
        // Both ends, past the first batches.
        for i in 0..600 {
            let e = if i % 3 == 0 {
                it.next_back()
            } else {
                it.next()
            };
            entries.push(e.unwrap().unwrap());
        }
        let want: Vec<(Vec<u8>, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.key().to_vec(), e.value().to_vec()))
            .collect();
        (entries, want)
    };
    for (k, v) in &want {
        assert_eq!(snap_model.get(k), Some(v), "an entry not of its snapshot");
    }
    let high = r.id();
    drop(r);
    // Every handle gone; only the entries hold the snapshot.
    let clone = t.db().clone();
    t.db = None;
    drop(clone);
    let path = t.path();
    let len_now = std::fs::metadata(&path).unwrap().len();
    assert!(
        len_now >= snap_pages * u64::from(ps),
        "closing the last handle cut the file to {len_now} bytes under a live snapshot of {snap_pages} pages"
    );
    let db = open_at(&path, ps);
    assert_eq!(
        db.live_readers(),
        1,
        "a new handle does not see the entries' snapshot"
    );
    assert_eq!(db.readers().unwrap()[0].txn_id, high);

    let entries = Arc::new(entries);
    let want = Arc::new(want);
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let watchers: Vec<_> = (0..2)
        .map(|_| watch(entries.clone(), want.clone(), stop.clone(), rounds.clone()))
        .collect();
    let floor = snap_pages * u64::from(ps);
    for cycle in 0..4u64 {
        churn(&db, &model, 6, cycle);
        // Empty the table, compact, then grow it again.
        let mut w = db.begin_write().unwrap();
        w.delete_table("t").unwrap();
        w.commit().unwrap();
        db.compact().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(
            len >= floor,
            "cycle {cycle}: compaction cut the file to {len} bytes under a live snapshot of {floor}"
        );
        fill_mixed(&db, 1500, 10 + cycle);
    }
    stop.store(true, Ordering::Relaxed);
    for w in watchers {
        w.join().expect("a watcher saw an entry change");
    }
    assert!(rounds.load(Ordering::Relaxed) > 0);
    for (e, (k, v)) in entries.iter().zip(want.iter()) {
        assert!(e.key() == k.as_slice() && e.value() == v.as_slice());
    }
    let before = std::fs::metadata(&path).unwrap().len();
    drop(entries);
    assert_eq!(
        db.live_readers(),
        0,
        "the last entry did not end its snapshot"
    );
    let mut w = db.begin_write().unwrap();
    w.delete_table("t").unwrap();
    w.commit().unwrap();
    db.compact().unwrap();
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(
        after < before,
        "the file did not shrink once the entries went ({before} -> {after})"
    );
    db.check().unwrap();
}

/// Held: an owned range made and never started holds its snapshot from the
/// moment it is made: `readers` lists it, it pins the pages its snapshot
/// reaches (and `pinned_pages` says so), compaction keeps the file's
/// length under it, and when it is finally walked (after the writer
/// removed every key, deleted the table and compacted) it gives the old
/// snapshot whole.
#[test]
fn an_unstarted_owned_range_holds_its_snapshot() {
    let ps = 512u32;
    let t = TestDb::new(ps);
    let model = fill_mixed(t.db(), 800, 4);
    let snap_pages = t.db().stat().unwrap().pages;
    let (it, back) = {
        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        (tab.iter_owned().unwrap(), tab.range_owned(..).unwrap())
    };
    let id = t.db().last_txn_id();
    assert_eq!(t.db().live_readers(), 1);
    for round in 0..3u64 {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            tab.remove_range(..).unwrap();
            for i in 0..200u32 {
                tab.insert(&i.to_be_bytes(), &seeded_bytes(round, 700))
                    .unwrap();
            }
        }
        w.commit().unwrap();
    }
    let readers = t.db().readers().unwrap();
    assert_eq!(readers.len(), 1);
    assert_eq!(
        readers[0].txn_id, id,
        "the range's snapshot is not the one listed"
    );
    assert!(
        readers[0].pinned_pages > 0,
        "an owned range's snapshot pins nothing"
    );
    let mut w = t.db().begin_write().unwrap();
    w.delete_table("t").unwrap();
    w.commit().unwrap();
    t.db().compact().unwrap();
    let len = t.file_size();
    assert!(
        len >= snap_pages * u64::from(ps),
        "compaction cut under an unstarted owned range"
    );
    let want = model_range(&model, Bound::Unbounded, Bound::Unbounded);
    drain_against(it, &want, Take::Forward, "unstarted range, forward");
    drain_against(back, &want, Take::Backward, "unstarted range, backward");
    assert_eq!(t.db().live_readers(), 0);
}

/// Held: the last clone of a handle dropped while a write transaction of it
/// lives on another thread, and a read transaction and an owned range live
/// too; the same file opened again in the same process: the new handle
/// sees the old handle's reader, cannot start a writer while the old one
/// runs, and gets the lock once the old one commits on a third thread;
/// the old snapshot reads on; everything reopens and checks.
#[test]
fn closing_beside_a_moved_writer_and_reopening() {
    let ps = 4096u32;
    let mut t = TestDb::new(ps);
    let model = fill_mixed(t.db(), 400, 5);
    let path = t.path();
    let r = t.db().begin_read().unwrap();
    let it = r.open_table("t").unwrap().iter_owned().unwrap();
    let (tx, rx) = mpsc::channel::<WriteTxn>();
    let db = t.db().clone();
    std::thread::spawn(move || {
        let w = db.begin_write().unwrap();
        w.open_table("t")
            .unwrap()
            .insert(b"from-old", b"1")
            .unwrap();
        tx.send(w).unwrap();
        // `db` (a clone) drops here, on the thread that began the writer.
    })
    .join()
    .unwrap();
    let w = rx.recv().unwrap();
    t.db = None; // The last clone: its close runs beside the live writer.
    let new = open_at(&path, ps);
    assert_eq!(new.live_readers(), 1, "the old handle's reader is not seen");
    assert!(
        new.try_begin_write().unwrap().is_none(),
        "a second writer started beside the old handle's moved writer"
    );
    let (got_tx, got_rx) = mpsc::channel();
    let waiter = {
        let new = new.clone();
        std::thread::spawn(move || {
            let w = new.begin_write().unwrap();
            w.open_table("t")
                .unwrap()
                .insert(b"from-new", b"2")
                .unwrap();
            got_tx.send(()).unwrap();
            w.commit().unwrap();
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        got_rx.try_recv().is_err(),
        "the new handle's writer ran beside the old one"
    );
    std::thread::spawn(move || w.commit().unwrap())
        .join()
        .unwrap();
    got_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the new handle never got the writer lock");
    waiter.join().unwrap();
    let want = model_range(&model, Bound::Unbounded, Bound::Unbounded);
    drain_against(
        it,
        &want,
        Take::Runs(&[16, 16]),
        "old range after the reopen",
    );
    assert_eq!(r.open_table("t").unwrap().get(b"from-old").unwrap(), None);
    drop(r);
    let rr = new.begin_read().unwrap();
    let tab = rr.open_table("t").unwrap();
    assert_eq!(tab.get(b"from-old").unwrap(), Some(&b"1"[..]));
    assert_eq!(tab.get(b"from-new").unwrap(), Some(&b"2"[..]));
    drop(rr);
    drop(new);
    let again = open_at(&path, ps);
    assert_eq!(again.live_readers(), 0);
    again.check().unwrap();
    let rr = again.begin_read().unwrap();
    assert_eq!(rr.open_table("t").unwrap().len(), model.len() as u64 + 2);
}

const CHILD_ENV: &str = "LARCH_REDTEAM_OWNED_CHILD";

/// Not a test on its own: the child process of
/// `a_moved_writer_dropped_elsewhere_frees_the_lock_everywhere`, which
/// opens the database and says whether it could start a writer.
#[test]
fn child_try_write() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    // SAFETY: the parent test owns the file; only larch handles touch it.
    let db = unsafe { common::small_map(4096).open(&path) }.unwrap();
    let got = match db.try_begin_write() {
        Ok(Some(w)) => {
            drop(w);
            "got"
        }
        Ok(None) => "busy",
        Err(_) => "error",
    };
    println!("\nCHILD-RESULT:{got}");
}

fn child_can_write(path: &Path) -> String {
    let _no_spawn = spawn_lock();
    let out = common::test_command("child_try_write", &[(CHILD_ENV, path.to_str().unwrap())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split_once("CHILD-RESULT:"))
        .map(|(_, r)| r.trim())
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "no answer: {text} / {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Held: a write transaction begun on one thread and dropped (an abort) on
/// another frees the writer lock for another handle of this process and
/// for another process; while it lives neither gets it. The same for one
/// committed on a third thread.
#[test]
fn a_moved_writer_dropped_elsewhere_frees_the_lock_everywhere() {
    let t = TestDb::new(4096);
    let path = t.path();
    let other = open_at(&path, 4096);
    for commit in [false, true] {
        let db = t.db().clone();
        let w = std::thread::spawn(move || {
            let w = db.begin_write().unwrap();
            w.open_table("t").unwrap().insert(b"k", b"v").unwrap();
            w
        })
        .join()
        .unwrap();
        assert!(
            other.try_begin_write().unwrap().is_none(),
            "another handle wrote beside it"
        );
        assert_eq!(
            child_can_write(&path),
            "busy",
            "another process wrote beside it"
        );
        std::thread::spawn(move || if commit { w.commit().unwrap() } else { drop(w) })
            .join()
            .unwrap();
        let w2 = other
            .try_begin_write()
            .unwrap()
            .expect("another handle cannot write after the moved writer ended");
        drop(w2);
        assert_eq!(
            child_can_write(&path),
            "got",
            "another process cannot write after it ended"
        );
        assert!(t.db().try_begin_write().unwrap().is_some());
    }
}

/// Forks with `f` run in the child (which then leaves with `_exit`, the
/// code `f` returns), and waits for it; returns its exit code.
fn in_child(f: impl FnOnce() -> i32) -> i32 {
    let _no_spawn = spawn_lock();
    // SAFETY: the child runs only `f` and leaves with `_exit`; the spawn
    // lock keeps this test binary's other children from forking meanwhile.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
        // SAFETY: leaves without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: plain syscall on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status),
        "the child did not exit: status {status}"
    );
    libc::WEXITSTATUS(status)
}

/// DEFECT: a child made by `fork` that drops the write transaction it
/// inherited (as any child does that leaves a scope, or unwinds) releases
/// the parent's writer lock: `WriteTxn::drop` calls `unlock_writer`
/// without checking the process, and the byte locks belong to the open
/// file description the child shares. Another handle (or process) then
/// starts a second writer beside the parent's. (Not new in f1d73cb: the
/// same at its parent; a writer that may move makes it easier to meet.)
#[test]
fn a_forked_child_dropping_an_inherited_writer_keeps_the_parents_lock() {
    let t = TestDb::new(4096);
    let path = t.path();
    let other = open_at(&path, 4096);
    let w = t.db().begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"parent", b"1").unwrap();
    let mut w = Some(w);
    let code = in_child(|| {
        drop(w.take());
        0
    });
    assert_eq!(code, 0);
    let second = other.try_begin_write().unwrap();
    let two_writers = second.is_some();
    drop(second);
    assert!(
        !two_writers,
        "a forked child dropping its copy of the parent's write transaction released the \
         parent's writer lock: another handle started a writer beside the parent's"
    );
    w.unwrap().commit().unwrap();
    other.check().unwrap();
}

/// DEFECT: a child made by `fork` may commit the write transaction it
/// inherited: `WriteTxn::commit` never checks the process (only
/// `begin_write` and `begin_read` do), so the child writes pages and a
/// meta, and publishes a commit, under the parent's locks. Another handle's
/// reader starts on that commit; the parent then commits the same
/// transaction (same id, same page numbers, other contents) over it, and
/// the reader's entries change under it, and that handle (which keeps the
/// child's meta as its latest) then reads a corrupt catalog. The child's
/// commit should fail with `Error::Forked` and change nothing. (Not new in
/// f1d73cb: the child commits at its parent too.)
#[test]
fn a_forked_child_cannot_commit_an_inherited_writer() {
    let t = TestDb::new(4096);
    let path = t.path();
    let model = fill_mixed(t.db(), 300, 16);
    let other = open_at(&path, 4096);
    let before = t.db().last_txn_id();
    let w = t.db().begin_write().unwrap();
    w.open_table("t").unwrap().remove_range(..).unwrap();
    w.open_table("t")
        .unwrap()
        .insert(b"parent", &[b'P'; 3000])
        .unwrap();
    let mut w = Some(w);
    let code = in_child(|| {
        let w = w.take().unwrap();
        let put = || -> larch::Result<()> {
            let mut t = w.open_table("t")?;
            t.insert(b"parent", &[b'C'; 3000])?;
            t.insert(b"child", &[b'C'; 100])?;
            Ok(())
        };
        if put().is_err() {
            std::mem::forget(w);
            return 3;
        }
        match w.commit() {
            Ok(()) => 1,
            Err(Error::Forked) => 0,
            Err(_) => 2,
        }
    });
    let published = t.db().last_txn_id();
    // A reader of another handle, on whatever commit is published now.
    let reader: Vec<(Vec<u8>, Vec<u8>, OwnedEntry)> = other
        .begin_read()
        .unwrap()
        .open_table("t")
        .unwrap()
        .iter_owned()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.key().to_vec(), e.value().to_vec(), e)
        })
        .collect();
    // The parent's transaction goes on as if the child had not been.
    let parent = w.unwrap().commit();
    let changed = reader
        .iter()
        .filter(|(k, v, e)| e.key() != k.as_slice() || e.value() != v.as_slice())
        .count();
    drop(reader);
    let check = other.check().map(|_| ());
    let r = other.begin_read().unwrap();
    let child_key = r
        .open_table("t")
        .ok()
        .and_then(|t| t.get(b"child").ok().flatten().map(<[u8]>::to_vec));
    drop(r);
    drop(other);
    let fresh = open_at(&path, 4096).check().map(|_| ());
    assert!(
        code == 0 && published == before,
        "a forked child committed its copy of the parent's write transaction \
         (child exit code {code}: 0 = Forked, 1 = committed, 2 = other error; \
         published commit {before} -> {published}; a reader of another handle on it then \
         saw {changed} of its entries change when the parent committed ({parent:?}) the same \
         transaction; the child's key afterwards: {}; check by that handle: {check:?}; \
         check by a fresh handle: {fresh:?}; {} keys before)",
        if child_key.is_some() {
            "present"
        } else {
            "gone"
        },
        model.len()
    );
    parent.unwrap();
}

/// Held: a child made by `fork` that drops the owned range, entries and
/// read transaction it inherited ends none of the parent's snapshot: the
/// parent still counts its reader, compaction keeps the file under it,
/// and its entries read right.
#[test]
fn a_forked_child_dropping_inherited_ranges_keeps_the_parents_snapshot() {
    let ps = 512u32;
    let t = TestDb::new(ps);
    let model = fill_mixed(t.db(), 600, 6);
    let snap_pages = t.db().stat().unwrap().pages;
    let r = t.db().begin_read().unwrap();
    let mut it = r.open_table("t").unwrap().iter_owned().unwrap();
    let first = it.next().unwrap().unwrap();
    let mut held = Some((r, it, first.clone()));
    let code = in_child(|| {
        drop(held.take());
        0
    });
    assert_eq!(code, 0);
    let (r, it, _) = held.unwrap();
    drop(r);
    assert_eq!(
        t.db().live_readers(),
        1,
        "the child ended the parent's snapshot"
    );
    let mut w = t.db().begin_write().unwrap();
    w.delete_table("t").unwrap();
    w.commit().unwrap();
    churn(t.db(), &model, 3, 7);
    t.db().compact().unwrap();
    assert!(
        t.file_size() >= snap_pages * u64::from(ps),
        "cut under the parent's snapshot"
    );
    let want = model_range(&model, Bound::Unbounded, Bound::Unbounded);
    assert_eq!(first.key(), want[0].0.as_slice());
    drain_against(
        it,
        &want[1..],
        Take::Runs(&[5, 5]),
        "parent's range after the child left",
    );
}

/// Held: a write transaction that failed (`MapFull` past `max_size`, then
/// `TxnFailed`) moved to another thread: its commit there is refused with
/// `TxnFailed`, changes nothing, does not poison the handle, and frees the
/// writer lock for this handle and another.
#[test]
fn a_failed_writer_moved_and_committed_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let ps = 4096u32;
    {
        let db = open_at(&path, ps);
        let w = db.begin_write().unwrap();
        w.open_table("t").unwrap().insert(b"a", b"1").unwrap();
        w.commit().unwrap();
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let _no_spawn = spawn_lock();
    // SAFETY: the test owns the file.
    let db = unsafe {
        common::small_map(ps)
            .max_size(len + 64 * u64::from(ps))
            .open(&path)
    }
    .unwrap();
    drop(_no_spawn);
    let other = open_at(&path, ps);
    let before = db.last_txn_id();
    let w = db.begin_write().unwrap();
    let mut failed = false;
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..1000u32 {
            match tab.insert(&i.to_be_bytes(), &seeded_bytes(u64::from(i), 3000)) {
                Ok(_) => {}
                Err(Error::MapFull { .. }) => {
                    failed = true;
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        if failed {
            assert!(matches!(tab.insert(b"z", b"z"), Err(Error::TxnFailed)));
        }
    }
    assert!(failed, "max_size never made an insert fail");
    let r = std::thread::spawn(move || w.commit()).join().unwrap();
    assert!(matches!(r, Err(Error::TxnFailed)), "{r:?}");
    assert_eq!(db.last_txn_id(), before);
    let w = other
        .try_begin_write()
        .unwrap()
        .expect("the lock stayed with the failed writer");
    drop(w);
    let w = db
        .begin_write()
        .expect("a failed transaction poisoned the handle");
    w.open_table("t").unwrap().insert(b"b", b"2").unwrap();
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("t").unwrap().len(), 2);
    drop(r);
    db.check().unwrap();
}

/// Held: a commit that fails its sync on another thread than its
/// transaction began on poisons every clone of the handle (`Poisoned`),
/// while owned ranges and entries from before read on, new readers start,
/// and the file reopens to the commit before or the one that failed.
#[test]
fn a_moved_commit_that_fails_poisons_every_clone() {
    use larch::testing::faults::{Fault, Kind, Trap};
    let trap = Trap::new();
    let tr = trap.clone();
    let opts = common::small_map(4096).storage(move |f| Ok(tr.storage(f)));
    let mut t = TestDb::with_options(opts);
    let model = fill_mixed(t.db(), 300, 8);
    let it = t
        .db()
        .begin_read()
        .unwrap()
        .open_table("t")
        .unwrap()
        .iter_owned()
        .unwrap();
    let clone = t.db().clone();
    let w = t.db().begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"doomed", b"x").unwrap();
    trap.arm(Kind::Sync, Fault::Eio, 1);
    let r = std::thread::spawn(move || w.commit()).join().unwrap();
    assert!(r.is_err(), "the failed sync was not reported");
    assert!(matches!(clone.begin_write(), Err(Error::Poisoned)));
    assert!(matches!(t.db().try_begin_write(), Err(Error::Poisoned)));
    let want = model_range(&model, Bound::Unbounded, Bound::Unbounded);
    drain_against(
        it,
        &want,
        Take::Runs(&[16, 1]),
        "range across the poisoning",
    );
    assert!(t.db().begin_read().is_ok());
    drop(clone);
    trap.disarm();
    t.reopen();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    assert!(tab.len() == model.len() as u64 || tab.len() == model.len() as u64 + 1);
    drop(r);
    t.db().check().unwrap();
}

/// Held: many threads clone the handle and begin readers (owned ranges,
/// kept entries, cloned transactions) while one thread commits and
/// compacts; every snapshot is whole (all values of one commit), the
/// handle's clones go in any order, the last on a reader thread (its close
/// runs beside readers still alive), and the file reopens and checks.
#[test]
fn threads_clone_and_read_while_one_commits_and_compacts() {
    let ps = 512u32;
    let mut t = TestDb::new(ps);
    let path = t.path();
    const KEYS: u32 = 300;
    let write_round = move |db: &Database, round: u64| {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..KEYS {
                let len = 8 + match i % 50 {
                    0 => 3 * ps as usize,
                    1..=4 => ps as usize / 2,
                    _ => (i as usize * 13 + round as usize) % 60,
                };
                let mut v = round.to_le_bytes().to_vec();
                v.resize(len, (round as u8) ^ (i as u8));
                tab.insert(&i.to_be_bytes(), &v).unwrap();
            }
        }
        w.commit().unwrap();
    };
    write_round(t.db(), 0);
    let whole = |e: &OwnedEntry| -> u64 {
        let v = e.value();
        let round = u64::from_le_bytes(v[..8].try_into().unwrap());
        let i = u32::from_be_bytes(e.key().try_into().unwrap());
        assert!(
            v[8..].iter().all(|&b| b == (round as u8) ^ (i as u8)),
            "a value of round {round} with foreign bytes"
        );
        round
    };
    let stop = Arc::new(AtomicBool::new(false));
    let readers_start = Arc::new(Barrier::new(4));
    let mut threads = Vec::new();
    for n in 0..3u64 {
        let db = t.db().clone();
        let stop = stop.clone();
        let start = readers_start.clone();
        threads.push(std::thread::spawn(move || {
            start.wait();
            let mut rng = Rng(100 + n);
            let mut kept: Vec<(u64, OwnedEntry)> = Vec::new();
            let mut scans = 0u64;
            let mut db = Some(db);
            while !stop.load(Ordering::Relaxed) || scans < 5 {
                let Some(handle) = db.as_ref() else { break };
                let h = handle.clone();
                let r = h.begin_read().unwrap();
                let r2 = r.clone();
                drop(h);
                let it = r2.open_table("t").unwrap().iter_owned().unwrap();
                drop(r);
                let mut round = None;
                let mut count = 0;
                let entries: Vec<OwnedEntry> = if rng.below(2) == 0 {
                    it.map(|e| e.unwrap()).collect()
                } else {
                    let mut v: Vec<OwnedEntry> = it.rev().map(|e| e.unwrap()).collect();
                    v.reverse();
                    v
                };
                drop(r2);
                for e in &entries {
                    let got = whole(e);
                    assert!(round.is_none_or(|r| r == got), "a snapshot mixing rounds");
                    round = Some(got);
                    count += 1;
                }
                assert_eq!(count, KEYS, "a snapshot with keys missing");
                if rng.below(4) == 0 {
                    kept.push((
                        round.unwrap(),
                        entries[rng.below(entries.len() as u64) as usize].clone(),
                    ));
                }
                if kept.len() > 20 {
                    kept.remove(0);
                }
                for (r, e) in &kept {
                    assert_eq!(whole(e), *r, "a kept entry changed");
                }
                scans += 1;
                // One reader gives up its handle part way.
                if n == 0 && scans == 40 {
                    db = None;
                }
            }
            (scans, kept)
        }));
    }
    let writer = {
        let db = t.db().clone();
        let stop = stop.clone();
        let start = readers_start.clone();
        std::thread::spawn(move || {
            start.wait();
            let begun = Instant::now();
            let mut round = 1;
            while begun.elapsed() < Duration::from_millis(1500) {
                write_round(&db, round);
                if round % 10 == 0 {
                    let w = db.begin_write().unwrap();
                    w.open_table("t").unwrap().remove_range(..).unwrap();
                    w.abort();
                    db.compact().unwrap();
                }
                round += 1;
            }
            stop.store(true, Ordering::Relaxed);
            round
        })
    };
    // The main handle goes first: the readers' clones close it.
    t.db = None;
    let rounds = writer.join().unwrap();
    assert!(rounds > 5);
    let mut all_kept = Vec::new();
    for th in threads {
        let (scans, kept) = th.join().unwrap();
        assert!(scans >= 5);
        all_kept.extend(kept);
    }
    // Every handle is gone; kept entries still read.
    for (r, e) in &all_kept {
        assert_eq!(whole(e), *r);
    }
    drop(all_kept);
    let db = open_at(&path, ps);
    assert_eq!(db.live_readers(), 0);
    db.check().unwrap();
}

/// Held: the last clone of a handle dropped while an owned range of a big
/// snapshot lives and the table has since been emptied: the close cuts the
/// file no lower than the snapshot, and the range then walks to the last
/// page (no SIGBUS, the old bytes); a later handle cuts the rest.
#[test]
fn close_cuts_no_lower_than_a_live_owned_range() {
    let ps = 512u32;
    let mut t = TestDb::new(ps);
    let model = fill_mixed(t.db(), 1200, 9);
    let snap_pages = t.db().stat().unwrap().pages;
    let it = t
        .db()
        .begin_read()
        .unwrap()
        .open_table("t")
        .unwrap()
        .iter_owned()
        .unwrap();
    for _ in 0..3 {
        let mut w = t.db().begin_write().unwrap();
        w.delete_table("t").unwrap();
        w.open_table("small").unwrap().insert(b"x", b"y").unwrap();
        w.commit().unwrap();
    }
    let path = t.path();
    t.db = None;
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(
        len >= snap_pages * u64::from(ps),
        "the close cut the file to {len} bytes under a live owned range of {snap_pages} pages"
    );
    let want = model_range(&model, Bound::Unbounded, Bound::Unbounded);
    drain_against(it, &want, Take::Backward, "after the close");
    let db = open_at(&path, ps);
    db.compact().unwrap();
    assert!(
        std::fs::metadata(&path).unwrap().len() < len,
        "nothing cut once the range went"
    );
    db.check().unwrap();
}

/// Held: an owned range walked on one thread, its entries handed to others
/// (and the range itself moved mid-walk), read there after the range and
/// its transaction are gone.
#[test]
fn ranges_and_entries_move_between_threads_mid_walk() {
    let t = TestDb::new(512);
    let model = fill_mixed(t.db(), 700, 10);
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut it = t
        .db()
        .begin_read()
        .unwrap()
        .open_table("t")
        .unwrap()
        .iter_owned()
        .unwrap();
    let mut got: Vec<OwnedEntry> = Vec::new();
    for hop in 0..8 {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut taken = Vec::new();
            for _ in 0..(17 * (hop + 1)) {
                match it.next() {
                    Some(e) => taken.push(e.unwrap()),
                    None => break,
                }
            }
            tx.send((it, taken)).unwrap();
        })
        .join()
        .unwrap();
        let (back, taken) = rx.recv().unwrap();
        it = back;
        got.extend(taken);
    }
    got.extend(it.map(|e| e.unwrap()));
    let got = Arc::new(got);
    let want = Arc::new(want);
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (got, want) = (got.clone(), want.clone());
            std::thread::spawn(move || {
                assert_eq!(got.len(), want.len());
                for (e, (k, v)) in got.iter().zip(want.iter()) {
                    assert!(e.key() == k.as_slice() && e.value() == v.as_slice());
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
}

/// Fixed (a gap of the fork guard): a child made by `fork` went on walking
/// an owned range it inherited, with no `Error::Forked`: the snapshot it
/// holds is the parent's registry slot, which the parent ends when it drops
/// its own copies; the parent's writer then reuses the pages and cuts the
/// file, and the child read the new bytes, or died of SIGBUS. The range now
/// refuses in the child with `Error::Forked`, as `begin_read` does.
///
/// Entries the child inherited cannot refuse (`key()` and `value()` return
/// slices, as an inherited `ReadTxn`'s values are), so the child reads
/// none here: `OwnedEntry` documents that a child must not read them, and
/// must open the database again.
#[test]
fn a_forked_child_reading_inherited_entries_after_the_parent_let_go() {
    let ps = 512u32;
    let t = TestDb::new(ps);
    let model = fill_mixed(t.db(), 1200, 11);
    let mut it = t
        .db()
        .begin_read()
        .unwrap()
        .open_table("t")
        .unwrap()
        .iter_owned()
        .unwrap();
    // Entries from the back: the pages near the file's end, which a cut
    // removes first.
    let kept: Vec<OwnedEntry> = (0..300).map(|_| it.next_back().unwrap().unwrap()).collect();
    let mut fds = [0; 2];
    // SAFETY: plain syscall into a local array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let guard = spawn_lock();
    // SAFETY: the child only waits on the pipe, reads its own memory and
    // leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut b = [0u8; 1];
        // SAFETY: reads one byte from the pipe into a local buffer.
        unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
        // The range's next batch is a walk of the parent's snapshot.
        let code = match it.next() {
            Some(Err(Error::Forked)) => 0,
            Some(Err(_)) => 4,
            Some(Ok(_)) | None => 1,
        };
        // SAFETY: leaves without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(guard);
    // The parent lets go of its copies, as it may: they are its own.
    drop(kept);
    drop(it);
    assert_eq!(t.db().live_readers(), 0);
    churn(t.db(), &model, 4, 12);
    let mut w = t.db().begin_write().unwrap();
    w.delete_table("t").unwrap();
    w.commit().unwrap();
    t.db().compact().unwrap();
    churn(t.db(), &model, 2, 13);
    // SAFETY: writes one byte to the pipe; waits for our own child.
    unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) };
    let mut status = 0;
    // SAFETY: plain syscall on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    // SAFETY: closing our own descriptors.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let outcome = if libc::WIFSIGNALED(status) {
        format!("the child died of signal {}", libc::WTERMSIG(status))
    } else {
        match libc::WEXITSTATUS(status) {
            0 => String::new(),
            1 => "the child walked its inherited range".into(),
            4 => "the child's inherited range failed with an error other than Forked".into(),
            c => format!("the child exited with {c}"),
        }
    };
    assert!(
        outcome.is_empty(),
        "{outcome}: a forked child walked an owned range it inherited, with no Error::Forked, \
         once the parent dropped its copies"
    );
}

/// Held: a table of nothing but long keys (stored out of line, several
/// pages each) that share all but their last bytes, and keys that are
/// prefixes of one another, so that the key each batch resumes past is a
/// long one: every take pattern gives the model, and so do the ranges and
/// prefixes bounded by those keys.
#[test]
fn batches_that_resume_past_long_keys() {
    let ps = 512usize;
    let t = TestDb::new(ps as u32);
    let base = seeded_bytes(77, 3 * ps + 5);
    let mut model = Model::new();
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..700u32 {
            let mut k = base.clone();
            k.extend_from_slice(&i.to_be_bytes());
            // Prefixes of one another: k, k+00, k+00 00.
            for extra in 0..(1 + i % 3) as usize {
                let mut k = k.clone();
                k.extend(std::iter::repeat_n(0u8, extra));
                let v = seeded_bytes(
                    u64::from(i) << 8 | extra as u64,
                    (i as usize * 31) % (ps * 3),
                );
                tab.insert(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    let all = model_range(&model, Bound::Unbounded, Bound::Unbounded);
    for &take in TAKES {
        drain_against(tab.iter_owned().unwrap(), &all, take, "long keys");
        drain_against(tab.prefix_owned(&base).unwrap(), &all, take, "long prefix");
    }
    let keys: Vec<&Vec<u8>> = model.keys().collect();
    for (a, b) in [
        (0usize, 16usize),
        (15, 64),
        (16, 528),
        (47, 1000),
        (1, keys.len() - 2),
    ] {
        for (s, e) in [
            (Bound::Included(&keys[a][..]), Bound::Excluded(&keys[b][..])),
            (Bound::Excluded(&keys[a][..]), Bound::Included(&keys[b][..])),
        ] {
            let want = model_range(&model, s, e);
            for &take in TAKES {
                drain_against(
                    tab.range_owned((s, e)).unwrap(),
                    &want,
                    take,
                    &format!("{a}..{b}"),
                );
            }
        }
    }
    // A prefix that is a whole long key: it, and the keys it prefixes.
    let p = keys[300];
    let want: Vec<(&Vec<u8>, &Vec<u8>)> = model.iter().filter(|(k, _)| k.starts_with(p)).collect();
    assert!(!want.is_empty());
    for &take in TAKES {
        drain_against(
            tab.prefix_owned(p).unwrap(),
            &want,
            take,
            "whole-key prefix",
        );
    }
}

/// Held: an entry whose value is a 2 MiB overflow run at the end of the
/// file, kept after its handle closed, read on two threads while another
/// handle removes it, compacts (which moves the last runs down and cuts),
/// and fills the freed space again.
#[test]
fn a_big_value_at_the_files_end_through_relocation() {
    let ps = 4096u32;
    let mut t = TestDb::new(ps);
    fill_mixed(t.db(), 200, 14);
    let big = seeded_bytes(15, 2 << 20);
    let w = t.db().begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"big", &big).unwrap();
    w.commit().unwrap();
    let snap_pages = t.db().stat().unwrap().pages;
    let e = t
        .db()
        .begin_read()
        .unwrap()
        .open_table("t")
        .unwrap()
        .range_owned(&b"big"[..]..=&b"big"[..])
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let path = t.path();
    t.db = None;
    let db = open_at(&path, ps);
    let entries = Arc::new(vec![e]);
    let want = Arc::new(vec![(b"big".to_vec(), big)]);
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let watchers: Vec<_> = (0..2)
        .map(|_| watch(entries.clone(), want.clone(), stop.clone(), rounds.clone()))
        .collect();
    for round in 0..3u64 {
        let w = db.begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            tab.remove(b"big").unwrap();
            for i in 0..40u32 {
                tab.insert(
                    &i.to_be_bytes(),
                    &seeded_bytes(round << 8 | u64::from(i), 60_000),
                )
                .unwrap();
            }
        }
        w.commit().unwrap();
        db.compact().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(
            len >= snap_pages * u64::from(ps),
            "round {round}: cut to {len} under the entry"
        );
        let w = db.begin_write().unwrap();
        w.open_table("t").unwrap().remove_range(..).unwrap();
        w.commit().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in watchers {
        w.join().expect("the big value changed under its entry");
    }
    drop(entries);
    db.compact().unwrap();
    db.check().unwrap();
}
