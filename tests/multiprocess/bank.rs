//! The bank: accounts whose total never changes, and a second invariant kept
//! in the same transactions (a table holding a hash of the whole bank, and
//! the number of transfer commits). Reader processes verify whole snapshots
//! while writer processes take turns committing transfers.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use larch::testing::{budget_from_env, report, seed_from_env};
use larch::{Database, ReadTxn, TableMut, WriteTxn};

use crate::common::Rng;
use crate::{Args, Proc, field, hash, say, spawn};

pub const ACCOUNTS: u32 = 200;
pub const INITIAL: u64 = 1_000;

/// An account's value: its balance, then filler that changes with it (so
/// transfers rewrite whole cells).
fn account(id: u32, balance: u64) -> Vec<u8> {
    let mut v = balance.to_be_bytes().to_vec();
    v.extend((0..40u64).map(|i| (balance ^ (i * 7 + u64::from(id))) as u8));
    v
}

/// The hash the meta table keeps: the sum of the accounts' entry hashes, so
/// a transfer updates it without reading the others.
fn entry_hash(key: &[u8], value: &[u8]) -> u64 {
    hash(&[key, value])
}

/// An entry of the log a writer appends to (test of writer kills): some spill
/// to overflow pages, so commits grow the file.
pub fn log_value(seq: u64) -> Vec<u8> {
    let len = if seq.is_multiple_of(5) { 1500 } else { 48 };
    (0..len).map(|j| (seq as usize * 31 + j) as u8).collect()
}

fn word(bytes: Option<&[u8]>) -> u64 {
    u64::from_be_bytes(bytes.expect("present")[..8].try_into().unwrap())
}

/// Creates the bank: every account at `INITIAL`, its hash, no commits yet,
/// an empty log.
pub fn create(db: &Database) {
    let w = db.begin_write().unwrap();
    let mut sum = 0u64;
    {
        let mut bank = w.open_table("bank").unwrap();
        for id in 0..ACCOUNTS {
            let v = account(id, INITIAL);
            sum = sum.wrapping_add(entry_hash(&id.to_be_bytes(), &v));
            bank.insert(&id.to_be_bytes(), &v).unwrap();
        }
    }
    let mut meta = w.open_table("meta").unwrap();
    meta.insert(b"hash", &sum.to_be_bytes()).unwrap();
    meta.insert(b"commits", &0u64.to_be_bytes()).unwrap();
    drop(meta);
    w.open_table("log").unwrap();
    w.commit().unwrap();
}

/// Moves a random amount between two random accounts; returns what the bank
/// hash changes by.
fn transfer(bank: &mut TableMut<'_>, rng: &mut Rng) -> larch::Result<u64> {
    let a = rng.below(u64::from(ACCOUNTS)) as u32;
    let b = rng.below(u64::from(ACCOUNTS)) as u32;
    if a == b {
        return Ok(0);
    }
    let (ka, kb) = (a.to_be_bytes(), b.to_be_bytes());
    let va = bank.get(&ka)?.expect("account a").to_vec();
    let vb = bank.get(&kb)?.expect("account b").to_vec();
    let (ba, bb) = (word(Some(&va)), word(Some(&vb)));
    let amount = rng.below(ba + 1);
    let (na, nb) = (account(a, ba - amount), account(b, bb + amount));
    bank.insert(&ka, &na)?;
    bank.insert(&kb, &nb)?;
    let old = entry_hash(&ka, &va).wrapping_add(entry_hash(&kb, &vb));
    let new = entry_hash(&ka, &na).wrapping_add(entry_hash(&kb, &nb));
    Ok(new.wrapping_sub(old))
}

