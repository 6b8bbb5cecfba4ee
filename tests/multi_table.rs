//! Several tables open at once in one write transaction: values of one
//! stay valid while the others change, a change that fails in one fails
//! every handle, a table opens through one handle at a time, a leaked
//! handle never lets half a transaction commit, and savepoints, typed and
//! multimap tables work across them.

mod common;

use std::collections::BTreeMap;

use common::{TestDb, seeded_bytes};
use larch::{Database, Error, Options, TableDefinition, TableMut};

const PS: u32 = 4096;

/// The value of row `i` of a table: small and inline, packed into a
/// segment (over a quarter page), or an overflow run of its own (over 32
/// pages), by turns.
fn value_of(seed: u64, i: u64) -> Vec<u8> {
    let len = match i % 10 {
        0..=4 => (i % 40) as usize,
        5..=8 => 1100 + (i % 7) as usize * 450,
        _ if i % 100 == 9 => 140_000,
        _ => 3000,
    };
    seeded_bytes(seed * 1_000_003 + i, len)
}

fn key_of(i: u64) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

/// The rows of table `name`, read in a new read transaction.
fn rows(db: &Database, name: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let r = db.begin_read().unwrap();
    let t = r.open_table(name).unwrap();
    let rows = t.iter().unwrap().map(|e| {
        let (k, v) = e.unwrap();
        (k.to_vec(), v.to_vec())
    });
    rows.collect()
}

fn assert_checked(db: &Database) {
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn a_transfer_between_two_open_tables_commits() {
    let t = TestDb::new(PS);
    let db = t.db();
    let w = db.begin_write().unwrap();
    w.open_table("accounts")
        .unwrap()
        .insert(b"ada", b"100")
        .unwrap();
    w.commit().unwrap();

    // Without `mut`: opening tables borrows the transaction shared.
    let w = db.begin_write().unwrap();
    let mut accounts = w.open_table("accounts").unwrap();
    let mut ledger = w.open_table("ledger").unwrap();
    let bal = accounts.get(b"ada").unwrap().unwrap();
    ledger.insert(b"0001", bal).unwrap();
    // A change to another table leaves `bal` as it was.
    assert_eq!(bal, b"100");
    for e in accounts.range(..).unwrap() {
        let (k, v) = e.unwrap();
        ledger.insert(k, v).unwrap();
    }
    accounts.insert(b"ada", b"0").unwrap();
    drop((accounts, ledger));
    w.commit().unwrap();

    assert_eq!(rows(db, "accounts")[&b"ada"[..]], b"0");
    let ledger = rows(db, "ledger");
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[&b"0001"[..]], b"100");
    assert_eq!(ledger[&b"ada"[..]], b"100");
    // `let mut` works as well.
    let mut w = db.begin_write().unwrap();
    let a = w.open_table("accounts").unwrap();
    let l = w.open_table("ledger").unwrap();
    assert_eq!(a.get(b"ada").unwrap(), Some(&b"0"[..]));
    assert_eq!(l.len(), 2);
    drop((a, l));
    w.delete_table("ledger").unwrap();
    w.commit().unwrap();
    assert_checked(db);
}

