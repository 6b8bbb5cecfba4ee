//! A bank: money moves between accounts in synchronous transactions from two
//! teller threads, each transfer recorded in a ledger table in the same
//! transaction (both tables open at once), while auditor threads sum every
//! balance in their snapshot. The total never changes, in any snapshot, at
//! any moment, and the ledger accounts for every unit moved.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use larch::{Database, Result};

const ACCOUNTS: u64 = 100;
const OPENING_BALANCE: u64 = 1_000;
const TRANSFERS_PER_TELLER: u64 = 300;

fn account(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn balance(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("balances are 8 bytes"))
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // SAFETY: the file is ours alone while the database is open.
    let db = unsafe { Database::open(dir.path().join("bank.larch")) }?;
    let txn = db.begin_write()?;
    {
        let mut accounts = txn.open_table("accounts")?;
        for i in 0..ACCOUNTS {
            accounts.insert(&account(i), &OPENING_BALANCE.to_le_bytes())?;
        }
    }
    txn.commit()?;
    let total = ACCOUNTS * OPENING_BALANCE;

    let done = AtomicBool::new(false);
    let audits = AtomicU64::new(0);
    let moved = AtomicU64::new(0);
    std::thread::scope(|s| -> Result<()> {
        let auditors: Vec<_> = (0..2)
            .map(|_| s.spawn(|| audit(&db, total, &done, &audits)))
            .collect();
        let tellers: Vec<_> = (0..2u64)
            .map(|t| {
                s.spawn({
                    let (db, moved) = (&db, &moved);
                    move || teller(db, t, moved)
                })
            })
            .collect();
        for t in tellers {
            t.join().expect("teller thread")?;
        }
        done.store(true, Ordering::Release);
        for a in auditors {
            a.join().expect("auditor thread")?;
        }
        Ok(())
    })?;

    let snapshot = db.begin_read()?;
    let accounts = snapshot.open_table("accounts")?;
    let mut sum = 0;
    for entry in accounts.iter()? {
        sum += balance(entry?.1);
    }
    assert_eq!(sum, total);
    // Each ledger record is the amount moved, then the balance before it.
    let ledger = snapshot.open_table("ledger")?;
    let mut recorded = 0;
    for entry in ledger.iter()? {
        recorded += balance(&entry?.1[..8]);
    }
    assert_eq!(recorded, moved.load(Ordering::Relaxed));
    println!(
        "{} transfers moved {} units; {} audits summed {ACCOUNTS} accounts to {total} every time",
        2 * TRANSFERS_PER_TELLER,
        moved.load(Ordering::Relaxed),
        audits.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Moves money between pseudo-random accounts, one committed transfer at a time.
fn teller(db: &Database, seed: u64, moved: &AtomicU64) -> Result<()> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..TRANSFERS_PER_TELLER {
        let (from, to) = (next() % ACCOUNTS, next() % ACCOUNTS);
        if from == to {
            continue;
        }
        // The writer lock serialises the tellers: each reads and writes the
        // balances of one committed state.
        let txn = db.begin_write()?;
        {
            // Two tables open at once in one transaction.
            let mut accounts = txn.open_table("accounts")?;
            let mut ledger = txn.open_table("ledger")?;
            let have = accounts.get(&account(from))?.expect("account exists");
            let amount = (next() % 50).min(balance(have));
            let left = balance(have) - amount;
            // The record is written while `have` (borrowed from `accounts`)
            // is still in hand: a change to another table does not end it.
            let mut record = amount.to_le_bytes().to_vec();
            record.extend_from_slice(have);
            let id = (seed << 32 | ledger.len()).to_be_bytes();
            ledger.insert(&id, &record)?;
            let to_balance = balance(accounts.get(&account(to))?.expect("account exists"));
            accounts.insert(&account(from), &left.to_le_bytes())?;
            accounts.insert(&account(to), &(to_balance + amount).to_le_bytes())?;
            moved.fetch_add(amount, Ordering::Relaxed);
        }
        txn.commit()?; // durable when this returns
    }
    Ok(())
}

/// Sums every balance in a snapshot until the tellers are done.
fn audit(db: &Database, total: u64, done: &AtomicBool, audits: &AtomicU64) -> Result<()> {
    loop {
        let finished = done.load(Ordering::Acquire);
        let snapshot = db.begin_read()?;
        let accounts = snapshot.open_table("accounts")?;
        let mut sum = 0;
        for entry in accounts.iter()? {
            sum += balance(entry?.1);
        }
        assert_eq!(sum, total, "snapshot {} lost or made money", snapshot.id());
        audits.fetch_add(1, Ordering::Relaxed);
        if finished {
            return Ok(());
        }
    }
}
