//! Hostile review of the cut at close (DESIGN.md, "Shrinking the file",
//! **Closing**; `impl Drop for Database`, `WriteTxn::cut_on_close`): readers
//! of other handles and processes, the metas a recovery needs, commits the
//! closing handle never saw, and drops in odd states. Two tests found
//! defects, fixed since (their comments say which); the others guard
//! attacks that held. Child processes are this test binary re-run with an
//! environment variable naming what to do (`child_*` tests return at once
//! without it).

mod common;

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::sized::{holds, key, load, touch, value};
use common::{TestDb, sealed_pages};
use larch::testing::{FileStorage, Storage};
use larch::{Database, Error};

const PS: u32 = 4096;

fn remove(db: &Database, keys: impl Iterator<Item = u32>) {
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in keys {
            assert!(t.remove(&key(i)).unwrap());
        }
    }
    w.commit().unwrap();
}

fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn len_of(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// The high-water mark the meta in slot `slot` names (offset 24).
fn meta_high_water(path: &Path, slot: u64) -> u64 {
    let image = std::fs::read(path).unwrap();
    let at = (slot * u64::from(PS)) as usize + 24;
    u64::from_le_bytes(image[at..at + 8].try_into().unwrap())
}

// ---------------------------------------------------------------------------
// Children (other processes).

fn spawn(name: &str, envs: &[(&str, &str)]) -> Child {
    let _spawning = common::spawn_lock();
    common::test_command(name, envs).spawn().unwrap()
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    writeln!(out, "RC:{line}").unwrap();
    out.flush().unwrap();
}

/// The next line the child printed with the `RC:` marker.
fn next_marked(lines: &mut impl Iterator<Item = io::Result<String>>) -> String {
    for l in lines.map_while(Result::ok) {
        if let Some(at) = l.rfind("RC:") {
            return l[at + 3..].to_string();
        }
    }
    panic!("the child printed no marked line");
}

fn wait_stdin_line() {
    let mut line = String::new();
    io::stdin().read_line(&mut line).unwrap();
}

/// The child: opens `LARCH_RC_PATH`; with `LARCH_RC_OWN` set, first loads
/// keys 1000..1300 and holds a snapshot of that commit, then removes them
/// again (two commits the parent never reads), else holds a snapshot of
/// the last commit. Says "ready" with the keys its snapshot holds; after a
/// line on stdin reads every value of its snapshot and says "ok".
#[test]
fn child_hold_snapshot() {
    let Ok(path) = std::env::var("LARCH_RC_PATH") else {
        return;
    };
    let db = common::open(Path::new(&path), PS);
    let own = std::env::var("LARCH_RC_OWN").is_ok();
    if own {
        load(&db, 1000..1300, 300);
    }
    let r = db.begin_read().unwrap();
    let n = r.open_table("t").unwrap().len();
    if own {
        remove(&db, 1000..1300);
        touch(&db, 9999);
    }
    say(&format!("ready {n}"));
    wait_stdin_line();
    let t = r.open_table("t").unwrap();
    let mut seen = 0;
    for e in t.iter().unwrap() {
        let (k, v) = e.unwrap();
        let i = u32::from_be_bytes(k.try_into().unwrap());
        assert_eq!(v, &value(i)[..], "key {i}");
        seen += 1;
    }
    assert_eq!(seen, n);
    drop(r);
    say("ok");
}

/// Runs `child_hold_snapshot`, closes the parent's handle while it holds its
/// snapshot (after `before_close`), then lets it read everything. Returns
/// the file's length before and after the close, and the pages of the
/// parent's commit the child may have taken.
fn close_under_child_snapshot(own: bool, before_close: impl FnOnce(&Database)) -> (u64, u64, u64) {
    let mut t = TestDb::new(PS);
    load(t.db(), 0..400, 100);
    let path = t.path();
    let p = path.to_str().unwrap();
    let mut envs = vec![("LARCH_RC_PATH", p)];
    if own {
        envs.push(("LARCH_RC_OWN", "1"));
    }
    let mut child = spawn("child_hold_snapshot", &envs);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = next_marked(&mut lines);
    let expected = if own { 700 } else { 400 };
    assert_eq!(ready, format!("ready {expected}"));
    let held = t.db().stat().unwrap().pages;
    before_close(t.db());
    let open_len = len_of(&path);
    t.db = None;
    let closed_len = len_of(&path);
    assert_eq!(closed_len % u64::from(PS), 0);
    writeln!(child.stdin.as_mut().unwrap()).unwrap();
    let ok = next_marked(&mut lines);
    let status = child.wait().unwrap();
    assert_eq!(ok, "ok");
    assert!(
        status.success(),
        "the child died reading its snapshot: {status:?}"
    );
    t.reopen();
    t.db().check().unwrap();
    (open_len, closed_len, held)
}

/// Held: a reader in another process holds a snapshot of a large commit;
/// this handle removes most of it, commits until those pages could be cut,
/// and closes. The child then reads every value of its snapshot: no SIGBUS,
/// no garbage (the cut stops at its snapshot's mark).
#[test]
fn a_reader_of_another_process_keeps_its_pages_at_close() {
    let (open_len, closed_len, held) = close_under_child_snapshot(false, |db| {
        remove(db, 100..400);
        for i in 0..4 {
            touch(db, i);
        }
    });
    // The close did cut (what growth allocated ahead), but not below the
    // child's snapshot.
    assert!(closed_len < open_len, "{closed_len} >= {open_len}");
    assert!(
        closed_len >= held * u64::from(PS),
        "{closed_len} < {held} pages"
    );
}

/// Held: the other process's snapshot is of a commit this handle never read
/// (the child loaded more, took the snapshot, and removed it again before
/// this handle wrote); this handle then commits and closes. Its mark is
/// unknown here, so nothing may be cut below it; the child reads it whole.
#[test]
fn a_snapshot_of_a_commit_this_handle_never_saw_keeps_its_pages() {
    let (open_len, closed_len, _) = close_under_child_snapshot(true, |db| {
        remove(db, 200..400);
        for i in 0..4 {
            touch(db, i);
        }
    });
    // The child's snapshot's mark is unknown here: nothing is cut.
    assert_eq!(closed_len, open_len);
}

// ---------------------------------------------------------------------------
// The metas on disk.

/// Found a defect (fixed: `Core::wrote` is an `Option`): a handle whose
/// last commit is transaction 0 (a new file whose first commit was torn)
/// "wrote" 0 as far as `Core::wrote` could tell (0 was also its "nothing
/// yet"), so dropping it started a write transaction after all: `adopt`
/// spoiled the slot of the torn commit 1 that open set aside, which a
/// handle that wrote nothing must never do (tests/open.rs,
/// `a_torn_single_sync_commit_falls_back_to_the_previous_one` checks this
/// for commit 2: restored, the commit is found whole again). Commit 1,
/// restored after the close, was lost: reopening found 0.
#[test]
fn closing_a_handle_that_wrote_nothing_at_commit_zero_keeps_the_meta_set_aside() {
    let ps = u64::from(PS);
    let mut t = TestDb::new(PS);
    {
        let w = t.db().begin_write().unwrap();
        w.open_table("t")
            .unwrap()
            .insert(b"k", &[7u8; 9000])
            .unwrap();
        w.commit().unwrap(); // txn 1, slot 1
    }
    t.db = None;
    let path = t.path();
    let sealed = sealed_pages(&path, ps, 1);
    assert!(!sealed.is_empty());
    let (page, pages) = sealed[0];
    let at = (page + pages) * ps - 1;
    let image = std::fs::read(&path).unwrap();
    poke(&path, at, &[image[at as usize] ^ 1]);
    t.reopen();
    assert_eq!(t.db().last_txn_id(), 0);
    let aside = t.db().stat().unwrap().set_aside;
    assert_eq!(aside.and_then(|a| a.txn_id), Some(1), "{aside:?}");
    // Close without writing anything, then restore the page.
    t.db = None;
    poke(&path, at, &[image[at as usize]]);
    t.reopen();
    assert_eq!(
        t.db().last_txn_id(),
        1,
        "closing a handle that wrote nothing spoiled the commit open set aside"
    );
    let r = t.db().begin_read().unwrap();
    assert_eq!(
        r.open_table("t").unwrap().get(b"k").unwrap(),
        Some(&[7u8; 9000][..])
    );
}

/// Held: the close keeps every page the meta before the last commit reaches,
/// even when the last commit lowered the high-water mark below it: with the
/// last meta spoiled after the close, open falls back to the one before,
/// whole (a power loss that tears the last meta's slot needs no more).
#[test]
fn a_close_keeps_the_meta_before_the_last_commit_openable() {
    let mut t = TestDb::new(PS);
    load(t.db(), 0..300, 100);
    // The last keys loaded sit at the end of the file: once the reuse rule
    // releases their pages, a commit lowers the mark.
    remove(t.db(), 200..300);
    let mut last = t.db().stat().unwrap().pages;
    let mut lowered = false;
    for i in 0..8 {
        touch(t.db(), i);
        let pages = t.db().stat().unwrap().pages;
        if pages < last {
            lowered = true;
            break;
        }
        last = pages;
    }
    assert!(lowered, "no commit lowered the high-water mark");
    let w = t.db().last_txn_id();
    let path = t.path();
    t.db = None;
    let len = len_of(&path);
    assert_eq!(len % u64::from(PS), 0);
    let (hw_w, hw_before) = (
        meta_high_water(&path, w % 2),
        meta_high_water(&path, 1 - w % 2),
    );
    assert!(hw_before > hw_w, "{hw_before} <= {hw_w}");
    assert!(
        len >= hw_before * u64::from(PS),
        "{len} bytes, meta W-1 reaches {hw_before} pages"
    );
    // Spoil the last meta's checksummed fields: open takes W - 1.
    let slot_at = (w % 2) * u64::from(PS);
    let image = std::fs::read(&path).unwrap();
    poke(
        &path,
        slot_at + 20,
        &[image[(slot_at + 20) as usize] ^ 0x5a],
    );
    t.reopen();
    assert_eq!(t.db().last_txn_id(), w - 1);
    holds(t.db(), &(0..200).collect::<Vec<_>>());
}

/// Held: the close does not cut what another handle (here of the same
/// process; a process is no different to the registry) committed after the
/// closing handle's last commit: the newest commit is not its own.
#[test]
fn a_commit_of_another_handle_after_this_ones_is_not_cut() {
    let mut t = TestDb::new(PS);
    load(t.db(), 0..100, 100);
    let other = common::open(&t.path(), PS);
    load(&other, 100..400, 100);
    let before = len_of(&t.path());
    t.db = None;
    assert_eq!(len_of(&t.path()), before);
    drop(other);
    t.reopen();
    holds(t.db(), &(0..400).collect::<Vec<_>>());
}

/// Held: a crash that undoes the cut (it is not synced) leaves a longer file
/// with whatever tail: open accepts it, and the next commits grow from the
/// real length and read back.
#[test]
fn a_cut_undone_by_a_crash_is_harmless() {
    let mut t = TestDb::new(PS);
    load(t.db(), 0..200, 50);
    t.db = None;
    let path = t.path();
    let cut = len_of(&path);
    // The tail comes back with garbage in it.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(cut + (3 << 20) + 123).unwrap();
    drop(f);
    poke(&path, cut, &[0xa5; 8192]);
    t.reopen();
    holds(t.db(), &(0..200).collect::<Vec<_>>());
    load(t.db(), 200..400, 50);
    t.reopen();
    holds(t.db(), &(0..400).collect::<Vec<_>>());
    assert_eq!(len_of(&path) % u64::from(PS), 0);
}

// ---------------------------------------------------------------------------
// Drops in odd states.

/// Fails every `sync` while the flag is set (a poisoning write-out).
struct FailSync(FileStorage, Arc<AtomicBool>);

impl Storage for FailSync {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, data)
    }
    fn write_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        self.0.write_vectored_at(offset, bufs)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        self.0.allocate(from, to)
    }
    fn sync(&self) -> io::Result<()> {
        if self.1.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.0.sync()
    }
}

