//! Reader slots across processes: the slots of reader processes killed with
//! SIGKILL are freed by the writer without any call of the user, after which
//! churn stops growing the file; the snapshot of a live reader process is
//! never reclaimed, however much the writer churns.

use std::collections::BTreeSet;
use std::path::Path;

use larch::Database;
use larch::testing::{budget_from_env, report, seed_from_env};

use crate::common::{Rng, TestDb};
use crate::{Proc, digest, field, say, spawn};

const KEYS: u64 = 64;

/// The most commits churned under a pinned snapshot, whatever the budget, so
/// that a larger budget spends its time elsewhere. (A pinned reader holds
/// only the pages its snapshot reaches: see
/// `a_reader_process_pins_only_what_its_snapshot_reaches`.)
const PINNED_COMMITS: u64 = 120;

/// Rewrites random keys of table "churn" in each of `commits` commits (some
/// values on overflow pages, some keys removed and put back).
fn churn(db: &Database, rng: &mut Rng, commits: u64) {
    for _ in 0..commits {
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("churn").unwrap();
            for _ in 0..16 {
                let k = rng.below(KEYS).to_be_bytes();
                let len = if rng.below(10) == 0 {
                    2500
                } else {
                    100 + rng.below(300) as usize
                };
                t.insert(&k, &rng.bytes(len)).unwrap();
            }
            let k = rng.below(KEYS).to_be_bytes();
            if t.remove(&k).unwrap() {
                t.insert(&k, b"back").unwrap();
            }
        }
        w.commit().unwrap();
    }
}

fn filled(seed: u64) -> (TestDb, Rng) {
    let t = TestDb::new(crate::PAGE);
    let mut rng = Rng(seed);
    let w = t.db().begin_write().unwrap();
    {
        let mut table = w.open_table("churn").unwrap();
        for k in 0..KEYS {
            table.insert(&k.to_be_bytes(), &rng.bytes(200)).unwrap();
        }
    }
    w.commit().unwrap();
    (t, rng)
}

/// The digest of table "churn" in the last commit.
fn committed_digest(db: &Database) -> (u64, u64) {
    digest(&db.begin_read().unwrap().open_table("churn").unwrap()).unwrap()
}

/// Holder role: takes a snapshot, says `held txn=..`, and keeps it until
/// killed (or until the parent closes the pipe).
pub fn holder(path: &Path) {
    let db = crate::open(path);
    let parent = crate::from_parent();
    let r = db.begin_read().unwrap();
    digest(&r.open_table("churn").unwrap()).unwrap();
    say(&format!("held txn={}", r.id()));
    while parent.recv().is_ok() {}
}

/// Pinner role: takes a snapshot and says `pinned txn=.. len=.. digest=..`;
/// on `verify`, reads the whole snapshot again, checks it, and says
/// `verified len=.. digest=.. check=0|1`; then waits for the pipe to close.
pub fn pinner(path: &Path) {
    let db = crate::open(path);
    let parent = crate::from_parent();
    let r = db.begin_read().unwrap();
    let (len, h) = digest(&r.open_table("churn").unwrap()).unwrap();
    say(&format!("pinned txn={} len={len} digest={h}", r.id()));
    assert_eq!(parent.recv().unwrap(), "verify");
    let (len, h) = digest(&r.open_table("churn").unwrap()).unwrap();
    let check = r.check();
    if let Err(e) = &check {
        eprintln!("pinner: check of txn {}: {e}", r.id());
    }
    say(&format!(
        "verified len={len} digest={h} check={}",
        u8::from(check.is_ok())
    ));
    while parent.recv().is_ok() {}
}

/// The (pid, snapshot) of every reader `readers()` lists.
fn listed(db: &Database) -> BTreeSet<(u32, u64)> {
    db.readers()
        .unwrap()
        .iter()
        .map(|r| (r.pid, r.txn_id))
        .collect()
}

fn pages(db: &Database) -> (u64, u64) {
    let s = db.stat().unwrap();
    (s.pages, s.file_size)
}

