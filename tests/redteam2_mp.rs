//! Second hostile review of multi-process access: attacks on the fixes of
//! the first one (the committed id that went back, `writing`, the data
//! file's `DATA_REGISTERED` lock, `watch`, lock files a failed open leaves
//! or removes). Three tests failed before their fixes; the others are
//! attacks that held up, kept as regression tests.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use larch::Error;
use larch::testing::{FileStorage, Storage};

use common::hostile::{get, open_at, opts, put};

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-lock");
    PathBuf::from(s)
}

/// Writes header word `at` of the live lock file beside `path`.
fn poke_header(path: &Path, at: u64, value: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(lock_path(path))
        .unwrap();
    f.write_all_at(&value.to_ne_bytes(), at).unwrap();
}

/// A gate a storage hook waits at: `entered` once a thread is inside,
/// released by `open`.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool)>, // (entered, open)
    cv: Condvar,
}

impl Gate {
    fn enter_and_wait(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        self.cv.notify_all();
        while !s.1 {
            s = self.cv.wait(s).unwrap();
        }
    }
    fn wait_entered(&self) {
        let mut s = self.state.lock().unwrap();
        while !s.0 {
            s = self.cv.wait(s).unwrap();
        }
    }
    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

/// Its first sync waits at the gate, then fails with EIO: a first opener
/// whose recovery (the sync at open) fails after a while.
struct FailFirstSync(FileStorage, Arc<Gate>, AtomicBool);

impl Storage for FailFirstSync {
    fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write_at(offset, data)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> std::io::Result<()> {
        if !self.2.swap(true, Ordering::SeqCst) {
            self.1.enter_and_wait();
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        self.0.sync()
    }
}

// ---------------------------------------------------------------------------
// 1. A failed first opener removes the lock file another opener already uses.

/// Opener X creates the lock file, becomes the first opener and fails its
/// recovery (here the sync at open fails; a read-only open of a blank file,
/// a `verify(true)` open of a damaged commit, any error would do). Opener Y
/// opened the same lock file meanwhile and waits for its open lock. X's
/// `First::abandon` removes the name (it "created" the file), then Y gets
/// the open lock, is first and builds its registry in the unlinked file.
/// From then on every other open of the database creates a new lock file,
/// is first, finds the data file's `flock` shared by Y and fails with
/// `AlreadyOpen`, until Y closes: one failed open locks every process out.
#[test]
fn a_failed_first_opener_does_not_lock_out_everyone_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.larch");
    put(&open_at(&path).unwrap(), b"k", b"v");
    std::fs::remove_file(lock_path(&path)).unwrap();

    let gate = Arc::new(Gate::default());
    let x = {
        let (path, gate) = (path.clone(), gate.clone());
        std::thread::spawn(move || {
            let o = opts().storage(move |f| {
                Ok(Box::new(FailFirstSync(
                    FileStorage::new(f),
                    gate.clone(),
                    AtomicBool::new(false),
                )) as Box<dyn Storage>)
            });
            // SAFETY: the test owns the file.
            unsafe { o.open(&path) }.map(|_| ())
        })
    };
    // X holds the open lock exclusively and is inside its recovery.
    gate.wait_entered();
    let y = {
        let path = path.clone();
        std::thread::spawn(move || open_at(&path))
    };
    // Y has opened the lock file X created and waits for its open lock.
    std::thread::sleep(Duration::from_millis(300));
    gate.open();
    assert!(x.join().unwrap().is_err(), "X was to fail");
    let y = y.join().unwrap().expect("Y opens once X gave up");
    assert_eq!(get(&y, b"k").unwrap(), b"v");

    // Any other handle, in this process or another, while Y is open.
    let z = open_at(&path);
    assert!(
        z.is_ok(),
        "an open beside a healthy handle failed: {:?} (lock file exists: {})",
        z.err(),
        lock_path(&path).exists()
    );
}

// ---------------------------------------------------------------------------
// 2. A crafted committed word panics the new paths.

/// A live lock file whose `committed` word is `u64::MAX` (anyone who can
/// write the lock file can store it; invariants 12 and 17: validated like
/// file contents, an error, never a panic). The joiner's snapshot under
/// which it now loads the free list (`snapshot_meta` -> `Registry::begin`,
/// `id + 1`) and the writer's new "committed went back" check in
/// `Core::adopt` (`(id + 1) % 2`, before `read_meta` bounds the id) both
/// overflow: a panic in the caller's thread, with the writer lock of every
/// process still held by the panicking handle.
#[test]
fn a_crafted_committed_word_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.larch");
    let a = open_at(&path).unwrap();
    put(&a, b"k", b"v");
    poke_header(&path, 32, u64::MAX);

    let join = std::panic::catch_unwind(|| open_at(&path).map(|_| ()));
    let write =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.begin_write().map(|_| ())));
    assert!(
        join.is_ok(),
        "a joiner's open panicked on a crafted committed word"
    );
    assert!(
        write.is_ok(),
        "begin_write panicked on a crafted committed word"
    );
    assert!(join.unwrap().is_err());
    assert!(write.unwrap().is_err());
}

// ---------------------------------------------------------------------------
// 3. A private reader trusts a lock file's open lock held for a moment.

