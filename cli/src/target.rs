//! Opening a database to write to it (`put`, `del`, `load`, `bench`): the
//! files a command creates for it, removed again if the command fails, and
//! the writer lock it shares with every other process.

use std::fs::{File, Metadata};
use std::io::{self, IsTerminal};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use larch::{Database, Options, WriteTxn};

use crate::output::same_file;
use crate::{Res, fail, must_exist, open};

/// Opens a database that must already exist, to write to it. The file may
/// come from anywhere, so open checks it whole first (`Options::verify`):
/// a crafted free list must not send the writer over live pages.
pub fn open_write(path: &Path) -> Res<Database> {
    must_exist(path)?;
    open(path, Options::new().verify(true))
}

/// A database opened to be written, with the files this command created for
/// it. Dropping it, which is on any failure unless [`Target::keep`] was
/// called, closes the database and then removes what the command created.
pub struct Target {
    /// Declared first: it is closed before `created` removes its files.
    pub db: Database,
    created: Option<NewFile>,
}

impl Target {
    /// Whether the database file did not exist (or was empty) before.
    pub fn is_new(&self) -> bool {
        self.created.is_some()
    }

    /// Closes the database and keeps the files: the command succeeded.
    pub fn keep(self) {
        let Target { db, created } = self;
        drop(db);
        if let Some(mut created) = created {
            created.kept = true;
        }
    }
}

/// Opens a database, creating it if the file does not exist.
pub fn open_or_create(path: &Path) -> Res<Target> {
    let new = match File::options().write(true).create_new(true).open(path) {
        Ok(file) => Some(NewFile::new(path, file.metadata()?, false)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // A device or a FIFO is no database (and opening a FIFO blocks).
            if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
                return fail(format!("{}: not a regular file", path.display()));
            }
            // A symlink to nowhere: opening it would create its target.
            if std::fs::metadata(path).is_err() {
                return fail(format!(
                    "{}: a symlink to a file that does not exist; name the file itself",
                    path.display()
                ));
            }
            // An empty file is initialised as a new database by the open:
            // on failure it goes back to empty, as it was.
            match File::open(path).and_then(|f| f.metadata()) {
                Ok(m) if m.is_file() && m.len() == 0 => Some(NewFile::new(path, m, true)),
                _ => None,
            }
        }
        Err(e) => return fail(format!("{}: {e}", path.display())),
    };
    // On failure `new` is dropped here and removes what it created.
    let db = open(path, Options::new().verify(true))?;
    Ok(Target { db, created: new })
}

/// Starts the write transaction, waiting while another process holds the
/// writer lock, or, with `no_wait`, failing at once.
pub fn begin_write(db: &Database, path: &Path, no_wait: bool) -> Res<WriteTxn> {
    if let Some(txn) = db.try_begin_write()? {
        return Ok(txn);
    }
    if no_wait {
        return fail(format!(
            "{}: another process is writing this database; not waiting (--no-wait)",
            path.display()
        ));
    }
    if io::stderr().is_terminal() {
        eprintln!(
            "larch: {}: another process is writing this database; waiting for it",
            path.display()
        );
    }
    Ok(db.begin_write()?)
}

/// The lock file larch keeps beside the database at `path`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

/// A database file this command created, or found empty, and the lock file
/// it created beside it: when dropped, unless kept, a file it created is
/// removed and one it found empty is emptied again.
struct NewFile {
    path: PathBuf,
    file: Metadata,
    /// The file existed (empty) before this command.
    existed: bool,
    /// The lock file, if this command created it.
    lock: Option<Metadata>,
    kept: bool,
}

impl NewFile {
    fn new(path: &Path, file: Metadata, existed: bool) -> NewFile {
        let lock = create_lock_file(&lock_path(path), &file);
        NewFile {
            path: path.to_path_buf(),
            file,
            existed,
            lock,
            kept: false,
        }
    }
}

/// Creates the lock file for a database this command is about to create, as
/// larch's open would (the data file's mode exactly, its owner where this
/// process may give it away), so that a failure can remove exactly the file
/// this command created. larch's open builds an empty lock file as one whose
/// builder died. (`create_new` creates the file itself, never through a
/// symlink.) `None` when there is one already: that one is not ours.
fn create_lock_file(lock: &Path, data: &Metadata) -> Option<Metadata> {
    let mode = data.mode() & 0o666;
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(lock)
        .ok()?;
    // Failures here are larch's open's to report: it checks the file.
    let _ = file.set_permissions(std::fs::Permissions::from_mode(mode));
    if let Ok(m) = file.metadata()
        && (m.uid() != data.uid() || m.gid() != data.gid())
    {
        let _ = std::os::unix::fs::fchown(&file, Some(data.uid()), Some(data.gid()));
    }
    file.metadata().ok()
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // The lock file first: an open that comes between the two removals
        // then finds no lock file of a database that is going away.
        if let Some(lock) = &self.lock {
            let path = lock_path(&self.path);
            if std::fs::symlink_metadata(&path).is_ok_and(|now| same_file(&now, lock)) {
                let _ = std::fs::remove_file(&path);
            }
        }
        // Only if the name still leads to the file this command started with
        // (a file found empty may be reached through a symlink).
        let now = if self.existed {
            std::fs::metadata(&self.path)
        } else {
            std::fs::symlink_metadata(&self.path)
        };
        if let Ok(now) = now
            && same_file(&now, &self.file)
        {
            if self.existed {
                let _ = File::options()
                    .write(true)
                    .open(&self.path)
                    .and_then(|f| f.set_len(0));
            } else {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}
