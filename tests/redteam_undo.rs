//! Red team of the savepoint undo logs (commits d2257b4, d3802f3): the free
//! list's and the heap's undo logs, the allocator's saved counters and the
//! partial journals of buffers changed in place. Every test builds a model
//! of the table, checks the transaction's view after each restore, commits,
//! and then runs `Database::check` (leaks are errors), with a reader opened
//! before the transaction whose bytes must not change.
//!
//! Attacks (see each test):
//! - savepoints taken while the transaction's own freed pages (`local`) are
//!   non-empty, then popped below the savepoint's length and restored;
//! - `take_grouped` continuing a run across a savepoint (over 64 pages);
//! - segments lengthened after a savepoint, closed (the high-water mark
//!   drops), restored, and released in between;
//! - `insert_reserve` across nested savepoints;
//! - a middle savepoint released, then the outer one restored, with
//!   partial journals of the same segment in both;
//! - many savepoints released in random order and restored;
//! - restores right after `MapFull` (`Options::max_size`);
//! - compaction and heap cleaning in the commits after restores.

mod common;

use std::collections::BTreeMap;

use common::{Rng, TestDb, small_map};
use larch::{Database, Error, ReadTxn, Savepoint, WriteTxn};

type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

fn read_w(w: &mut WriteTxn) -> larch::Result<Rows> {
    let t = w.open_table("t")?;
    let mut out = Rows::new();
    for e in t.iter()? {
        let (k, v) = e?;
        out.insert(k.to_vec(), v.to_vec());
    }
    Ok(out)
}

fn read_r(r: &ReadTxn) -> Rows {
    match r.open_table("t") {
        Ok(t) => common::collect(t.iter().unwrap()).into_iter().collect(),
        Err(_) => Rows::new(),
    }
}

fn diff(got: &Rows, want: &Rows) -> String {
    let mut out = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => out.push(format!("missing {}", common::show_key(k))),
            Some(g) if g != v => out.push(format!(
                "changed {} (len {} want {})",
                common::show_key(k),
                g.len(),
                v.len()
            )),
            _ => {}
        }
    }
    for k in got.keys() {
        if !want.contains_key(k) {
            out.push(format!("extra {}", common::show_key(k)));
        }
    }
    out.truncate(8);
    out.join("; ")
}

/// The commit is sound: `check` finds nothing, no page leaked, and the
/// table holds `want`.
fn verify_db(db: &Database, want: &Rows, what: &str) {
    let report = db.check_report().unwrap();
    assert!(
        report.errors.is_empty() && report.leaked_pages == 0,
        "{what}: check after commit: {} leaked pages, errors {:?}",
        report.leaked_pages,
        &report.errors[..report.errors.len().min(5)]
    );
    let r = db.begin_read().unwrap();
    let got = read_r(&r);
    assert!(
        got == *want,
        "{what}: committed rows differ: {}",
        diff(&got, want)
    );
}

fn verify_w(w: &mut WriteTxn, want: &Rows, what: &str) {
    let got = read_w(w).unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
    assert!(
        got == *want,
        "{what}: transaction rows differ: {}",
        diff(&got, want)
    );
}

fn key(i: u64) -> Vec<u8> {
    format!("k{i:06}").into_bytes()
}

fn val(seed: u64, len: usize) -> Vec<u8> {
    common::seeded_bytes(seed, len)
}

fn put(w: &mut WriteTxn, m: &mut Rows, k: Vec<u8>, v: Vec<u8>) {
    w.open_table("t").unwrap().insert(&k, &v).unwrap();
    m.insert(k, v);
}

fn del(w: &mut WriteTxn, m: &mut Rows, k: &[u8]) {
    let had = w.open_table("t").unwrap().remove(k).unwrap();
    assert_eq!(
        had,
        m.remove(k).is_some(),
        "remove of {}",
        common::show_key(k)
    );
}

/// Commits `n` rows of `len` bytes from key `from`, and deletes every
/// `gap`-th of them in a second commit: a fragmented free list.
fn fragmented(t: &TestDb, m: &mut Rows, from: u64, n: u64, len: usize, gap: u64) {
    let mut w = t.db().begin_write().unwrap();
    for i in from..from + n {
        put(&mut w, m, key(i), val(i, len));
    }
    w.commit().unwrap();
    let mut w = t.db().begin_write().unwrap();
    for i in (from..from + n).filter(|i| i % gap != 0) {
        del(&mut w, m, &key(i));
    }
    w.commit().unwrap();
}

