//! Only regular files are databases. In a test binary of its own: it spawns
//! `mkfifo`, and a child forked while another test reopens a database would
//! hold that database's lock until it execs.

use larch::{Database, Options};

fn open_with(path: &std::path::Path, o: Options) -> larch::Result<Database> {
    // SAFETY: the test owns the path.
    unsafe { o.open(path) }
}

/// Only regular files are databases: a FIFO would block the open, and a
/// block device (length 0) would be initialised over what it holds.
#[test]
fn a_path_that_is_not_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    for read_only in [false, true] {
        let err = open_with(&fifo, Options::new().read_only(read_only))
            .err()
            .unwrap();
        assert!(
            matches!(&err, larch::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidInput),
            "{err:?}"
        );
    }
    let err = open_with(dir.path(), Options::new()).err().unwrap();
    assert!(matches!(err, larch::Error::Io(_)), "{err:?}");
}
