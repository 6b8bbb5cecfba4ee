//! Creates a database in a temporary directory, writes real data in a few
//! transactions, reads it back through snapshots, and prints what it did.

use std::time::Instant;

use larch::{Database, Result};

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("quickstart.larch");
    // SAFETY: the file is ours alone while the database is open.
    let db = unsafe { Database::open(&path) }?;
    println!("opened {} (page size {})", path.display(), db.page_size());

    // One transaction loads 100,000 users.
    let n = 100_000u32;
    let start = Instant::now();
    let txn = db.begin_write()?;
    {
        let mut users = txn.open_table("users")?;
        for i in 0..n {
            let key = format!("user:{i:06}");
            let value = format!(
                "{{\"id\":{i},\"name\":\"user number {i}\",\"karma\":{}}}",
                i % 97
            );
            users.insert(key.as_bytes(), value.as_bytes())?;
        }
    }
    txn.commit()?;
    println!(
        "inserted {n} users in one transaction: {:.1?}",
        start.elapsed()
    );

    // A reader takes a snapshot before the next change.
    let before = db.begin_read()?;

    let start = Instant::now();
    let txn = db.begin_write()?;
    {
        let mut users = txn.open_table("users")?;
        for i in (0..n).step_by(2) {
            users.remove(format!("user:{i:06}").as_bytes())?;
        }
        users.insert(b"user:000001", b"{\"id\":1,\"name\":\"renamed\"}")?;
    }
    let mut logs = txn.open_table("log")?;
    logs.insert(b"0001", b"removed every even user")?;
    drop(logs);
    txn.commit()?;
    println!(
        "removed {} users in one transaction: {:.1?}",
        n / 2,
        start.elapsed()
    );

    // The old snapshot still sees everything; a new one sees the change.
    let old = before.open_table("users")?;
    let now_txn = db.begin_read()?;
    let now = now_txn.open_table("users")?;
    println!(
        "snapshot {} sees {} users, snapshot {} sees {}",
        before.id(),
        old.len(),
        now_txn.id(),
        now.len()
    );
    println!(
        "user:000001 was {} and is {}",
        String::from_utf8_lossy(old.get(b"user:000001")?.unwrap_or_default()),
        String::from_utf8_lossy(now.get(b"user:000001")?.unwrap_or_default())
    );

    // Point reads and a range scan, values borrowed straight from the map.
    let start = Instant::now();
    let mut found = 0;
    for i in 0..n {
        if now.get(format!("user:{i:06}").as_bytes())?.is_some() {
            found += 1;
        }
    }
    println!("{n} point reads, {found} found: {:.1?}", start.elapsed());
    print!("range user:000100..user:000110 ->");
    for entry in now.range(&b"user:000100"[..]..&b"user:000110"[..])? {
        let (key, _) = entry?;
        print!(" {}", String::from_utf8_lossy(key));
    }
    println!();
    drop(before);
    drop(now_txn);

    println!("tables: {:?}", db.begin_read()?.list_tables()?);
    let report = db.check()?;
    println!(
        "check: {} pages ({} leaf, {} branch, {} free), {} entries in {} tables, depth {}",
        report.pages,
        report.leaf_pages,
        report.branch_pages,
        report.free_pages,
        report.entries,
        report.tables,
        report.max_depth
    );
    println!("file size: {} bytes", std::fs::metadata(&path)?.len());
    Ok(())
}
