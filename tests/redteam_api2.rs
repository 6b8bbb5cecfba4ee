//! Red team of `insert_reserve`, `insert`'s answer, `take`, `pop_first`,
//! `pop_last` and `retain`: writes through the reserved slice must change
//! that value and nothing else (no other value, key or page, of this table
//! or another), before and after commit and reopen, under readers holding
//! snapshots, in aborted transactions, at every length class (inline,
//! packed, own run) and key class (short, at and past a quarter page, 64 KiB
//! keys on 512-byte pages).

mod common;

use std::collections::BTreeMap;

use common::heap_image::assert_clean;
use common::{Rng, TestDb, seeded_bytes};
use larch::MAX_KEY_LEN;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const TABLES: [&str; 2] = ["a", "b"];

/// Keys of every class: short, exactly a quarter page (inline), one past it
/// (long), and up to the longest key.
fn key_pool(ps: usize) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for i in 0..40u8 {
        keys.push(vec![b'k', i]);
    }
    for len in [ps / 4 - 1, ps / 4, ps / 4 + 1, ps / 4 + 2, ps, MAX_KEY_LEN] {
        for i in 0..3u8 {
            let mut k = vec![b'k'; len];
            k[len - 1] = i;
            keys.push(k);
        }
    }
    keys
}

/// Lengths of every class: empty, around the inline limit, around a page,
/// around the largest packed value, and past it.
fn pick_len(ps: usize, key_len: usize, rng: &mut Rng) -> usize {
    if rng.below(2) == 0 {
        let lens = larch::testing::boundary_lengths(ps, key_len);
        return lens[rng.below(lens.len() as u64) as usize];
    }
    match rng.below(6) {
        0 => rng.below(3) as usize,
        1 => ps / 4 - 48 + rng.below(64) as usize,
        2 => ps - 2 + rng.below(5) as usize,
        3 => 32 * ps - 80 + rng.below(82) as usize,
        4 => 33 * ps + rng.below(3) as usize,
        _ => 1 + rng.below(3 * ps as u64) as usize,
    }
}

fn holds_all(db: &larch::Database, models: &[Model; 2], what: &str) {
    let r = db.begin_read().unwrap();
    for (name, m) in TABLES.iter().zip(models) {
        let t = r.open_table(name).unwrap();
        assert_eq!(t.len(), m.len() as u64, "{what}: {name} len");
        let got: Vec<(Vec<u8>, Vec<u8>)> = common::collect(t.iter().unwrap());
        let want: Vec<(Vec<u8>, Vec<u8>)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert!(got == want, "{what}: {name} differs from its model");
    }
}