/// Held: a poisoned handle (a failed sync), and a read-only one, cut
/// nothing at close; the file reopens to the last good commit.
#[test]
fn a_poisoned_or_read_only_handle_cuts_nothing() {
    let fail = Arc::new(AtomicBool::new(false));
    let f = fail.clone();
    let opts = common::small_map(PS)
        .storage(move |file| Ok(Box::new(FailSync(FileStorage::new(file), f.clone())) as _));
    let mut t = TestDb::with_options(opts);
    load(t.db(), 0..200, 50);
    fail.store(true, Ordering::SeqCst);
    let w = t.db().begin_write().unwrap();
    w.open_table("t")
        .unwrap()
        .insert(&key(500), &value(500))
        .unwrap();
    assert!(w.commit().is_err());
    assert!(matches!(t.db().begin_write(), Err(Error::Poisoned)));
    let path = t.path();
    let before = len_of(&path);
    assert!(before > t.db().stat().unwrap().pages * u64::from(PS));
    t.db = None;
    assert_eq!(len_of(&path), before, "a poisoned handle cut the file");
    fail.store(false, Ordering::SeqCst);
    t.set_options(common::small_map(PS));
    t.reopen();
    holds(t.db(), &(0..200).collect::<Vec<_>>());
    drop(t.db.take());
    // Read-only: grow the file by hand (a longer file is valid) and close.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len_of(&path) + (2 << 20)).unwrap();
    drop(f);
    let grown = len_of(&path);
    // SAFETY: the test owns the file.
    let ro = unsafe { common::small_map(PS).read_only(true).open(&path) }.unwrap();
    holds(&ro, &(0..200).collect::<Vec<_>>());
    drop(ro);
    assert_eq!(len_of(&path), grown, "a read-only handle cut the file");
}

