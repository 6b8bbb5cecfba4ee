//! A hostile review of growth past the map: each test states a property
//! growth must keep (a commit never leaves its own handle unable to map the
//! file, a remap does not need the idle old map, a failed grow seen by
//! another handle does not make it write past the end, a small `max_size`
//! does not cost a map per commit) and fails where it does not hold.

mod common;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use larch::testing::{FileStorage, Storage};
use larch::{Database, Error, Options};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

fn value(i: u32, len: usize) -> Vec<u8> {
    i.to_le_bytes().iter().copied().cycle().take(len).collect()
}

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

/// One commit of keys `from..to` with values of `len` bytes.
fn commit(db: &Database, from: u32, to: u32, len: usize) -> larch::Result<()> {
    let w = db.begin_write()?;
    {
        let mut t = w.open_table("t")?;
        for i in from..to {
            t.insert(&key(i), &value(i, len))?;
        }
    }
    w.commit()
}

/// Mappings of `path` this process holds (lines of /proc/self/maps).
fn maps_of(path: &Path) -> usize {
    let name = path.canonicalize().unwrap();
    let name = name.to_str().unwrap();
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(name))
        .count()
}

/// Runs test `name` of this binary in a child with `var` set to `path`;
/// returns its stdout, and fails when the child failed.
fn run_child(name: &str, var: &str, path: &Path) -> String {
    let out = {
        let _spawning = common::spawn_lock();
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(var, path)
            .output()
            .unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// ---------------------------------------------------------------------------
// 1. Address space: a commit succeeds that no transaction of the handle can
//    then read, and the idle old map is kept while the new one is made.
// ---------------------------------------------------------------------------

const AS_CHILD: &str = "LARCH_REDTEAM_AS_CHILD";
const AS_MODE: &str = "LARCH_REDTEAM_AS_MODE";

fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * KIB
}

/// Child half of `address_space_exhaustion_never_follows_a_successful_commit`.
#[test]
fn address_space_child() {
    let Ok(path) = std::env::var(AS_CHILD) else {
        return;
    };
    let path = Path::new(&path);
    let first_map = 48 * MIB;
    let headroom = 32 * MIB;
    // SAFETY: the test owns the file.
    let db = unsafe { Options::new().map_size(first_map).open(path) }.unwrap();
    // Warm the allocator up before measuring.
    commit(&db, 0, 16, 64 << 10).unwrap();
    drop(db.begin_read().unwrap());
    let limit = vm_size() + headroom;
    // SAFETY: plain system calls; only the soft limit changes.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut lim), 0);
        lim.rlim_cur = limit as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &lim), 0);
    }
    let len = 64 << 10;
    let mut n = 16;
    loop {
        // No transaction is open between commits: only the pager holds a
        // map.
        match commit(&db, n, n + 16, len) {
            Ok(()) => n += 16,
            Err(e) => {
                println!("commit failed first: {e}");
                break;
            }
        }
        let file = std::fs::metadata(path).unwrap().len();
        let started = db.begin_read().map(drop);
        match started {
            Ok(()) => {}
            Err(e) => {
                let w = db.begin_write().err();
                println!(
                    "BRICKED after a successful commit: {n} keys, file {file} bytes, \
                     first map {first_map}, headroom {headroom}: begin_read: {e}; \
                     begin_write: {w:?}"
                );
                if std::env::var(AS_MODE).is_ok_and(|m| m == "reopen") {
                    // Under the same limit, a new handle (whose one map
                    // covers the file) reads the commit: the address space
                    // was there, held by the idle old map.
                    drop(db);
                    let db = common::open(path, 4096);
                    let r = db.begin_read().unwrap();
                    assert_eq!(r.open_table("t").unwrap().len(), u64::from(n));
                    println!("REOPENED under the same limit: reads {n} keys");
                    break;
                }
                // Address space back: the failed starts left no reader slot
                // and no writer lock behind.
                // SAFETY: as above.
                unsafe {
                    let mut lim = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut lim), 0);
                    lim.rlim_cur = lim.rlim_max;
                    assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &lim), 0);
                }
                let r = db.begin_read().unwrap();
                assert_eq!(r.stat().unwrap().live_readers, 1);
                assert_eq!(r.open_table("t").unwrap().len(), u64::from(n));
                drop(r);
                commit(&db, n, n + 1, 10).unwrap();
                println!("after the limit is lifted: no slot or lock leaked");
                break;
            }
        }
        if n > 4096 {
            println!("no failure");
            break;
        }
    }
    println!("child done");
}