fn run(ps: u32, seed: u64, rounds: usize) {
    let ps_us = ps as usize;
    let mut rng = Rng(seed);
    let mut t = TestDb::new(ps);
    let pool = key_pool(ps_us);
    let mut models: [Model; 2] = [Model::new(), Model::new()];
    {
        let w = t.db().begin_write().unwrap();
        for name in TABLES {
            w.open_table(name).unwrap();
        }
        w.commit().unwrap();
    }
    // A reader kept over several commits, renewed now and then.
    let mut old: Option<([Model; 2], u32)> = None;
    let mut old_reader = None;
    for round in 0..rounds {
        if round % 7 == 0 {
            old_reader = Some(t.db().begin_read().unwrap());
            old = Some((models.clone(), 0));
        }
        // A reader holding the snapshot from before the transaction.
        let before = models.clone();
        let reader = t.db().begin_read().unwrap();
        let mut next = models.clone();
        let w = t.db().begin_write().unwrap();
        let ops = 1 + rng.below(12);
        for op in 0..ops {
            let ti = rng.below(2) as usize;
            let m = &mut next[ti];
            let mut tab = w.open_table(TABLES[ti]).unwrap();
            let key = pool[rng.below(pool.len() as u64) as usize].clone();
            let what = format!("ps {ps} seed {seed} round {round} op {op}");
            match rng.below(10) {
                0..=4 => {
                    let len = pick_len(ps_us, key.len(), &mut rng);
                    let fill = seeded_bytes(rng.next_u64(), len);
                    {
                        let out = tab.insert_reserve(&key, len).unwrap();
                        assert_eq!(out.len(), len, "{what}");
                        assert!(out.iter().all(|&b| b == 0), "{what}: not zeroed");
                        out.fill(0xAA);
                    }
                    assert!(
                        tab.get(&key).unwrap().unwrap().iter().all(|&b| b == 0xAA),
                        "{what}: 0xAA not read back"
                    );
                    let out = tab.insert_reserve(&key, len).unwrap();
                    out.copy_from_slice(&fill);
                    m.insert(key, fill);
                }
                5 => {
                    let len = pick_len(ps_us, key.len(), &mut rng);
                    let v = seeded_bytes(rng.next_u64(), len);
                    let existed = tab.insert(&key, &v).unwrap();
                    assert_eq!(existed, m.contains_key(&key), "{what}: insert's answer");
                    m.insert(key, v);
                }
                6 => {
                    let got = tab.take(&key).unwrap();
                    assert_eq!(got, m.remove(&key), "{what}: take");
                }
                7 => {
                    let got = tab.pop_first().unwrap();
                    let want = m.pop_first();
                    assert!(got == want, "{what}: pop_first");
                }
                8 => {
                    let got = tab.pop_last().unwrap();
                    let want = m.pop_last();
                    assert!(got == want, "{what}: pop_last");
                }
                _ => {
                    let mode = rng.below(3);
                    let salt = rng.next_u64();
                    let keep = |k: &[u8], v: &[u8]| match mode {
                        0 => true,
                        1 => false,
                        _ => !(k.len() as u64 + v.len() as u64 + salt).is_multiple_of(3),
                    };
                    let want = m.len() - {
                        m.retain(|k, v| keep(k, v));
                        m.len()
                    };
                    let removed = tab.retain(keep).unwrap();
                    assert_eq!(removed, want as u64, "{what}: retain count");
                }
            }
            drop(tab);
            // Every entry of both tables, in the transaction.
            for (name, m) in TABLES.iter().zip(&next) {
                let tab = w.open_table(name).unwrap();
                assert_eq!(tab.len(), m.len() as u64, "{what}: {name} len");
                let got: Vec<(Vec<u8>, Vec<u8>)> = common::collect(tab.iter().unwrap());
                let want: Vec<(Vec<u8>, Vec<u8>)> =
                    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                assert!(got == want, "{what}: {name} differs in the transaction");
            }
        }
        if rng.below(4) == 0 {
            w.abort();
        } else {
            w.commit().unwrap();
            models = next;
        }
        // The reader still sees the snapshot from before.
        for (name, m) in TABLES.iter().zip(&before) {
            let tab = reader.open_table(name).unwrap();
            let got: Vec<(Vec<u8>, Vec<u8>)> = common::collect(tab.iter().unwrap());
            let want: Vec<(Vec<u8>, Vec<u8>)> =
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert!(
                got == want,
                "ps {ps} seed {seed} round {round}: reader changed"
            );
        }
        drop(reader);
        if let (Some(r), Some((m, _))) = (&old_reader, &old) {
            for (name, m) in TABLES.iter().zip(m) {
                let tab = r.open_table(name).unwrap();
                let got: Vec<(Vec<u8>, Vec<u8>)> = common::collect(tab.iter().unwrap());
                let want: Vec<(Vec<u8>, Vec<u8>)> =
                    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                assert!(
                    got == want,
                    "ps {ps} seed {seed} round {round}: old reader changed"
                );
            }
        }
        let what = format!("ps {ps} seed {seed} round {round}");
        holds_all(t.db(), &models, &what);
        if round % 5 == 4 {
            old_reader = None;
            old = None;
            t.reopen();
            holds_all(t.db(), &models, &what);
            assert_clean(t.db());
        }
    }
    assert_clean(t.db());
}