/// One to three transfers in `w`, the meta table kept in step, and with
/// `log` an entry appended to the log; returns the entry's number.
pub fn transfers(w: &mut WriteTxn, rng: &mut Rng, log: bool) -> larch::Result<u64> {
    let mut delta = 0u64;
    {
        let mut bank = w.open_table("bank")?;
        for _ in 0..1 + rng.below(3) {
            delta = delta.wrapping_add(transfer(&mut bank, rng)?);
        }
    }
    {
        let mut meta = w.open_table("meta")?;
        let sum = word(meta.get(b"hash")?);
        let commits = word(meta.get(b"commits")?);
        meta.insert(b"hash", &sum.wrapping_add(delta).to_be_bytes())?;
        meta.insert(b"commits", &(commits + 1).to_be_bytes())?;
    }
    let mut seq = 0;
    if log {
        let mut t = w.open_table("log")?;
        seq = t.len();
        t.insert(&seq.to_be_bytes(), &log_value(seq))?;
    }
    Ok(seq)
}

/// What a verified snapshot showed.
pub struct Seen {
    pub txn: u64,
    pub commits: u64,
    pub log_len: u64,
}

/// The accounts as read: key and value of each.
type Accounts = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads the whole bank of `r` and checks both invariants; the accounts as
/// read, for a second pass to compare with.
fn read_bank(r: &ReadTxn) -> Result<(Accounts, Seen), String> {
    let e = |e: larch::Error| format!("txn {}: {e}", r.id());
    let bank = r.open_table("bank").map_err(e)?;
    let meta = r.open_table("meta").map_err(e)?;
    let mut accounts = Vec::with_capacity(ACCOUNTS as usize);
    let (mut total, mut sum) = (0u64, 0u64);
    for entry in bank.iter().map_err(e)? {
        let (k, v) = entry.map_err(e)?;
        total += word(Some(v));
        sum = sum.wrapping_add(entry_hash(k, v));
        accounts.push((k.to_vec(), v.to_vec()));
    }
    let stored = word(meta.get(b"hash").map_err(e)?);
    let commits = word(meta.get(b"commits").map_err(e)?);
    let log_len = r.open_table("log").map_err(e)?.len();
    let txn = r.id();
    if accounts.len() != ACCOUNTS as usize || bank.len() != u64::from(ACCOUNTS) {
        return Err(format!("txn {txn}: {} accounts", accounts.len()));
    }
    if total != u64::from(ACCOUNTS) * INITIAL {
        return Err(format!("txn {txn}: the bank holds {total}"));
    }
    if sum != stored {
        return Err(format!(
            "txn {txn}: bank hash {sum:x}, meta says {stored:x}"
        ));
    }
    Ok((
        accounts,
        Seen {
            txn,
            commits,
            log_len,
        },
    ))
}

/// Verifies the snapshot a new read transaction sees; with `twice`, holds it
/// a moment (while writers go on), runs `check` on it and requires a second
/// pass to read the same bytes.
pub fn verify(db: &Database, twice: bool) -> Result<Seen, String> {
    let r = db.begin_read().map_err(|e| e.to_string())?;
    let (first, seen) = read_bank(&r)?;
    if twice {
        std::thread::sleep(Duration::from_millis(1));
        r.check()
            .map_err(|e| format!("txn {}: check: {e}", seen.txn))?;
        let (second, _) = read_bank(&r)?;
        if second != first {
            return Err(format!("txn {}: changed while held", seen.txn));
        }
    }
    Ok(seen)
}

/// Reader role: verifies snapshots until the parent closes the pipe, then
/// reports `done snapshots=.. violations=.. distinct=..`. A snapshot older
/// than one seen before is a violation too.
pub fn reader(path: &Path) {
    let db = crate::open(path);
    let stop = crate::stop_flag();
    say("open");
    let (mut snapshots, mut violations, mut distinct) = (0u64, 0u64, 0u64);
    let (mut last_txn, mut last_commits) = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        match verify(&db, snapshots.is_multiple_of(4)) {
            Ok(seen) => {
                if seen.txn < last_txn || seen.commits < last_commits {
                    eprintln!("bank reader: txn {} after {last_txn}", seen.txn);
                    violations += 1;
                }
                if seen.txn != last_txn {
                    distinct += 1;
                }
                (last_txn, last_commits) = (seen.txn, seen.commits);
            }
            Err(e) => {
                eprintln!("bank reader: {e}");
                violations += 1;
            }
        }
        snapshots += 1;
    }
    say(&format!(
        "done snapshots={snapshots} violations={violations} distinct={distinct}"
    ));
}

