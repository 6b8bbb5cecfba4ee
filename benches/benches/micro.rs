//! Micro-benchmarks of larch alone, to catch regressions: point get, insert,
//! range step, and the commit of one small transaction.

use criterion::{Criterion, criterion_group, criterion_main};

fn key(i: u64) -> [u8; 8] {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes()
}

fn setup(n: u64) -> (tempfile::TempDir, larch::Database) {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: the benchmark's temporary directory is its own.
    let db = unsafe { larch::Database::open(dir.path().join("micro.larch")) }.unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..n {
            t.insert(&key(i), &[7u8; 100]).unwrap();
        }
    }
    w.commit().unwrap();
    (dir, db)
}

fn micro(c: &mut Criterion) {
    let n = 100_000;
    let (_dir, db) = setup(n);

    c.bench_function("get", |b| {
        let r = db.begin_read().unwrap();
        let t = r.open_table("t").unwrap();
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % n;
            std::hint::black_box(t.get(&key(i)).unwrap());
        });
    });

    c.bench_function("range_step", |b| {
        let r = db.begin_read().unwrap();
        let t = r.open_table("t").unwrap();
        let mut it = t.iter().unwrap();
        b.iter(|| match it.next() {
            Some(e) => {
                std::hint::black_box(e.unwrap());
            }
            None => it = t.iter().unwrap(),
        });
    });

    c.bench_function("insert_in_open_txn", |b| {
        let w = db.begin_write().unwrap();
        let mut t = w.open_table("t").unwrap();
        let mut i = n;
        b.iter(|| {
            i += 1;
            t.insert(&key(i), &[1u8; 100]).unwrap();
        });
    });

    c.bench_function("commit_one_insert", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            let w = db.begin_write().unwrap();
            w.open_table("t").unwrap().insert(&key(i), b"v").unwrap();
            w.commit().unwrap();
        });
    });
}

criterion_group!(benches, micro);
criterion_main!(benches);