/// Held: a child made by `fork` that drops its copy of a handle whose last
/// commit is the newest cuts nothing (`Core::same_process` refuses the
/// transaction), and the parent goes on reading and writing.
#[test]
fn a_forked_child_dropping_the_handle_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.larch");
    let db = common::open(&path, PS);
    load(&db, 0..200, 50);
    let before = len_of(&path);
    assert!(before > db.stat().unwrap().pages * u64::from(PS));
    let _no_spawn = common::spawn_lock();
    let mut db = Some(db);
    // SAFETY: the child runs on a copy of this thread only, touches nothing
    // but the handle, and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(db.take());
        // SAFETY: `_exit` skips destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: plain syscall on our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(len_of(&path), before, "the forked child cut the file");
    let db = db.unwrap();
    holds(&db, &(0..200).collect::<Vec<_>>());
    load(&db, 200..300, 50);
    holds(&db, &(0..300).collect::<Vec<_>>());
}

/// Held: closes racing `begin_write` of another handle in another thread: the
/// close never waits, and whichever runs first, every commit survives and
/// the file checks.
#[test]
fn closes_racing_writers_of_another_handle_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.larch");
    let other = common::open(&path, PS);
    let mut next = 0u32;
    for round in 0..20u32 {
        let db = common::open(&path, PS);
        load(&db, next..next + 20, 20);
        next += 20;
        let start = next;
        std::thread::scope(|s| {
            s.spawn(|| load(&other, start..start + 20, 5));
            if round % 2 == 0 {
                std::thread::yield_now();
            }
            drop(db);
        });
        next += 20;
        assert_eq!(len_of(&path) % u64::from(PS), 0);
    }
    drop(other);
    let db = common::open(&path, PS);
    holds(&db, &(0..next).collect::<Vec<_>>());
}