#[test]
fn killed_readers_are_reclaimed_and_churn_stops_growing_the_file() {
    let seed = seed_from_env();
    let rounds = budget_from_env(100);
    eprintln!("multiprocess reclaim: LARCH_SEED={seed} LARCH_BUDGET={rounds}");
    let (t, mut rng) = filled(seed);
    let db = t.db();
    let holders = 4;
    let mut procs: Vec<Proc> = Vec::new();
    let mut held = BTreeSet::new();
    for _ in 0..holders {
        let p = spawn("holder", &t.path(), "");
        let txn = field(&p.expect("held"), "txn").unwrap();
        held.insert((p.pid(), txn));
        procs.push(p);
        churn(db, &mut rng, 3);
    }
    assert_eq!(listed(db), held);
    assert_eq!(db.live_readers(), holders);
    // Oldest snapshot first, each as old as its process has held it.
    let readers = db.readers().unwrap();
    assert!(readers.windows(2).all(|w| w[0].txn_id <= w[1].txn_id));
    assert!(readers.windows(2).all(|w| w[0].age >= w[1].age));
    assert!(
        readers
            .iter()
            .all(|r| r.age < std::time::Duration::from_secs(600))
    );

    // Pinned by the holders, churn can reuse nothing freed since the oldest.
    let start = pages(db);
    churn(db, &mut rng, rounds.min(PINNED_COMMITS));
    let pinned = pages(db);
    let grown_pinned = pinned.0 - start.0;

    for p in procs {
        p.kill();
    }
    // Dead readers are neither listed nor counted, whatever their slots
    // still say; one commit frees their slots (what `clear_stale_readers`
    // finds afterwards is what the writer left).
    assert!(listed(db).is_empty(), "{:?}", db.readers());
    assert_eq!(db.live_readers(), 0);
    churn(db, &mut rng, 1);
    let left = db.clear_stale_readers().unwrap();
    let reclaimed = holders - left;

    // Churn again, twice as long: the file stops growing.
    churn(db, &mut rng, rounds);
    let first = pages(db);
    churn(db, &mut rng, rounds);
    let second = pages(db);
    // Growth is counted past the highest mark seen before: the mark may
    // drop when a free tail leaves the file, and churn may then take those
    // pages back without the file growing.
    let (grown1, grown2) = (
        first.0.saturating_sub(pinned.0),
        second.0.saturating_sub(first.0.max(pinned.0)),
    );
    report(&format!(
        "RELIABILITY suite=multiprocess part=reclaim seed={seed} reader_procs={holders} \
         reader_kills={holders} reclaimed={reclaimed} pages_grown_pinned={grown_pinned} \
         pages_grown_after={grown1}+{grown2} file_size={}/{}/{}",
        pinned.1, first.1, second.1
    ));
    assert_eq!(left, 0, "slots of dead readers left after a commit");
    assert!(db.readers().unwrap().is_empty());
    assert!(grown_pinned > 0);
    // Without the holders' slots freed, every round would grow the file as
    // much as the pinned one.
    assert!(
        grown1 * 4 <= grown_pinned && grown2 * 10 <= grown_pinned,
        "pages grew {grown_pinned} pinned, then {grown1} and {grown2}"
    );
    assert!(second.1 <= first.1 + (1 << 20), "{first:?} -> {second:?}");
    db.check().unwrap();
}

/// Runs a pinner on `t` and churns `commits` commits under it, asking for
/// stale readers to be cleared half-way; returns the pinner, its snapshot,
/// and the pages churn added.
fn churn_under_a_pinner(t: &TestDb, rng: &mut Rng, commits: u64) -> (Proc, u64, u64) {
    let db = t.db();
    let expected = committed_digest(db);
    let pinner = spawn("pinner", &t.path(), "");
    let line = pinner.expect("pinned");
    let txn = field(&line, "txn").unwrap();
    assert_eq!(txn, db.last_txn_id());
    assert_eq!(
        (
            field(&line, "len").unwrap(),
            field(&line, "digest").unwrap()
        ),
        expected
    );
    let start = pages(db).0;
    churn(db, rng, commits / 2);
    assert_eq!(
        db.clear_stale_readers().unwrap(),
        0,
        "a live reader cleared"
    );
    churn(db, rng, commits - commits / 2);
    assert!(listed(db).contains(&(pinner.pid(), txn)));
    (pinner, txn, pages(db).0 - start)
}