/// Held: random reserves (filled with 0xAA, then reserved again and filled
/// with the final bytes), inserts, takes, pops and retains over two tables,
/// with every length and key class, aborts, readers and reopens; every
/// entry of both tables matches its model after each call, readers keep
/// their snapshots, and the file checks clean. `RT_SEEDS` runs more seeds
/// (400 were run when this was written).
#[test]
fn reserve_changes_only_its_value() {
    let seeds: u64 = std::env::var("RT_SEEDS").map_or(6, |s| s.parse().unwrap());
    for seed in 0..seeds {
        let ps = if seed % 3 == 2 { 4096 } else { 512 };
        run(ps, seed, 30);
    }
}

/// Held: a length within the value limit but past `max_size` (3 GiB into a
/// 1 MiB database) is refused with an error, without the memory of it, and
/// fails the transaction; nothing reaches the file.
#[test]
fn reserve_past_max_size_is_refused() {
    let mut t = TestDb::with_options(common::small_map(4096).max_size(1 << 20));
    {
        let w = t.db().begin_write().unwrap();
        w.open_table("a").unwrap().insert(b"kept", b"v").unwrap();
        w.commit().unwrap();
    }
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("a").unwrap();
        let e = tab.insert_reserve(b"big", 3 << 30).unwrap_err();
        assert!(!matches!(e, larch::Error::ValueTooLarge { .. }), "{e:?}");
        assert_eq!(tab.len(), 1);
        assert!(tab.insert(b"after", b"x").is_err());
    }
    drop(w);
    t.reopen();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("a").unwrap();
    assert_eq!(
        common::collect(tab.iter().unwrap()),
        vec![(b"kept".to_vec(), b"v".to_vec())]
    );
    drop(r);
    assert_clean(t.db());
}

/// Held: a `retain` whose predicate panics part way (caught by the caller)
/// leaves the entries it removed before the panic removed and the rest
/// whole: `len` agrees with a scan, the transaction commits, and the file
/// checks clean.
#[test]
fn retain_whose_predicate_panics() {
    let mut t = TestDb::new(512);
    let pool = key_pool(512);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("a").unwrap();
        for (i, k) in pool.iter().enumerate() {
            tab.insert(k, &seeded_bytes(i as u64, 300 * (i % 4)))
                .unwrap();
        }
        let mut seen = 0;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tab.retain(|_, _| {
                seen += 1;
                assert!(seen < pool.len() / 2, "a predicate that panics");
                seen % 2 == 0
            })
        }));
        assert!(r.is_err());
        let n = common::collect(tab.iter().unwrap()).len();
        assert_eq!(tab.len(), n as u64);
        assert!(n < pool.len() && n > pool.len() / 2, "{n}");
        tab.insert(b"after", b"x").unwrap();
    }
    w.commit().unwrap();
    t.reopen();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("a").unwrap();
    assert_eq!(common::collect(tab.iter().unwrap()).len() as u64, tab.len());
    drop(r);
    assert_clean(t.db());
}

