//! Durability modes: commits left without a sync (`Eventual`, `None`) are
//! visible at once, in this process and others, become durable at `sync`,
//! at an `Immediate` commit, at close, or (`Eventual`) once the oldest is a
//! period old; a crash of the process that made them keeps them while
//! another process has the database open, and a crash of every process
//! leaves a prefix of the commits that holds every durable one. Power
//! losses are the power-loss suite's (mixed durabilities).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Rng;
use larch::testing::{budget_from_env, seed_from_env};
use larch::{Database, Durability, EVENTUAL_PERIOD};

fn put(db: &Database, durability: Durability, key: u64, value: &[u8]) {
    let mut w = db.begin_write().unwrap();
    w.set_durability(durability);
    assert_eq!(w.durability(), durability);
    w.open_table("t")
        .unwrap()
        .insert(&key.to_be_bytes(), value)
        .unwrap();
    w.commit().unwrap();
}

fn get(db: &Database, key: u64) -> Option<Vec<u8>> {
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    t.get(&key.to_be_bytes()).unwrap().map(<[u8]>::to_vec)
}

#[test]
fn weak_commits_are_visible_at_once_and_durable_at_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = common::open(&path, 1024);
    // A second handle reads through the lock file, as another process does.
    let other = common::open(&path, 1024);
    put(&db, Durability::Immediate, 0, b"durable");
    let durable = db.durable_txn_id();
    assert_eq!(durable, db.last_txn_id());
    for (i, mode) in [Durability::Eventual, Durability::None, Durability::None]
        .into_iter()
        .enumerate()
    {
        let key = i as u64 + 1;
        put(&db, mode, key, &[key as u8; 3000]);
        // Visible at once, to both handles; not durable.
        assert_eq!(get(&db, key), Some(vec![key as u8; 3000]));
        assert_eq!(get(&other, key), Some(vec![key as u8; 3000]));
        assert_eq!(db.durable_txn_id(), durable);
        assert_eq!(other.durable_txn_id(), durable);
    }
    // Ids of commits left weak have the parity of the slot the next durable
    // meta takes: the one the durable meta is not in.
    let last = db.last_txn_id();
    assert_ne!(last % 2, durable % 2);
    // The other handle writes on top of them, and syncs them all.
    put(&other, Durability::None, 9, b"from the other handle");
    assert_eq!(get(&db, 9).as_deref(), Some(&b"from the other handle"[..]));
    db.sync().unwrap();
    assert_eq!(db.durable_txn_id(), db.last_txn_id());
    assert_eq!(other.durable_txn_id(), db.last_txn_id());
    // A sync with nothing to do is free, and changes nothing.
    let id = db.last_txn_id();
    db.sync().unwrap();
    assert_eq!(db.last_txn_id(), id);
    db.check().unwrap();
    drop((db, other));
    let db = common::open(&path, 1024);
    assert_eq!(db.last_txn_id(), id);
    for key in 0..4 {
        assert!(get(&db, key).is_some(), "key {key}");
    }
    db.check().unwrap();
}

#[test]
fn an_immediate_commit_makes_the_weak_ones_before_it_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = common::open(&path, 1024);
    for i in 0..50 {
        put(&db, Durability::None, i, &[i as u8; 700]);
    }
    assert!(db.durable_txn_id() < db.last_txn_id());
    put(&db, Durability::Immediate, 50, b"x");
    assert_eq!(db.durable_txn_id(), db.last_txn_id());
    db.check().unwrap();
}

#[test]
fn closing_makes_weak_commits_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = common::open(&path, 1024);
    for i in 0..200 {
        let mode = if i % 2 == 0 {
            Durability::None
        } else {
            Durability::Eventual
        };
        put(
            &db,
            mode,
            i,
            &common::seeded_bytes(i, 100 + (i as usize * 37) % 3000),
        );
    }
    let last = db.last_txn_id();
    drop(db);
    let db = common::open(&path, 1024);
    assert_eq!(db.last_txn_id(), last);
    assert_eq!(db.durable_txn_id(), last);
    for i in 0..200 {
        let want = common::seeded_bytes(i, 100 + (i as usize * 37) % 3000);
        assert_eq!(get(&db, i), Some(want));
    }
    db.check().unwrap();
}

