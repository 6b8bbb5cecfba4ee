//! Hostile review of per-transaction durability (`Durability::{Immediate,
//! Eventual, None}`, `Database::sync`, weak metas in the lock file).
//!
//! Each test is an attack: the defects it found (weak commits lost at a
//! clean close, a lagging `durable` word, pinned-page figures, a clock
//! that goes back) are fixed, and all of them stay as regression tests.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::hostile::{get, open_at, opts};
use larch::{Database, Durability, Error};

/// Header words of the lock file (`format::registry`).
const COMMITTED: u64 = 32;
const DURABLE: u64 = 72;
const WEAK_SINCE: u64 = 80;
/// The two weak metas, 128 bytes each.
const WEAK_AT: u64 = 128;

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-lock");
    PathBuf::from(s)
}

fn lock_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(lock_path(path))
        .unwrap()
}

fn peek(path: &Path, at: u64) -> u64 {
    let mut b = [0u8; 8];
    lock_file(path).read_exact_at(&mut b, at).unwrap();
    u64::from_ne_bytes(b)
}

fn poke(path: &Path, at: u64, value: u64) {
    lock_file(path)
        .write_all_at(&value.to_ne_bytes(), at)
        .unwrap();
}

fn put_as(db: &Database, durability: Durability, key: &[u8], value: &[u8]) {
    let mut w = db.begin_write().unwrap();
    w.set_durability(durability);
    w.open_table("t").unwrap().insert(key, value).unwrap();
    w.commit().unwrap();
}

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn value(i: u64, round: u64, len: usize) -> Vec<u8> {
    common::seeded_bytes(i * 1000 + round, len)
}

/// A copy of the data file as the page cache holds it now: what a reopen
/// in the same boot finds after every process of the database was killed
/// (SIGKILL), with no power loss.
fn all_processes_killed_image(path: &Path, to: &Path) {
    std::fs::copy(path, to).unwrap();
}

// ---------------------------------------------------------------------------
// Finding 1: weak commits lost on a clean close, no crash at all.

/// DESIGN.md, "Durability": a weak commit is durable at "the next
/// `Database::sync`, `Immediate` commit or close of a handle". The close
/// (`Closer::drop`) only *tries* the writer lock; a write transaction of
/// the same handle that is still alive when the last clone of the handle
/// is dropped makes it give up, and nothing syncs afterwards: when that
/// transaction ends the file is closed with the weak commits' metas only in
/// the lock file, which the next open rebuilds from the data file. Commits
/// that every reader saw are gone after a clean shutdown and reopen.
#[test]
fn closing_with_a_write_transaction_alive_loses_weak_commits_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path).unwrap();
    put_as(&db, Durability::Immediate, b"durable", b"1");
    put_as(&db, Durability::None, b"weak", b"2");
    put_as(&db, Durability::Eventual, b"eventual", b"3");
    assert_eq!(get(&db, b"weak").as_deref(), Some(&b"2"[..]));
    // A transaction still alive (another thread's, say) as the handle
    // closes; it ends without writing anything.
    let w = db.begin_write().unwrap();
    drop(db);
    drop(w);
    // No crash, no power loss: the same process opens the database again.
    let db = open_at(&path).unwrap();
    db.check().unwrap();
    assert_eq!(
        get(&db, b"weak").as_deref(),
        Some(&b"2"[..]),
        "a weak commit vanished after a clean close"
    );
    assert_eq!(get(&db, b"eventual").as_deref(), Some(&b"3"[..]));
}

/// Same, the transaction alive at close commits weakly afterwards: the
/// handle is gone, so nothing ever syncs it (nor the earlier ones).
#[test]
fn a_weak_commit_of_a_transaction_outliving_its_handle_is_lost_at_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path).unwrap();
    put_as(&db, Durability::Immediate, b"durable", b"1");
    let mut w = db.begin_write().unwrap();
    drop(db);
    w.set_durability(Durability::Eventual);
    w.open_table("t").unwrap().insert(b"late", b"2").unwrap();
    w.commit().unwrap();
    let db = open_at(&path).unwrap();
    db.check().unwrap();
    assert_eq!(
        get(&db, b"late").as_deref(),
        Some(&b"2"[..]),
        "an Eventual commit vanished after a clean close"
    );
}

