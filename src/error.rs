//! The one error type of larch.

use std::fmt;
use std::io;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in larch.
///
/// Each variant is something a caller can act on. New variants may be added, so
/// matches need a wildcard arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The operating system reported an I/O error.
    Io(io::Error),
    /// The file holds bytes that are not a valid larch structure. `page` is the
    /// page where the problem was found (0 or 1 for the meta slots).
    Corrupted {
        /// Page id where the corruption was detected.
        page: u64,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The file cannot grow as a transaction needs: past
    /// [`Options::max_size`](crate::Options::max_size), or the disk (or the
    /// process's file-size limit, with `SIGXFSZ` ignored) is full, or the
    /// system cannot reserve the address space to map it. The committed state is intact, and the
    /// database stays usable: a transaction that needs less can commit.
    MapFull {
        /// Bytes the file would need.
        needed: u64,
        /// Bytes it could have: the ceiling, the file's length when the disk
        /// is full, or the reservation of the largest map.
        limit: u64,
        /// Which of the three it was.
        reason: &'static str,
    },
    /// A key is longer than any a database accepts (65,536 bytes).
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
        /// The longest key this database accepts.
        max: usize,
    },
    /// A value is longer than the format can store.
    ValueTooLarge {
        /// Length of the rejected value.
        len: usize,
        /// The longest value this database accepts.
        max: usize,
    },
    /// No table has this name.
    TableNotFound(String),
    /// The database is open in a way that excludes this open: by a read-only
    /// process that cannot write the lock file (no writer may open the
    /// database meanwhile), or, for a read-only open that cannot write the
    /// lock file, by a writer running now; or through a lock file that was
    /// removed or replaced while in use.
    AlreadyOpen,
    /// The lock file beside the database (`<file>-lock`) cannot be used:
    /// its permissions let someone write it who cannot write the database,
    /// it belongs to another database or version, or it is damaged while
    /// other processes have the database open.
    LockFile(&'static str),
    /// The handle was opened by another process, of which this one is a
    /// child made by `fork`: open the database again in this process.
    Forked,
    /// An earlier write or sync failed; the handle must be reopened before the
    /// next write transaction.
    Poisoned,
    /// An earlier change to this write transaction failed (see
    /// [`WriteTxn`](crate::WriteTxn) for which errors do that), so the
    /// transaction may be half-applied: every later call on it, and its commit,
    /// return this. Abort it (or drop it) and retry in a new transaction; the
    /// committed state is intact.
    TxnFailed,
    /// An option was out of range.
    InvalidOption(&'static str),
    /// A write transaction was asked of a database opened with
    /// `Options::read_only`.
    ReadOnly,
    /// A typed table was opened with other key or value types than the
    /// table was created with (or a table of the byte API was opened
    /// through the typed one). Nothing changed.
    TableTypeMismatch {
        /// The table.
        table: String,
        /// The key and value types asked for, as `(key, value)`.
        expected: String,
        /// Those the table was created with, or `bytes (untyped)`.
        found: String,
    },
    /// A savepoint of another write transaction, or one that restoring an
    /// older savepoint (or releasing it) discarded. Nothing changed.
    InvalidSavepoint,
    /// The table is open already in this write transaction, through
    /// another handle (one table, one handle at a time); or, from a call
    /// that needs the whole transaction (a savepoint, `delete_table`,
    /// `commit`), a handle of it was leaked with `mem::forget`, so its
    /// changes cannot be reached. Nothing changed.
    TableAlreadyOpen {
        /// The table.
        table: String,
    },
    /// Stored bytes do not read as the type a typed table expects (a value
    /// of the wrong length, a string that is not UTF-8), or a key cannot be
    /// written as that type (a borrowed field of a composite key holding a
    /// zero byte). The bytes are as they were written, so this is not
    /// corruption of the file: another handle wrote them with other types.
    Decode {
        /// The type that failed.
        type_name: String,
        /// What was wrong.
        reason: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Corrupted { page, reason } => {
                write!(f, "database file is corrupted at page {page}: {reason}")
            }
            Error::MapFull {
                needed,
                limit,
                reason,
            } => write!(
                f,
                "database full: it needs {needed} bytes, {limit} are available ({reason})"
            ),
            Error::KeyTooLarge { len, max } => {
                write!(
                    f,
                    "key of {len} bytes is longer than the limit of {max} bytes"
                )
            }
            Error::ValueTooLarge { len, max } => {
                write!(
                    f,
                    "value of {len} bytes is longer than the limit of {max} bytes"
                )
            }
            Error::TableNotFound(name) => write!(f, "no table named {name:?}"),
            Error::AlreadyOpen => write!(
                f,
                "the database file is already open in a way that excludes this open \
                 (a read-only process that cannot write the lock file, a writer beside \
                 such a process, or a lock file replaced while in use)"
            ),
            Error::LockFile(reason) => write!(f, "lock file: {reason}"),
            Error::Forked => write!(
                f,
                "this database handle belongs to the parent of this forked process; \
                 open the database again here"
            ),
            Error::Poisoned => write!(
                f,
                "an earlier write or sync failed, so the handle refuses further writes; \
                 drop the Database and open it again"
            ),
            Error::TxnFailed => write!(
                f,
                "an earlier operation of this write transaction failed, so the transaction \
                 cannot go on or commit; abort it and retry in a new transaction"
            ),
            Error::InvalidOption(what) => write!(f, "invalid option: {what}"),
            Error::ReadOnly => write!(
                f,
                "the database was opened read-only, so it cannot be written; \
                 open it without Options::read_only to write"
            ),
            Error::TableTypeMismatch {
                table,
                expected,
                found,
            } => write!(
                f,
                "table {table:?} holds {found}, not the {expected} it was opened with"
            ),
            Error::InvalidSavepoint => write!(
                f,
                "the savepoint belongs to another transaction, or was discarded by restoring \
                 an older one or releasing it"
            ),
            Error::Decode { type_name, reason } => {
                write!(f, "bytes do not read as {type_name}: {reason}")
            }
            Error::TableAlreadyOpen { table } => write!(
                f,
                "table {table:?} is open already in this write transaction \
                 (drop its other handle first)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Shorthand for a `Corrupted` error.
pub(crate) fn corrupted<T>(page: u64, reason: &'static str) -> Result<T> {
    Err(Error::Corrupted { page, reason })
}

/// For storage layers that speak `std::io`: an I/O error is handed back as
/// it was; any other error becomes one of the kind that fits it, with the
/// larch error inside (`get_ref` and `into_inner` give it back, and
/// `downcast` turns it back into an [`Error`]).
///
/// | larch | `io::ErrorKind` |
/// |---|---|
/// | `Io(e)` | `e`'s own |
/// | `Corrupted`, `Decode` | `InvalidData` |
/// | `MapFull` | `StorageFull` |
/// | `KeyTooLarge`, `ValueTooLarge`, `InvalidOption`, `TableTypeMismatch`, `InvalidSavepoint` | `InvalidInput` |
/// | `TableNotFound` | `NotFound` |
/// | `AlreadyOpen`, `TableAlreadyOpen` | `ResourceBusy` |
/// | `ReadOnly` | `ReadOnlyFilesystem` |
/// | any other | `Other` |
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Io(_) => {
                let Error::Io(inner) = e else {
                    unreachable!("matched above")
                };
                return inner;
            }
            Error::Corrupted { .. } | Error::Decode { .. } => io::ErrorKind::InvalidData,
            Error::MapFull { .. } => io::ErrorKind::StorageFull,
            Error::KeyTooLarge { .. }
            | Error::ValueTooLarge { .. }
            | Error::InvalidOption(_)
            | Error::TableTypeMismatch { .. }
            | Error::InvalidSavepoint => io::ErrorKind::InvalidInput,
            Error::TableNotFound(_) => io::ErrorKind::NotFound,
            Error::AlreadyOpen | Error::TableAlreadyOpen { .. } => io::ErrorKind::ResourceBusy,
            Error::ReadOnly => io::ErrorKind::ReadOnlyFilesystem,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_io_keeps_the_error_and_picks_its_kind() {
        let io: io::Error = Error::Io(io::Error::from_raw_os_error(28)).into();
        assert_eq!(io.raw_os_error(), Some(28));
        let cases = [
            (
                Error::Corrupted {
                    page: 7,
                    reason: "x",
                },
                io::ErrorKind::InvalidData,
            ),
            (
                Error::MapFull {
                    needed: 2,
                    limit: 1,
                    reason: "y",
                },
                io::ErrorKind::StorageFull,
            ),
            (
                Error::KeyTooLarge { len: 2, max: 1 },
                io::ErrorKind::InvalidInput,
            ),
            (Error::TableNotFound("t".into()), io::ErrorKind::NotFound),
            (Error::ReadOnly, io::ErrorKind::ReadOnlyFilesystem),
            (Error::TxnFailed, io::ErrorKind::Other),
            (
                Error::TableAlreadyOpen { table: "t".into() },
                io::ErrorKind::ResourceBusy,
            ),
            (
                Error::TableTypeMismatch {
                    table: "t".into(),
                    expected: "(u64, str)".into(),
                    found: "(str, str)".into(),
                },
                io::ErrorKind::InvalidInput,
            ),
            (
                Error::Decode {
                    type_name: "u64".into(),
                    reason: "wrong length",
                },
                io::ErrorKind::InvalidData,
            ),
        ];
        for (e, kind) in cases {
            let text = e.to_string();
            let io: io::Error = e.into();
            assert_eq!(io.kind(), kind, "{text}");
            assert_eq!(io.to_string(), text);
            let back = io.into_inner().unwrap().downcast::<Error>().unwrap();
            assert_eq!(back.to_string(), text);
        }
    }
}
