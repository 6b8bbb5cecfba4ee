//! Savepoints: restoring undoes exactly what changed since, in any order
//! that makes sense, through failures, and costs the pages changed since.

mod common;

use std::collections::BTreeMap;

use common::{Rng, TestDb, small_map};
use larch::{Error, Options, Savepoint, WriteTxn};

type Tables = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Every table of the transaction, as it sees them.
fn contents(w: &mut WriteTxn) -> Tables {
    let mut out = Tables::new();
    for name in w.list_tables().unwrap() {
        let t = w.open_table(&name).unwrap();
        let rows = t
            .iter()
            .unwrap()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        out.insert(name, rows);
    }
    out
}

/// One random change: inserts of every size (inline, packed, runs, long
/// keys), removes, range removes, tables created and deleted.
fn change(w: &mut WriteTxn, model: &mut Tables, rng: &mut Rng, ps: usize) {
    let name = ["a", "b", "c"][rng.below(3) as usize].to_owned();
    match rng.below(20) {
        0 => {
            assert_eq!(
                w.delete_table(&name).unwrap(),
                model.remove(&name).is_some()
            );
        }
        1 => {
            let mut t = w.open_table(&name).unwrap();
            let (lo, hi) = (rng.below(300), rng.below(300));
            let (a, b) = (
                format!("{lo:04}").into_bytes(),
                format!("{hi:04}").into_bytes(),
            );
            let rows = model.entry(name).or_default();
            let gone: Vec<Vec<u8>> = if a < b {
                rows.range(a.clone()..b.clone())
                    .map(|(k, _)| k.clone())
                    .collect()
            } else {
                Vec::new()
            };
            assert_eq!(t.remove_range(&a[..]..&b[..]).unwrap(), gone.len() as u64);
            for k in gone {
                rows.remove(&k);
            }
        }
        2..=5 => {
            let mut t = w.open_table(&name).unwrap();
            let k = format!("{:04}", rng.below(300)).into_bytes();
            let rows = model.entry(name).or_default();
            assert_eq!(t.remove(&k).unwrap(), rows.remove(&k).is_some());
        }
        _ => {
            let mut t = w.open_table(&name).unwrap();
            let mut k = format!("{:04}", rng.below(300)).into_bytes();
            if rng.below(10) == 0 {
                k.resize(ps / 4 + 1 + rng.below(ps as u64) as usize, b'~');
            }
            let len = match rng.below(10) {
                0 => ps * 2 + rng.below(ps as u64 * 30) as usize,
                1..=2 => ps / 3 + rng.below(ps as u64 * 2) as usize,
                _ => rng.below(50) as usize,
            };
            let v = rng.bytes(len);
            let rows = model.entry(name).or_default();
            assert_eq!(t.insert(&k, &v).unwrap(), rows.insert(k, v).is_some());
        }
    }
}

/// Random changes, savepoints, restores and releases against a model of
/// the transaction's tables: each restore brings back exactly the state of
/// its savepoint, newer savepoints become invalid, older ones stay.
#[test]
fn restores_match_a_model_in_any_order() {
    for ps in [512u32, 4096] {
        let mut rng = Rng(u64::from(ps) * 7);
        let t = TestDb::new(ps);
        let mut committed = Tables::new();
        for round in 0..8 {
            let mut w = t.db().begin_write().unwrap();
            let mut model = committed.clone();
            // Live savepoints, oldest first, with the state each saw.
            let mut stack: Vec<(Savepoint, Tables)> = Vec::new();
            let mut dead: Vec<Savepoint> = Vec::new();
            for _ in 0..120 {
                match rng.below(12) {
                    0 => {
                        stack.push((w.savepoint().unwrap(), model.clone()));
                    }
                    1 if !stack.is_empty() => {
                        let i = rng.below(stack.len() as u64) as usize;
                        w.restore_savepoint(&stack[i].0).unwrap();
                        model = stack[i].1.clone();
                        dead.extend(stack.drain(i + 1..).map(|(sp, _)| sp));
                        assert_eq!(contents(&mut w), model, "after a restore");
                    }
                    2 if !stack.is_empty() && rng.below(3) == 0 => {
                        let i = rng.below(stack.len() as u64) as usize;
                        let (sp, _) = stack.remove(i);
                        w.release_savepoint(sp).unwrap();
                    }
                    _ => change(&mut w, &mut model, &mut rng, ps as usize),
                }
            }
            for sp in &dead {
                assert!(matches!(
                    w.restore_savepoint(sp),
                    Err(Error::InvalidSavepoint)
                ));
            }
            assert_eq!(contents(&mut w), model);
            if round % 3 == 2 {
                w.abort();
            } else {
                w.commit().unwrap();
                committed = model;
            }
            let r = t.db().begin_read().unwrap();
            let mut got = Tables::new();
            for name in r.list_tables().unwrap() {
                let tab = r.open_table(&name).unwrap();
                let rows = tab
                    .iter()
                    .unwrap()
                    .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                    .collect();
                got.insert(name, rows);
            }
            assert_eq!(got, committed);
            drop(r);
            // Every page accounted for: nothing a restore undid leaked or
            // stayed reachable twice.
            t.db().check().unwrap();
        }
    }
}

