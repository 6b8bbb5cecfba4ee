//! `larch readers`: the read transactions of every process that has the
//! database open, like `mdb_stat -r`, and `--clear-stale` to free the
//! registry slots of processes that died.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::target::lock_path;
use crate::{Res, fail, must_exist, open};

/// Lists the readers of the database at `path`, with the pages of the free
/// list each one's snapshot alone keeps from reuse (`pinned`). The snapshot
/// this command reads the free list from is taken after the list, so it
/// never lists itself.
pub fn run(path: &Path, clear_stale: bool) -> Res<ExitCode> {
    must_exist(path)?;
    refuse_unwritable_lock_file(path)?;
    let db = open(path, larch::Options::new().read_only(true))?;
    let mut out = BufWriter::new(io::stdout().lock());
    if clear_stale {
        let cleared = db.clear_stale_readers()?;
        writeln!(out, "{cleared} stale reader slot(s) cleared")?;
    }
    let readers = db.readers()?;
    writeln!(
        out,
        "{:>10} {:>12} {:>12} {:>12}",
        "pid", "txnid", "age", "pinned"
    )?;
    if readers.is_empty() {
        writeln!(out, "(no active readers)")?;
    }
    for r in readers {
        writeln!(
            out,
            "{:>10} {:>12} {:>11.3}s {:>12}",
            r.pid,
            r.txn_id,
            r.age.as_secs_f64(),
            r.pinned_pages
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A lock file this user cannot write would be opened without its registry:
/// the readers of other processes would go unseen, and the list would say
/// there are none. Refused instead. (A missing one is created by the open;
/// where it cannot be, no process has the database open through it.)
fn refuse_unwritable_lock_file(path: &Path) -> Res<()> {
    let lock = lock_path(path);
    match std::fs::File::options().read(true).write(true).open(&lock) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => fail(format!(
            "{}: {e}; listing the readers needs write access to the lock file",
            lock.display()
        )),
        _ => Ok(()),
    }
}
