//! Growing past the map: a file outgrows its first map many times over,
//! readers that started under each map keep their snapshots and the slices
//! they were given, and the only ceilings are `Options::max_size` and the
//! disk.

mod common;

use std::path::Path;
use std::sync::mpsc::channel;

use larch::{Database, Error, Options};

const MIB: u64 = 1 << 20;

/// The value stored under key `i`: `len` bytes that say `i` everywhere.
fn value(i: u32, len: usize) -> Vec<u8> {
    i.to_le_bytes().iter().copied().cycle().take(len).collect()
}

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

/// Commits keys `from..to` with values of `len` bytes, `per_commit` a commit.
fn load(db: &Database, from: u32, to: u32, len: usize, per_commit: u32) {
    let mut i = from;
    while i < to {
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for j in i..to.min(i + per_commit) {
                t.insert(&key(j), &value(j, len)).unwrap();
            }
        }
        w.commit().unwrap();
        i = to.min(i + per_commit);
    }
}

/// Commits keys `0, 1, ...` with values of `len` bytes, one a commit, until
/// a commit fails: returns how many committed, and the error.
fn fill(db: &Database, len: usize) -> (u32, Error) {
    let mut n = 0;
    loop {
        let w = db.begin_write().unwrap();
        let r = w.open_table("t").unwrap().insert(&key(n), &value(n, len));
        match r.and_then(|_| w.commit()) {
            Ok(()) => n += 1,
            Err(e) => return (n, e),
        }
    }
}

/// Checks that the snapshot of `r` holds exactly keys `0..n`, each with its
/// value of `len` bytes.
fn verify(r: &larch::ReadTxn, n: u32, len: usize) {
    let t = r.open_table("t").unwrap();
    assert_eq!(t.len(), u64::from(n), "snapshot {}", r.id());
    for i in 0..n {
        let v = t.get(&key(i)).unwrap().expect("a key of the snapshot");
        assert!(v == value(i, len), "key {i} of snapshot {}", r.id());
    }
}

/// A database whose first map reserves 1 MiB takes a gigabyte in 512
/// commits. A reader started each time the file passed another power of
/// two keeps its snapshot: at the end each one reads every value it saw
/// again, through the map it started with.
#[test]
fn a_one_mib_map_grows_to_a_gigabyte_under_readers_of_every_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.larch");
    // SAFETY: the test owns the file.
    let db = unsafe { Options::new().map_size(MIB).open(&path) }.unwrap();
    assert_eq!(db.stat().unwrap().map_size, MIB);
    let len = 64 << 10;
    let total = 16 << 10; // 1 GiB of values
    let per_commit = 32;
    let mut readers = Vec::new();
    let mut next_size = MIB;
    let mut loaded = 0;
    while loaded < total {
        load(&db, loaded, loaded + per_commit, len, per_commit);
        loaded += per_commit;
        let size = std::fs::metadata(&path).unwrap().len();
        if size >= next_size {
            let r = db.begin_read().unwrap();
            verify(&r, loaded, len);
            readers.push((r, loaded));
            next_size = (size + 1).next_power_of_two();
        }
    }
    let stat = db.stat().unwrap();
    assert!(stat.file_size >= total as u64 * len as u64, "{stat:?}");
    assert!(stat.map_size >= stat.pages * 4096, "{stat:?}");
    assert!(readers.len() >= 10, "{} readers", readers.len());
    for (r, n) in &readers {
        verify(r, *n, len);
    }
    drop(readers);
    db.check().unwrap();
}

/// A reader thread holds a value slice while the writer grows the file
/// through ten new maps; the slice still holds the value afterwards, and
/// the old maps are given back once it ends.
#[test]
fn a_value_slice_stays_valid_across_ten_growths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slice.larch");
    // SAFETY: the test owns the file.
    let db = unsafe { Options::new().map_size(64 << 10).open(&path) }.unwrap();
    let len = 16 << 10;
    load(&db, 0, 1, len, 1);
    let first_map = db.stat().unwrap().map_size;
    let (ready_tx, ready) = channel();
    let (grown, grown_rx) = channel::<()>();
    std::thread::scope(|s| {
        let db = &db;
        let reader = s.spawn(move || {
            let r = db.begin_read().unwrap();
            let t = r.open_table("t").unwrap();
            let v = t.get(&key(0)).unwrap().unwrap();
            let address = v.as_ptr();
            ready_tx.send(()).unwrap();
            grown_rx.recv().unwrap();
            // The same bytes at the same address, through the first map.
            assert_eq!(v.as_ptr(), address);
            assert!(v == value(0, len));
            verify(&r, 1, len);
        });
        ready.recv().unwrap();
        // Each round at least doubles the pages in use, from 64 KiB to 64 MiB
        // or more: ten maps, each twice the last.
        let mut n = 1;
        for _ in 0..10 {
            let stat = db.stat().unwrap();
            let add = (stat.pages * u64::from(stat.page_size) / len as u64 + 1) as u32;
            load(db, n, n + add, len, 64);
            n += add;
        }
        let map = db.stat().unwrap().map_size;
        assert!(map >= first_map << 10, "{first_map} -> {map}");
        grown.send(()).unwrap();
        reader.join().unwrap();
        verify(&db.begin_read().unwrap(), n, len);
    });
}