#[test]
fn eventual_syncs_once_the_oldest_weak_commit_is_a_period_old_and_none_never_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = common::open(&path, 1024);
    put(&db, Durability::None, 0, b"a");
    let durable = db.durable_txn_id();
    std::thread::sleep(EVENTUAL_PERIOD + Duration::from_millis(100));
    // `None` waits for ever.
    put(&db, Durability::None, 1, b"b");
    assert_eq!(db.durable_txn_id(), durable);
    // `Eventual` finds the oldest weak commit too old, and syncs.
    put(&db, Durability::Eventual, 2, b"c");
    assert_eq!(db.durable_txn_id(), db.last_txn_id());
    // A fresh one is left weak again.
    put(&db, Durability::Eventual, 3, b"d");
    assert!(db.durable_txn_id() < db.last_txn_id());
    db.check().unwrap();
}

#[test]
fn weak_commits_reuse_pages_and_keep_the_file_bounded() {
    // Commits that are never synced still reuse what they free: only the
    // metas on disk (and live readers) pin pages, not every commit since.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = common::open(&path, 1024);
    for round in 0..2000u64 {
        put(&db, Durability::None, round % 20, &[round as u8; 900]);
    }
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len < 2 << 20, "the file grew to {len} bytes");
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("t").unwrap().len(), 20);
    drop(r);
    db.check().unwrap();
}

#[test]
fn a_reader_of_a_weak_commit_keeps_its_snapshot_across_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = common::open(&path, 1024);
    let other = common::open(&path, 1024);
    put(&db, Durability::None, 1, &[1; 2000]);
    let held = other.begin_read().unwrap();
    for i in 0..300u64 {
        put(&db, Durability::None, 1, &[(i % 250) as u8; 2000]);
        if i % 50 == 0 {
            db.sync().unwrap();
        }
    }
    let t = held.open_table("t").unwrap();
    assert_eq!(t.get(&1u64.to_be_bytes()).unwrap(), Some(&[1u8; 2000][..]));
    held.check().unwrap();
}

/// The child: commits with a durability from `LARCH_DUR_SEED`, printing
/// `ack N` after each commit and `durable N` when every commit up to N is
/// durable.
#[test]
fn child_mixed_writer() {
    let Ok(path) = std::env::var("LARCH_DUR_CHILD") else {
        return;
    };
    let seed: u64 = std::env::var("LARCH_DUR_SEED").unwrap().parse().unwrap();
    let mut rng = Rng(seed);
    let db = common::open(Path::new(&path), 1024);
    let mut next = {
        let r = db.begin_read().unwrap();
        r.open_table("t").map(|t| t.len()).unwrap_or(0)
    };
    let mut out = std::io::stdout().lock();
    loop {
        let mode = match rng.below(3) {
            0 => Durability::Immediate,
            1 => Durability::Eventual,
            _ => Durability::None,
        };
        put(
            &db,
            mode,
            next,
            &common::seeded_bytes(next, 64 + (next as usize % 9) * 400),
        );
        writeln!(out, "ack {next}").unwrap();
        if rng.below(20) == 0 {
            db.sync().unwrap();
        }
        if db.durable_txn_id() == db.last_txn_id() {
            writeln!(out, "durable {next}").unwrap();
        }
        out.flush().unwrap();
        next += 1;
    }
}