/// Held: argument errors and empty tables: a key past the longest is
/// refused by `insert_reserve` (and not there for `take`) without failing
/// the transaction; `retain`, `pop_first`, `pop_last` and `take` on an
/// empty table (and one emptied in the transaction) find nothing; `retain`
/// removing everything empties the table (its pages given back).
#[test]
fn edges_of_the_new_calls() {
    let mut t = TestDb::new(512);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("a").unwrap();
        let too_long = vec![7u8; MAX_KEY_LEN + 1];
        let e = tab.insert_reserve(&too_long, 10).unwrap_err();
        assert!(matches!(e, larch::Error::KeyTooLarge { .. }), "{e:?}");
        assert_eq!(tab.take(&too_long).unwrap(), None);
        assert_eq!(tab.retain(|_, _| false).unwrap(), 0);
        assert_eq!(tab.pop_first().unwrap(), None);
        assert_eq!(tab.pop_last().unwrap(), None);
        assert_eq!(tab.take(b"").unwrap(), None);
        for (i, k) in key_pool(512).iter().enumerate() {
            let out = tab.insert_reserve(k, 37 * i).unwrap();
            out.fill(0xAA);
        }
        assert_eq!(tab.retain(|_, _| true).unwrap(), 0);
        let n = tab.len();
        assert_eq!(
            tab.retain(|_, v| v.iter().all(|&b| b != 0xAA)).unwrap(),
            n - 1
        );
        assert_eq!(tab.len(), 1);
        assert_eq!(tab.retain(|_, _| false).unwrap(), 1);
        assert_eq!(tab.len(), 0);
        assert_eq!(tab.pop_first().unwrap(), None);
        assert_eq!(tab.pop_last().unwrap(), None);
        let out = tab.insert_reserve(b"", 0).unwrap();
        assert!(out.is_empty());
        assert!(tab.insert(b"", b"").unwrap());
        assert_eq!(tab.pop_last().unwrap(), Some((vec![], vec![])));
    }
    w.commit().unwrap();
    t.reopen();
    let r = t.db().begin_read().unwrap();
    assert_eq!(r.open_table("a").unwrap().len(), 0);
    drop(r);
    assert_clean(t.db());
}

/// Held: long keys whose bytes and value together sit on either side of
/// the largest packed length (the value then packed beside its key, or in
/// a run of its own after it), reserved between short neighbours packed in
/// the same segment in the same transaction: every slice is exactly its
/// value, the neighbours keep their bytes, before and after commit.
#[test]
fn long_key_and_value_across_the_packed_limit() {
    for ps in [512usize, 4096] {
        let lens = larch::testing::boundary_lengths(ps, 1);
        let packed_max = lens[lens.len() - 2];
        let mut t = TestDb::new(ps as u32);
        let mut model = Model::new();
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("a").unwrap();
            let mut n = 0u8;
            for klen in [ps / 4 + 1, ps, 3000, MAX_KEY_LEN] {
                for d in [-2i64, -1, 0, 1, 2] {
                    let Some(vlen) = (packed_max as i64 - klen as i64 + d)
                        .try_into()
                        .ok()
                        .filter(|&v: &usize| v <= 40 * ps)
                    else {
                        continue;
                    };
                    n += 1;
                    let before = vec![b'a', n];
                    let v = seeded_bytes(u64::from(n), 700);
                    tab.insert(&before, &v).unwrap();
                    model.insert(before, v);
                    let mut key = vec![b'L'; klen];
                    key[klen - 1] = n;
                    let fill = seeded_bytes(1000 + u64::from(n), vlen);
                    tab.insert_reserve(&key, vlen).unwrap().fill(0xAA);
                    let after = vec![b'z', n];
                    let v = seeded_bytes(2000 + u64::from(n), 300);
                    tab.insert(&after, &v).unwrap();
                    model.insert(after, v);
                    tab.insert_reserve(&key, vlen)
                        .unwrap()
                        .copy_from_slice(&fill);
                    model.insert(key, fill);
                    let got = common::collect(tab.iter().unwrap());
                    let want: Vec<_> = model.clone().into_iter().collect();
                    assert!(got == want, "ps {ps} klen {klen} d {d}");
                }
            }
        }
        w.commit().unwrap();
        t.reopen();
        let r = t.db().begin_read().unwrap();
        let got = common::collect(r.open_table("a").unwrap().iter().unwrap());
        assert!(
            got == model.clone().into_iter().collect::<Vec<_>>(),
            "ps {ps} reopened"
        );
        drop(r);
        assert_clean(t.db());
    }
}