// ---------------------------------------------------------------------------
// Deterministic attacks.
// ---------------------------------------------------------------------------

/// `local` non-empty at the savepoint (pages this transaction allocated and
/// freed), popped below its length after it, then restored; twice, with a
/// release in between.
#[test]
fn local_pages_popped_below_a_savepoint_then_restored() {
    let ps = 1024u32;
    let t = TestDb::new(ps);
    let mut m = Rows::new();
    fragmented(&t, &mut m, 0, 300, 40, 3);
    let reader = t.db().begin_read().unwrap();
    let before = read_r(&reader);
    let mut w = t.db().begin_write().unwrap();
    // Own pages, then free them: runs (3 pages) and single pages.
    for i in 1000..1060 {
        put(&mut w, &mut m, key(i), val(i, 3 * ps as usize));
    }
    for i in 1000..1060 {
        del(&mut w, &mut m, &key(i));
    }
    let m0 = m.clone();
    let sp0 = w.savepoint().unwrap();
    // Pop all of local and more.
    for i in 2000..2200 {
        put(&mut w, &mut m, key(i), val(i, 200));
    }
    let sp1 = w.savepoint().unwrap();
    for i in 2000..2100 {
        del(&mut w, &mut m, &key(i));
    }
    for i in 3000..3040 {
        put(&mut w, &mut m, key(i), val(i, 2 * ps as usize + 7));
    }
    w.release_savepoint(sp1).unwrap();
    w.restore_savepoint(&sp0).unwrap();
    m = m0.clone();
    verify_w(&mut w, &m, "after restore of sp0");
    for i in 4000..4300 {
        put(
            &mut w,
            &mut m,
            key(i),
            val(i + 7, 100 + (i as usize % 5) * 300),
        );
    }
    w.restore_savepoint(&sp0).unwrap();
    m = m0;
    for i in 5000..5100 {
        put(&mut w, &mut m, key(i), val(i, 600));
    }
    w.commit().unwrap();
    verify_db(t.db(), &m, "local popped below a savepoint");
    assert!(read_r(&reader) == before, "a reader's rows changed");
}

/// Over 64 single pages make `alloc` group its pages (`take_grouped`,
/// `last`); a savepoint in the middle of a run, more pages, a restore, and
/// pages again: the run continues from the restored `last`.
#[test]
fn grouped_runs_across_savepoints() {
    let ps = 512u32;
    let t = TestDb::new(ps);
    let mut m = Rows::new();
    fragmented(&t, &mut m, 0, 2000, 30, 4);
    let reader = t.db().begin_read().unwrap();
    let before = read_r(&reader);
    for round in 0..3u64 {
        let mut w = t.db().begin_write().unwrap();
        let mut rng = Rng(round + 1);
        // Touch many leaves: more than 64 page allocations.
        for _ in 0..150 {
            let i = rng.below(2000);
            put(&mut w, &mut m, key(i), val(i + 100 * round, 30));
        }
        let m0 = m.clone();
        let sp = w.savepoint().unwrap();
        for _ in 0..5 {
            for _ in 0..80 {
                let i = rng.below(2000);
                if rng.below(3) == 0 {
                    del(&mut w, &mut m, &key(i));
                } else {
                    put(&mut w, &mut m, key(i), val(i + rng.below(99), 30));
                }
            }
            w.restore_savepoint(&sp).unwrap();
            m = m0.clone();
            verify_w(&mut w, &m, "grouped after restore");
        }
        for _ in 0..100 {
            let i = rng.below(2000);
            put(&mut w, &mut m, key(i), val(i + 5000, 30));
        }
        w.commit().unwrap();
        verify_db(t.db(), &m, &format!("grouped round {round}"));
    }
    assert!(read_r(&reader) == before, "a reader's rows changed");
}