/// A commit that returns `Ok` must leave a handle that can begin a read
/// (and a write) of it: `MapFull` for address space belongs to the commit
/// that grows the file past what can be mapped, not to every transaction
/// after it. Here no transaction holds the first map of 48 MiB when the
/// file passes it, and 32 MiB more address space is free: a new map of the
/// file's ~49 MiB fits once the idle old map goes, but the pager makes the
/// new map while it still holds the old one.
/// The half of the above: when the file outgrows an idle map, the pager
/// needs the old map and the new one at once. The same limit that fails
/// `begin_read` lets a reopened handle read the file (its one map covers
/// it): the pager should let an idle newest map go before it maps anew (or
/// retry after dropping it).
#[test]
fn a_remap_does_not_need_the_idle_old_map_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("as2.larch");
    let out = {
        let _spawning = common::spawn_lock();
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "address_space_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(AS_CHILD, &path)
            .env(AS_MODE, "reopen")
            .output()
            .unwrap()
    };
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("child done"), "{out}");
    // The reopen read it under the same limit, yet begin_read failed.
    assert!(
        !(out.contains("REOPENED") && out.contains("BRICKED")),
        "{out}"
    );
}

#[test]
fn address_space_exhaustion_never_follows_a_successful_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("as.larch");
    let out = run_child("address_space_child", AS_CHILD, &path);
    assert!(out.contains("child done"), "{out}");
    assert!(!out.contains("BRICKED"), "{out}");
}

// ---------------------------------------------------------------------------
// 2. A handle whose max_size is below the file's length (another handle grew
//    it) maps anew for every commit: one VMA per held reader, not one per
//    doubling.
// ---------------------------------------------------------------------------

/// DESIGN.md: "a handle holds at most one [map] per doubling of its file
/// that some transaction still uses". Handle `small` has `max_size` 1 MiB;
/// handle `big` (another process would do the same) grows the file one page
/// at a time to 8 MiB. `small` takes a reader after each commit and holds
/// it.
#[test]
fn a_small_max_size_does_not_make_a_map_per_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maps.larch");
    // SAFETY: the test owns the file.
    let big = unsafe { Options::new().map_size(64 * KIB).open(&path) }.unwrap();
    // SAFETY: as above.
    let small = unsafe { Options::new().map_size(64 * KIB).max_size(MIB).open(&path) }.unwrap();
    let mut n = 0;
    // Past the 1 MiB ceiling of `small` first.
    while std::fs::metadata(&path).unwrap().len() < 2 * MIB {
        commit(&big, n, n + 8, 16 << 10).unwrap();
        n += 8;
    }
    let before = maps_of(&path);
    let mut readers = Vec::new();
    for _ in 0..64 {
        commit(&big, n, n + 1, 3000).unwrap();
        n += 1;
        readers.push(small.begin_read().unwrap());
    }
    let after = maps_of(&path);
    let held = after - before;
    println!("maps held for 64 readers of 64 commits: {held}");
    drop(readers);
    // The file grew by far less than a doubling.
    assert!(held <= 4, "{held} maps for 64 commits of one page");
}

// ---------------------------------------------------------------------------
// 3. A failed grow cuts the file back to the length before it; a handle that
//    saw the longer length (fstat during the grow) keeps it, and later grows
//    without allocating: its commit writes past the end of the file into
//    blocks never allocated, so a full disk fails the write and poisons
//    the handle after all.
// ---------------------------------------------------------------------------

/// Storage for the handle that fails: its armed `allocate` lengthens the
/// file part-way, as a failed `posix_fallocate` can, waits while the other
/// handle looks, then cuts it back and says ENOSPC (as `FileStorage` does).
struct PartialGrow {
    inner: FileStorage,
    file: File,
    armed: Arc<AtomicBool>,
    paused: AtomicBool,
    extended: Mutex<Sender<()>>,
    go: Mutex<Receiver<()>>,
}

