//! The reader registry within one process: thousands of readers at once, the
//! slots of a closed handle used again, the lock file's growth bounded by the
//! readers alive at once. (Other processes: tests/multiprocess.rs.)

mod common;

use common::{TestDb, open};

fn put(db: &larch::Database, key: u32, value: &[u8]) {
    let w = db.begin_write().unwrap();
    w.open_table("t")
        .unwrap()
        .insert(&key.to_be_bytes(), value)
        .unwrap();
    w.commit().unwrap();
}

fn lock_file_len(t: &TestDb) -> u64 {
    let mut name = t.path().into_os_string();
    name.push("-lock");
    std::fs::metadata(name).unwrap().len()
}

/// Far more readers than a new lock file has slots, spread over two handles,
/// each with its own snapshot: every one is seen by the writer of the other
/// handle, and every snapshot reads as it was after the writer churned.
#[test]
fn thousands_of_readers_grow_the_registry_and_keep_their_snapshots() {
    let t = TestDb::new(4096);
    let a = t.db();
    let b = open(&t.path(), 4096);
    let before = lock_file_len(&t);
    let mut readers = Vec::new();
    for i in 0..3000u32 {
        if i % 100 == 0 {
            put(a, 0, &i.to_be_bytes().repeat(500));
        }
        let handle = if i % 2 == 0 { a } else { &b };
        readers.push((i / 100 * 100, handle.begin_read().unwrap()));
    }
    assert_eq!(a.live_readers(), 3000);
    assert_eq!(b.readers().unwrap().len(), 3000);
    assert!(lock_file_len(&t) > before, "the lock file grew");
    // Churn: rewrite the key many times from the other handle; no reader's
    // snapshot may change.
    for i in 0..200u32 {
        put(&b, 0, &(1_000_000 + i).to_be_bytes().repeat(500));
    }
    for (v, r) in &readers {
        let got = r.open_table("t").unwrap().get(&0u32.to_be_bytes()).unwrap();
        assert_eq!(got, Some(&v.to_be_bytes().repeat(500)[..]));
    }
    readers[0].1.check().unwrap();
    drop(readers);
    assert_eq!(a.live_readers(), 0);
    a.check().unwrap();
}

/// A handle that closes clears its slots; the next handle's readers take
/// them instead of growing the lock file.
#[test]
fn slots_of_a_closed_handle_are_taken_again() {
    let t = TestDb::new(4096);
    put(t.db(), 1, b"v");
    let grow = |n: usize| {
        let other = open(&t.path(), 4096);
        let readers: Vec<_> = (0..n).map(|_| other.begin_read().unwrap()).collect();
        assert_eq!(t.db().live_readers(), n);
        drop(readers);
        drop(other);
        lock_file_len(&t)
    };
    let first = grow(1000);
    for _ in 0..5 {
        assert_eq!(grow(1000), first);
    }
    assert_eq!(t.db().live_readers(), 0);
    assert_eq!(t.db().clear_stale_readers().unwrap(), 0);
}

/// A read transaction may move to another thread and end there; its slot
/// goes back to its handle.
#[test]
fn a_read_transaction_ends_on_another_thread() {
    let t = TestDb::new(4096);
    put(t.db(), 1, b"before");
    let db = t.db();
    let r = db.begin_read().unwrap();
    put(db, 1, b"after");
    std::thread::scope(|s| {
        s.spawn(move || {
            let got = r.open_table("t").unwrap().get(&1u32.to_be_bytes()).unwrap();
            assert_eq!(got, Some(&b"before"[..]));
            assert_eq!(r.id(), 1);
        });
    });
    assert_eq!(db.live_readers(), 0);
    assert!(db.readers().unwrap().is_empty());
}
