//! Contended increments: writer processes read a counter, write it plus one
//! and commit, over and over, some through `begin_write` and some through
//! `try_begin_write` retried; every increment acknowledged must be counted,
//! none twice.

use std::path::Path;
use std::time::{Duration, Instant};

use larch::testing::{budget_from_env, report, seed_from_env};

use crate::common::Rng;
use crate::{Args, Proc, field, say, spawn};

const COUNTERS: u64 = 4;

fn key(c: u64) -> [u8; 8] {
    c.to_be_bytes()
}

/// Writer role: waits for `go`, then makes `increments` increments of random
/// counters, saying `inc C` after each commit returns; ends with
/// `done busy=N` (the times `try_begin_write` found another writer).
pub fn writer(path: &Path, args: &Args) {
    let db = crate::open(path);
    let parent = crate::from_parent();
    let mut rng = Rng(args.get("seed"));
    say("open");
    assert_eq!(parent.recv().unwrap(), "go");
    let mut busy = 0u64;
    for i in 0..args.get("increments") {
        let w = if i % 2 == 0 {
            db.begin_write().unwrap()
        } else {
            loop {
                match db.try_begin_write().unwrap() {
                    Some(w) => break w,
                    None => {
                        busy += 1;
                        std::thread::sleep(Duration::from_micros(rng.below(200)));
                    }
                }
            }
        };
        let c = rng.below(COUNTERS);
        {
            let mut t = w.open_table("counters").unwrap();
            let n = t.get(&key(c)).unwrap().map_or(0, |v| {
                u64::from_be_bytes(v.try_into().expect("a counter is 8 bytes"))
            });
            // Widen the window between the read and the write: a second
            // writer slipping in here would lose an increment.
            let until = Instant::now() + Duration::from_micros(rng.below(100));
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            t.insert(&key(c), &(n + 1).to_be_bytes()).unwrap();
        }
        w.commit().unwrap();
        say(&format!("inc {c}"));
    }
    say(&format!("done busy={busy}"));
}

#[test]
fn writer_processes_lose_no_contended_increment() {
    let seed = seed_from_env();
    let per_writer = budget_from_env(150);
    let writer_procs = 3;
    eprintln!("multiprocess counters: LARCH_SEED={seed} LARCH_BUDGET={per_writer}");
    let t = crate::common::TestDb::new(crate::PAGE);
    let db = t.db();
    let mut writers: Vec<Proc> = (0..writer_procs)
        .map(|i| {
            let args = format!("increments={per_writer} seed={}", seed ^ (i + 1));
            spawn("counter_writer", &t.path(), &args)
        })
        .collect();
    for w in &writers {
        w.expect("open");
    }
    for w in &mut writers {
        w.send("go");
    }
    // The parent joins in through its own handle, some of the time holding
    // the writer lock while the children wait.
    let mut acked = [0u64; COUNTERS as usize];
    let mut rng = Rng(seed);
    for _ in 0..per_writer / 3 {
        let w = db.begin_write().unwrap();
        let c = rng.below(COUNTERS);
        {
            let mut t = w.open_table("counters").unwrap();
            let n = t
                .get(&key(c))
                .unwrap()
                .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
            std::thread::sleep(Duration::from_micros(rng.below(300)));
            t.insert(&key(c), &(n + 1).to_be_bytes()).unwrap();
        }
        w.commit().unwrap();
        acked[c as usize] += 1;
    }
    let mut busy = 0;
    for w in writers {
        loop {
            let line = w.next().expect("the writer reports");
            if let Some(c) = line.strip_prefix("inc ") {
                acked[c.parse::<usize>().unwrap()] += 1;
            } else {
                busy += field(&line, "busy").unwrap();
                break;
            }
        }
        w.finish();
    }
    let r = db.begin_read().unwrap();
    let t = r.open_table("counters").unwrap();
    let counted: Vec<u64> = (0..COUNTERS)
        .map(|c| {
            t.get(&key(c))
                .unwrap()
                .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()))
        })
        .collect();
    drop(r);
    let increments: u64 = acked.iter().sum();
    // Acknowledged increments missing from the counters (negative: counted
    // more often than acknowledged).
    let lost = increments as i64 - counted.iter().sum::<u64>() as i64;
    report(&format!(
        "RELIABILITY suite=multiprocess part=counters seed={seed} writer_procs={writer_procs} \
         increments={increments} lost_increments={lost} busy_retries={busy}"
    ));
    assert_eq!(counted, acked, "counters against acknowledged increments");
    assert_eq!(increments, writer_procs * per_writer + per_writer / 3);
    db.check().unwrap();
}
