//! Process crashes (docs/reliability.md, suite 5): this test binary runs
//! itself as a child writer that commits synchronously and reports each
//! acknowledged commit over a pipe; the parent kills it with SIGKILL at random
//! moments, reopens the file and verifies that every acknowledged commit is
//! there.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Rng;
use larch::testing::{budget_from_env, seed_from_env};

fn value(i: u64) -> Vec<u8> {
    // Some values spill to overflow pages, so commits grow the file.
    let len = if i.is_multiple_of(5) {
        3000 + (i % 7) as usize * 1000
    } else {
        64
    };
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

/// The child: appends commit after commit, printing `ack N` after each.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var("LARCH_KILL_CHILD") else {
        return;
    };
    let db = common::open(Path::new(&path), 1024);
    let mut next = {
        let r = db.begin_read().unwrap();
        r.open_table("log").map(|t| t.len()).unwrap_or(0)
    };
    let mut out = std::io::stdout().lock();
    loop {
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("log").unwrap();
            t.insert(&next.to_be_bytes(), &value(next)).unwrap();
            // Churn a second table so pages are freed and reused.
            let mut s = w.open_table("scratch").unwrap();
            s.insert(&(next % 50).to_be_bytes(), &value(next + 1))
                .unwrap();
        }
        w.commit().unwrap();
        writeln!(out, "ack {next}").unwrap();
        out.flush().unwrap();
        next += 1;
    }
}

#[test]
fn kill_nine_loses_no_acknowledged_commit() {
    let seed = seed_from_env();
    let kills = budget_from_env(100);
    eprintln!("kill: LARCH_SEED={seed} LARCH_BUDGET={kills}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill.larch");
    let mut acked: Option<u64> = None;
    let mut lost = 0u64;
    let mut recovery_max = Duration::ZERO;
    let mut prev_len = 0;
    for _ in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env("LARCH_KILL_CHILD", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let wait = Duration::from_micros(rng.below(40_000));
        let reader = std::thread::spawn(move || {
            let mut last = None;
            let mut count = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness's own "test child_writer ... " has no newline
                // yet, so the first ack may share its line.
                if let Some(at) = line.rfind("ack ") {
                    last = Some(line[at + 4..].trim().parse::<u64>().unwrap());
                    count += 1;
                }
            }
            (last, count)
        });
        std::thread::sleep(wait);
        child.kill().unwrap();
        child.wait().unwrap();
        let (last, acks) = reader.join().unwrap();
        if let Some(n) = last {
            acked = Some(acked.map_or(n, |a| a.max(n)));
        }

        let start = Instant::now();
        let db = common::open(&path, 1024);
        db.check().unwrap();
        recovery_max = recovery_max.max(start.elapsed());
        let r = db.begin_read().unwrap();
        let len = r.open_table("log").map(|t| t.len()).unwrap_or(0);
        if let Some(a) = acked {
            // Every acknowledged commit is there. A round adds its acknowledged
            // commits and at most the one in flight when it was killed (which
            // stays unacknowledged, though durable).
            if len < a + 1 {
                lost += a + 1 - len;
            }
            assert!(
                len <= prev_len + acks + 1,
                "{len} entries after {prev_len} and {acks} acks"
            );
            let t = r.open_table("log").unwrap();
            for i in [0, a / 2, a, len - 1] {
                assert_eq!(t.get(&i.to_be_bytes()).unwrap(), Some(value(i).as_slice()));
            }
        }
        prev_len = len;
    }
    larch::testing::report(&format!(
        "RELIABILITY suite=kill seed={seed} kills={kills} acked={} acked_lost={lost} recovery_ms_max={}",
        acked.map_or(0, |a| a + 1),
        recovery_max.as_millis()
    ));
    assert_eq!(lost, 0);
    assert!(
        acked.is_some_and(|a| a > kills),
        "the child barely committed"
    );
}
