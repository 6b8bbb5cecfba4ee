//! Writer processes killed with SIGKILL in the middle of their commits while
//! reader processes verify snapshots throughout: the next writer always gets
//! the lock, no acknowledged commit is lost, no reader sees a torn state, and
//! the file passes `check` after every kill.

use std::time::{Duration, Instant};

use larch::Database;
use larch::testing::{budget_from_env, report, seed_from_env};

use crate::bank::{self, log_value};
use crate::common::Rng;
use crate::spawn;

/// Polls `try_begin_write` until it succeeds: a writer that never gets the
/// lock (a dead process's lock kept) fails the test instead of hanging it.
/// Returns the transaction and how long it took.
fn begin_write_within(db: &Database, limit: Duration) -> (larch::WriteTxn, Duration) {
    let start = Instant::now();
    loop {
        if let Some(w) = db.try_begin_write().unwrap() {
            return (w, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "the writer lock is still taken after {limit:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn killed_writer_processes_lose_no_acknowledged_commit() {
    let seed = seed_from_env();
    let kills = budget_from_env(100);
    let reader_procs = 2;
    eprintln!("multiprocess writer kills: LARCH_SEED={seed} LARCH_BUDGET={kills}");
    let mut rng = Rng(seed);
    let mut t = crate::common::TestDb::new(crate::PAGE);
    bank::create(t.db());
    let readers = bank::start_readers(&t.path(), reader_procs);

    // The highest log entry acknowledged so far, by a child or the parent.
    let mut acked: Option<u64> = None;
    let (mut acks, mut lost, mut idle_kills) = (0u64, 0u64, 0u64);
    let mut takeover_max = Duration::ZERO;
    let mut prev_len = 0;
    for round in 0..kills {
        let db = t.db();
        let args = format!("commits=0 log=1 wait=0 seed={}", seed ^ (round + 1));
        let child = spawn("bank_writer", &t.path(), &args);
        child.expect("open");
        // A random point of its commits: in most rounds once it has
        // committed (however slow the disk), in the others from its open on,
        // so that some die before their first commit.
        let mut said = Vec::new();
        if round % 4 != 0 {
            said.push(child.expect("ack "));
        }
        std::thread::sleep(Duration::from_micros(rng.below(6000)));
        said.extend(child.kill());
        let mut child_acks = 0;
        for line in said {
            let seq: u64 = line.strip_prefix("ack ").unwrap().parse().unwrap();
            acked = Some(acked.map_or(seq, |a| a.max(seq)));
            child_acks += 1;
        }
        acks += child_acks;
        if child_acks == 0 {
            idle_kills += 1;
        }

        // The next writer gets the lock, and finds every acknowledged commit.
        let (mut w, waited) = begin_write_within(db, Duration::from_secs(10));
        takeover_max = takeover_max.max(waited);
        let len = w.open_table("log").unwrap().len();
        if let Some(a) = acked {
            lost += (a + 1).saturating_sub(len);
            // At most the one commit in flight beyond the acknowledged ones.
            assert!(
                len <= prev_len + child_acks + 1,
                "round {round}: {len} entries after {prev_len} and {child_acks} acks"
            );
            let log = w.open_table("log").unwrap();
            for i in [0, a / 2, a, len - 1] {
                let v = log.get(&i.to_be_bytes()).unwrap();
                assert_eq!(v, Some(log_value(i).as_slice()), "round {round}, entry {i}");
            }
        }
        // Every other round the parent commits too.
        if round % 2 == 0 {
            let seq = bank::transfers(&mut w, &mut rng, true).unwrap();
            w.commit().unwrap();
            acked = Some(seq);
            acks += 1;
            prev_len = seq + 1;
        } else {
            drop(w);
            prev_len = len;
        }
        db.check().unwrap();
        bank::verify(db, false).unwrap();
    }
    let (snapshots, violations) = bank::stop_readers(readers);

    // Alone with the file, a reopen recovers it: everything is still there.
    t.reopen();
    let seen = bank::verify(t.db(), true).unwrap();
    if let Some(a) = acked {
        lost = lost.max((a + 1).saturating_sub(seen.log_len));
    }
    t.db().check().unwrap();
    report(&format!(
        "RELIABILITY suite=multiprocess part=writer_kills seed={seed} reader_procs={reader_procs} \
         writer_procs={kills} writer_kills={kills} kills_before_a_commit={idle_kills} \
         acked={acks} acked_lost={lost} snapshots_verified={snapshots} violations={violations} \
         takeover_ms_max={}",
        takeover_max.as_millis()
    ));
    assert_eq!(lost, 0);
    assert_eq!(violations, 0);
    assert!(acks > kills, "the writers barely committed: {acks} acks");
}