/// A read-only handle that cannot write the lock file (`Opening::Private`:
/// here through a read-only bind mount of the directory) holds the data
/// file's `DATA_WRITER` byte shared for its life. The writer's handle
/// closing meanwhile cannot take the writer lock, so it does not make its
/// weak commits durable; the private handle can never sync. When it closes
/// too, the commits are gone: a clean shutdown of both, then a reopen, and
/// the data is lost. (Skipped where a bind mount is not allowed.)
#[test]
fn a_private_read_only_handle_open_at_close_makes_weak_commits_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let rw = dir.path().join("rw");
    let ro = dir.path().join("ro");
    std::fs::create_dir(&rw).unwrap();
    std::fs::create_dir(&ro).unwrap();
    let Some(_mount) = BindRo::mount(&rw, &ro) else {
        eprintln!("skipped: no read-only bind mount here");
        return;
    };
    let path = rw.join("db");
    let db = open_at(&path).unwrap();
    put_as(&db, Durability::Immediate, b"durable", b"1");
    put_as(&db, Durability::None, b"weak", b"2");
    // SAFETY: the test owns the file.
    let private = unsafe { opts().read_only(true).open(ro.join("db")) }.unwrap();
    assert_eq!(get(&private, b"weak").as_deref(), Some(&b"2"[..]));
    drop(db); // a clean close: should make "weak" durable
    drop(private);
    let db = open_at(&path).unwrap();
    db.check().unwrap();
    assert_eq!(
        get(&db, b"weak").as_deref(),
        Some(&b"2"[..]),
        "a weak commit vanished after every handle closed cleanly"
    );
}

/// A read-only bind mount of `rw` at `ro`, unmounted when dropped.
struct BindRo(PathBuf);

impl BindRo {
    fn mount(rw: &Path, ro: &Path) -> Option<BindRo> {
        let run = |args: &[&std::ffi::OsStr]| {
            std::process::Command::new("mount")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !run(&["--bind".as_ref(), rw.as_os_str(), ro.as_os_str()]) {
            return None;
        }
        let m = BindRo(ro.to_owned());
        run(&["-o".as_ref(), "remount,ro,bind".as_ref(), ro.as_os_str()]).then_some(m)
    }
}

impl Drop for BindRo {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

// ---------------------------------------------------------------------------
// Finding 2: a `durable` word older than the real durable commit.

/// `Core::adopt` checks that slot `durable % 2` holds `durable`, and that
/// the other slot holds nothing newer than `committed`. A lock file whose
/// `durable` names the *older* meta on disk (D') while the other slot
/// holds the real newest durable commit D passes both: D' is in its slot,
/// and D is not newer than `committed`. The writer then pins D' and the
/// base, not D: the second weak commit after it reuses pages D reaches.
/// When every process dies (or the power goes), open takes D from its slot
/// (it is `PAGES_SYNCED`, so no seal list catches the overwritten pages)
/// and reads a tree the weak commits wrote over. The defence should be
/// `Error::LockFile` (the other slot holds a valid meta newer than
/// `durable` that `writing` does not name), or at least keeping D whole.
#[test]
fn a_durable_word_naming_the_older_meta_lets_weak_commits_overwrite_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path).unwrap();
    let n = 60;
    for i in 0..n {
        put_as(&db, Durability::Immediate, &key(i), &value(i, 0, 700));
    }
    let d_older = db.durable_txn_id();
    // D: an Immediate commit after a weak one is two-sync (PAGES_SYNCED).
    put_as(&db, Durability::None, &key(n), &value(n, 0, 700));
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..n {
            t.insert(&key(i), &value(i, 1, 700)).unwrap();
        }
    }
    w.commit().unwrap();
    let d = db.durable_txn_id();
    assert_eq!(d, db.last_txn_id());
    assert_eq!(d % 2, (d_older + 1) % 2, "{d_older} {d}");
    // The crafted word: the older meta on disk, which is in its slot.
    assert_eq!(peek(&path, DURABLE), d);
    poke(&path, DURABLE, d_older);
    // Weak commits that rewrite every value, freeing D's pages.
    for round in 2..6 {
        let mut w = match db.begin_write() {
            Ok(w) => w,
            Err(Error::LockFile(_)) => return, // the defence we want
            Err(e) => panic!("{e:?}"),
        };
        w.set_durability(Durability::None);
        {
            let mut t = w.open_table("t").unwrap();
            for i in 0..n {
                t.insert(&key(i), &value(i, round, 700)).unwrap();
            }
        }
        w.commit().unwrap();
    }
    // Every process killed now: the page cache is what the next open reads.
    let image = dir.path().join("image");
    all_processes_killed_image(&path, &image);
    let db2 = open_at(&image).unwrap();
    assert!(
        db2.last_txn_id() >= d,
        "the durable commit {d} was lost: opened {}",
        db2.last_txn_id()
    );
    db2.check()
        .expect("the durable commit's tree was overwritten");
    for i in 0..n {
        assert_eq!(get(&db2, &key(i)), Some(value(i, 1, 700)), "key {i}");
    }
}

// ---------------------------------------------------------------------------
// Finding 3: `ReaderInfo::pinned_pages` assumes the metas on disk are the
// snapshot and the one before it (`txn_id - 1`).