/// Writer role: waits for `go`, then commits `commits` transactions of
/// transfers (0: until killed), with `log=1` appending to the log and saying
/// `ack N` after each commit returns; ends with `done commits=N`.
pub fn writer(path: &Path, args: &Args) {
    let db = crate::open(path);
    let parent = crate::from_parent();
    let (commits, log) = (args.get("commits"), args.get("log") == 1);
    let mut rng = Rng(args.get("seed"));
    say("open");
    if args.get("wait") == 1 {
        assert_eq!(parent.recv().unwrap(), "go");
    }
    let mut done = 0;
    while commits == 0 || done < commits {
        let mut w = db.begin_write().unwrap();
        let seq = transfers(&mut w, &mut rng, log).unwrap();
        w.commit().unwrap();
        done += 1;
        if log {
            say(&format!("ack {seq}"));
        }
    }
    say(&format!("done commits={done}"));
}

/// Starts `n` bank reader processes.
pub fn start_readers(path: &Path, n: usize) -> Vec<Proc> {
    let readers: Vec<Proc> = (0..n).map(|_| spawn("bank_reader", path, "")).collect();
    for r in &readers {
        r.expect("open");
    }
    readers
}

/// Stops the readers; returns the snapshots they verified and their
/// violations, and requires each to have seen more than one commit.
pub fn stop_readers(readers: Vec<Proc>) -> (u64, u64) {
    let (mut snapshots, mut violations) = (0, 0);
    for r in readers {
        let done = r.finish();
        let line = done.last().expect("the reader reports");
        snapshots += field(line, "snapshots").unwrap();
        violations += field(line, "violations").unwrap();
        assert!(
            field(line, "distinct").unwrap() > 1,
            "a reader saw no commit but the first: {line}"
        );
    }
    (snapshots, violations)
}

#[test]
fn reader_processes_see_whole_snapshots_while_writer_processes_take_turns() {
    let seed = seed_from_env();
    let per_writer = budget_from_env(150);
    let (reader_procs, writer_procs) = (2, 3);
    eprintln!("multiprocess snapshots: LARCH_SEED={seed} LARCH_BUDGET={per_writer}");
    let t = crate::common::TestDb::new(crate::PAGE);
    let db = t.db();
    create(db);
    let readers = start_readers(&t.path(), reader_procs);
    let mut writers: Vec<Proc> = (0..writer_procs)
        .map(|i| {
            let args = format!("commits={per_writer} log=0 wait=1 seed={}", seed ^ (i + 1));
            spawn("bank_writer", &t.path(), &args)
        })
        .collect();
    for w in &mut writers {
        w.expect("open");
    }
    for w in &mut writers {
        w.send("go");
    }
    let mut acked = 0;
    for w in writers {
        acked += field(&w.expect("done"), "commits").unwrap();
        w.finish();
    }
    let (snapshots, violations) = stop_readers(readers);

    // Every acknowledged commit is there, once.
    let seen = verify(db, true).unwrap();
    assert_eq!(acked, writer_procs * per_writer);
    assert_eq!(seen.commits, acked);
    assert_eq!(seen.log_len, 0, "these writers append to no log");
    db.check().unwrap();
    report(&format!(
        "RELIABILITY suite=multiprocess part=snapshots seed={seed} reader_procs={reader_procs} \
         writer_procs={writer_procs} commits={acked} snapshots_verified={snapshots} \
         violations={violations}"
    ));
    assert_eq!(violations, 0);
    assert!(
        snapshots >= 2 * reader_procs as u64,
        "{snapshots} snapshots"
    );
}
