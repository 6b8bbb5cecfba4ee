//! larch from async code: a `Database` shared by tokio tasks, write
//! transactions that live across `.await` and move between worker threads,
//! and a scan that owns its snapshot.
//!
//! Run with `cargo run --example tokio`.
//!
//! Two rules for async code:
//! - `begin_write` waits while another write transaction runs (of this
//!   process or another), so it is called where blocking is allowed:
//!   `spawn_blocking`, as here, or `try_begin_write` in a retry loop.
//!   `begin_read` never waits.
//! - A write transaction may be held across `.await` and finish on another
//!   worker thread than it began on; while it lives, every other writer
//!   waits, so keep it short.

use std::time::Duration;

use larch::{Database, OwnedRange};

/// Writes `count` keys for `task` in one transaction, awaiting between the
/// inserts as a request handler awaiting other services would.
async fn write_batch(db: Database, task: u32, count: u32) -> larch::Result<()> {
    let begin = db.clone();
    let txn = tokio::task::spawn_blocking(move || begin.begin_write())
        .await
        .expect("the blocking task ran")?;
    for i in 0..count {
        let key = format!("task{task:02}/{i:04}");
        txn.open_table("events")?
            .insert(key.as_bytes(), &i.to_le_bytes())?;
        if i % 16 == 0 {
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
    }
    txn.commit()
}

/// A scan a handler can hand on: the range owns its snapshot, so no
/// transaction has to outlive this function.
fn events_of(db: &Database, task: u32) -> larch::Result<OwnedRange> {
    let txn = db.begin_read()?;
    let table = txn.open_table("events")?;
    table.prefix_owned(format!("task{task:02}/").as_bytes())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // SAFETY: the file is this example's own; nothing else changes it.
    let db = unsafe { Database::open(dir.path().join("events.larch")) }?;

    let writers: Vec<_> = (0..8)
        .map(|task| tokio::spawn(write_batch(db.clone(), task, 200)))
        .collect();
    for w in writers {
        w.await??;
    }

    // Readers on other tasks, each streaming its own scan across awaits.
    let readers: Vec<_> = (0..8)
        .map(|task| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut n = 0u32;
                for entry in events_of(&db, task)? {
                    let entry = entry?;
                    assert_eq!(entry.value(), n.to_le_bytes());
                    n += 1;
                    tokio::task::yield_now().await;
                }
                Ok::<u32, larch::Error>(n)
            })
        })
        .collect();
    let mut total = 0;
    for r in readers {
        total += r.await??;
    }
    println!("8 tasks wrote and read back {total} events");
    assert_eq!(total, 8 * 200);
    Ok(())
}
