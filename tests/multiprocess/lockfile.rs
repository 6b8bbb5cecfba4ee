//! The lock file under damage: deleted, truncated or overwritten while no
//! process has the database open, it is rebuilt by the next opener and the
//! data is intact; damaged while a handle has the database open, a new
//! opener gets an error instead of rebuilding it under that handle's readers;
//! and one that others could write but not the database is refused.

use std::fs::{OpenOptions, Permissions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use larch::testing::report;
use larch::{Database, Error, Options};

use crate::common::{Rng, TestDb, spawn_lock};
use crate::digest;

/// Header words of the lock file (its layout: src/format/registry.rs).
const MAGIC: u64 = 0;
const VERSION: u64 = 8;
const INO: u64 = 24;
const SLOTS: u64 = 40;
const USED: u64 = 48;
const HEADER: u64 = 128;

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

fn try_open(path: &Path) -> larch::Result<Database> {
    // SAFETY: the test owns the file.
    unsafe { Options::new().map_size(1 << 30).open(path) }
}

fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn read_word(path: &Path, offset: u64) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let at = offset as usize;
    u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// A database with some tables' worth of data; returns its digest.
fn fill(db: &Database) -> (u64, u64) {
    let mut rng = Rng(7);
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..500u32 {
            let len = 20 + rng.below(200) as usize;
            t.insert(&i.to_be_bytes(), &rng.bytes(len)).unwrap();
        }
    }
    w.commit().unwrap();
    content(db)
}

fn content(db: &Database) -> (u64, u64) {
    digest(&db.begin_read().unwrap().open_table("t").unwrap()).unwrap()
}

/// One commit that changes nothing of table "t".
fn touch(db: &Database, n: u64) {
    let w = db.begin_write().unwrap();
    w.open_table("other")
        .unwrap()
        .insert(&n.to_be_bytes(), &[n as u8; 300])
        .unwrap();
    w.commit().unwrap();
}

