//! Transactions in async code: write transactions held across `.await`,
//! begun on one thread and committed on another, by many tasks at once.

mod common;

use std::thread::ThreadId;
use std::time::Duration;

use common::TestDb;
use larch::Database;

/// Begins a write transaction on tokio's blocking pool, writes across
/// awaits on a worker, commits there; returns the two threads.
async fn moved_commit(db: Database, task: u32, n: u32) -> (ThreadId, ThreadId) {
    let begin = db.clone();
    let (w, begun_on) = tokio::task::spawn_blocking(move || {
        (begin.begin_write().unwrap(), std::thread::current().id())
    })
    .await
    .unwrap();
    for i in 0..n {
        let key = [task.to_be_bytes(), i.to_be_bytes()].concat();
        w.open_table("t")
            .unwrap()
            .insert(&key, &i.to_le_bytes())
            .unwrap();
        if i % 8 == 0 {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
    }
    w.commit().unwrap();
    (begun_on, std::thread::current().id())
}

#[test]
fn write_transactions_cross_tokio_workers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let t = TestDb::new(4096);
    let db = t.db().clone();
    let moved = rt.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|task| tokio::spawn(moved_commit(db.clone(), task, 100)))
            .collect();
        let mut moved = 0;
        for task in tasks {
            let (begun, committed) = task.await.unwrap();
            moved += usize::from(begun != committed);
        }
        moved
    });
    // Begun on the blocking pool, committed on a worker: every one moved.
    assert_eq!(moved, 32);
    let r = db.begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    assert_eq!(tab.len(), 3200);
    for task in 0..32u32 {
        for i in (0..100u32).step_by(7) {
            let key = [task.to_be_bytes(), i.to_be_bytes()].concat();
            assert_eq!(tab.get(&key).unwrap(), Some(&i.to_le_bytes()[..]));
        }
    }
    drop(r);
    db.check().unwrap();
}

/// Readers stream owned ranges across awaits on many tasks while writers
/// commit: each reader sees one snapshot whole.
#[test]
fn owned_ranges_stream_across_awaits_beside_writers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_time()
        .build()
        .unwrap();
    let t = TestDb::new(4096);
    let db = t.db().clone();
    rt.block_on(async {
        // Every commit sets all 500 keys to its own round number.
        let writer = {
            let db = db.clone();
            tokio::spawn(async move {
                for round in 0..40u32 {
                    let begin = db.clone();
                    let w = tokio::task::spawn_blocking(move || begin.begin_write().unwrap())
                        .await
                        .unwrap();
                    {
                        let mut tab = w.open_table("t").unwrap();
                        for k in 0..500u32 {
                            tab.insert(&k.to_be_bytes(), &round.to_le_bytes()).unwrap();
                        }
                    }
                    tokio::task::yield_now().await;
                    w.commit().unwrap();
                }
            })
        };
        let readers: Vec<_> = (0..6)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut scans = 0;
                    while scans < 20 {
                        // The transaction ends here; the range goes on.
                        let range = {
                            let r = db.begin_read().unwrap();
                            r.open_table("t").map(|tab| tab.iter_owned().unwrap())
                        };
                        let Ok(range) = range else {
                            tokio::task::yield_now().await;
                            continue;
                        };
                        let mut round = None;
                        let mut n = 0;
                        for e in range {
                            let e = e.unwrap();
                            let v = e.value().to_vec();
                            assert_eq!(*round.get_or_insert(v.clone()), v, "a scan mixed commits");
                            n += 1;
                            if n % 50 == 0 {
                                tokio::time::sleep(Duration::from_micros(200)).await;
                            }
                        }
                        assert_eq!(n, 500);
                        scans += 1;
                    }
                })
            })
            .collect();
        writer.await.unwrap();
        for r in readers {
            r.await.unwrap();
        }
    });
    db.check().unwrap();
}