/// SIGKILL a writer of mixed durabilities: with another process holding
/// the database open, nothing it acknowledged is lost (the survivor reads
/// its weak commits and syncs them); alone, the reopened log is a prefix
/// holding every commit it reported durable.
#[test]
fn kill_nine_keeps_weak_commits_while_another_process_holds_the_database() {
    let seed = seed_from_env();
    let kills = budget_from_env(30);
    eprintln!("durability kill: LARCH_SEED={seed} LARCH_BUDGET={kills}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill.larch");
    let (mut acked, mut durable) = (None::<u64>, None::<u64>);
    let (mut held_rounds, mut weak_lost, mut durable_lost) = (0, 0u64, 0u64);
    for round in 0..kills {
        // Every other round, this process holds the database open too.
        let holder = (round % 2 == 0).then(|| common::open(&path, 1024));
        let mut child = {
            let _spawn = common::spawn_lock();
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_mixed_writer",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("LARCH_DUR_CHILD", &path)
                .env("LARCH_DUR_SEED", (seed ^ round).to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut ack, mut dur) = (None, None);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.rfind("ack ") {
                    ack = Some(line[at + 4..].trim().parse::<u64>().unwrap());
                } else if let Some(at) = line.rfind("durable ") {
                    dur = Some(line[at + 8..].trim().parse::<u64>().unwrap());
                }
            }
            (ack, dur)
        });
        std::thread::sleep(Duration::from_micros(5_000 + rng.below(40_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        let (ack, dur) = reader.join().unwrap();
        if let Some(a) = ack {
            acked = Some(acked.map_or(a, |x| x.max(a)));
        }
        if let Some(d) = dur {
            durable = Some(durable.map_or(d, |x| x.max(d)));
        }
        if let Some(h) = holder {
            // The survivor sees every acknowledged commit, and syncs them.
            let r = h.begin_read().unwrap();
            let len = r.open_table("t").map(|t| t.len()).unwrap_or(0);
            drop(r);
            if let Some(a) = acked {
                assert!(len > a, "round {round}: {len} entries, {a} acknowledged");
            }
            h.sync().unwrap();
            durable = acked;
            held_rounds += 1;
        }
        let _spawn = common::spawn_lock();
        let db = common::open(&path, 1024);
        db.check().unwrap();
        let r = db.begin_read().unwrap();
        let len = r.open_table("t").map(|t| t.len()).unwrap_or(0);
        if let Some(d) = durable
            && len <= d
        {
            eprintln!("round {round}: {len} entries, {d} durable");
            durable_lost += d + 1 - len;
        }
        // A prefix: entries 0..len, each whole.
        if len > 0 {
            let t = r.open_table("t").unwrap();
            let (last, _) = t.iter().unwrap().next_back().unwrap().unwrap();
            assert_eq!(last, (len - 1).to_be_bytes());
            for i in [0, len / 2, len - 1] {
                let want = common::seeded_bytes(i, 64 + (i as usize % 9) * 400);
                assert_eq!(t.get(&i.to_be_bytes()).unwrap(), Some(&want[..]));
            }
        }
        if let Some(a) = acked
            && len <= a
        {
            weak_lost += a + 1 - len;
            // What this open found is all there is from now on.
            acked = len.checked_sub(1);
        }
    }
    larch::testing::report(&format!(
        "RELIABILITY suite=kill part=durability seed={seed} kills={kills} held_rounds={held_rounds} \
         acked={} durable_lost={durable_lost} weak_lost_alone={weak_lost}",
        acked.map_or(0, |a| a + 1),
    ));
    assert_eq!(durable_lost, 0);
    assert!(
        acked.is_some_and(|a| a > kills),
        "the child barely committed"
    );
}

#[test]
fn readers_of_another_handle_keep_up_with_a_stream_of_weak_commits() {
    // Each weak meta is overwritten two weak commits later: a reader of
    // another handle (as of another process) that loses one retries, and
    // never fails or reads a mix.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = common::open(&path, 1024);
    let other = common::open(&path, 1024);
    put(&db, Durability::Immediate, 0, &0u64.to_be_bytes());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = other.begin_read().unwrap();
                let t = r.open_table("t").unwrap();
                // Key 0 holds the id of the commit that wrote it.
                let v = t.get(&0u64.to_be_bytes()).unwrap().unwrap();
                let written = u64::from_be_bytes(v.try_into().unwrap());
                // The snapshot is the commit it names, not a neighbour's.
                assert!(written == r.id() || written == 0, "{written} in {}", r.id());
                reads += 1;
            }
            reads
        });
        for _ in 0..3000 {
            let mut w = db.begin_write().unwrap();
            w.set_durability(Durability::None);
            let id = w.id();
            w.open_table("t")
                .unwrap()
                .insert(&0u64.to_be_bytes(), &id.to_be_bytes())
                .unwrap();
            w.commit().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    db.sync().unwrap();
    other.check().unwrap();
}

#[test]
fn an_immediate_commit_that_changed_nothing_still_makes_the_weak_ones_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = common::open(&path, 1024);
    put(&db, Durability::None, 1, b"weak");
    assert!(db.durable_txn_id() < db.last_txn_id());
    let last = db.last_txn_id();
    db.begin_write().unwrap().commit().unwrap();
    assert_eq!(db.last_txn_id(), last);
    assert_eq!(db.durable_txn_id(), last);
    // Left weak, an empty commit changes nothing.
    put(&db, Durability::None, 2, b"weak again");
    let mut w = db.begin_write().unwrap();
    w.set_durability(Durability::Eventual);
    w.commit().unwrap();
    assert!(db.durable_txn_id() < db.last_txn_id());
}