type Damage = (&'static str, Box<dyn Fn(&Path)>);

fn damages() -> Vec<Damage> {
    let word = |offset: u64, value: u64| -> Box<dyn Fn(&Path)> {
        Box::new(move |p: &Path| poke(p, offset, &value.to_ne_bytes()))
    };
    vec![
        ("deleted", Box::new(|p| std::fs::remove_file(p).unwrap())),
        ("truncated to 0", Box::new(|p| truncate(p, 0))),
        ("truncated to 5 bytes", Box::new(|p| truncate(p, 5))),
        ("truncated inside the slots", Box::new(|p| truncate(p, 200))),
        (
            "garbage of its length",
            Box::new(|p| {
                let len = std::fs::metadata(p).unwrap().len() as usize;
                std::fs::write(p, Rng(3).bytes(len)).unwrap();
            }),
        ),
        (
            "100 bytes of garbage",
            Box::new(|p| std::fs::write(p, Rng(4).bytes(100)).unwrap()),
        ),
        ("magic overwritten", word(MAGIC, 0x4141_4141)),
        ("another version", word(VERSION, 99)),
        ("another file's inode", word(INO, 12345)),
        ("absurd slot count", word(SLOTS, u64::MAX)),
        ("more slots used than held", word(USED, 1 << 40)),
        ("a stale reader in slot 0", word(HEADER, 2)),
    ]
}

fn truncate(p: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn a_lock_file_damaged_while_the_database_is_closed_is_rebuilt() {
    let mut t = TestDb::new(crate::PAGE);
    let mut expected = fill(t.db());
    let (path, lock) = (t.path(), lock_path(&t.path()));
    let mut rebuilt = 0;
    for (n, (what, damage)) in damages().into_iter().enumerate() {
        // No child being spawned holds a copy of this process's descriptors
        // (and with them the open lock) while the database is closed here.
        let _alone = spawn_lock();
        t.db = None;
        damage(&lock);
        let db = try_open(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(content(&db), expected, "{what}");
        db.check().unwrap();
        assert_eq!(read_word(&lock, MAGIC), u64::from_le_bytes(*b"larchreg"));
        assert!(db.readers().unwrap().is_empty(), "{what}");
        assert_eq!(db.live_readers(), 0, "{what}");
        // It works as a registry: a second handle joins, writes, and its
        // reader pins against the first handle's writer.
        let other = try_open(&path).unwrap_or_else(|e| panic!("{what}: second open: {e}"));
        let pinned = other.begin_read().unwrap();
        touch(&db, n as u64);
        assert_eq!(db.readers().unwrap().len(), 1, "{what}");
        expected = fill(&other);
        assert_eq!(content(&db), expected, "{what}");
        drop(pinned);
        drop(other);
        t.db = Some(db);
        rebuilt += 1;
    }
    report(&format!(
        "RELIABILITY suite=multiprocess part=lockfile_closed damages={rebuilt} rebuilt={rebuilt}"
    ));
}

/// Something at the lock file's name that is not a file: an error, not a
/// panic, and the database opens once it is gone.
#[test]
fn a_lock_file_that_is_not_a_file_is_an_error() {
    let mut t = TestDb::new(crate::PAGE);
    let expected = fill(t.db());
    let (path, lock) = (t.path(), lock_path(&t.path()));
    let _alone = spawn_lock();
    t.db = None;
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    let err = try_open(&path).err().expect("a directory as the lock file");
    eprintln!("a directory as the lock file: {err}");
    std::fs::remove_dir(&lock).unwrap();
    let elsewhere = t.dir.path().join("elsewhere");
    std::fs::write(&elsewhere, [0u8; 4096]).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
    let err = try_open(&path)
        .err()
        .expect("a symbolic link as the lock file");
    eprintln!("a symbolic link as the lock file: {err}");
    assert_eq!(std::fs::read(&elsewhere).unwrap(), [0u8; 4096]);
    std::fs::remove_file(&lock).unwrap();
    let db = try_open(&path).unwrap();
    assert_eq!(content(&db), expected);
}

#[test]
fn a_lock_file_damaged_while_open_is_refused_not_rebuilt() {
    let t = TestDb::new(crate::PAGE);
    let a = t.db();
    let expected = fill(a);
    let (path, lock) = (t.path(), lock_path(&t.path()));
    // A reader of the first handle: a rebuilt lock file would forget it, and
    // the next writer would reuse its pages.
    let pinned = a.begin_read().unwrap();
    let slots = read_word(&lock, SLOTS);
    let cases: [(&str, u64, u64); 6] = [
        ("magic overwritten", MAGIC, 0x4141_4141),
        ("another version", VERSION, 99),
        ("another file's inode", INO, 12345),
        ("absurd slot count", SLOTS, u64::MAX),
        ("slot count past the file", SLOTS, 1 << 20),
        ("more slots used than held", USED, slots + 1),
    ];
    let mut refused = 0;
    for (what, offset, value) in cases {
        let old = read_word(&lock, offset);
        poke(&lock, offset, &value.to_ne_bytes());
        match try_open(&path) {
            Err(Error::LockFile(reason)) => {
                eprintln!("{what}: {reason}");
                refused += 1;
            }
            Err(e) => panic!("{what}: {e:?}, not Error::LockFile"),
            Ok(_) => panic!("{what}: a damaged lock file was used"),
        }
        // The open handle goes on, or reports an error; it does not panic.
        let _ = a.readers();
        let _ = a.live_readers();
        let _ = a.begin_read().map(|r| r.id());
        poke(&lock, offset, &old.to_ne_bytes());
    }

    // Deleted while open: a new opener cannot share the old one, and says so.
    std::fs::remove_file(&lock).unwrap();
    let err = try_open(&path).err().expect("a replaced lock file");
    assert!(matches!(err, Error::AlreadyOpen), "{err:?}");
    // The handle that has the database open is not disturbed.
    touch(a, 1);
    assert!(matches!(try_open(&path), Err(Error::AlreadyOpen)));

    // Nothing was rebuilt under the pinned reader: churn by a writer of the
    // first handle leaves its snapshot whole.
    for n in 0..200 {
        touch(a, n);
    }
    assert_eq!(digest(&pinned.open_table("t").unwrap()).unwrap(), expected);
    pinned.check().unwrap();
    drop(pinned);
    a.check().unwrap();
    report(&format!(
        "RELIABILITY suite=multiprocess part=lockfile_open damages={} refused={refused}",
        cases.len()
    ));
}

#[test]
fn a_lock_file_others_may_write_but_not_the_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perm.larch");
    let lock = lock_path(&path);
    let chmod = |p: &Path, mode: u32| std::fs::set_permissions(p, Permissions::from_mode(mode));
    {
        let _alone = spawn_lock();
        fill(&try_open(&path).unwrap());
    }
    let _alone = spawn_lock();
    chmod(&path, 0o644).unwrap();
    let mut refused = 0;
    for (lock_mode, read_only) in [
        (0o666, false),
        (0o666, true),
        (0o664, false),
        (0o646, false),
    ] {
        chmod(&lock, lock_mode).unwrap();
        // SAFETY: the test owns the file.
        let r = unsafe { Options::new().read_only(read_only).open(&path) };
        match r {
            Err(Error::LockFile(reason)) => {
                eprintln!("{lock_mode:o} beside 644: {reason}");
                refused += 1;
            }
            Err(e) => panic!("lock file {lock_mode:o}: {e:?}, not Error::LockFile"),
            Ok(_) => panic!("lock file {lock_mode:o} beside a 644 database accepted"),
        }
    }
    // What the database's mode allows is accepted.
    chmod(&lock, 0o644).unwrap();
    try_open(&path).unwrap();
    chmod(&path, 0o666).unwrap();
    chmod(&lock, 0o666).unwrap();
    try_open(&path).unwrap();
    // A new lock file takes the database's mode, whatever the umask.
    for mode in [0o640, 0o600, 0o664] {
        chmod(&path, mode).unwrap();
        std::fs::remove_file(&lock).unwrap();
        let db = try_open(&path).unwrap();
        let got = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode);
        drop(db);
    }
    report(&format!(
        "RELIABILITY suite=multiprocess part=lockfile_permissions refused={refused}"
    ));
}