impl Storage for PartialGrow {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data)
    }
    fn write_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        self.inner.write_vectored_at(offset, bufs)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        if !self.armed.load(Ordering::SeqCst) {
            return self.inner.allocate(from, to);
        }
        if !self.paused.swap(true, Ordering::SeqCst) {
            // The first try: part-way longer while the other handle looks.
            self.file.set_len(from + (to - from) / 2)?;
            self.extended.lock().unwrap().send(()).unwrap();
            self.go.lock().unwrap().recv().unwrap();
            self.file.set_len(from)?;
        }
        // The disk stays full for the exact-length retry.
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

/// Storage for the other handle: counts writes that reach past the end of
/// the file (into blocks no `allocate` reserved).
struct Watch {
    inner: FileStorage,
    file: File,
    past_end: Arc<AtomicU64>,
    allocates: Arc<AtomicU64>,
    /// The disk is full: a write past the end of the file (into blocks no
    /// `allocate` reserved) fails with ENOSPC, as it would on a full disk.
    full: bool,
}

impl Watch {
    fn look(&self, offset: u64, len: u64) -> io::Result<()> {
        if offset + len > self.file.metadata().unwrap().len() {
            self.past_end.fetch_add(1, Ordering::SeqCst);
            if self.full {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        Ok(())
    }
}

impl Storage for Watch {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.look(offset, data.len() as u64)?;
        self.inner.write_at(offset, data)
    }
    fn write_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        self.look(offset, bufs.iter().map(|b| b.len() as u64).sum())?;
        self.inner.write_vectored_at(offset, bufs)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        self.allocates.fetch_add(1, Ordering::SeqCst);
        self.inner.allocate(from, to)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

#[test]
fn a_failed_grow_seen_by_another_handle_does_not_leave_it_writing_past_the_end() {
    cut_back(false);
}

/// The same where writes past the end of the file fail as on a full disk:
/// `b`'s commit must allocate before it writes (or fail with `MapFull`),
/// never fail half-way through its writes and poison the handle.
#[test]
fn a_failed_grow_seen_by_another_handle_leaves_it_unpoisoned_on_a_full_disk() {
    cut_back(true);
}

fn cut_back(full: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.larch");
    let armed = Arc::new(AtomicBool::new(false));
    let (extended_tx, extended) = channel();
    let (go, go_rx) = channel();
    let hook = {
        let armed = armed.clone();
        let extended = Mutex::new(Some(extended_tx));
        let go = Mutex::new(Some(go_rx));
        move |f: File| -> io::Result<Box<dyn Storage>> {
            Ok(Box::new(PartialGrow {
                inner: FileStorage::new(f.try_clone()?),
                file: f,
                armed: armed.clone(),
                paused: AtomicBool::new(false),
                extended: Mutex::new(extended.lock().unwrap().take().unwrap()),
                go: Mutex::new(go.lock().unwrap().take().unwrap()),
            }))
        }
    };
    // SAFETY: the test owns the file.
    let a = unsafe { Options::new().map_size(64 * KIB).storage(hook).open(&path) }.unwrap();
    let past_end = Arc::new(AtomicU64::new(0));
    let allocates = Arc::new(AtomicU64::new(0));
    let watch = {
        let (past_end, allocates) = (past_end.clone(), allocates.clone());
        move |f: File| -> io::Result<Box<dyn Storage>> {
            Ok(Box::new(Watch {
                inner: FileStorage::new(f.try_clone()?),
                file: f,
                past_end: past_end.clone(),
                allocates: allocates.clone(),
                full,
            }))
        }
    };
    // SAFETY: as above.
    let b = unsafe { Options::new().map_size(64 * KIB).storage(watch).open(&path) }.unwrap();
    commit(&a, 0, 4, 1000).unwrap();
    drop(b.begin_read().unwrap());
    // A commit `b` has not seen, so that its next reader reads the meta
    // (and the file's length) from the file.
    commit(&a, 4, 8, 1000).unwrap();
    let len_before = std::fs::metadata(&path).unwrap().len();
    armed.store(true, Ordering::SeqCst);
    std::thread::scope(|s| {
        let failing = s.spawn(|| {
            // 8 MiB: far past the file's length.
            commit(&a, 8, 8 + 128, 64 << 10)
        });
        extended.recv().unwrap();
        // `b` starts a reader while the grow has the file longer.
        drop(b.begin_read().unwrap());
        go.send(()).unwrap();
        let err = failing.join().unwrap().unwrap_err();
        assert!(matches!(err, Error::MapFull { .. }), "{err:?}");
    });
    armed.store(false, Ordering::SeqCst);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len_before);
    // `b` commits 2 MiB: within the length it saw, past the file's.
    let r = commit(&b, 1000, 1032, 64 << 10);
    if full {
        // Its grow allocates the blocks it writes (here they fit), or fails
        // with `MapFull`; never a write past the end that fails and poisons.
        let next = b.begin_write().err();
        assert!(
            matches!(r, Ok(()) | Err(Error::MapFull { .. })),
            "commit of b on a full disk: {r:?}"
        );
        assert!(next.is_none(), "b after its commit: {next:?}");
        assert_eq!(past_end.load(Ordering::SeqCst), 0);
        return;
    }
    r.unwrap();
    let past = past_end.load(Ordering::SeqCst);
    let allocs = allocates.load(Ordering::SeqCst);
    println!("writes past the end: {past}, allocates: {allocs}");
    assert_eq!(
        past, 0,
        "the commit of `b` wrote {past} times past the end of the file after {allocs} \
         allocate calls: its grow trusted a length the file no longer has"
    );
    b.check().unwrap();
}

// ---------------------------------------------------------------------------
// 4. A file whose length is not a whole number of pages (a grow cut short:
//    ext4 extends by blocks, glibc's emulation by bytes) opens and grows.
// ---------------------------------------------------------------------------

#[test]
fn a_file_length_not_whole_pages_opens_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.larch");
    let ps = 16 * 1024;
    {
        let db = common::open(&path, ps);
        commit(&db, 0, 64, 4000).unwrap();
    }
    // The kill struck a grow part-way: 4 KiB blocks of a 16 KiB page.
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len + 4096).unwrap();
    drop(f);
    let db = common::open(&path, ps);
    commit(&db, 64, 2000, 4000).unwrap();
    db.check().unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    assert_eq!(t.len(), 2000);
    println!("file {} bytes", std::fs::metadata(&path).unwrap().len());
}