/// Held: one reader kept over thirty commits, each of which reserves every
/// key anew (short and long keys, every length class, filled with 0xAA and
/// then reserved again and filled for good), some tables deleted and made
/// again on the way: the reader reads its snapshot whole throughout, and
/// after it ends the file checks clean.
#[test]
fn a_reader_outlives_many_reserving_commits() {
    for ps in [512u32, 4096] {
        let ps_us = ps as usize;
        let mut rng = Rng(u64::from(ps));
        let t = TestDb::new(ps);
        let pool = key_pool(ps_us);
        let mut model = Model::new();
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("a").unwrap();
            for k in &pool {
                let len = pick_len(ps_us, k.len(), &mut rng);
                let v = seeded_bytes(rng.next_u64(), len);
                tab.insert_reserve(k, len).unwrap().copy_from_slice(&v);
                model.insert(k.clone(), v);
            }
        }
        w.commit().unwrap();
        let r = t.db().begin_read().unwrap();
        let mut now = model.clone();
        for round in 0..30 {
            let mut w = t.db().begin_write().unwrap();
            if round % 10 == 9 {
                assert!(w.delete_table("a").unwrap());
                now.clear();
            }
            {
                let mut tab = w.open_table("a").unwrap();
                for k in &pool {
                    let len = pick_len(ps_us, k.len(), &mut rng);
                    let v = seeded_bytes(rng.next_u64(), len);
                    tab.insert_reserve(k, len).unwrap().fill(0xAA);
                    tab.insert_reserve(k, len).unwrap().copy_from_slice(&v);
                    now.insert(k.clone(), v);
                }
            }
            w.commit().unwrap();
            let got = common::collect(r.open_table("a").unwrap().iter().unwrap());
            assert!(
                got == model.clone().into_iter().collect::<Vec<_>>(),
                "{ps} {round}"
            );
        }
        drop(r);
        let r = t.db().begin_read().unwrap();
        let got = common::collect(r.open_table("a").unwrap().iter().unwrap());
        assert!(got == now.into_iter().collect::<Vec<_>>(), "{ps} now");
        drop(r);
        assert_clean(t.db());
    }
}

/// A value that says how to check it: its seed in its first 8 bytes (a
/// value shorter than that is all one byte, its length).
fn telling(seed: u64, len: usize) -> Vec<u8> {
    if len < 8 {
        return vec![len as u8; len];
    }
    let mut v = seed.to_le_bytes().to_vec();
    v.extend_from_slice(&seeded_bytes(seed, len - 8));
    v
}

fn tells_true(v: &[u8]) -> bool {
    if v.len() < 8 {
        return v.iter().all(|&b| b as usize == v.len());
    }
    let seed = u64::from_le_bytes(v[..8].try_into().unwrap());
    v[8..] == seeded_bytes(seed, v.len() - 8)[..]
}

/// Held: readers on another thread, each snapshot taken while commits of
/// reserves (each filled with 0xAA first, then for good) go on, read every
/// value whole and as some commit wrote it: never the zeros handed out nor
/// the 0xAA written over them.
#[test]
fn concurrent_readers_never_see_a_reserve_half_filled() {
    let t = TestDb::new(512);
    let pool = key_pool(512);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let db = t.db();
        let reader = s.spawn(|| {
            let mut snapshots = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = db.begin_read().unwrap();
                if let Ok(tab) = r.open_table("a") {
                    for (k, v) in common::collect(tab.iter().unwrap()) {
                        assert!(
                            tells_true(&v),
                            "key {} len {}",
                            common::show_key(&k),
                            v.len()
                        );
                    }
                    snapshots += 1;
                }
            }
            snapshots
        });
        let mut rng = Rng(9);
        for _ in 0..60 {
            let w = db.begin_write().unwrap();
            {
                let mut tab = w.open_table("a").unwrap();
                for _ in 0..8 {
                    let k = &pool[rng.below(pool.len() as u64) as usize];
                    let len = pick_len(512, k.len(), &mut rng);
                    let v = telling(rng.next_u64(), len);
                    tab.insert_reserve(k, len).unwrap().fill(0xAA);
                    tab.insert_reserve(k, len).unwrap().copy_from_slice(&v);
                }
            }
            w.commit().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    assert_clean(t.db());
}