/// A segment lengthened after a savepoint (resize), closed by a value that
/// does not fit (the high-water mark drops), with a savepoint in the middle
/// released and the outer one restored; then the same again with the inner
/// restored first.
#[test]
fn segments_lengthened_and_closed_across_savepoints() {
    let ps = 4096u32;
    for variant in 0..4 {
        let t = TestDb::new(ps);
        let mut m = Rows::new();
        {
            let mut w = t.db().begin_write().unwrap();
            for i in 0..50 {
                put(&mut w, &mut m, key(i), val(i, 1500));
            }
            w.commit().unwrap();
        }
        let reader = t.db().begin_read().unwrap();
        let before = read_r(&reader);
        let mut w = t.db().begin_write().unwrap();
        for i in 100..110 {
            put(&mut w, &mut m, key(i), val(i, 1800));
        }
        let m0 = m.clone();
        let sp0 = w.savepoint().unwrap();
        // Lengthen the open segment.
        for i in 200..260 {
            put(&mut w, &mut m, key(i), val(i, 1900));
        }
        let m1 = m.clone();
        let sp1 = w.savepoint().unwrap();
        // Same segment, partial journal in sp1 too; then close it with a
        // value too long for it, and free some of the values.
        for i in 300..330 {
            put(&mut w, &mut m, key(i), val(i, 1700));
        }
        put(&mut w, &mut m, key(400), val(400, 30 * ps as usize));
        for i in (200..260).step_by(2) {
            del(&mut w, &mut m, &key(i));
        }
        let sp2 = w.savepoint().unwrap();
        for i in 500..520 {
            put(&mut w, &mut m, key(i), val(i, 2500));
        }
        match variant {
            0 => {
                w.release_savepoint(sp1).unwrap();
                w.restore_savepoint(&sp0).unwrap();
                m = m0.clone();
            }
            1 => {
                w.restore_savepoint(&sp1).unwrap();
                m = m1.clone();
                verify_w(&mut w, &m, "variant 1 inner");
                for i in 600..640 {
                    put(&mut w, &mut m, key(i), val(i, 2100));
                }
                w.restore_savepoint(&sp0).unwrap();
                m = m0.clone();
            }
            2 => {
                w.release_savepoint(sp2).unwrap();
                w.release_savepoint(sp1).unwrap();
                w.restore_savepoint(&sp0).unwrap();
                m = m0.clone();
            }
            _ => {
                w.release_savepoint(sp0).unwrap();
                w.restore_savepoint(&sp1).unwrap();
                m = m1.clone();
            }
        }
        verify_w(&mut w, &m, &format!("variant {variant} after restore"));
        for i in 700..760 {
            put(
                &mut w,
                &mut m,
                key(i),
                val(i + 3, 1000 + (i as usize % 7) * 200),
            );
        }
        w.commit().unwrap();
        verify_db(t.db(), &m, &format!("segments variant {variant}"));
        assert!(
            read_r(&reader) == before,
            "variant {variant}: a reader's rows changed"
        );
        drop(reader);
        t.db().compact().unwrap();
        verify_db(t.db(), &m, &format!("segments variant {variant} compacted"));
    }
}

/// `insert_reserve` of packed and run values across nested savepoints,
/// written in parts after a later savepoint.
#[test]
fn insert_reserve_across_nested_savepoints() {
    let ps = 1024u32;
    let t = TestDb::new(ps);
    let mut m = Rows::new();
    let mut w = t.db().begin_write().unwrap();
    let reserve = |w: &mut WriteTxn, m: &mut Rows, k: Vec<u8>, v: Vec<u8>| {
        let mut tab = w.open_table("t").unwrap();
        let buf = tab.insert_reserve(&k, v.len()).unwrap();
        buf.copy_from_slice(&v);
        m.insert(k, v);
    };
    let mut stack: Vec<(Savepoint, Rows)> = Vec::new();
    let mut rng = Rng(77);
    for step in 0..200u64 {
        match rng.below(10) {
            0 => stack.push((w.savepoint().unwrap(), m.clone())),
            1 if !stack.is_empty() => {
                let i = rng.below(stack.len() as u64) as usize;
                stack.truncate(i + 1);
                w.restore_savepoint(&stack[i].0).unwrap();
                m = stack[i].1.clone();
                verify_w(&mut w, &m, &format!("reserve step {step}"));
            }
            2 if !stack.is_empty() => {
                let i = rng.below(stack.len() as u64) as usize;
                let (sp, _) = stack.remove(i);
                w.release_savepoint(sp).unwrap();
            }
            3 => {
                let k = key(rng.below(60));
                del(&mut w, &mut m, &k);
            }
            _ => {
                let len = match rng.below(3) {
                    0 => 300 + rng.below(800) as usize,
                    1 => 2 * ps as usize + rng.below(3 * ps as u64) as usize,
                    _ => 34 * ps as usize + rng.below(ps as u64) as usize,
                };
                let k = key(rng.below(60));
                reserve(&mut w, &mut m, k, val(step, len));
            }
        }
    }
    w.commit().unwrap();
    verify_db(t.db(), &m, "insert_reserve");
}