/// Asks the pinner to read its snapshot again and requires it unchanged and
/// passing `check`.
fn verify_pinner(pinner: &mut Proc, expected: (u64, u64)) {
    pinner.send("verify");
    let line = pinner.expect("verified");
    let got = (
        field(&line, "len").unwrap(),
        field(&line, "digest").unwrap(),
    );
    assert_eq!(got, expected, "the pinned snapshot changed: {line}");
    assert_eq!(field(&line, "check"), Some(1), "{line}");
}

#[test]
fn a_live_reader_process_keeps_its_snapshot_through_heavy_churn() {
    let seed = seed_from_env();
    let rounds = budget_from_env(100);
    let (t, mut rng) = filled(seed);
    let db = t.db();
    churn(db, &mut rng, 10);
    let expected = committed_digest(db);
    let (mut pinner, txn, grown) = churn_under_a_pinner(&t, &mut rng, rounds.min(PINNED_COMMITS));
    assert_eq!(db.live_readers(), 1);
    assert_eq!(listed(db), BTreeSet::from([(pinner.pid(), txn)]));
    // Readers killed beside it: clearing stale readers frees theirs only.
    let holders: Vec<Proc> = (0..2).map(|_| spawn("holder", &t.path(), "")).collect();
    for h in &holders {
        h.expect("held");
    }
    assert_eq!(db.live_readers(), 3);
    for h in holders {
        h.kill();
    }
    assert_eq!(db.clear_stale_readers().unwrap(), 2);
    assert_eq!(db.live_readers(), 1);
    assert_eq!(listed(db), BTreeSet::from([(pinner.pid(), txn)]));
    verify_pinner(&mut pinner, expected);
    pinner.finish();
    // Its slot is free once it ended, and churn reuses what it held.
    churn(db, &mut rng, 1);
    assert_eq!(db.live_readers(), 0);
    let before = pages(db).0;
    churn(db, &mut rng, rounds);
    let after = pages(db).0;
    report(&format!(
        "RELIABILITY suite=multiprocess part=pinned seed={seed} reader_procs=1 \
         pinned_verified=1 pages_grown_pinned={grown} pages_grown_after={}",
        after.saturating_sub(before)
    ));
    assert!(
        after.saturating_sub(before) < grown,
        "{before} -> {after} after {grown}"
    );
    db.check().unwrap();
}

/// Readers killed while a live reader holds an older snapshot: the writer's
/// commits should free their slots as well (`readers()` and `live_readers()`
/// agree once a commit has run).
#[test]
fn dead_readers_newer_than_a_live_one_are_reclaimed_by_commits() {
    let seed = seed_from_env();
    let (t, mut rng) = filled(seed);
    let db = t.db();
    let expected = committed_digest(db);
    let (mut pinner, txn, _) = churn_under_a_pinner(&t, &mut rng, 4);
    let holders: Vec<Proc> = (0..2).map(|_| spawn("holder", &t.path(), "")).collect();
    for h in &holders {
        h.expect("held");
    }
    assert_eq!(db.live_readers(), 3);
    for h in holders {
        h.kill();
    }
    churn(db, &mut rng, 3);
    assert_eq!(listed(db), BTreeSet::from([(pinner.pid(), txn)]));
    assert_eq!(
        db.live_readers(),
        1,
        "slots of dead readers still counted after commits"
    );
    // The commits freed the dead slots themselves, not only stopped
    // counting them.
    assert_eq!(db.clear_stale_readers().unwrap(), 0);
    verify_pinner(&mut pinner, expected);
    pinner.finish();
}

