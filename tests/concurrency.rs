//! Concurrency (docs/reliability.md, suite 6): reader threads pin snapshots
//! and re-verify them against the model of their transaction for their whole
//! life while a writer churns.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{Rng, TestDb};
use larch::testing::{budget_from_env, seed_from_env};
use parking_lot::{Condvar, Mutex};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[test]
fn pinned_snapshots_stay_exact_while_the_writer_churns() {
    let seed = seed_from_env();
    let rounds = budget_from_env(300);
    eprintln!("concurrency: LARCH_SEED={seed} LARCH_BUDGET={rounds}");
    let t = TestDb::new(512);
    let db = t.db();
    // The model of every committed transaction, by id.
    let models: Mutex<HashMap<u64, Arc<Model>>> = Mutex::new(HashMap::new());
    let published = Condvar::new();
    models
        .lock()
        .insert(db.last_txn_id(), Arc::new(Model::new()));
    let stop = AtomicBool::new(false);
    let verified = AtomicU64::new(0);
    let violations = AtomicU64::new(0);
    let readers = 4;

    std::thread::scope(|s| {
        for r in 0..readers {
            let (models, published, stop, verified, violations) =
                (&models, &published, &stop, &verified, &violations);
            s.spawn(move || {
                let mut rng = Rng(seed ^ (r + 1));
                let mut last_id = 0;
                while !stop.load(Ordering::Relaxed) {
                    let txn = db.begin_read().unwrap();
                    let id = txn.id();
                    if id < last_id {
                        violations.fetch_add(1, Ordering::Relaxed);
                    }
                    last_id = id;
                    let model = {
                        let mut m = models.lock();
                        loop {
                            if let Some(model) = m.get(&id) {
                                break model.clone();
                            }
                            published.wait(&mut m);
                        }
                    };
                    // Re-verify the same snapshot several times over its life.
                    for _ in 0..1 + rng.below(4) {
                        let got: Model = match txn.open_table("t") {
                            Ok(table) => {
                                assert_eq!(table.len(), model.len() as u64);
                                table
                                    .iter()
                                    .unwrap()
                                    .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                                    .collect()
                            }
                            Err(larch::Error::TableNotFound(_)) => Model::new(),
                            Err(e) => panic!("{e}"),
                        };
                        if got != *model {
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                        verified.fetch_add(1, Ordering::Relaxed);
                        std::thread::yield_now();
                    }
                }
            });
        }

        let mut rng = Rng(seed);
        let mut model = Model::new();
        for _ in 0..rounds {
            let w = db.begin_write().unwrap();
            {
                let mut table = w.open_table("t").unwrap();
                for _ in 0..1 + rng.below(40) {
                    let key = format!("{:04}", rng.below(800)).into_bytes();
                    if rng.below(3) == 0 {
                        table.remove(&key).unwrap();
                        model.remove(&key);
                    } else {
                        let len = if rng.below(10) == 0 { 700 } else { 30 };
                        let value = rng.bytes(len);
                        table.insert(&key, &value).unwrap();
                        model.insert(key, value);
                    }
                }
            }
            w.commit().unwrap();
            // Keyed by the id the commit made current: a transaction that
            // changed nothing commits nothing, and its own id is reused by the
            // next one.
            let id = db.last_txn_id();
            models.lock().insert(id, Arc::new(model.clone()));
            published.notify_all();
        }
        stop.store(true, Ordering::Relaxed);
    });

    let (verified, violations) = (verified.into_inner(), violations.into_inner());
    larch::testing::report(&format!(
        "RELIABILITY suite=concurrency seed={seed} readers={readers} commits={rounds} \
         snapshots_verified={verified} violations={violations}"
    ));
    assert_eq!(violations, 0);
    assert!(
        verified > rounds,
        "readers verified only {verified} snapshots"
    );
    t.db().check().unwrap();
}

/// Readers pinned across thousands of commits, taken at different points of
/// the run: the writer rewrites the same keys, so most pages freed meanwhile
/// were written after some reader's snapshot and are reused around it (the
/// interval rule). Each reader reads its whole snapshot again and again while
/// the writer goes on, and once more at the end: always exactly what it saw.
#[test]
fn long_readers_stay_exact_across_thousands_of_commits() {
    let seed = seed_from_env();
    let commits = (budget_from_env(300) * 10).max(3);
    eprintln!(
        "concurrency long readers: LARCH_SEED={seed} LARCH_BUDGET={}",
        commits / 10
    );
    let t = TestDb::new(512);
    let db = t.db();
    let stop = AtomicBool::new(false);
    let verified = AtomicU64::new(0);
    let violations = AtomicU64::new(0);
    let mut rng = Rng(seed);
    let mut model = Model::new();
    let write = |model: &mut Model, rng: &mut Rng, n: u64| {
        let w = db.begin_write().unwrap();
        {
            let mut table = w.open_table("t").unwrap();
            for _ in 0..n {
                let key = format!("{:04}", rng.below(300)).into_bytes();
                let len = if rng.below(10) == 0 { 700 } else { 40 };
                let value = rng.bytes(len);
                table.insert(&key, &value).unwrap();
                model.insert(key, value);
            }
        }
        w.commit().unwrap();
    };
    write(&mut model, &mut rng, 600);
    let readers = 3;
    std::thread::scope(|s| {
        for i in 0..commits {
            if i % (commits / readers) == 0 {
                let txn = db.begin_read().unwrap();
                let seen = model.clone();
                let (stop, verified, violations) = (&stop, &verified, &violations);
                s.spawn(move || {
                    let read = || -> Model {
                        txn.open_table("t")
                            .unwrap()
                            .iter()
                            .unwrap()
                            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                            .collect()
                    };
                    loop {
                        let last = stop.load(Ordering::SeqCst);
                        if read() != seen {
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                        verified.fetch_add(1, Ordering::Relaxed);
                        if last {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    txn.check().unwrap();
                });
            }
            let n = 1 + rng.below(6);
            write(&mut model, &mut rng, n);
        }
        stop.store(true, Ordering::SeqCst);
    });
    let (verified, violations) = (verified.into_inner(), violations.into_inner());
    larch::testing::report(&format!(
        "RELIABILITY suite=concurrency part=long_readers seed={seed} readers={readers} \
         commits={commits} snapshots_verified={verified} violations={violations}"
    ));
    assert_eq!(violations, 0);
    assert!(
        verified >= readers,
        "readers verified only {verified} times"
    );
    db.check().unwrap();
}