/// Restores right after `MapFull` part-way through a change.
#[test]
fn restore_right_after_map_full() {
    let ps = 1024u32;
    for seed in 0..6u64 {
        let t = TestDb::with_options(small_map(ps).max_size(300 * u64::from(ps)));
        let mut m = Rows::new();
        fragmented(&t, &mut m, 0, 150, 500, 3);
        let mut rng = Rng(seed + 11);
        let mut w = t.db().begin_write().unwrap();
        for i in 1000..1030 {
            put(&mut w, &mut m, key(i), val(i, 700));
        }
        for i in 1000..1015 {
            del(&mut w, &mut m, &key(i));
        }
        let m0 = m.clone();
        let sp = w.savepoint().unwrap();
        let mut fulls = 0;
        for step in 0..400u64 {
            let len = match rng.below(3) {
                0 => 600,
                1 => 3 * ps as usize,
                _ => 40 * ps as usize,
            };
            let k = key(2000 + rng.below(300));
            let v = val(step * 31 + seed, len);
            let r = w
                .open_table("t")
                .and_then(|mut t| t.insert(&k, &v).map(|_| ()));
            match r {
                Ok(()) => {
                    m.insert(k, v);
                }
                Err(Error::MapFull { .. }) => {
                    fulls += 1;
                    w.restore_savepoint(&sp).unwrap();
                    m = m0.clone();
                    verify_w(
                        &mut w,
                        &m,
                        &format!("seed {seed} step {step} after MapFull"),
                    );
                    if fulls > 6 {
                        break;
                    }
                }
                Err(e) => panic!("seed {seed} step {step}: {e}"),
            }
        }
        assert!(fulls > 0, "seed {seed}: never full");
        for i in 3000..3010 {
            put(&mut w, &mut m, key(i), val(i, 500));
        }
        match w.commit() {
            Ok(()) => verify_db(t.db(), &m, &format!("seed {seed} map full")),
            Err(Error::MapFull { .. }) => verify_db(
                t.db(),
                &read_r(&t.db().begin_read().unwrap()),
                "after failed commit",
            ),
            Err(e) => panic!("seed {seed}: commit {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The randomized attack.
// ---------------------------------------------------------------------------

fn random_txns(seed: u64, ps: u32, txns: u32, max_pages: Option<u64>) {
    let opts = match max_pages {
        Some(p) => small_map(ps).max_size(p * u64::from(ps)),
        None => small_map(ps),
    };
    let t = TestDb::with_options(opts);
    let psz = ps as usize;
    let mut rng = Rng(seed);
    let mut committed = Rows::new();
    let mut log: Vec<String> = Vec::new();
    for txn in 0..txns {
        let reader = t.db().begin_read().unwrap();
        let before = read_r(&reader);
        let mut w = t.db().begin_write().unwrap();
        let mut m = committed.clone();
        let mut stack: Vec<(Savepoint, Rows)> = Vec::new();
        let mut failed = false;
        let ops = 60 + rng.below(200);
        for op in 0..ops {
            let what = format!("seed {seed} txn {txn} op {op}");
            let pick = rng.below(100);
            if failed && (stack.is_empty() || !(20..30).contains(&pick)) {
                continue;
            }
            match pick {
                0..=9 => {
                    stack.push((w.savepoint().unwrap(), m.clone()));
                    log.push(format!("{what}: savepoint {}", stack.len() - 1));
                }
                10..=19 if !stack.is_empty() => {
                    let i = rng.below(stack.len() as u64) as usize;
                    let (sp, _) = stack.remove(i);
                    w.release_savepoint(sp).unwrap();
                    log.push(format!("{what}: release {i}"));
                }
                20..=29 if !stack.is_empty() => {
                    let i = rng.below(stack.len() as u64) as usize;
                    stack.truncate(i + 1);
                    w.restore_savepoint(&stack[i].0).unwrap();
                    m = stack[i].1.clone();
                    failed = false;
                    log.push(format!("{what}: restore {i}"));
                    let got = read_w(&mut w).unwrap();
                    assert!(
                        got == m,
                        "{what}: after restore: {}\nlast ops:\n{}",
                        diff(&got, &m),
                        log[log.len().saturating_sub(30)..].join("\n")
                    );
                }
                30..=49 => {
                    // Bulk deletes: pages of this transaction freed into
                    // `local`, segments emptied.
                    let n = 1 + rng.below(30);
                    let keys: Vec<Vec<u8>> = m.keys().cloned().collect();
                    for _ in 0..n.min(keys.len() as u64) {
                        let k = &keys[rng.below(keys.len() as u64) as usize];
                        if m.contains_key(k) {
                            match w.open_table("t").and_then(|mut t| t.remove(k)) {
                                Ok(_) => {
                                    m.remove(k);
                                }
                                Err(e) => {
                                    log.push(format!("{what}: remove failed {e}"));
                                    failed = true;
                                    break;
                                }
                            }
                        }
                    }
                    log.push(format!("{what}: removed up to {n}"));
                }
                _ => {
                    let n = 1 + rng.below(25);
                    let reserve = rng.below(4) == 0;
                    for j in 0..n {
                        let k = key(rng.below(600));
                        let len = match rng.below(10) {
                            0..=2 => rng.below(50) as usize,
                            3..=6 => psz / 4 + rng.below(psz as u64) as usize,
                            7 | 8 => 2 * psz + rng.below(5 * psz as u64) as usize,
                            _ => 33 * psz + rng.below(psz as u64) as usize,
                        };
                        let v = val(seed ^ (u64::from(txn) << 32) ^ (op << 8) ^ j, len);
                        let r = w.open_table("t").and_then(|mut t| {
                            if reserve {
                                t.insert_reserve(&k, len).map(|b| b.copy_from_slice(&v))
                            } else {
                                t.insert(&k, &v).map(|_| ())
                            }
                        });
                        match r {
                            Ok(()) => {
                                m.insert(k, v);
                            }
                            Err(e @ Error::MapFull { .. }) => {
                                log.push(format!("{what}: insert failed {e}"));
                                failed = true;
                                break;
                            }
                            Err(e) => panic!("{what}: insert: {e}"),
                        }
                    }
                    log.push(format!("{what}: inserted {n} reserve {reserve}"));
                }
            }
        }
        if failed {
            if let Some((sp, snap)) = stack.first() {
                w.restore_savepoint(sp).unwrap();
                m = snap.clone();
                log.push(format!("seed {seed} txn {txn}: restore 0 at end"));
            } else {
                w.abort();
                assert!(
                    read_r(&reader) == before,
                    "seed {seed} txn {txn}: reader changed"
                );
                continue;
            }
        }
        let got = read_w(&mut w).unwrap();
        assert!(
            got == m,
            "seed {seed} txn {txn}: before commit: {}",
            diff(&got, &m)
        );
        match w.commit() {
            Ok(()) => committed = m,
            Err(Error::MapFull { .. }) => log.push(format!("seed {seed} txn {txn}: commit full")),
            Err(e) => panic!(
                "seed {seed} txn {txn}: commit: {e}\nlast ops:\n{}",
                log[log.len().saturating_sub(30)..].join("\n")
            ),
        }
        let report = t.db().check_report().unwrap();
        assert!(
            report.errors.is_empty() && report.leaked_pages == 0,
            "seed {seed} txn {txn}: check: {} leaked, {:?}\nlast ops:\n{}",
            report.leaked_pages,
            &report.errors[..report.errors.len().min(5)],
            log[log.len().saturating_sub(40)..].join("\n")
        );
        let got = read_r(&t.db().begin_read().unwrap());
        assert!(
            got == committed,
            "seed {seed} txn {txn}: committed: {}",
            diff(&got, &committed)
        );
        assert!(
            read_r(&reader) == before,
            "seed {seed} txn {txn}: a reader's rows changed"
        );
        drop(reader);
        if rng.below(6) == 0 {
            t.db().compact().unwrap();
            verify_db(
                t.db(),
                &committed,
                &format!("seed {seed} txn {txn} compacted"),
            );
        }
    }
}

#[test]
fn random_savepoints_small_pages() {
    // RT_UNDO_SEEDS=n runs n more seeds of each size.
    let extra: u64 = std::env::var("RT_UNDO_SEEDS").map_or(0, |s| s.parse().unwrap());
    for seed in 1000..1000 + extra {
        random_txns(seed, 512, 8, None);
        random_txns(seed, 1024, 8, Some(700));
        random_txns(seed, 4096, 4, None);
    }
    for seed in 1..=6 {
        random_txns(seed, 512, 8, None);
    }
}

#[test]
fn random_savepoints_4k_pages() {
    for seed in 100..=103 {
        random_txns(seed, 4096, 6, None);
    }
}

#[test]
fn random_savepoints_under_max_size() {
    for seed in 200..=205 {
        random_txns(seed, 1024, 8, Some(700));
    }
}