/// A reader of the durable commit D, then two weak commits that rewrite
/// what D reaches. Those pages stay pending because D is on disk, whether
/// the reader lives or not: the reader does not hold them "alone"
/// (`ReaderInfo::pinned_pages`: "reached by no other live reader's
/// snapshot and neither meta on disk"). `count_pins_in` takes the metas on
/// disk to be `txn_id - 1` and `txn_id`, so after weak commits it blames
/// the reader (and `larch readers` tells the user to end it for nothing).
#[test]
fn pinned_pages_blames_a_reader_for_pages_the_durable_meta_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path).unwrap();
    for i in 0..40 {
        put_as(&db, Durability::Immediate, &key(i), &value(i, 0, 900));
    }
    let d = db.durable_txn_id();
    let held = db.begin_read().unwrap();
    assert_eq!(held.id(), d);
    for round in 1..3 {
        let mut w = db.begin_write().unwrap();
        w.set_durability(Durability::None);
        {
            let mut t = w.open_table("t").unwrap();
            for i in 0..40 {
                t.insert(&key(i), &value(i, round, 900)).unwrap();
            }
        }
        w.commit().unwrap();
    }
    assert_eq!(db.durable_txn_id(), d);
    let readers = db.readers().unwrap();
    let r = readers.iter().find(|r| r.txn_id == d).unwrap();
    // Ending the reader frees nothing: D still pins every one of them.
    drop(held);
    assert_eq!(
        r.pinned_pages, 0,
        "pages the durable meta {d} holds are blamed on its reader"
    );
}

/// The converse: a reader of a weak commit holds pages a later weak commit
/// freed that nothing else pins; `pinned_pages` says 0 because the group
/// of the newest commit is taken as reached by a meta on disk.
#[test]
fn pinned_pages_misses_what_a_reader_of_a_weak_commit_alone_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path).unwrap();
    for i in 0..40 {
        put_as(&db, Durability::Immediate, &key(i), &value(i, 0, 900));
    }
    let rewrite = |round: u64| {
        let mut w = db.begin_write().unwrap();
        w.set_durability(Durability::None);
        {
            let mut t = w.open_table("t").unwrap();
            for i in 0..40 {
                t.insert(&key(i), &value(i, round, 900)).unwrap();
            }
        }
        w.commit().unwrap();
    };
    rewrite(1);
    let held = db.begin_read().unwrap(); // a weak snapshot
    let weak = held.id();
    assert!(weak > db.durable_txn_id());
    rewrite(2);
    let readers = db.readers().unwrap();
    let r = readers.iter().find(|r| r.txn_id == weak).unwrap();
    // What the next writer keeps only for this reader: pages written by the
    // weak snapshot and freed by the commit after it.
    let pinned = r.pinned_pages;
    drop(held);
    assert!(
        pinned > 0,
        "the reader of weak commit {weak} alone holds the pages the next commit freed, \
         but pinned_pages says 0"
    );
}

// ---------------------------------------------------------------------------
// Finding 4: Eventual promotion trusts the wall clock.

/// `stays_weak` compares the wall clock with `weak_since`, a wall-clock
/// stamp in the lock file. When the clock steps back (NTP, a VM restored,
/// a process with another idea of the time), `now - weak_since` saturates
/// to 0 and `Eventual` commits stay weak until the clock passes the stamp
/// again: here an hour. (The lock file lives for one boot, so a boot-time
/// clock, `CLOCK_BOOTTIME`, would do.)
#[test]
fn eventual_commits_stay_weak_for_as_long_as_the_clock_went_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path).unwrap();
    put_as(&db, Durability::Immediate, b"a", b"1");
    put_as(&db, Durability::Eventual, b"b", b"2");
    let since = peek(&path, WEAK_SINCE);
    assert_ne!(since, 0);
    // The clock that stamped it was an hour ahead of the one now.
    poke(&path, WEAK_SINCE, since + 3_600_000_000);
    std::thread::sleep(larch::EVENTUAL_PERIOD + std::time::Duration::from_millis(200));
    put_as(&db, Durability::Eventual, b"c", b"3");
    assert_eq!(
        db.durable_txn_id(),
        db.last_txn_id(),
        "the oldest weak commit is more than a period old, yet Eventual did not sync"
    );
}

// ---------------------------------------------------------------------------
// Attacks that held (regression tests).

/// `durable` greater than `committed`: refused, nothing written.
#[test]
fn a_durable_word_beyond_committed_is_a_lock_file_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path).unwrap();
    put_as(&db, Durability::Immediate, b"a", b"1");
    put_as(&db, Durability::None, b"b", b"2");
    let committed = peek(&path, COMMITTED);
    poke(&path, DURABLE, committed + 1);
    assert!(matches!(db.begin_write(), Err(Error::LockFile(_))));
    assert!(matches!(db.sync(), Err(Error::LockFile(_))));
}