/// Values of table A, packed into A's segments in this very transaction,
/// and read from the committed file, stay as they were while thousands of
/// rows of every size go into table B (splitting its pages, filling
/// segments and runs of its own): B's changes never move or write A's
/// bytes.
#[test]
fn a_scan_of_one_table_feeds_another() {
    let t = TestDb::new(PS);
    let db = t.db();
    let n = 3000;
    // The first half of A committed, the second half written in the
    // transaction that scans it.
    let w = db.begin_write().unwrap();
    let mut a = w.open_table("a").unwrap();
    for i in 0..n / 2 {
        a.insert(&key_of(i), &value_of(1, i)).unwrap();
    }
    drop(a);
    w.commit().unwrap();

    let w = db.begin_write().unwrap();
    let mut a = w.open_table("a").unwrap();
    for i in n / 2..n {
        a.insert(&key_of(i), &value_of(1, i)).unwrap();
    }
    let mut b = w.open_table("b").unwrap();
    // Every slice of A handed out during the scan is kept and checked
    // after all of B's changes.
    let mut held: Vec<(&[u8], &[u8])> = Vec::new();
    for (j, e) in a.iter().unwrap().enumerate() {
        let (k, v) = e.unwrap();
        b.insert(k, v).unwrap();
        // And rows of B's own, of every size, between them.
        let j = j as u64;
        b.insert(&key_of(n + j), &value_of(2, j)).unwrap();
        held.push((k, v));
    }
    // B removes and overwrites too, freeing places of its own.
    for j in (0..n).step_by(3) {
        b.remove(&key_of(n + j)).unwrap();
    }
    for j in (1..n).step_by(3) {
        b.insert(&key_of(n + j), &value_of(3, j)).unwrap();
    }
    assert_eq!(held.len() as u64, n);
    for (i, (k, v)) in held.iter().enumerate() {
        let i = i as u64;
        assert_eq!(*k, &key_of(i)[..], "key {i}");
        assert_eq!(*v, &value_of(1, i)[..], "value {i}");
    }
    // A's range over its own dirty pages, alive across B's changes.
    let mut range = a.range(&key_of(100)[..]..).unwrap();
    let (k0, v0) = range.next().unwrap().unwrap();
    for j in 0..200 {
        b.insert(&key_of(10 * n + j), &value_of(4, j)).unwrap();
    }
    let (k1, v1) = range.next().unwrap().unwrap();
    assert_eq!((k0, v0), (&key_of(100)[..], &value_of(1, 100)[..]));
    assert_eq!((k1, v1), (&key_of(101)[..], &value_of(1, 101)[..]));
    drop(range);
    // A change of A ends its own slices (the compiler sees to that).
    a.insert(&key_of(0), b"changed").unwrap();
    drop((a, b));
    w.commit().unwrap();

    let a = rows(db, "a");
    assert_eq!(a.len() as u64, n);
    assert_eq!(a[&key_of(0)], b"changed");
    for i in 1..n {
        assert_eq!(a[&key_of(i)], value_of(1, i), "row {i} of a");
    }
    let b = rows(db, "b");
    for i in 0..n {
        assert_eq!(b[&key_of(i)], value_of(1, i), "copied row {i}");
    }
    for j in 0..n {
        let want = match j % 3 {
            0 => None,
            1 => Some(value_of(3, j)),
            _ => Some(value_of(2, j)),
        };
        assert_eq!(b.get(&key_of(n + j)), want.as_ref(), "own row {j}");
    }
    for j in 0..200 {
        assert_eq!(b[&key_of(10 * n + j)], value_of(4, j));
    }
    assert_checked(db);
}

#[test]
fn a_table_opens_through_one_handle_at_a_time() {
    let t = TestDb::new(PS);
    let db = t.db();
    let w = db.begin_write().unwrap();
    let mut a = w.open_table("a").unwrap();
    a.insert(b"k", b"v").unwrap();
    for again in [
        w.open_table("a").map(drop),
        w.open_existing_table("a").map(drop),
        w.open_multimap("a").map(drop),
        w.open_typed(TableDefinition::<u64, u64>::new("a"))
            .map(drop),
    ] {
        match again {
            Err(Error::TableAlreadyOpen { table }) => assert_eq!(table, "a"),
            other => panic!("a second handle of an open table: {other:?}"),
        }
    }
    // The transaction is as it was: the first handle goes on, other
    // tables open, and once it is dropped the table opens again.
    a.insert(b"k2", b"v2").unwrap();
    let mut b = w.open_table("b").unwrap();
    b.insert(b"x", b"y").unwrap();
    drop(a);
    let a = w.open_table("a").unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a.get(b"k").unwrap(), Some(&b"v"[..]));
    drop((a, b));
    w.commit().unwrap();
    assert_eq!(rows(db, "a").len(), 2);
    assert_eq!(rows(db, "b").len(), 1);
    let e = Error::TableAlreadyOpen { table: "a".into() };
    assert!(e.to_string().contains("\"a\""), "{e}");
}