/// Found a defect (fixed: both leave a parent's slots alone in a child;
/// not of the close itself, which a forked child refuses; older than it,
/// and made worse by it): a child made by `fork` that leaves the scope of a
/// parent's read transaction and handle the ordinary way (a return from
/// `main`, a scope's end) ran `ReadTxn::drop` and the registry's `Drop`,
/// which cleared the parent's reader slot in the shared lock file
/// (`Registry::end`; `Shared::drop`), with no `same_process` check. The parent's reader is alive but unregistered: the next close of
/// another handle cuts the file below its snapshot (its next read of those
/// pages is a SIGBUS; commits may reuse them as well).
#[test]
fn a_forked_child_leaving_scope_unregisters_the_parents_reader() {
    let mut t = TestDb::new(PS);
    load(t.db(), 0..400, 100);
    let path = t.path();
    let other = common::open(&path, PS);
    let r = other.begin_read().unwrap();
    assert_eq!(r.open_table("t").unwrap().len(), 400);
    let held = t.db().stat().unwrap().pages;
    let _no_spawn = common::spawn_lock();
    // SAFETY: the child runs on a copy of this thread only, drops what it
    // holds of the parent's and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(r);
        drop(other);
        // SAFETY: `_exit` skips the remaining destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: plain syscall on our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    drop(_no_spawn);
    let registered = t.db().readers().unwrap().len();
    remove(t.db(), 100..400);
    // Moves the pages left down, so that the mark falls far below the
    // reader's snapshot (with the reader registered, neither compaction nor
    // the close cuts below it: see the other tests).
    t.db().compact().unwrap();
    t.db = None;
    let len = len_of(&path);
    // Not read through `r`: that would be a SIGBUS in this test process.
    assert!(
        registered == 1 && len >= held * u64::from(PS),
        "{registered} readers registered after the child left (1 is alive); \
         the file was cut to {len} bytes under a live reader of {held} pages"
    );
    drop(r);
}