// ---------------------------------------------------------------------------
// 5. max_size edges.
// ---------------------------------------------------------------------------

/// A `max_size` that is not whole pages: the file never passes it, and the
/// last whole page below it can be used.
#[test]
fn max_size_not_whole_pages_is_a_ceiling_to_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd-max.larch");
    let max = MIB + 1000;
    // SAFETY: the test owns the file.
    let db = unsafe { Options::new().map_size(64 * KIB).max_size(max).open(&path) }.unwrap();
    let mut n = 0;
    let err = loop {
        match commit(&db, n, n + 1, 100) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        if n > 100_000 {
            panic!("never full");
        }
    };
    assert!(matches!(err, Error::MapFull { .. }), "{err:?}");
    let file = std::fs::metadata(&path).unwrap().len();
    let pages = db.stat().unwrap().pages;
    println!("{n} keys, file {file}, pages {pages}");
    assert!(file <= max, "file {file} > max_size {max}");
    assert_eq!(file % 4096, 0);
    // Deletes still commit at the ceiling.
    let w = db.begin_write().unwrap();
    w.open_table("t").unwrap().remove(&key(0)).unwrap();
    w.commit().unwrap();
    db.check().unwrap();
}

/// An overflow value far beyond `max_size` fails with `MapFull` without
/// the process allocating it page by page first, and the handle goes on.
#[test]
fn a_value_larger_than_max_size_is_map_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.larch");
    // SAFETY: the test owns the file.
    let db = unsafe { Options::new().map_size(64 * KIB).max_size(MIB).open(&path) }.unwrap();
    let w = db.begin_write().unwrap();
    let r = w
        .open_table("t")
        .unwrap()
        .insert(b"k", &vec![7u8; 4 * MIB as usize]);
    assert!(matches!(r, Err(Error::MapFull { .. })), "{r:?}");
    drop(w);
    commit(&db, 0, 10, 1000).unwrap();
    db.check().unwrap();
}