/// A change of table B that fails (the file cannot grow) fails the whole
/// transaction: A's reads, A's writes and a range of A under way refuse,
/// and the commit does too; the file keeps the commit before.
#[test]
fn a_failed_change_in_one_table_fails_every_handle() {
    let t = TestDb::with_options(
        Options::new()
            .page_size(PS)
            .map_size(64 * u64::from(PS))
            .max_size(256 * u64::from(PS)),
    );
    let db = t.db();
    let w = db.begin_write().unwrap();
    let mut a = w.open_table("a").unwrap();
    for i in 0..200 {
        a.insert(&key_of(i), &value_of(5, i % 9)).unwrap();
    }
    drop(a);
    w.commit().unwrap();
    let before = rows(db, "a");

    let w = db.begin_write().unwrap();
    let mut a = w.open_table("a").unwrap();
    a.insert(b"dirty", b"row").unwrap();
    let mut b = w.open_table("b").unwrap();
    let mut range = a.iter().unwrap();
    let first = range.next().unwrap().unwrap();
    let mut cursor = a.cursor();
    assert!(cursor.first().unwrap().is_some());
    let mut i = 0;
    let failed = loop {
        match b.insert(&key_of(i), &[7u8; 3000]) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(failed, Error::MapFull { .. }), "{failed:?}");
    // A's range is on a leaf it holds: the next step needs no page read,
    // and refuses all the same.
    assert!(matches!(range.next(), Some(Err(Error::TxnFailed))));
    assert!(range.next().is_none());
    assert!(matches!(cursor.next(), Err(Error::TxnFailed)));
    assert_eq!(first.0, b"dirty");
    drop(range);
    assert!(matches!(a.get(&key_of(1)), Err(Error::TxnFailed)));
    assert!(matches!(a.iter().map(|_| ()), Err(Error::TxnFailed)));
    assert!(matches!(a.insert(b"x", b"y"), Err(Error::TxnFailed)));
    assert!(matches!(a.remove(&key_of(1)), Err(Error::TxnFailed)));
    assert!(matches!(b.get(&key_of(0)), Err(Error::TxnFailed)));
    assert!(matches!(w.open_table("c").map(drop), Err(Error::TxnFailed)));
    drop((a, b));
    assert!(matches!(w.commit(), Err(Error::TxnFailed)));
    assert_eq!(rows(db, "a"), before);
    assert!(!db.begin_read().unwrap().table_exists("b").unwrap());
    assert_checked(db);
}

/// A handle leaked with `mem::forget` keeps its table: what needs the
/// whole transaction refuses, so its changes (pages copied and the old
/// ones freed) never commit half-way; the file keeps the commit before.
#[test]
fn a_forgotten_handle_never_commits_half_a_change() {
    let mut t = TestDb::new(PS);
    let db = t.db();
    let w = db.begin_write().unwrap();
    let mut a = w.open_table("a").unwrap();
    for i in 0..2000 {
        a.insert(&key_of(i), &value_of(6, i)).unwrap();
    }
    drop(a);
    w.commit().unwrap();
    let before = rows(db, "a");

    let mut w = db.begin_write().unwrap();
    let mut a = w.open_table("a").unwrap();
    // Copies committed pages and frees the old ones.
    for i in (0..2000).step_by(7) {
        a.insert(&key_of(i), b"new").unwrap();
    }
    a.remove(&key_of(5)).unwrap();
    std::mem::forget(a);
    let mut b = w.open_table("b").unwrap();
    b.insert(b"k", b"v").unwrap();
    drop(b);
    let leaked = |r: larch::Result<()>| match r {
        Err(Error::TableAlreadyOpen { table }) => assert_eq!(table, "a"),
        other => panic!("a leaked handle's table: {other:?}"),
    };
    leaked(w.open_table("a").map(drop));
    leaked(w.savepoint().map(drop));
    leaked(w.delete_table("a").map(drop));
    // Still usable otherwise.
    assert_eq!(w.open_table("b").unwrap().len(), 1);
    assert!(w.table_exists("a").unwrap());
    leaked(w.commit());
    assert_eq!(rows(db, "a"), before);
    assert_checked(db);

    // Dropped without a commit, the same.
    let w = db.begin_write().unwrap();
    let mut a = w.open_table("a").unwrap();
    a.insert(&key_of(3), b"lost").unwrap();
    std::mem::forget(a);
    drop(w);
    // And the next transaction goes on as usual.
    let w = db.begin_write().unwrap();
    w.open_table("a").unwrap().insert(b"after", b"1").unwrap();
    w.commit().unwrap();
    t.reopen();
    let db = t.db();
    let mut after = before.clone();
    after.insert(b"after".to_vec(), b"1".to_vec());
    assert_eq!(rows(db, "a"), after);
    assert_checked(db);
}