/// `max_size` is a ceiling: a commit that needs more fails with `MapFull`
/// naming it, the committed state stays, and a reopen with a higher ceiling
/// goes on from there.
#[test]
fn max_size_is_a_ceiling_and_a_reopen_may_raise_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ceiling.larch");
    let opts = |max| Options::new().map_size(64 << 10).max_size(max);
    // SAFETY: the test owns the file.
    let db = unsafe { opts(4 * MIB).open(&path) }.unwrap();
    let len = 64 << 10;
    let (n, err) = fill(&db, len);
    assert!(
        matches!(err, Error::MapFull { limit, reason, .. }
            if limit == 4 * MIB && reason.contains("max_size")),
        "{err:?}"
    );
    assert!(std::fs::metadata(&path).unwrap().len() <= 4 * MIB);
    assert!(n > 40, "only {n} values fit in 4 MiB");
    verify(&db.begin_read().unwrap(), n, len);
    drop(db);
    // SAFETY: as above.
    let db = unsafe { opts(64 * MIB).open(&path) }.unwrap();
    load(&db, n, n + 100, len, 10);
    verify(&db.begin_read().unwrap(), n + 100, len);
    db.check().unwrap();
}

const CHILD: &str = "LARCH_GROWTH_CHILD";

/// The child half of `a_full_disk_is_map_full_and_the_database_stays_usable`:
/// runs only when `LARCH_GROWTH_CHILD` names the database.
#[test]
fn full_disk_child() {
    let Ok(path) = std::env::var(CHILD) else {
        return;
    };
    full_disk(Path::new(&path));
}

/// Under a file-size limit (the process's `RLIMIT_FSIZE`, as a full disk
/// would): inserts fail with `MapFull` before the commit writes anything,
/// the handle is not poisoned, and once the limit is lifted the same handle
/// commits again.
fn full_disk(path: &Path) {
    let limit = 8 * MIB;
    // SAFETY: plain system calls; the signal is ignored, not handled.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        let unlimited = lim.rlim_cur;
        lim.rlim_cur = limit as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        // SAFETY: the test owns the file.
        let db = Options::new().map_size(64 << 10).open(path).unwrap();
        let len = 64 << 10;
        let (n, err) = fill(&db, len);
        assert!(
            matches!(err, Error::MapFull { reason, .. } if reason.contains("space")),
            "{err:?}"
        );
        assert!(n > 60, "only {n} values fit in 8 MiB");
        verify(&db.begin_read().unwrap(), n, len);
        lim.rlim_cur = unlimited;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        load(&db, n, n + 200, len, 20);
        verify(&db.begin_read().unwrap(), n + 200, len);
        db.check().unwrap();
    }
    println!("full disk: done");
}

#[test]
fn a_full_disk_is_map_full_and_the_database_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.larch");
    let out = {
        let _spawning = common::spawn_lock();
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "full_disk_child", "--nocapture"])
            .env(CHILD, &path)
            .output()
            .unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("full disk: done"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The file the child left opens, whole.
    let db = common::open(&path, 4096);
    db.check().unwrap();
}

/// A full file system: the commit that needs more space fails with
/// `MapFull` when it grows the file, before it writes a page, so the handle
/// is not poisoned; once space is freed the same handle commits again.
/// (Writing into a sparse file instead would fail half-way through the
/// commit's writes, and poison the handle.) Needs the right to mount a
/// tmpfs; skipped, and says so, without it.
#[test]
fn a_full_file_system_is_map_full_before_the_commit_writes() {
    let Some(fs) = common::Tmpfs::mount(16 * MIB) else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 4 << 20]).unwrap();
    let path = fs.path().join("full.larch");
    // SAFETY: the test owns the file.
    let db = unsafe { Options::new().map_size(64 << 10).open(&path) }.unwrap();
    let len = 64 << 10;
    let (n, err) = fill(&db, len);
    assert!(
        matches!(err, Error::MapFull { reason, .. } if reason.contains("space")),
        "{err:?}"
    );
    assert!(n > 100, "only {n} values fit");
    verify(&db.begin_read().unwrap(), n, len);
    std::fs::remove_file(&ballast).unwrap();
    load(&db, n, n + 32, len, 8);
    verify(&db.begin_read().unwrap(), n + 32, len);
    db.check().unwrap();
    drop(db);
    let db = common::open(&path, 4096);
    verify(&db.begin_read().unwrap(), n + 32, len);
}
