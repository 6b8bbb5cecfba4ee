//! Readers beside one writer: three reader threads check their snapshots
//! while a writer commits batches. Each snapshot is whole: the entry count the
//! writer stores with every batch always matches the entries the reader sees,
//! however far the writer has got.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use larch::{Database, Result};

const BATCHES: u64 = 200;
const PER_BATCH: u64 = 500;

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // SAFETY: the file is ours alone while the database is open.
    let db = unsafe { Database::open(dir.path().join("readers.larch")) }?;
    let done = AtomicBool::new(false);
    let checked = AtomicU64::new(0);

    std::thread::scope(|s| -> Result<()> {
        let readers: Vec<_> = (0..3)
            .map(|_| s.spawn(|| reader(&db, &done, &checked)))
            .collect();

        for batch in 0..BATCHES {
            let txn = db.begin_write()?;
            {
                let mut events = txn.open_table("events")?;
                for i in 0..PER_BATCH {
                    let id = batch * PER_BATCH + i;
                    events.insert(&id.to_be_bytes(), format!("event {id}").as_bytes())?;
                }
            }
            // The count goes in the same transaction: readers see both or neither.
            let total = (batch + 1) * PER_BATCH;
            txn.open_table("meta")?
                .insert(b"count", &total.to_be_bytes())?;
            txn.commit()?;
        }
        done.store(true, Ordering::Release);
        for r in readers {
            r.join().expect("reader thread")?;
        }
        Ok(())
    })?;

    println!(
        "{BATCHES} commits of {PER_BATCH} events; {} snapshots checked by 3 readers, all whole",
        checked.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Checks snapshots until the writer is done (and once more after).
fn reader(db: &Database, done: &AtomicBool, checked: &AtomicU64) -> Result<()> {
    loop {
        let finished = done.load(Ordering::Acquire);
        let snapshot = db.begin_read()?;
        let count = match snapshot.open_table("meta") {
            Ok(meta) => {
                let bytes = meta
                    .get(b"count")?
                    .expect("count is written with every batch");
                u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
            }
            Err(larch::Error::TableNotFound(_)) => 0,
            Err(e) => return Err(e),
        };
        if count > 0 {
            let events = snapshot.open_table("events")?;
            assert_eq!(events.len(), count, "a snapshot mixed two commits");
            // The last event of the snapshot's batch is there, the next is not.
            assert!(events.get(&(count - 1).to_be_bytes())?.is_some());
            assert!(events.get(&count.to_be_bytes())?.is_none());
        }
        checked.fetch_add(1, Ordering::Relaxed);
        if finished {
            return Ok(());
        }
    }
}