#[test]
fn savepoints_around_several_open_tables() {
    let t = TestDb::new(PS);
    let db = t.db();
    let mut w = db.begin_write().unwrap();
    {
        let mut a = w.open_table("a").unwrap();
        let mut b = w.open_table("b").unwrap();
        for i in 0..300 {
            a.insert(&key_of(i), &value_of(7, i)).unwrap();
            b.insert(&key_of(i), &value_of(8, i)).unwrap();
        }
    }
    let sp = w.savepoint().unwrap();
    {
        let mut a = w.open_table("a").unwrap();
        let mut b = w.open_table("b").unwrap();
        let mut c = w.open_table("c").unwrap();
        for i in 0..300 {
            a.insert(&key_of(i), &value_of(9, i)).unwrap();
            b.remove(&key_of(i)).unwrap();
            c.insert(&key_of(i), &value_of(10, i)).unwrap();
        }
    }
    assert!(w.savepoint_bytes() > 0);
    w.restore_savepoint(&sp).unwrap();
    assert!(!w.table_exists("c").unwrap());
    {
        let a = w.open_table("a").unwrap();
        let b = w.open_table("b").unwrap();
        for i in 0..300 {
            assert_eq!(a.get(&key_of(i)).unwrap(), Some(&value_of(7, i)[..]));
            assert_eq!(b.get(&key_of(i)).unwrap(), Some(&value_of(8, i)[..]));
        }
    }
    // Deleted after a savepoint, back after its restore; work after the
    // restore and a release commit.
    let sp2 = w.savepoint().unwrap();
    w.delete_table("b").unwrap();
    {
        let mut a = w.open_table("a").unwrap();
        let mut b = w.open_table("b").unwrap();
        a.insert(b"during", b"1").unwrap();
        b.insert(b"new b", b"1").unwrap();
    }
    w.restore_savepoint(&sp2).unwrap();
    {
        let mut a = w.open_table("a").unwrap();
        let mut d = w.open_table("d").unwrap();
        assert_eq!(a.get(b"during").unwrap(), None);
        for i in 0..100 {
            a.insert(&key_of(1000 + i), &value_of(11, i)).unwrap();
            d.insert(&key_of(i), &value_of(12, i)).unwrap();
        }
    }
    w.release_savepoint(sp2).unwrap();
    w.release_savepoint(sp).unwrap();
    w.commit().unwrap();

    let a = rows(db, "a");
    assert_eq!(a.len(), 400);
    let b = rows(db, "b");
    assert_eq!(b.len(), 300);
    for i in 0..300 {
        assert_eq!(a[&key_of(i)], value_of(7, i));
        assert_eq!(b[&key_of(i)], value_of(8, i));
    }
    assert_eq!(rows(db, "d").len(), 100);
    assert!(!db.begin_read().unwrap().table_exists("c").unwrap());
    assert_checked(db);
}

#[test]
fn typed_multimap_and_byte_tables_at_once() {
    const T: TableDefinition<u64, String> = TableDefinition::new("typed");
    let t = TestDb::new(PS);
    let db = t.db();
    let w = db.begin_write().unwrap();
    let mut bytes = w.open_table("bytes").unwrap();
    let mut typed = w.open_typed(T).unwrap();
    let mut multi = w.open_multimap("multi").unwrap();
    for i in 0..500u64 {
        bytes.insert(&key_of(i), &value_of(13, i)).unwrap();
    }
    let held = bytes.get(&key_of(5)).unwrap().unwrap();
    let long = bytes.get(&key_of(9)).unwrap().unwrap();
    for i in 0..500u64 {
        typed.insert(&i, &"x".repeat((i % 3000) as usize)).unwrap();
        multi
            .insert(&i.to_be_bytes()[..4], &seeded_bytes(i, (i % 900) as usize))
            .unwrap();
    }
    assert_eq!(held, &value_of(13, 5)[..]);
    assert_eq!(long, &value_of(13, 9)[..]);
    let s = typed.get(&42).unwrap().unwrap();
    bytes.insert(b"more", &[1; 5000]).unwrap();
    multi.insert(b"more", b"1").unwrap();
    assert_eq!(s, "x".repeat(42));
    drop((bytes, typed, multi));
    w.commit().unwrap();

    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("bytes").unwrap().len(), 501);
    let typed = r.open_typed(T).unwrap();
    assert_eq!(typed.len(), 500);
    assert_eq!(typed.get(&499).unwrap().unwrap(), "x".repeat(499));
    let multi = r.open_multimap("multi").unwrap();
    assert_eq!(multi.len().unwrap(), 501);
    drop(r);
    assert_checked(db);
}

