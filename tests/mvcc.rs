//! Snapshots: readers keep their view while the writer commits; page reuse
//! keeps the file bounded.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::{TestDb, collect};

fn key(i: u32) -> Vec<u8> {
    format!("k{i:06}").into_bytes()
}

#[test]
fn a_reader_keeps_its_snapshot_through_100_commits() {
    let t = TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..2000 {
            tab.insert(&key(i), b"old").unwrap();
        }
    }
    w.commit().unwrap();

    let mut model: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        (0..2000).map(|i| (key(i), b"old".to_vec())).collect();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    let before = collect(tab.iter().unwrap());
    let held = tab.get(&key(7)).unwrap().unwrap();

    for round in 0..100u32 {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in (round * 20)..(round * 20 + 20) {
                tab.remove(&key(i)).unwrap();
                model.remove(&key(i));
            }
            for i in 0..2000 {
                if i % 13 == round % 13 {
                    let v = format!("new {round}").into_bytes();
                    tab.insert(&key(i), &v).unwrap();
                    model.insert(key(i), v);
                }
            }
            tab.insert(&key(10_000 + round), b"added").unwrap();
            model.insert(key(10_000 + round), b"added".to_vec());
        }
        w.commit().unwrap();
        // The old snapshot still shows every old value and every deleted key.
        assert_eq!(tab.get(&key(round * 20)).unwrap(), Some(&b"old"[..]));
        assert_eq!(tab.get(&key(10_000 + round)).unwrap(), None);
    }
    assert_eq!(held, b"old");
    assert_eq!(tab.len(), 2000);
    assert_eq!(collect(tab.iter().unwrap()), before);
    drop(r);

    let r = t.db().begin_read().unwrap();
    let now = r.open_table("t").unwrap();
    assert_eq!(now.len(), model.len() as u64);
    assert_eq!(
        collect(now.iter().unwrap()),
        model.into_iter().collect::<Vec<_>>()
    );
}

#[test]
fn readers_in_other_threads_see_whole_commits() {
    let t = TestDb::new(512);
    let db = t.db();
    let n = 500u32;
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..n {
            tab.insert(&key(i), &0u64.to_le_bytes()).unwrap();
        }
    }
    w.commit().unwrap();

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut snapshots = 0u64;
                    let mut last_seen = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let r = db.begin_read().unwrap();
                        let tab = r.open_table("t").unwrap();
                        // Every key of one snapshot carries the same round.
                        let mut round = None;
                        let mut count = 0;
                        for e in tab.iter().unwrap() {
                            let (_, v) = e.unwrap();
                            let v = u64::from_le_bytes(v.try_into().unwrap());
                            assert_eq!(*round.get_or_insert(v), v, "torn snapshot");
                            count += 1;
                        }
                        assert_eq!(count, n);
                        let round = round.unwrap();
                        assert!(round >= last_seen, "snapshot went back in time");
                        last_seen = round;
                        snapshots += 1;
                    }
                    snapshots
                })
            })
            .collect();
        for round in 1..=200u64 {
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for i in 0..n {
                    tab.insert(&key(i), &round.to_le_bytes()).unwrap();
                }
            }
            w.commit().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
}

#[test]
fn read_txn_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<larch::ReadTxn>();
    fn assert_sync<T: Sync + Send>() {}
    assert_sync::<larch::Database>();

    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"a", b"1").unwrap();
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            assert_eq!(
                r.open_table("t").unwrap().get(b"a").unwrap(),
                Some(&b"1"[..])
            );
        });
    });
}

#[test]
fn churn_stops_growing_the_file() {
    let t = TestDb::new(4096);
    let mut sizes = Vec::new();
    for round in 0..200u32 {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..10_000 {
                let v = format!("round {round} value {i} {}", "x".repeat((i % 50) as usize));
                tab.insert(&key(i), v.as_bytes()).unwrap();
            }
        }
        w.commit().unwrap();
        sizes.push(t.file_size());
    }
    eprintln!(
        "churn: file after round 1 {} bytes, round 20 {}, round 100 {}, round 200 {}",
        sizes[0], sizes[19], sizes[99], sizes[199]
    );
    // Once three versions of the tree exist (the new one and the two the metas
    // reach), freed pages are reused and the file stops growing: at most three
    // trees plus one growth step.
    assert_eq!(sizes[199], sizes[20], "file grew: {sizes:?}");
    assert!(
        sizes[199] <= 3 * sizes[0] + (2 << 20),
        "file too large: {sizes:?}"
    );
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    assert_eq!(tab.len(), 10_000);
    assert!(
        tab.get(&key(9))
            .unwrap()
            .unwrap()
            .starts_with(b"round 199 value 9 ")
    );
}