/// A file reopened with a `max_size` below its length: commits that only
/// reuse free pages succeed.
#[test]
fn max_size_below_the_file_still_commits_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shrunk-max.larch");
    {
        // SAFETY: the test owns the file.
        let db = unsafe { Options::new().map_size(64 * KIB).open(&path) }.unwrap();
        commit(&db, 0, 512, 4000).unwrap();
        // Free pages to reuse.
        let w = db.begin_write().unwrap();
        for i in 0..256 {
            w.open_table("t").unwrap().remove(&key(i)).unwrap();
        }
        w.commit().unwrap();
        commit(&db, 10_000, 10_001, 10).unwrap();
        commit(&db, 10_001, 10_002, 10).unwrap();
    }
    // SAFETY: as above.
    let db = unsafe {
        Options::new()
            .map_size(64 * KIB)
            .max_size(64 * KIB)
            .open(&path)
    }
    .unwrap();
    commit(&db, 20_000, 20_010, 4000).unwrap();
    db.check().unwrap();
}

// ---------------------------------------------------------------------------
// 6. Many threads begin reads while the writer grows the file: no reader
//    sees Corrupted or a torn value.
// ---------------------------------------------------------------------------

#[test]
fn readers_starting_in_many_threads_during_growth_see_whole_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.larch");
    // SAFETY: the test owns the file.
    let db = unsafe { Options::new().map_size(16 * KIB).open(&path) }.unwrap();
    commit(&db, 0, 1, 20_000).unwrap();
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let mut held = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let r = db.begin_read().unwrap();
                    {
                        let t = r.open_table("t").unwrap();
                        let n = t.len() as u32;
                        for i in [0, n / 2, n - 1] {
                            let v = t.get(&key(i)).unwrap().unwrap();
                            assert!(v == value(i, 20_000), "key {i}");
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    held.push(r);
                    if held.len() > 8 {
                        held.remove(0);
                    }
                }
            });
        }
        let mut n = 1;
        while std::fs::metadata(&path).unwrap().len() < 96 * MIB {
            commit(&db, n, n + 64, 20_000).unwrap();
            n += 64;
        }
        done.store(true, Ordering::Relaxed);
    });
    println!("reads: {}", reads.load(Ordering::Relaxed));
    db.check().unwrap();
}

// ---------------------------------------------------------------------------
// 7. A real full file system (tmpfs), two-sync commits, a second handle.
// ---------------------------------------------------------------------------

/// Scattered keys: commits of many dirty pages, sealed with two syncs.
fn scattered(db: &Database, round: u32) -> larch::Result<()> {
    let w = db.begin_write()?;
    {
        let mut t = w.open_table("s")?;
        for j in 0..2000u32 {
            let k = (j.wrapping_mul(2_654_435_761) ^ round.wrapping_mul(40_503)).to_be_bytes();
            t.insert(&k, &value(round, 300))?;
        }
    }
    w.commit()
}

#[test]
fn a_full_tmpfs_fails_two_sync_commits_cleanly_and_another_handle_goes_on() {
    let Some(fs) = common::Tmpfs::mount(24 * MIB) else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 12 << 20]).unwrap();
    let path = fs.path().join("two-sync.larch");
    // SAFETY: the test owns the file.
    let a = unsafe { Options::new().map_size(64 * KIB).open(&path) }.unwrap();
    // SAFETY: as above.
    let b = unsafe { Options::new().map_size(64 * KIB).open(&path) }.unwrap();
    let mut round = 0;
    let err = loop {
        match scattered(&a, round) {
            Ok(()) => round += 1,
            Err(e) => break e,
        }
        assert!(round < 10_000, "never full");
    };
    assert!(matches!(err, Error::MapFull { .. }), "{err:?}");
    let len = std::fs::metadata(&path).unwrap().len();
    println!("{round} rounds, file {len} bytes, error {err}");
    assert_eq!(len % 4096, 0);
    // Both handles read the last commit; `b` is not poisoned either.
    let ra = a.begin_read().unwrap();
    let rb = b.begin_read().unwrap();
    assert_eq!(ra.id(), rb.id());
    drop((ra, rb));
    a.check().unwrap();
    std::fs::remove_file(&ballast).unwrap();
    scattered(&b, round).unwrap();
    scattered(&a, round + 1).unwrap();
    drop((a, b));
    let db = common::open(&path, 4096);
    db.check().unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table("s").unwrap();
    let k = (round + 1).wrapping_mul(40_503).to_be_bytes();
    assert!(
        t.get(&k)
            .unwrap()
            .is_some_and(|v| v == value(round + 1, 300))
    );
}
