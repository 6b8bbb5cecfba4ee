//! `Options::read_only`: an open that never creates, initialises or writes
//! the file, and shares it with other read-only opens.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use larch::{Database, Error, Options};

fn open_ro(path: &Path) -> larch::Result<Database> {
    // SAFETY: the test owns the file.
    unsafe { Options::new().read_only(true).map_size(1 << 30).open(path) }
}

fn open_rw(path: &Path) -> larch::Result<Database> {
    // SAFETY: the test owns the file.
    unsafe { Options::new().map_size(1 << 30).open(path) }
}

/// A database of two tables and a value big enough for an overflow run.
fn build(path: &Path) {
    let db = open_rw(path).unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..500u32 {
            t.insert(&i.to_be_bytes(), &[i as u8; 40]).unwrap();
        }
        t.insert(b"big", &[9u8; 20_000]).unwrap();
    }
    w.open_table("empty").unwrap();
    w.commit().unwrap();
}

/// Sets the file's modification time well into the past, so that any write
/// afterwards shows.
fn age(path: &Path) -> SystemTime {
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
    past
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn a_read_only_open_reads_and_leaves_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.larch");
    build(&path);
    let before = std::fs::read(&path).unwrap();
    let past = age(&path);

    let db = open_ro(&path).unwrap();
    assert_eq!(db.last_txn_id(), 1);
    {
        let r = db.begin_read().unwrap();
        assert_eq!(r.list_tables().unwrap(), ["empty", "t"]);
        let t = r.open_table("t").unwrap();
        assert_eq!(t.len(), 501);
        assert_eq!(t.get(&7u32.to_be_bytes()).unwrap(), Some(&[7u8; 40][..]));
        assert_eq!(t.get(b"big").unwrap(), Some(&[9u8; 20_000][..]));
        assert_eq!(t.iter().unwrap().count(), 501);
        assert!(matches!(
            r.open_table("missing"),
            Err(Error::TableNotFound(_))
        ));
    }
    assert!(db.check().unwrap().is_clean());
    assert_eq!(db.stat().unwrap().tables, 2);
    drop(db);

    assert_eq!(mtime(&path), past);
    assert!(std::fs::read(&path).unwrap() == before, "the bytes changed");
}

#[test]
fn a_read_only_open_refuses_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.larch");
    build(&path);
    let past = age(&path);
    let db = open_ro(&path).unwrap();
    let err = db.begin_write().err().expect("begin_write must fail");
    assert!(matches!(err, Error::ReadOnly), "{err:?}");
    assert!(err.to_string().contains("read-only"), "{err}");
    // Reads go on after the refusal.
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("t").unwrap().len(), 501);
    drop(r);
    drop(db);
    assert_eq!(mtime(&path), past);
}

#[test]
fn a_read_only_open_never_creates_or_initialises_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.larch");
    match open_ro(&missing) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}"),
        other => panic!("expected NotFound, got {:?}", other.err()),
    }
    assert!(!missing.exists());

    // Empty, and all zeros up to two of the largest pages: files a writable
    // open would initialise as new databases.
    for len in [0usize, 100, 8192, 128 << 10] {
        let path = dir.path().join(format!("zeros{len}"));
        std::fs::write(&path, vec![0u8; len]).unwrap();
        let past = age(&path);
        let err = open_ro(&path).err().expect("a blank file must be refused");
        assert!(
            matches!(err, Error::Corrupted { page: 0, .. }),
            "len {len}: {err:?}"
        );
        assert!(
            err.to_string().contains("not a larch database"),
            "len {len}: {err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; len], "len {len}");
        assert_eq!(mtime(&path), past, "len {len}");
    }
}

/// Read-only handles share the file with a writable one: they see its
/// commits as they happen, their snapshots hold, and they never write.
#[test]
fn read_only_opens_share_the_file_with_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.larch");
    build(&path);
    let w = open_rw(&path).unwrap();
    let a = open_ro(&path).unwrap();
    let b = open_ro(&path).unwrap();
    assert_eq!(a.last_txn_id(), w.last_txn_id());
    assert!(matches!(a.begin_write(), Err(Error::ReadOnly)));
    assert!(matches!(a.try_begin_write(), Err(Error::ReadOnly)));
    let before = a.begin_read().unwrap();
    let len = before.open_table("t").unwrap().len();
    for i in 0..20u64 {
        let txn = w.begin_write().unwrap();
        txn.open_table("t")
            .unwrap()
            .insert(&(10_000 + i).to_be_bytes(), &[7; 900])
            .unwrap();
        txn.commit().unwrap();
    }
    // The old snapshot is intact; a new one sees every commit.
    assert_eq!(before.open_table("t").unwrap().len(), len);
    before.check().unwrap();
    assert_eq!(
        b.begin_read().unwrap().open_table("t").unwrap().len(),
        len + 20
    );
    assert_eq!(b.last_txn_id(), w.last_txn_id());
    drop(before);
    drop((a, b));
    drop(w);
    open_rw(&path).unwrap().check().unwrap();
}

#[test]
fn a_read_only_open_needs_no_write_permission() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.larch");
    build(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let db = open_ro(&path).unwrap();
    assert_eq!(db.begin_read().unwrap().open_table("t").unwrap().len(), 501);
}