/// Crowd role: takes `n` snapshots at once and says `held txn=..`; on
/// `drop`, ends all but the last `keep` and says `dropped`; on `verify`,
/// reads the kept snapshots again and says `verified digest=.. check=0|1`;
/// then waits for the pipe to close (or to be killed).
pub fn crowd(path: &Path, args: &crate::Args) {
    let db = crate::open(path);
    let parent = crate::from_parent();
    let mut reads: Vec<_> = (0..args.get("n"))
        .map(|_| db.begin_read().unwrap())
        .collect();
    let txn = reads[0].id();
    assert!(reads.iter().all(|r| r.id() == txn));
    say(&format!("held txn={txn}"));
    while let Ok(line) = parent.recv() {
        match line.as_str() {
            "drop" => {
                reads.drain(..reads.len() - args.get("keep") as usize);
                say("dropped");
            }
            "verify" => {
                let mut all = BTreeSet::new();
                let mut ok = true;
                for r in &reads {
                    all.insert(digest(&r.open_table("churn").unwrap()).unwrap());
                    ok &= r.check().is_ok();
                }
                let (len, h) = *all.first().unwrap();
                let same = u8::from(all.len() == 1 && ok);
                say(&format!("verified len={len} digest={h} check={same}"));
            }
            other => panic!("crowd: {other}"),
        }
    }
}

fn lock_len(path: &Path) -> u64 {
    let mut name = path.as_os_str().to_owned();
    name.push("-lock");
    std::fs::metadata(name).unwrap().len()
}

/// More readers than a new lock file has slots: the file grows, the other
/// processes see the new slots (a snapshot held only in them is kept from
/// the writer), an opener frees the slots of a killed reader process, and
/// readers that find no free slot take dead ones before growing the file.
#[test]
fn reader_slots_grow_past_the_first_ones_and_dead_ones_are_reused() {
    let seed = seed_from_env();
    let (t, mut rng) = filled(seed);
    let db = t.db();
    let expected = committed_digest(db);
    let initial = lock_len(&t.path());
    let mut crowd = spawn("crowd", &t.path(), "n=300 keep=40");
    let txn = field(&crowd.expect("held"), "txn").unwrap();
    assert!(lock_len(&t.path()) > initial, "the lock file did not grow");
    let listed = db.readers().unwrap();
    assert_eq!(listed.len(), 300);
    assert!(
        listed
            .iter()
            .all(|r| (r.pid, r.txn_id) == (crowd.pid(), txn))
    );
    // Only the readers past the first slots keep the snapshot now.
    crowd.send("drop");
    crowd.expect("dropped");
    assert_eq!(db.readers().unwrap().len(), 40);
    churn(db, &mut rng, 60);
    crowd.send("verify");
    let line = crowd.expect("verified");
    let got = (
        field(&line, "len").unwrap(),
        field(&line, "digest").unwrap(),
    );
    assert_eq!(got, expected, "{line}");
    assert_eq!(field(&line, "check"), Some(1), "{line}");
    crowd.kill();

    // An opener frees the dead slots, with no commit.
    assert_eq!(db.live_readers(), 0, "dead readers are not counted");
    let other = crate::open(&t.path());
    assert_eq!(
        db.clear_stale_readers().unwrap(),
        0,
        "an open left dead readers' slots"
    );
    drop(other);

    // Readers short of free slots take those of a dead process first.
    let grown = lock_len(&t.path());
    let crowd = spawn("crowd", &t.path(), "n=300 keep=300");
    crowd.expect("held");
    crowd.kill();
    let reads: Vec<_> = (0..300).map(|_| db.begin_read().unwrap()).collect();
    assert_eq!(db.readers().unwrap().len(), 300);
    assert_eq!(lock_len(&t.path()), grown, "dead slots were not reused");
    drop(reads);
    db.check().unwrap();
}

/// While a reader process holds one snapshot, each commit of one small
/// change should add about as many pages as the one before: the file grows
/// in proportion to the commits, as the pages the snapshot keeps do.
#[test]
fn a_pinned_reader_process_makes_the_file_grow_linearly() {
    let (t, _) = filled(seed_from_env());
    let db = t.db();
    let expected = committed_digest(db);
    let mut pinner = spawn("pinner", &t.path(), "");
    pinner.expect("pinned");
    let one = |n: u64| {
        for i in 0..n {
            let w = db.begin_write().unwrap();
            let mut table = w.open_table("churn").unwrap();
            table
                .insert(&(i % KEYS).to_be_bytes(), &[i as u8; 200])
                .unwrap();
            drop(table);
            w.commit().unwrap();
        }
    };
    let start = pages(db).0;
    one(150);
    let half = pages(db).0;
    one(150);
    let end = pages(db).0;
    let (first, second) = (half.saturating_sub(start), end.saturating_sub(half));
    eprintln!("pages grown by 150 commits under a pinned reader: {first}, then {second}");
    verify_pinner(&mut pinner, expected);
    pinner.finish();
    assert!(
        second <= 2 * first + 16,
        "the second 150 commits grew the file by {second} pages, the first by {first}"
    );
}