/// A savepoint after many changes costs the pages changed after it, not a
/// copy of the transaction's dirty pages; releasing it frees them.
#[test]
fn a_savepoint_costs_what_changes_after_it() {
    let t = TestDb::new(4096);
    let mut w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..50_000u32 {
            tab.insert(&i.to_be_bytes(), &[7; 60]).unwrap();
        }
    }
    let sp = w.savepoint().unwrap();
    assert_eq!(w.savepoint_bytes(), 0);
    w.open_table("t")
        .unwrap()
        .insert(&7u32.to_be_bytes(), b"x")
        .unwrap();
    // The leaf changed, and nothing else of the tree (its path was dirty
    // already): one page.
    assert_eq!(w.savepoint_bytes(), 4096);
    w.restore_savepoint(&sp).unwrap();
    assert_eq!(
        w.open_table("t").unwrap().get(&7u32.to_be_bytes()).unwrap(),
        Some(&[7u8; 60][..])
    );
    w.open_table("t")
        .unwrap()
        .insert(&8u32.to_be_bytes(), b"y")
        .unwrap();
    w.release_savepoint(sp).unwrap();
    assert_eq!(w.savepoint_bytes(), 0);
    w.commit().unwrap();
    t.db().check().unwrap();
}

/// A change that fails (the file at its ceiling) fails the transaction;
/// restoring a savepoint from before it makes it whole again, and what it
/// commits is exactly the savepoint's state plus what came after.
#[test]
fn restoring_heals_a_failed_transaction() {
    let opts: Options = small_map(4096).max_size(256 << 10);
    let t = TestDb::with_options(opts);
    let mut w = t.db().begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"before", b"1").unwrap();
    let sp = w.savepoint().unwrap();
    let failed = (0..10_000u32).find_map(|i| {
        w.open_table("t")
            .and_then(|mut t| t.insert(&i.to_be_bytes(), &[1; 1000]))
            .err()
    });
    assert!(matches!(failed, Some(Error::MapFull { .. })), "{failed:?}");
    assert!(matches!(w.open_table("t").err(), Some(Error::TxnFailed)));
    assert!(matches!(w.savepoint().err(), Some(Error::TxnFailed)));
    w.restore_savepoint(&sp).unwrap();
    w.open_table("t").unwrap().insert(b"after", b"2").unwrap();
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("t").unwrap();
    assert_eq!(tab.len(), 2);
    assert_eq!(tab.get(b"after").unwrap(), Some(&b"2"[..]));
    drop(r);
    t.db().check().unwrap();
}

/// Savepoints of one transaction mean nothing to another.
#[test]
fn a_savepoint_of_another_transaction_is_refused() {
    let t = TestDb::new(4096);
    let mut w = t.db().begin_write().unwrap();
    let sp = w.savepoint().unwrap();
    w.commit().unwrap();
    let mut w = t.db().begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"k", b"v").unwrap();
    assert!(matches!(
        w.restore_savepoint(&sp),
        Err(Error::InvalidSavepoint)
    ));
    assert!(matches!(
        w.release_savepoint(sp),
        Err(Error::InvalidSavepoint)
    ));
    assert_eq!(w.open_table("t").unwrap().len(), 1);
    w.commit().unwrap();
}