#[test]
fn handles_drop_in_any_order() {
    let t = TestDb::new(PS);
    let db = t.db();
    let names = ["a", "b", "c"];
    let orders: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for (round, order) in orders.iter().enumerate() {
        let w = db.begin_write().unwrap();
        let mut open: Vec<Option<TableMut<'_>>> = names
            .iter()
            .map(|n| Some(w.open_table(n).unwrap()))
            .collect();
        for (i, t) in open.iter_mut().enumerate() {
            let t = t.as_mut().unwrap();
            t.insert(&key_of(round as u64), &value_of(i as u64, round as u64))
                .unwrap();
        }
        // Dropped in this round's order, each reopened at once and
        // changed again while the others stay open.
        for &i in order {
            drop(open[i].take());
            let mut again = w.open_table(names[i]).unwrap();
            again.insert(b"round", &[round as u8]).unwrap();
            open[i] = Some(again);
        }
        for &i in order.iter().rev() {
            drop(open[i].take());
        }
        // The handles are gone, but the vector that held them must go too
        // before the commit (the borrow checker sees to it).
        drop(open);
        w.commit().unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        let rows = rows(db, name);
        assert_eq!(rows.len(), 7);
        assert_eq!(rows[&b"round"[..]], [5]);
        for round in 0..6u64 {
            assert_eq!(rows[&key_of(round)], value_of(i as u64, round));
        }
    }
    assert_checked(db);
}

#[test]
fn fifty_tables_open_at_once() {
    let t = TestDb::new(PS);
    let db = t.db();
    let names: Vec<String> = (0..50).map(|i| format!("table {i}")).collect();
    let w = db.begin_write().unwrap();
    let mut tables: Vec<TableMut<'_>> = names.iter().map(|n| w.open_table(n).unwrap()).collect();
    for i in 0..120u64 {
        for (j, t) in tables.iter_mut().enumerate() {
            t.insert(&key_of(i), &value_of(j as u64, i)).unwrap();
        }
    }
    // A value of each, kept across the changes of all the others.
    let held: Vec<&[u8]> = tables
        .iter()
        .map(|t| t.get(&key_of(7)).unwrap().unwrap())
        .collect();
    for (j, v) in held.iter().enumerate() {
        assert_eq!(*v, &value_of(j as u64, 7)[..]);
    }
    drop(tables);
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    assert_eq!(r.list_tables().unwrap().len(), 50);
    drop(r);
    for (j, name) in names.iter().enumerate() {
        let rows = rows(db, name);
        assert_eq!(rows.len(), 120);
        for i in 0..120u64 {
            assert_eq!(rows[&key_of(i)], value_of(j as u64, i), "{name} row {i}");
        }
    }
    assert_checked(db);
}

/// Handles are `Send`: two tables of one transaction change at once on two
/// threads.
#[test]
fn two_tables_change_on_two_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<TableMut<'static>>();
    assert_send::<larch::WriteTxn>();
    let t = TestDb::new(PS);
    let db = t.db();
    let w = db.begin_write().unwrap();
    let a = w.open_table("a").unwrap();
    let b = w.open_table("b").unwrap();
    std::thread::scope(|s| {
        for (seed, mut t) in [(20u64, a), (21, b)] {
            s.spawn(move || {
                for i in 0..1500 {
                    t.insert(&key_of(i), &value_of(seed, i)).unwrap();
                }
            });
        }
    });
    w.commit().unwrap();
    for (seed, name) in [(20u64, "a"), (21, "b")] {
        let rows = rows(db, name);
        for i in 0..1500 {
            assert_eq!(rows[&key_of(i)], value_of(seed, i));
        }
    }
    assert_checked(db);
}

