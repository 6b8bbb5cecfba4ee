//! Transactions that own their database handle, ranges that own their
//! snapshot, and transactions that move between threads.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::mpsc;
use std::time::Duration;

use common::{Rng, TestDb, shuffle};
use larch::{Database, OwnedEntry, OwnedRange, ReadTxn, WriteTxn};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn handles_transactions_and_ranges_cross_threads() {
    assert_send_sync::<Database>();
    assert_send_sync::<ReadTxn>();
    assert_send_sync::<OwnedRange>();
    assert_send_sync::<OwnedEntry>();
    assert_send::<WriteTxn>();
}

/// Keys and values of every layout: short and long keys, inline, packed
/// and run values.
fn fill(db: &Database, n: u32, rng: &mut Rng) -> Model {
    let ps = db.page_size() as usize;
    let mut keys: Vec<Vec<u8>> = (0..n).map(|i| format!("k{i:07}").into_bytes()).collect();
    for i in (0..n).step_by(37) {
        let mut k = vec![b'k'; ps / 4 + 1 + i as usize % 300];
        k.extend_from_slice(&i.to_be_bytes());
        keys.push(k);
    }
    shuffle(&mut keys, rng);
    let mut model = Model::new();
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for k in keys {
            let len = match rng.below(20) {
                0 => ps * 3 + rng.below(ps as u64 * 20) as usize,
                1..=3 => ps / 3 + rng.below(ps as u64) as usize,
                _ => rng.below(40) as usize,
            };
            let v = rng.bytes(len);
            t.insert(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
    w.commit().unwrap();
    model
}

/// A scan as a storage layer writes it: the transaction is the function's
/// own, and only the iterator leaves.
fn scan(
    db: &Database,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> Box<dyn DoubleEndedIterator<Item = larch::Result<OwnedEntry>> + Send> {
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    Box::new(t.range_owned((start, end)).unwrap())
}

fn pairs(it: impl Iterator<Item = larch::Result<OwnedEntry>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|e| {
        let e = e.unwrap();
        (e.key().to_vec(), e.value().to_vec())
    })
    .collect()
}

fn expected(model: &Model, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    if common::inverted(start, end) {
        return Vec::new();
    }
    let bounds = (start.map(|k| k.to_vec()), end.map(|k| k.to_vec()));
    model
        .range(bounds)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn random_bound<'a>(keys: &'a [Vec<u8>], probe: &'a [u8], rng: &mut Rng) -> Bound<&'a [u8]> {
    let k: &[u8] = if rng.below(4) == 0 || keys.is_empty() {
        probe
    } else {
        &keys[rng.below(keys.len() as u64) as usize]
    };
    match rng.below(3) {
        0 => Bound::Unbounded,
        1 => Bound::Included(k),
        _ => Bound::Excluded(k),
    }
}

/// Owned ranges give what a model gives, forwards, backwards and with the
/// two ends interleaved in random order, at sizes around every batch
/// boundary and across many leaves, after the read transaction is gone.
#[test]
fn owned_ranges_match_a_model_in_both_directions() {
    let mut rng = Rng(7);
    for (ps, n) in [
        (512, 0),
        (512, 1),
        (512, 17),
        (4096, 600),
        (512, 3000),
        (4096, 20_000),
    ] {
        let t = TestDb::new(ps);
        let model = fill(t.db(), n, &mut rng);
        let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
        let full = expected(&model, Bound::Unbounded, Bound::Unbounded);
        assert_eq!(
            pairs(scan(t.db(), Bound::Unbounded, Bound::Unbounded)),
            full
        );
        let mut rev = pairs(scan(t.db(), Bound::Unbounded, Bound::Unbounded).rev());
        rev.reverse();
        assert_eq!(rev, full, "reverse, {n} keys at {ps}");
        for round in 0..40 {
            let probe_len = 1 + rng.below(6) as usize;
            let probe = rng.bytes(probe_len);
            let start = random_bound(&keys, &probe, &mut rng);
            let end = random_bound(&keys, &probe, &mut rng);
            let want = expected(&model, start, end);
            let mut it = scan(t.db(), start, end);
            // Ends taken in runs of random length, as a caller alternating
            // `next` and `next_back` would.
            let (mut front, mut back) = (Vec::new(), Vec::new());
            loop {
                let forward = rng.below(2) == 0;
                let run = 1 + rng.below(70);
                let mut ended = false;
                for _ in 0..run {
                    let e = if forward { it.next() } else { it.next_back() };
                    match e {
                        Some(e) => {
                            let e = e.unwrap();
                            let pair = (e.key().to_vec(), e.value().to_vec());
                            if forward {
                                front.push(pair)
                            } else {
                                back.push(pair)
                            }
                        }
                        None => {
                            ended = true;
                            break;
                        }
                    }
                }
                if ended {
                    break;
                }
            }
            assert!(
                it.next().is_none() && it.next_back().is_none(),
                "a range ended twice"
            );
            back.reverse();
            front.extend(back);
            assert_eq!(front.len(), want.len(), "round {round}: {n} keys at {ps}");
            assert!(front == want, "round {round}: {n} keys at {ps}");
        }
        // Prefixes, 0xFF ones included.
        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        for prefix in [&b"k"[..], b"k00001", b"kkkk", b"", b"\xff", b"zz"] {
            let want: Vec<_> = model
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(pairs(tab.prefix_owned(prefix).unwrap()), want);
        }
    }
}

/// An owned range, and entries it gave, keep their snapshot: the writer
/// overwrites and removes every key and reuses the freed pages many times
/// over while they are read, and they still read the old bytes.
#[test]
fn owned_ranges_and_entries_keep_their_snapshot_through_churn() {
    let mut rng = Rng(11);
    let t = TestDb::new(512);
    let model = fill(t.db(), 3000, &mut rng);
    let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut it = scan(t.db(), Bound::Unbounded, Bound::Unbounded);
    let mut kept: Vec<OwnedEntry> = Vec::new();
    for _ in 0..500 {
        kept.push(it.next().unwrap().unwrap());
    }
    assert_eq!(t.db().live_readers(), 1, "the range holds its snapshot");
    for round in 0..30u64 {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for (i, k) in model.keys().enumerate() {
                if (i as u64 + round).is_multiple_of(3) {
                    tab.remove(k).unwrap();
                } else {
                    let len = rng.below(700) as usize;
                    tab.insert(k, &rng.bytes(len)).unwrap();
                }
            }
        }
        w.commit().unwrap();
        // Read on between the commits, from both ends.
        for _ in 0..40 {
            if let Some(e) = it.next() {
                kept.push(e.unwrap());
            }
        }
    }
    let mut tail: Vec<OwnedEntry> = it.by_ref().rev().map(|e| e.unwrap()).collect();
    tail.reverse();
    kept.extend(tail);
    drop(it);
    let got: Vec<_> = kept
        .iter()
        .map(|e| (e.key().to_vec(), e.value().to_vec()))
        .collect();
    assert!(
        got == want,
        "entries read under churn differ from their snapshot"
    );
    assert_eq!(t.db().live_readers(), 1, "the entries hold their snapshot");
    drop(kept);
    assert_eq!(t.db().live_readers(), 0, "the last entry ends the snapshot");
    t.db().check().unwrap();
}

/// The shape the issue asks for: a struct that keeps a database and its
/// open write transaction together across calls.
struct Session {
    db: Database,
    txn: Option<WriteTxn>,
}

impl Session {
    fn put(&mut self, k: &[u8], v: &[u8]) -> larch::Result<()> {
        if self.txn.is_none() {
            self.txn = Some(self.db.begin_write()?);
        }
        let txn = self.txn.as_mut().expect("begun above");
        txn.open_table("t")?.insert(k, v)?;
        Ok(())
    }

    fn flush(&mut self) -> larch::Result<()> {
        match self.txn.take() {
            Some(txn) => txn.commit(),
            None => Ok(()),
        }
    }
}

#[test]
fn a_struct_keeps_a_database_and_its_transaction() {
    let t = TestDb::new(4096);
    let mut s = Session {
        db: t.db().clone(),
        txn: None,
    };
    for i in 0..100u32 {
        s.put(&i.to_be_bytes(), b"v").unwrap();
    }
    assert!(!t.db().begin_read().unwrap().table_exists("t").unwrap());
    s.flush().unwrap();
    let r = t.db().begin_read().unwrap();
    assert_eq!(r.open_table("t").unwrap().len(), 100);
}

/// A write transaction begun on one thread and committed on another (heed
/// #339 hangs there): the commit lands, and the writer lock is free after
/// it, for a thread that was waiting and for a third one.
#[test]
fn a_write_transaction_moves_between_threads() {
    let t = TestDb::new(4096);
    let db = t.db().clone();
    for round in 0..20u32 {
        let (tx, rx) = mpsc::channel::<WriteTxn>();
        let begun = {
            let db = db.clone();
            std::thread::spawn(move || {
                let w = db.begin_write().unwrap();
                w.open_table("t")
                    .unwrap()
                    .insert(&round.to_be_bytes(), b"a")
                    .unwrap();
                tx.send(w).unwrap();
            })
        };
        begun.join().unwrap();
        let w = rx.recv().unwrap();
        // A writer waits for the moved transaction, on a third thread.
        let (done_tx, done_rx) = mpsc::channel();
        let waiter = {
            let db = db.clone();
            std::thread::spawn(move || {
                let w = db.begin_write().unwrap();
                w.open_table("w")
                    .unwrap()
                    .insert(&round.to_be_bytes(), b"w")
                    .unwrap();
                w.commit().unwrap();
                done_tx.send(()).unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            done_rx.try_recv().is_err(),
            "a second writer ran beside the first"
        );
        let committer = std::thread::spawn(move || {
            let w = w;
            w.open_table("t")
                .unwrap()
                .insert(b"last", &round.to_be_bytes())
                .unwrap();
            w.commit().unwrap();
        });
        committer.join().unwrap();
        done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the waiting writer never got the lock");
        waiter.join().unwrap();
    }
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("t").unwrap().len(), 21);
    assert_eq!(r.open_table("w").unwrap().len(), 20);
    assert_eq!(
        r.open_table("t").unwrap().get(b"last").unwrap(),
        Some(&19u32.to_be_bytes()[..])
    );
    drop(r);
    db.check().unwrap();
}

/// A write transaction dropped on another thread than it began on frees
/// the writer lock too (an abort by drop).
#[test]
fn a_write_transaction_dropped_on_another_thread_frees_the_lock() {
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    assert!(t.db().try_begin_write().unwrap().is_none());
    std::thread::spawn(move || drop(w)).join().unwrap();
    let w = t.db().try_begin_write().unwrap().expect("the lock is free");
    w.commit().unwrap();
}

/// The last clone of a handle closes it only when its transactions are
/// gone: a read transaction outlives every handle and still reads, and
/// the file opens again after.
#[test]
fn transactions_outlive_their_handle() {
    let mut t = TestDb::new(4096);
    let mut rng = Rng(3);
    let model = fill(t.db(), 500, &mut rng);
    let r = t.db().begin_read().unwrap();
    let it = r.open_table("t").unwrap().iter_owned().unwrap();
    let clone = t.db().clone();
    t.db = None;
    let w = clone.begin_write().unwrap();
    drop(clone);
    // No handle is left; the transactions still work.
    let tab = r.open_table("t").unwrap();
    assert_eq!(tab.len(), model.len() as u64);
    let (k, v) = model.iter().next().unwrap();
    assert_eq!(tab.get(k).unwrap(), Some(v.as_slice()));
    w.commit().unwrap();
    assert_eq!(pairs(it).len(), model.len());
    drop(r);
    t.reopen();
    assert_eq!(t.db().live_readers(), 0);
    t.db().check().unwrap();
}