/// Runs child test `name` with `envs` as user `nobody`, stdout piped.
fn spawn_nobody(name: &str, envs: &[(&str, &str)]) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let _spawning = common::spawn_lock();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .stdout(std::process::Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let groups = [65534u32];
            if libc::setgroups(1, groups.as_ptr()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// The lines a child printed after the `RT2:` marker.
fn marked(child: &mut std::process::Child) -> Vec<String> {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    std::io::BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.rfind("RT2:").map(|at| l[at + 4..].to_string()))
        .collect()
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "RT2:{line}").unwrap();
    out.flush().unwrap();
}

/// A directory every test user can enter (tempdirs are 0700).
fn open_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The child: opens `LARCH_RT2_PRIV` read-only again and again for a second
/// and says how many opens succeeded and how many were refused.
#[test]
fn child_private_opens() {
    let Ok(path) = std::env::var("LARCH_RT2_PRIV") else {
        return;
    };
    let (mut opened, mut refused, mut other) = (0, 0, 0);
    let end = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < end {
        // SAFETY: the test owns the file.
        match unsafe { opts().read_only(true).open(&path) } {
            Ok(db) => {
                opened += 1;
                drop(db);
            }
            Err(Error::AlreadyOpen) => refused += 1,
            Err(_) => other += 1,
        }
    }
    say(&format!("{opened} {refused} {other}"));
}

/// The database is open (and written) through a hard link `db2`, so its
/// registry is `db2-lock`; `db-lock` is left over from an earlier open by
/// the name `db`. A user who cannot write `db-lock` opens `db` read-only:
/// `DATA_REGISTERED` is held, so it must find a live registry in `db-lock`
/// or fail with `AlreadyOpen` (DESIGN.md, "Read-only without the lock
/// file"). `registry::published` takes "some description holds byte 0 of
/// `db-lock`" for "a live registry": any writable open by the name `db`
/// holds it for a moment on its way to `AlreadyOpen` (first opener, the
/// data file's `flock` refused), as does the last handle of a registry while
/// it closes. A private open landing in that moment succeeds: it reads the
/// stale header's commit and holds `db-lock`'s writer lock, which keeps no
/// writer of `db2` out, so its snapshot is published nowhere and the writer
/// reuses its pages (invariant 3).
#[test]
fn a_private_reader_needs_a_live_registry_of_its_name() {
    if !common::hostile::as_root("a_private_reader_needs_a_live_registry_of_its_name") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = open_dir();
    let path = dir.path().join("db");
    let other = dir.path().join("db2");
    put(&open_at(&path).unwrap(), b"k", b"v");
    std::fs::hard_link(&path, &other).unwrap();
    for p in [&path, &lock_path(&path)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let b = open_at(&other).unwrap();
    put(&b, b"k", b"w");

    // Writable opens by the name `db`: each is refused (`AlreadyOpen`).
    let stop = Arc::new(AtomicBool::new(false));
    let spam = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut refused = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if matches!(open_at(&path), Err(Error::AlreadyOpen)) {
                    refused += 1;
                }
            }
            refused
        })
    };
    let mut child = spawn_nobody(
        "child_private_opens",
        &[("LARCH_RT2_PRIV", path.to_str().unwrap())],
    );
    let out = marked(&mut child);
    child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    assert!(spam.join().unwrap() > 0);
    let counts: Vec<u64> = out[0].split(' ').map(|n| n.parse().unwrap()).collect();
    assert!(counts[1] > 0, "{out:?}");
    assert_eq!(
        counts[0], 0,
        "private opens that succeeded beside writers of another name (opened, refused, other): {out:?}"
    );
}

// ---------------------------------------------------------------------------
// Attacks that held up.

/// Drops every write past the two meta pages once armed: a commit whose
/// meta lands and whose pages do not (torn, set aside at open).
struct DropPages(FileStorage, Arc<AtomicBool>);

impl Storage for DropPages {
    fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if self.1.load(Ordering::SeqCst) && offset >= 2 * 4096 {
            return Ok(());
        }
        self.0.write_at(offset, data)
    }
    fn write_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> std::io::Result<()> {
        self.write_at(offset, &bufs.concat())
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.0.sync()
    }
}

/// A torn newer meta set aside by a read-only first opener (recorded as
/// `writing`), then a writer of another handle: no false "committed went
/// back", the torn slot is spoiled, and every acknowledged commit survives
/// a reopen.
#[test]
fn a_torn_commit_set_aside_by_a_read_only_first_opener_is_built_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.larch");
    let armed = Arc::new(AtomicBool::new(false));
    {
        let a = armed.clone();
        let o =
            opts().storage(move |f| Ok(Box::new(DropPages(FileStorage::new(f), a.clone())) as _));
        // SAFETY: the test owns the file.
        let db = unsafe { o.open(&path) }.unwrap();
        for i in 0..5u8 {
            put(&db, &[i], b"acked");
        }
        armed.store(true, Ordering::SeqCst);
        put(&db, b"torn", b"x");
    }
    // SAFETY: the test owns the file.
    let ro = unsafe { opts().read_only(true).open(&path) }.unwrap();
    assert!(ro.stat().unwrap().set_aside.is_some());
    let w = open_at(&path).unwrap();
    put(&w, b"after", b"y");
    put(&w, b"after2", b"z");
    assert_eq!(get(&ro, b"after").unwrap(), b"y");
    drop((ro, w));
    let db = open_at(&path).unwrap();
    for i in 0..5u8 {
        assert_eq!(get(&db, &[i]).unwrap(), b"acked");
    }
    assert_eq!(get(&db, b"after2").unwrap(), b"z");
    assert!(get(&db, b"torn").is_none());
    db.check().unwrap();
}