/// A handle dropped while its thread panics fails the transaction: the
/// panic may have cut a change short, so nothing of the transaction
/// commits; a savepoint taken before puts it back, and it commits then.
#[test]
fn a_handle_dropped_by_a_panic_fails_the_transaction() {
    let t = TestDb::new(PS);
    let db = t.db();
    let w = db.begin_write().unwrap();
    w.open_table("a").unwrap().insert(b"k", b"v").unwrap();
    w.commit().unwrap();
    let before = rows(db, "a");

    let w = db.begin_write().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut a = w.open_table("a").unwrap();
        a.insert(b"half", b"way").unwrap();
        panic!("cut short");
    }));
    assert!(r.is_err());
    assert!(matches!(w.open_table("b").map(drop), Err(Error::TxnFailed)));
    assert!(matches!(w.commit(), Err(Error::TxnFailed)));
    assert_eq!(rows(db, "a"), before);

    let mut w = db.begin_write().unwrap();
    w.open_table("a").unwrap().insert(b"kept", b"1").unwrap();
    let sp = w.savepoint().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut a = w.open_table("a").unwrap();
        a.insert(b"half", b"way").unwrap();
        panic!("cut short");
    }));
    assert!(r.is_err());
    assert!(matches!(w.open_table("a").map(drop), Err(Error::TxnFailed)));
    w.restore_savepoint(&sp).unwrap();
    w.commit().unwrap();
    let mut after = before.clone();
    after.insert(b"kept".to_vec(), b"1".to_vec());
    assert_eq!(rows(db, "a"), after);
    assert_checked(db);
}

/// A table opened again and again in one transaction, one packed value a
/// handle, takes about the pages it takes through one handle: a dropped
/// handle gives back its segment's unfilled pages, and the table opened
/// again appends where it stopped.
#[test]
fn a_table_reopened_for_each_value_packs_as_densely_as_one_handle() {
    let n = 400u64;
    let value = |i: u64| seeded_bytes(i, 1500 + (i % 9) as usize * 100);
    let one = TestDb::new(PS);
    let w = one.db().begin_write().unwrap();
    let mut t = w.open_table("t").unwrap();
    for i in 0..n {
        t.insert(&key_of(i), &value(i)).unwrap();
    }
    drop(t);
    w.commit().unwrap();

    let many = TestDb::new(PS);
    let db = many.db();
    let w = db.begin_write().unwrap();
    for i in 0..n {
        w.open_table("t")
            .unwrap()
            .insert(&key_of(i), &value(i))
            .unwrap();
    }
    w.commit().unwrap();
    assert_checked(db);
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    for i in 0..n {
        assert_eq!(t.get(&key_of(i)).unwrap().unwrap(), value(i));
    }
    drop(r);
    let (l1, l2) = (one.file_size(), many.file_size());
    let heap = |db: &Database| db.stat().unwrap().segment_pages;
    let (h1, h2) = (heap(one.db()), heap(db));
    eprintln!(
        "one handle: {l1} bytes, {h1} segment pages; a handle a value: {l2} bytes, {h2} segment pages"
    );
    assert!(
        h2 <= h1 + h1 / 4,
        "{h2} segment pages vs {h1} through one handle"
    );
}

/// A table deleted after a savepoint and made again many times over keeps
/// what the savepoint needs: the restore brings its rows back whole, and
/// the rounds in between reuse their pages.
#[test]
fn a_table_deleted_and_made_again_after_a_savepoint_restores_whole() {
    let t = TestDb::with_options(Options::new().page_size(PS).max_size(16 << 20));
    let db = t.db();
    let mut w = db.begin_write().unwrap();
    let mut model = BTreeMap::new();
    {
        let mut s = w.open_table("scratch").unwrap();
        for i in 0..40 {
            s.insert(&key_of(i), &value_of(30, i)).unwrap();
            model.insert(key_of(i), value_of(30, i));
        }
    }
    let sp = w.savepoint().unwrap();
    for round in 0..200u64 {
        {
            let mut s = w.open_table("scratch").unwrap();
            for i in 0..20 {
                s.insert(&key_of(i), &seeded_bytes(round * 100 + i, 2000))
                    .unwrap();
            }
        }
        assert!(w.delete_table("scratch").unwrap());
    }
    w.restore_savepoint(&sp).unwrap();
    {
        let s = w.open_table("scratch").unwrap();
        assert_eq!(s.len(), model.len() as u64);
        for (k, v) in &model {
            assert_eq!(s.get(k).unwrap().unwrap(), &v[..]);
        }
    }
    // Deleted once more under the savepoint, then restored again.
    assert!(w.delete_table("scratch").unwrap());
    w.restore_savepoint(&sp).unwrap();
    w.commit().unwrap();
    assert_eq!(rows(db, "scratch"), model);
    assert_checked(db);
}