/// `durable` naming the weak commit (its meta is in no slot): refused.
#[test]
fn a_durable_word_naming_a_weak_commit_is_a_lock_file_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path).unwrap();
    put_as(&db, Durability::Immediate, b"a", b"1");
    put_as(&db, Durability::None, b"b", b"2");
    put_as(&db, Durability::None, b"c", b"3");
    let committed = peek(&path, COMMITTED);
    poke(&path, DURABLE, committed);
    assert!(matches!(db.begin_write(), Err(Error::LockFile(_))));
    // `sync` believes the word (durable == committed) and does nothing, but
    // no writer builds on the lie either.
    let _ = db.sync();
    assert!(matches!(db.begin_write(), Err(Error::LockFile(_))));
}

/// A damaged weak meta (bytes flipped) or a `committed` naming a weak id
/// whose meta is absent: readers and writers get errors, never a panic,
/// and nobody reads a wrong tree.
#[test]
fn damaged_weak_metas_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path).unwrap();
    let other = open_at(&path).unwrap();
    put_as(&db, Durability::Immediate, b"a", b"1");
    put_as(&db, Durability::None, b"b", b"2");
    let committed = peek(&path, COMMITTED);
    // Flip a byte of the weak meta `committed` is in.
    let at = WEAK_AT + ((committed / 2) % 2) * 128 + 40;
    let orig = peek(&path, at);
    poke(&path, at, orig ^ 0xff);
    // `other` has not read this meta yet: it must read it from the lock
    // file (its `latest` is older).
    let r = other.begin_read();
    assert!(r.is_err(), "a damaged weak meta was read");
    assert!(other.begin_write().is_err());
    poke(&path, at, orig);
    assert_eq!(get(&other, b"b").as_deref(), Some(&b"2"[..]));
    // A weak id with no meta anywhere.
    poke(&path, COMMITTED, committed + 2);
    let fresh = open_at(&path);
    assert!(fresh.is_err() || fresh.unwrap().begin_read().is_err());
    poke(&path, COMMITTED, committed);
    db.sync().unwrap();
    db.check().unwrap();
}

/// A child made by `fork` calling `sync`: refused (`Forked`), nothing of
/// the parent's touched; the parent syncs after.
#[test]
fn sync_in_a_forked_child_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open_at(&path).unwrap();
    put_as(&db, Durability::Immediate, b"a", b"1");
    put_as(&db, Durability::None, b"b", b"2");
    let _spawning = common::spawn_lock();
    // SAFETY: the child calls `sync` (which refuses before taking any lock)
    // and `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match db.sync() {
            Err(Error::Forked) => 0,
            Ok(()) => 1,
            Err(_) => 2,
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just made.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status}"
    );
    assert!(db.durable_txn_id() < db.last_txn_id());
    db.sync().unwrap();
    assert_eq!(db.durable_txn_id(), db.last_txn_id());
}

/// Weak commits, then every process killed (the page cache as it is), then
/// a reopen in the same boot, more weak commits, an Immediate one, and the
/// same again: every image opens to the last durable commit or later, and
/// passes `check`; the durable commits' values are whole.
#[test]
fn chained_kills_with_mixed_durabilities_keep_every_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut path = dir.path().join("db0");
    let mut want: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
    let mut pending: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
    let mut round = 0;
    for generation in 0..6u64 {
        let db = open_at(&path).unwrap();
        db.check().unwrap();
        for (k, v) in &want {
            assert_eq!(
                get(&db, &key(*k)).as_ref(),
                Some(v),
                "generation {generation} key {k}"
            );
        }
        for step in 0..30u64 {
            round += 1;
            let mode = match (generation + step) % 5 {
                0 => Durability::Immediate,
                1 | 2 => Durability::Eventual,
                _ => Durability::None,
            };
            let k = (round * 7) % 50;
            let v = value(k, round, 200 + (round as usize * 131) % 3000);
            put_as(&db, mode, &key(k), &v);
            if db.durable_txn_id() == db.last_txn_id() {
                // Everything up to here is durable now (an Immediate
                // commit, or an Eventual one promoted).
                want.append(&mut pending);
                want.insert(k, v);
            } else {
                assert_ne!(mode, Durability::Immediate);
                want.remove(&k); // may or may not survive
                pending.insert(k, v);
            }
        }
        // Every process killed: the next generation opens the cache image.
        let next = dir.path().join(format!("db{}", generation + 1));
        all_processes_killed_image(&path, &next);
        std::mem::forget(db); // never closes: no sync at close
        path = next;
        pending.clear();
    }
}
