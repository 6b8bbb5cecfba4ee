//! Random operation sequences against a `BTreeMap`, with commit, abort and
//! reopen, at page sizes 512 and 4096; the integrity check after every reopen
//! and at the end, when everything is deleted and no page may leak.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use common::TestDb;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

#[derive(Clone, Debug)]
enum Op {
    Insert {
        key: u16,
        len: u16,
        fill: u8,
    },
    Remove {
        key: u16,
    },
    Get {
        key: u16,
    },
    Range {
        from: u16,
        to: u16,
        rev: bool,
    },
    /// Opens a read transaction and compares it with the committed model.
    Read,
    Commit,
    Abort,
    Reopen,
}

/// Keys from a small domain so operations collide; some keys are long.
fn key_bytes(k: u16) -> Vec<u8> {
    let base = format!("{:05}", k % 600).into_bytes();
    if k.is_multiple_of(7) {
        let mut long = base.clone();
        long.resize(100, b'~');
        long
    } else {
        base
    }
}

fn value_bytes(len: u16, fill: u8, key: u16) -> Vec<u8> {
    (0..len as usize)
        .map(|i| fill ^ (i as u8) ^ key as u8)
        .collect()
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        let key = u16::arbitrary(g) % 700;
        match u8::arbitrary(g) % 100 {
            0..=44 => {
                // Mostly small values, some around and over the overflow threshold.
                let len = match u8::arbitrary(g) % 10 {
                    0 => u16::arbitrary(g) % 9000,
                    1 | 2 => 100 + u16::arbitrary(g) % 1200,
                    _ => u16::arbitrary(g) % 60,
                };
                Op::Insert {
                    key,
                    len,
                    fill: u8::arbitrary(g),
                }
            }
            45..=64 => Op::Remove { key },
            65..=74 => Op::Get { key },
            75..=82 => Op::Range {
                from: key,
                to: u16::arbitrary(g) % 700,
                rev: bool::arbitrary(g),
            },
            83..=86 => Op::Read,
            87..=94 => Op::Commit,
            95..=97 => Op::Abort,
            _ => Op::Reopen,
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Op>> {
        match *self {
            Op::Insert { key, len, fill } if len > 0 => Box::new(
                [len / 2, 0]
                    .into_iter()
                    .map(move |len| Op::Insert { key, len, fill }),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn range_of(model: &Model, from: &[u8], to: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    if from > to {
        return Vec::new();
    }
    model
        .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Figures over all cases of one page size (the two sizes run in their own
/// threads, so each keeps its own).
struct Stats {
    cases: AtomicU64,
    ops: AtomicU64,
    max_depth: AtomicU64,
    overflow_pages: AtomicU64,
}

static STATS_512: Stats = Stats::new();
static STATS_4096: Stats = Stats::new();

impl Stats {
    const fn new() -> Stats {
        Stats {
            cases: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            max_depth: AtomicU64::new(0),
            overflow_pages: AtomicU64::new(0),
        }
    }

    fn of(page_size: u32) -> &'static Stats {
        if page_size == 512 {
            &STATS_512
        } else {
            &STATS_4096
        }
    }

    fn saw(&self, report: &larch::CheckReport) {
        self.max_depth
            .fetch_max(u64::from(report.max_depth), Ordering::Relaxed);
        self.overflow_pages
            .fetch_max(report.overflow_pages, Ordering::Relaxed);
    }
}

fn run(page_size: u32, ops: Vec<Op>) -> TestResult {
    let stats = Stats::of(page_size);
    stats.cases.fetch_add(1, Ordering::Relaxed);
    stats.ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
    let mut t = TestDb::new(page_size);
    let mut committed = Model::new();
    let mut i = 0;
    loop {
        // One session of the database, until a reopen.
        {
            let db = t.db();
            let mut pending = committed.clone();
            let mut txn = None;
            while i < ops.len() {
                let op = ops[i].clone();
                i += 1;
                match op {
                    Op::Reopen => break,
                    Op::Insert { key, len, fill } => {
                        let w = txn.get_or_insert_with(|| db.begin_write().unwrap());
                        let (k, v) = (key_bytes(key), value_bytes(len, fill, key));
                        w.open_table("t").unwrap().insert(&k, &v).unwrap();
                        pending.insert(k, v);
                    }
                    Op::Remove { key } => {
                        let w = txn.get_or_insert_with(|| db.begin_write().unwrap());
                        let k = key_bytes(key);
                        let removed = w.open_table("t").unwrap().remove(&k).unwrap();
                        assert_eq!(removed, pending.remove(&k).is_some());
                    }
                    Op::Get { key } => {
                        let k = key_bytes(key);
                        match &mut txn {
                            Some(w) => {
                                let tab = w.open_table("t").unwrap();
                                assert_eq!(tab.get(&k).unwrap(), pending.get(&k).map(|v| &v[..]));
                                assert_eq!(tab.len(), pending.len() as u64);
                            }
                            None => {
                                let r = db.begin_read().unwrap();
                                let got = match r.open_table("t") {
                                    Ok(tab) => tab.get(&k).unwrap().map(<[u8]>::to_vec),
                                    Err(larch::Error::TableNotFound(_)) => None,
                                    Err(e) => panic!("{e}"),
                                };
                                assert_eq!(got.as_ref(), committed.get(&k));
                            }
                        }
                    }
                    Op::Range { from, to, rev } => {
                        let w = txn.get_or_insert_with(|| db.begin_write().unwrap());
                        let (a, b) = (key_bytes(from), key_bytes(to));
                        let tab = w.open_table("t").unwrap();
                        let it = tab.range(&a[..]..&b[..]).unwrap();
                        let mut got: Vec<(Vec<u8>, Vec<u8>)> = if rev {
                            it.rev()
                                .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                                .collect()
                        } else {
                            it.map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                                .collect()
                        };
                        if rev {
                            got.reverse();
                        }
                        assert_eq!(got, range_of(&pending, &a, &b));
                    }
                    Op::Read => {
                        let r = db.begin_read().unwrap();
                        let got: Model = match r.open_table("t") {
                            Ok(tab) => tab
                                .iter()
                                .unwrap()
                                .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                                .collect(),
                            Err(larch::Error::TableNotFound(_)) => Model::new(),
                            Err(e) => panic!("{e}"),
                        };
                        assert_eq!(got, committed);
                        r.check().unwrap();
                    }
                    Op::Commit => {
                        if let Some(w) = txn.take() {
                            w.commit().unwrap();
                            committed = pending.clone();
                        }
                    }
                    Op::Abort => {
                        if let Some(w) = txn.take() {
                            w.abort();
                        }
                        pending = committed.clone();
                    }
                }
            }
            drop(txn);
        }
        t.reopen();
        stats.saw(&t.db().check().unwrap());
        if i >= ops.len() {
            break;
        }
    }

    // Everything committed is there; then delete it all and nothing leaks.
    let db = t.db();
    let mut w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        let got: Model = tab
            .iter()
            .unwrap()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        assert_eq!(got, committed);
        for k in committed.keys() {
            assert!(tab.remove(k).unwrap());
        }
        assert!(tab.is_empty());
    }
    w.commit().unwrap();
    let report = db.check().unwrap();
    stats.saw(&report);
    assert_eq!(report.entries, 0);
    assert_eq!(report.overflow_pages, 0);
    // Only the catalog leaf is in use; every other page is free or the free
    // list's own.
    assert_eq!(report.leaf_pages + report.branch_pages, 1, "{report:?}");
    assert_eq!(
        report.pages,
        2 + 1 + report.freelist_pages + report.free_pages,
        "{report:?}"
    );
    TestResult::passed()
}

/// Cases per page size: `LARCH_MODEL_CASES`, else `LARCH_BUDGET`, else 150.
fn cases() -> u64 {
    std::env::var("LARCH_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| larch::testing::budget_from_env(150))
}

fn seed() -> u64 {
    larch::testing::seed_from_env()
}

/// The generator for `seed`, printed so that a failure replays exactly with
/// `LARCH_SEED`.
fn generator(name: &str, seed: u64) -> Gen {
    eprintln!("{name}: LARCH_SEED={seed}");
    Gen::from_size_and_seed(400, seed)
}

#[test]
fn model_512() {
    let (name, seed) = ("model_512", seed());
    QuickCheck::new()
        .tests(cases())
        .rng(generator(name, seed))
        .quickcheck(run_512 as fn(Vec<Op>) -> TestResult);
    report(name, 512, seed);
}

/// Prints the suite's line; reached only when every case passed (a failure
/// panics first), so `leaked_pages` and `failures` are 0: a leaked page fails
/// the case through `check`.
fn report(name: &str, page_size: u32, seed: u64) {
    let s = Stats::of(page_size);
    larch::testing::report(&format!(
        "RELIABILITY suite=model name={name} seed={seed} cases={} ops={} max_depth={} \
         overflow_pages={} leaked_pages=0 failures=0",
        s.cases.load(Ordering::Relaxed),
        s.ops.load(Ordering::Relaxed),
        s.max_depth.load(Ordering::Relaxed),
        s.overflow_pages.load(Ordering::Relaxed),
    ));
}

#[test]
fn model_4096() {
    let (name, seed) = ("model_4096", seed().wrapping_add(1));
    QuickCheck::new()
        .tests(cases())
        .rng(generator(name, seed))
        .quickcheck(run_4096 as fn(Vec<Op>) -> TestResult);
    report(name, 4096, seed);
}

fn run_512(ops: Vec<Op>) -> TestResult {
    run(512, ops)
}

fn run_4096(ops: Vec<Op>) -> TestResult {
    run(4096, ops)
}
