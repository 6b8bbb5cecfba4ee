#![allow(dead_code)]

use std::path::{Path, PathBuf};

use larch::{Database, Options};
use tempfile::TempDir;

pub mod crash_images;
pub mod free_pages;
pub mod full_disk;
pub mod heap_image;
pub mod sized;

/// Held while a test spawns a child process, and while a test reopens a
/// database. A child forked by another test's thread holds a copy of every
/// descriptor, and with it the file lock, until it execs (`spawn` returns
/// once it has): a reopen just then would find the file still locked.
static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A command that runs test `name` of this test binary alone, with `envs`,
/// its stdin and stdout piped: a child process of a multi-process test.
/// Spawn it under `spawn_lock`.
pub fn test_command(name: &str, envs: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// `len` bytes that differ per seed (a value's contents, per key and
/// version).
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A database in a fresh temporary directory.
pub struct TestDb {
    pub dir: TempDir,
    pub db: Option<Database>,
    options: Options,
}

impl TestDb {
    pub fn new(page_size: u32) -> TestDb {
        TestDb::with_options(small_map(page_size))
    }

    /// A database opened (and reopened) with `options`.
    pub fn with_options(options: Options) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TestDb {
            dir,
            db: None,
            options,
        };
        t.reopen();
        t
    }

    /// The options of the next reopen.
    pub fn set_options(&mut self, options: Options) {
        self.options = options;
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("test.larch")
    }

    pub fn db(&self) -> &Database {
        self.db.as_ref().unwrap()
    }

    pub fn reopen(&mut self) {
        let _no_spawn = spawn_lock();
        self.db = None;
        // SAFETY: the test owns the file and nothing else touches it.
        self.db = Some(unsafe { self.options.open(self.path()) }.unwrap());
    }

    pub fn file_size(&self) -> u64 {
        std::fs::metadata(self.path()).unwrap().len()
    }
}

pub fn open(path: &Path, page_size: u32) -> Database {
    // SAFETY: the test owns the file and nothing else touches it.
    unsafe { small_map(page_size).open(path) }.unwrap()
}

/// Options with `page_size` and a first map of 16 pages: every test that
/// writes more grows the file past its maps, and so runs through remaps.
pub fn small_map(page_size: u32) -> Options {
    Options::new()
        .page_size(page_size)
        .map_size(16 * u64::from(page_size))
}

#[allow(unused_imports)]
pub use larch::testing::Rng;

/// A key for a failure message: its length and its last bytes (long keys
/// are too long to print and share their first thousands of bytes).
pub fn show_key(k: &[u8]) -> String {
    format!(
        "{} bytes ..{:02x?}",
        k.len(),
        &k[k.len().saturating_sub(6)..]
    )
}

/// Shuffles `v` in place (Fisher-Yates).
/// Whether a range with these bounds holds no key (its start past its
/// end): a `BTreeMap` panics on such a range, larch gives nothing.
pub fn inverted(start: std::ops::Bound<&[u8]>, end: std::ops::Bound<&[u8]>) -> bool {
    use std::ops::Bound;
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}

pub fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// The keys of a range, owned, in its order.
pub fn keys_of(r: larch::Range<'_>) -> Vec<Vec<u8>> {
    r.map(|e| e.unwrap().0.to_vec()).collect()
}

/// Collects a range into owned pairs.
pub fn collect(r: larch::Range<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    r.map(|e| {
        let (k, v) = e.unwrap();
        (k.to_vec(), v.to_vec())
    })
    .collect()
}

/// A tmpfs mounted on a fresh directory for one test (a small file system
/// to fill), unmounted when dropped.
pub struct Tmpfs(TempDir);

impl Tmpfs {
    /// A tmpfs of `bytes`, or `None` where this process may not mount one.
    pub fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// Helpers of the hostile reviews' tests: one table "t", 4 KiB pages.
pub mod hostile {
    use std::path::Path;

    use larch::{Database, Options};

    pub fn opts() -> Options {
        Options::new().page_size(4096).map_size(1 << 30)
    }

    pub fn open_at(path: &Path) -> larch::Result<Database> {
        // SAFETY: the test owns the file; only larch handles touch it.
        unsafe { opts().open(path) }
    }

    pub fn put(db: &Database, key: &[u8], value: &[u8]) {
        let w = db.begin_write().unwrap();
        w.open_table("t").unwrap().insert(key, value).unwrap();
        w.commit().unwrap();
    }

    /// Whether the tests run as root, which the tests that run children as
    /// other users need; says so on standard error when not.
    pub fn as_root(test: &str) -> bool {
        // SAFETY: `geteuid` has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            eprintln!("{test}: skipped: needs root to run children as other users");
        }
        root
    }

    pub fn get(db: &Database, key: &[u8]) -> Option<Vec<u8>> {
        let r = db.begin_read().unwrap();
        let t = r.open_table("t").ok()?;
        t.get(key).unwrap().map(<[u8]>::to_vec)
    }
}

/// The pages the meta in slot `slot` seals: `(page, pages)` for each entry of
/// its seal list (meta layout in DESIGN.md).
pub fn sealed_pages(path: &Path, page_size: u64, slot: u64) -> Vec<(u64, u64)> {
    let image = std::fs::read(path).unwrap();
    let at = (slot * page_size) as usize;
    let le = |from: usize, len: usize| {
        let mut b = [0u8; 8];
        b[..len].copy_from_slice(&image[at + from..at + from + len]);
        u64::from_le_bytes(b)
    };
    (0..le(76, 4) as usize)
        .map(|i| (le(128 + 16 * i, 8), le(136 + 16 * i, 4)))
        .collect()
}

/// Every item of `it`, taken from the front or the back as `rng` picks, in
/// the order the iterator holds them: a double-ended iterator whose ends
/// meet wrong (an item twice, or one skipped) gives another list. It must
/// stay finished from both ends once done.
pub fn from_both_ends<I: DoubleEndedIterator>(mut it: I, rng: &mut Rng) -> Vec<I::Item> {
    let (mut front, mut back) = (Vec::new(), Vec::new());
    loop {
        let (step, to) = if rng.below(2) == 0 {
            (it.next(), &mut front)
        } else {
            (it.next_back(), &mut back)
        };
        match step {
            Some(item) => to.push(item),
            None => break,
        }
    }
    assert!(it.next().is_none() && it.next_back().is_none());
    back.reverse();
    front.extend(back);
    front
}
