//! Where `dump -f` writes: never over the database being read, and never a
//! half-written file under the name asked for.
//!
//! A regular file (new, or existing, or named through a symlink) is written
//! under a temporary name of its own in the same directory, created with
//! `O_EXCL`, synced, and renamed over the destination only once complete: a
//! dump that fails leaves whatever was there untouched and no temporary file
//! behind. A device or pipe (`/dev/null`, a FIFO) is written in place.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Failure, Res, fail};

/// An output being written.
pub enum Output {
    /// A regular file, under its temporary name until [`Output::finish`].
    Replace { temp: TempFile, dest: PathBuf },
    /// Something that is not a regular file, written directly.
    Direct(File),
}

/// Whether two metadata describe the same file.
pub fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

impl Output {
    /// Prepares to write `path`, refusing the file `database` describes.
    pub fn create(path: &Path, database: &Metadata) -> Res<Output> {
        let named = |e: io::Error| Failure::Message(format!("{}: {e}", path.display()));
        let link = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Output::replace(path.to_path_buf(), None);
            }
            Err(e) => return Err(named(e)),
        };
        // What the name leads to, through any symlinks.
        let target = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && link.file_type().is_symlink() => {
                return fail(format!(
                    "{}: a symlink to nothing; name the file itself",
                    path.display()
                ));
            }
            Err(e) => return Err(named(e)),
        };
        if same_file(&target, database) {
            return fail(format!(
                "{}: is the database being dumped; write the dump elsewhere",
                path.display()
            ));
        }
        if target.is_dir() {
            return fail(format!("{}: is a directory", path.display()));
        }
        if !target.is_file() {
            let file = File::options().write(true).open(path).map_err(named)?;
            return Ok(Output::Direct(file));
        }
        // Replace the file the name leads to, not a symlink on the way.
        let dest = if link.file_type().is_symlink() {
            std::fs::canonicalize(path).map_err(named)?
        } else {
            path.to_path_buf()
        };
        Output::replace(dest, Some(target.permissions()))
    }

    /// A temporary file beside `dest`, with the permissions of the file it
    /// replaces, or those of a new file.
    fn replace(dest: PathBuf, keep: Option<Permissions>) -> Res<Output> {
        let named = |e: io::Error| Failure::Message(format!("{}: {e}", dest.display()));
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let temp = TempFile::create_in(dir, dest.file_name().unwrap_or_default()).map_err(named)?;
        if let Some(perm) = keep {
            temp.file.set_permissions(perm).map_err(named)?;
        }
        Ok(Output::Replace { temp, dest })
    }

    /// Puts the finished output in place.
    pub fn finish(self) -> Res<()> {
        match self {
            Output::Replace { temp, dest } => temp
                .rename_to(&dest)
                .map_err(|e| Failure::Message(format!("{}: {e}", dest.display()))),
            Output::Direct(mut file) => Ok(file.flush()?),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Replace { temp, .. } => temp.file.write(buf),
            Output::Direct(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Replace { temp, .. } => temp.file.flush(),
            Output::Direct(file) => file.flush(),
        }
    }
}

/// A file this process created under a new name; removed when dropped
/// unless it was renamed into place.
pub struct TempFile {
    path: PathBuf,
    file: File,
    renamed: bool,
}

impl TempFile {
    /// Creates a file in `dir` under a name no other file has (`O_EXCL`):
    /// `.`, `stem`, then this process's id and a counter.
    fn create_in(dir: &Path, stem: &OsStr) -> io::Result<TempFile> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for attempt in 0..1000u32 {
            let mut name = OsString::from(".");
            name.push(stem);
            name.push(format!(
                ".{}-{nanos:x}-{attempt}.larch-dump",
                std::process::id()
            ));
            let path = dir.join(name);
            let created = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&path);
            match created {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        renamed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free temporary name beside it",
        ))
    }

    /// Syncs the file and renames it to `dest`.
    fn rename_to(mut self, dest: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.path, dest)?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