/// A reader process pins a snapshot while this one rewrites the same keys
/// commit after commit. The writer reuses every page written after that
/// snapshot once it is freed (the interval rule, with the snapshot read from
/// the other process's registry slot) and keeps every page the snapshot
/// reaches: the file stops growing, the reader reads its snapshot back
/// unchanged, and `readers()` names what it alone holds.
#[test]
fn a_reader_process_pins_only_what_its_snapshot_reaches() {
    let seed = seed_from_env();
    let (t, mut rng) = filled(seed);
    let db = t.db();
    churn(db, &mut rng, 10);
    let expected = committed_digest(db);
    let mut pinner = spawn("pinner", &t.path(), "");
    let txn = field(&pinner.expect("pinned"), "txn").unwrap();
    // The high-water mark swings by a few dozen pages as runs at the top
    // are freed and cut (a packed value needs a run of its own length among
    // pages freed one by one): the highest mark of each half is compared.
    let mut highest = |commits: u64| {
        (0..commits / 20)
            .map(|_| {
                churn(db, &mut rng, 20);
                pages(db).0
            })
            .max()
            .unwrap_or(0)
    };
    highest(200);
    let warm = highest(400);
    let end = highest(400);
    let listed = db.readers().unwrap();
    let me = listed.iter().find(|r| r.pid == pinner.pid()).unwrap();
    assert_eq!(me.txn_id, txn);
    assert!(me.pinned_pages > 0, "{listed:?}");
    verify_pinner(&mut pinner, expected);
    pinner.finish();
    report(&format!(
        "RELIABILITY suite=multiprocess part=interval seed={seed} reader_procs=1 \
         commits=1000 highest_200_600={warm} highest_600_1000={end} pinned_alone={}",
        me.pinned_pages
    ));
    assert!(
        end <= warm + warm / 10 + 32,
        "400 more commits under a pinned reader process raised the highest mark from {warm} to {end} pages"
    );
    db.check().unwrap();
}

/// Red team. Under the interval rule every live snapshot pins pages, not
/// only the oldest; but the writer's scan (`Registry::snapshots`) checks a
/// slot for a dead process only when it would be the oldest so far. A
/// reader process killed while an older snapshot is held in a slot scanned
/// before it is counted as live by every commit: the pages its snapshot
/// reaches stay pending for as long as the older reader lives, although
/// `readers()` does not list it and `clear_stale_readers` says writers free
/// such slots "before they could pin pages".
#[test]
fn a_dead_reader_newer_than_a_live_one_pins_no_pages() {
    let seed = seed_from_env();
    let (t, mut rng) = filled(seed);
    let db = t.db();
    // The live, older snapshot: this process's, in the first slot.
    let old = db.begin_read().unwrap();
    churn(db, &mut rng, 5);
    let holder = spawn("holder", &t.path(), "");
    holder.expect("held");
    holder.kill();
    // Churn long enough that every page the dead snapshot reached is freed.
    churn(db, &mut rng, 60);
    let pending = |db: &Database| db.stat().unwrap().pending_free_pages;
    let with_dead = pending(db);
    let listed_pins: u64 = db.readers().unwrap().iter().map(|r| r.pinned_pages).sum();
    let left = db.clear_stale_readers().unwrap();
    churn(db, &mut rng, 3);
    let without = pending(db);
    drop(old);
    assert_eq!(
        left, 0,
        "commits left the dead reader's slot: {with_dead} pending pages with it, \
         {without} once cleared; readers() accounts for {listed_pins}"
    );
}
