//! Several processes on one database: this program moves money between
//! accounts while two copies of itself, started as reader processes, audit
//! every snapshot they see. The total never changes, in any process.
//!
//! `many_processes write PATH SECONDS` only writes, for that long: run it and
//! point `larch stat`, `larch readers` or `larch check` at PATH meanwhile.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use larch::{Database, Result};

const ACCOUNTS: u64 = 100;
const OPENING_BALANCE: u64 = 1_000;

fn open(path: &str) -> Result<Database> {
    // SAFETY: only larch handles, in these processes, use the file.
    unsafe { Database::open(path) }
}

/// Creates the accounts if the table is new.
fn open_bank(path: &str) -> Result<Database> {
    let db = open(path)?;
    let txn = db.begin_write()?;
    {
        let mut accounts = txn.open_table("accounts")?;
        if accounts.is_empty() {
            for i in 0..ACCOUNTS {
                accounts.insert(&i.to_be_bytes(), &OPENING_BALANCE.to_le_bytes())?;
            }
        }
    }
    txn.commit()?;
    Ok(db)
}

/// Moves money for `time`; returns the number of transfers.
fn write(db: &Database, time: Duration) -> Result<u64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time {
        let (from, to) = (n * 7 % ACCOUNTS, (n * 13 + 1) % ACCOUNTS);
        let txn = db.begin_write()?;
        {
            let mut accounts = txn.open_table("accounts")?;
            let get = |t: &larch::TableMut<'_>, i: u64| -> Result<u64> {
                let v = t.get(&i.to_be_bytes())?.expect("every account exists");
                Ok(u64::from_le_bytes(v.try_into().expect("8 bytes")))
            };
            let (a, b) = (get(&accounts, from)?, get(&accounts, to)?);
            if from != to && a > 0 {
                accounts.insert(&from.to_be_bytes(), &(a - 1).to_le_bytes())?;
                accounts.insert(&to.to_be_bytes(), &(b + 1).to_le_bytes())?;
            }
        }
        txn.commit()?;
        n += 1;
    }
    Ok(n)
}

/// Audits snapshots until stdin closes; prints how many.
fn audit(path: &str) -> Result<()> {
    let db = open(path)?;
    println!("ready");
    let stop = std::thread::spawn(|| {
        let _ = std::io::stdin().lines().count();
    });
    let mut audits = 0u64;
    while !stop.is_finished() {
        let snapshot = db.begin_read()?;
        let accounts = snapshot.open_table("accounts")?;
        let mut total = 0;
        for entry in accounts.iter()? {
            let (_, v) = entry?;
            total += u64::from_le_bytes(v.try_into().expect("8 bytes"));
        }
        assert_eq!(total, ACCOUNTS * OPENING_BALANCE, "a torn snapshot");
        audits += 1;
    }
    println!("audits {audits}");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("audit") => return audit(&args[2]),
        Some("write") => {
            let secs: u64 = args[3].parse().expect("SECONDS");
            let db = open_bank(&args[2])?;
            let n = write(&db, Duration::from_secs(secs))?;
            println!("{n} transfers");
            return Ok(());
        }
        _ => {}
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bank.larch");
    let path = path.to_str().expect("a UTF-8 path");
    let db = open_bank(path)?;
    let mut auditors = Vec::new();
    for _ in 0..2 {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["audit", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        assert_eq!(line.trim(), "ready");
        auditors.push((child, out));
    }
    println!("read transactions open right now: {}", db.readers()?.len());
    let transfers = write(&db, Duration::from_secs(1))?;
    for (mut child, mut out) in auditors {
        drop(child.stdin.take());
        let mut line = String::new();
        out.read_line(&mut line)?;
        assert!(child.wait()?.success());
        println!("an auditor process: {}", line.trim());
    }
    db.check()?;
    println!("{transfers} transfers; every snapshot of every process balanced");
    Ok(())
}
