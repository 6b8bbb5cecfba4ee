//! `larch`: inspect, check, dump, load, copy and benchmark larch databases.
//!
//! Keys and values on the command line are UTF-8 text, or hex with `--hex`.
//! `dump` and `load` speak the text format of LMDB's `mdb_dump`/`mdb_load`.
//!
//! The database may be open in other processes meanwhile: the commands that
//! read take a snapshot beside their writers, and those that write wait for
//! the writer lock (or, with `--no-wait`, fail at once).

mod bench;
mod dump;
mod output;
mod readers;
mod target;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use larch::{Database, Options, ReadTxn, TableKind};

use dump::Format;
use output::Output;
use target::{begin_write, open_or_create, open_write};

#[derive(Parser)]
#[command(
    name = "larch",
    version,
    about = "The larch embedded key-value store: tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print figures of a database, or of one table.
    Stat {
        db: PathBuf,
        /// Only this table (its tree's pages by kind).
        #[arg(long)]
        table: Option<String>,
    },
    /// Walk the whole database and verify every page; exit 1 on any problem.
    Check { db: PathBuf },
    /// Write tables in the text format of mdb_dump (all tables by default).
    Dump {
        db: PathBuf,
        /// Only this table.
        #[arg(long, conflicts_with = "all")]
        table: Option<String>,
        /// Every table, one section each (the default).
        #[arg(long, short = 'a')]
        all: bool,
        /// Printable characters as they are, other bytes escaped.
        #[arg(long, short = 'p')]
        print: bool,
        /// Write here instead of to standard output.
        #[arg(long, short = 'f')]
        output: Option<PathBuf>,
    },
    /// Read a dump (mdb_dump's text format) into the database, in one
    /// transaction: on any error, or an empty dump, nothing is written (and a
    /// database file this command created is removed).
    Load {
        db: PathBuf,
        /// The table for a dump that names none (LMDB's unnamed database);
        /// with a single section, the table to load it into whatever it names.
        #[arg(long)]
        table: Option<String>,
        /// The dump (default: standard input).
        file: Option<PathBuf>,
        /// Fail at once if another process is writing (default: wait).
        #[arg(long)]
        no_wait: bool,
    },
    /// Write a consistent copy of the database while others may write to it.
    Copy {
        db: PathBuf,
        dest: PathBuf,
        /// Rebuild every table into full pages: the copy holds live data only.
        #[arg(long)]
        compact: bool,
    },
    /// Print the value stored under a key.
    Get {
        db: PathBuf,
        table: String,
        key: String,
        /// Key and value in hex.
        #[arg(long)]
        hex: bool,
    },
    /// Store a value under a key (one synchronous transaction).
    Put {
        db: PathBuf,
        table: String,
        key: String,
        value: String,
        /// Key and value in hex.
        #[arg(long)]
        hex: bool,
        /// Fail at once if another process is writing (default: wait).
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove a key (one synchronous transaction); exit 1 if it was absent.
    Del {
        db: PathBuf,
        table: String,
        key: String,
        /// Key in hex.
        #[arg(long)]
        hex: bool,
        /// Fail at once if another process is writing (default: wait).
        #[arg(long)]
        no_wait: bool,
    },
    /// Print entries in key order, one `key<TAB>value` line each.
    Scan {
        db: PathBuf,
        table: String,
        /// First key (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Last key (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// At most this many entries.
        #[arg(long)]
        limit: Option<u64>,
        /// Keys and values in hex.
        #[arg(long)]
        hex: bool,
    },
    /// List the read transactions of every process that has the database
    /// open (pid, the transaction whose snapshot it reads, age), like
    /// `mdb_stat -r`.
    Readers {
        db: PathBuf,
        /// First free the slots of processes that died, and say how many.
        #[arg(long)]
        clear_stale: bool,
    },
    /// Move the pages near the end of the file to free pages nearer its
    /// start and give the freed tail back to the file system, while other
    /// processes keep reading and writing. Prints the bytes returned. A
    /// reader that is alive keeps the pages its snapshot reaches (see
    /// `larch readers`).
    Compact { db: PathBuf },
    /// Run a self-contained workload and print the throughput of each phase.
    Bench {
        /// The database file to create (it must not exist; default: one in a
        /// temporary directory, removed afterwards).
        db: Option<PathBuf>,
        /// Number of key-value pairs (16-byte keys, 100-byte values).
        #[arg(long, default_value_t = 1_000_000)]
        n: u64,
    },
}

/// Why a command stopped.
#[derive(Debug)]
enum Failure {
    /// What to report: one line, without the program name.
    Message(String),
    /// Whoever read standard output closed it (`larch dump db | head -1`):
    /// the command ends quietly and successfully, as `mdb_dump` does.
    OutputClosed,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Message(m) => f.write_str(m),
            Failure::OutputClosed => f.write_str("the output was closed"),
        }
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Message(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Failure {
        Failure::Message(s.to_owned())
    }
}

impl From<larch::Error> for Failure {
    fn from(e: larch::Error) -> Failure {
        Failure::Message(e.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::OutputClosed
        } else {
            Failure::Message(e.to_string())
        }
    }
}

type Res<T> = Result<T, Failure>;

fn fail<T>(message: String) -> Res<T> {
    Err(Failure::Message(message))
}

fn main() -> ExitCode {
    // Before anything is printed, even a usage error: a standard stream that
    // is a larch database (`larch check db 2<>db`) must not be written.
    match databases_among_outputs() {
        [_, true] => return ExitCode::from(2),
        [true, false] => {
            eprintln!("larch: standard output is a larch database; refusing to write to it");
            return ExitCode::from(2);
        }
        [false, false] => {}
    }
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(Failure::OutputClosed) => ExitCode::SUCCESS,
        Err(Failure::Message(message)) => {
            eprintln!("larch: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Res<ExitCode> {
    match command {
        Command::Stat { db, table } => stat(&db, table.as_deref()),
        Command::Check { db } => check(&db),
        Command::Dump {
            db,
            table,
            all: _,
            print,
            output,
        } => {
            let format = if print { Format::Print } else { Format::Hex };
            dump_cmd(&db, table.as_deref(), format, output.as_deref())
        }
        Command::Load {
            db,
            table,
            file,
            no_wait,
        } => load_cmd(&db, table.as_deref(), file.as_deref(), no_wait),
        Command::Copy { db, dest, compact } => {
            // Anything under the name, a symlink to nowhere included: the
            // copy would replace the link by renaming over it.
            if let Ok(m) = dest.symlink_metadata() {
                let what = if m.file_type().is_symlink() {
                    " (a symlink)"
                } else {
                    ""
                };
                return fail(format!(
                    "{}: exists{what}; copy writes a new file",
                    dest.display()
                ));
            }
            let database = open_read(&db)?;
            let txn = database.begin_read()?;
            txn.copy_to(&dest, compact)
                .map_err(|e| format!("{}: {e}", dest.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get {
            db,
            table,
            key,
            hex,
        } => {
            let database = open_read(&db)?;
            let key = arg_bytes(&key, hex)?;
            let txn = database.begin_read()?;
            let t = txn.open_table(&table)?;
            match t.get(&key)? {
                Some(value) => {
                    let mut out = io::stdout().lock();
                    let mut line = if hex {
                        hex_string(value).into_bytes()
                    } else {
                        value.to_vec()
                    };
                    line.push(b'\n');
                    out.write_all(&line)?;
                    Ok(ExitCode::SUCCESS)
                }
                None => Err("key not found".into()),
            }
        }
        Command::Put {
            db,
            table,
            key,
            value,
            hex,
            no_wait,
        } => {
            let (key, value) = (arg_bytes(&key, hex)?, arg_bytes(&value, hex)?);
            let target = open_or_create(&db)?;
            let txn = begin_write(&target.db, &db, no_wait)?;
            txn.open_table(&table)
                .and_then(|mut t| t.insert(&key, &value))?;
            txn.commit()?;
            target.keep();
            Ok(ExitCode::SUCCESS)
        }
        Command::Del {
            db,
            table,
            key,
            hex,
            no_wait,
        } => {
            let key = arg_bytes(&key, hex)?;
            let database = open_write(&db)?;
            let txn = begin_write(&database, &db, no_wait)?;
            // A write transaction's open_table creates a missing table:
            // look it up in the snapshot the transaction starts from.
            database.begin_read()?.open_table(&table)?;
            let removed = txn.open_table(&table).and_then(|mut t| t.remove(&key))?;
            if !removed {
                // Nothing changed: nothing to commit.
                return Err("key not found".into());
            }
            txn.commit()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan {
            db,
            table,
            from,
            to,
            limit,
            hex,
        } => scan(&db, &table, from, to, limit, hex),
        Command::Readers { db, clear_stale } => readers::run(&db, clear_stale),
        Command::Compact { db } => {
            let database = open_write(&db)?;
            let before = std::fs::metadata(&db)?.len();
            let returned = database.compact()?;
            let after = std::fs::metadata(&db)?.len();
            let mut out = io::stdout().lock();
            writeln!(out, "{returned} bytes returned ({before} -> {after} bytes)")?;
            let held = database.readers()?;
            if !held.is_empty() {
                let pinned: u64 = held.iter().map(|r| r.pinned_pages).sum();
                writeln!(
                    out,
                    "{} live reader(s) hold {pinned} page(s) back: compact again once they end",
                    held.len()
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { db, n } => bench::run(db.as_deref(), n),
    }
}

/// Opens a database that must already exist, for reading only: never
/// initialises or writes the database file (open creates the lock file
/// beside it if it is missing). No writer runs in this process; writers of
/// other processes may, and never reuse a page a read transaction of this
/// one holds, so each command reads one consistent snapshot.
fn open_read(path: &Path) -> Res<Database> {
    must_exist(path)?;
    open(path, Options::new().read_only(true))
}

/// Refuses a path that is missing, not a file, or empty (which a writable
/// open would initialise as a new database).
pub(crate) fn must_exist(path: &Path) -> Res<()> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() || meta.len() == 0 {
        return fail(format!(
            "{}: not a larch database (empty or not a file)",
            path.display()
        ));
    }
    Ok(())
}

/// Whether standard output, and standard error, is a file that starts like a
/// larch database. Nothing may be written to such a stream; when it is
/// standard error, nothing can even be said.
fn databases_among_outputs() -> [bool; 2] {
    use std::os::fd::AsFd;
    let streams = [
        io::stdout().as_fd().try_clone_to_owned(),
        io::stderr().as_fd().try_clone_to_owned(),
    ];
    let mut found = [false; 2];
    for (i, stream) in streams.into_iter().enumerate() {
        found[i] = starts_like_a_database(i + 1, stream);
    }
    found
}

/// Whether the stream `fd` (a copy of it in `stream`) is a regular file that
/// starts with larch's magic.
fn starts_like_a_database(fd: usize, stream: io::Result<std::os::fd::OwnedFd>) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(stream) = stream.map(File::from) else {
        return false;
    };
    if !stream.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    // Read through a descriptor of our own: the stream may be write-only.
    let mut head = [0u8; 8];
    let read = File::open(format!("/proc/self/fd/{fd}"))
        .and_then(|f| f.read_exact_at(&mut head, 0))
        .or_else(|_| stream.read_exact_at(&mut head, 0));
    read.is_ok() && head == *b"larch\0db"
}

/// Refuses a database that is this process's standard output or error
/// (`larch dump db 1<>db`): writing there would overwrite the mapped file.
fn refuse_output_onto(path: &Path) -> Res<()> {
    use std::os::fd::AsFd;
    let Ok(database) = std::fs::metadata(path) else {
        return Ok(());
    };
    let streams = [
        io::stdout().as_fd().try_clone_to_owned(),
        io::stderr().as_fd().try_clone_to_owned(),
    ];
    for stream in streams.into_iter().flatten() {
        if let Ok(m) = File::from(stream).metadata()
            && output::same_file(&m, &database)
        {
            return fail(format!(
                "{}: the output of this command is the database itself",
                path.display()
            ));
        }
    }
    Ok(())
}

pub(crate) fn open(path: &Path, options: Options) -> Res<Database> {
    refuse_output_onto(path)?;
    // SAFETY: other larch handles, in this process or others, share the file
    // through its lock file: they write only pages no snapshot of this handle
    // can reach, and never truncate it. This process touches it only through
    // this handle, and the tool asks users not to modify the file by other
    // means while it runs.
    unsafe { options.open(path) }.map_err(|e| match e {
        larch::Error::AlreadyOpen => Failure::Message(format!(
            "{}: the database is open in a process that excludes this one \
             (a reader that cannot write the lock file, or a writer beside one); \
             try again once it has closed it",
            path.display()
        )),
        e => Failure::Message(format!("{}: {e}", path.display())),
    })
}

/// A key or value given on the command line.
fn arg_bytes(text: &str, hex: bool) -> Res<Vec<u8>> {
    if hex {
        dump::decode(text.as_bytes(), Format::Hex)
            .map_err(|e| Failure::Message(format!("{text:?}: {e}")))
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

fn hex_string(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    dump::encode(&mut out, bytes, Format::Hex);
    String::from_utf8(out).expect("hex is ASCII")
}

/// Text for a scan line: UTF-8 as it is, with backslashes, control characters
/// and bytes that are not UTF-8 escaped as in the printable dump format.
fn display_bytes(bytes: &[u8], hex: bool) -> String {
    if hex {
        return hex_string(bytes);
    }
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\{b:02x}"));
        }
    }
    out
}

fn stat(path: &Path, table: Option<&str>) -> Res<ExitCode> {
    let db = open_read(path)?;
    // One snapshot for every figure: other processes may commit meanwhile.
    let txn = db.begin_read()?;
    let mut s = txn.stat()?;
    // The count includes this command's own transaction.
    s.live_readers = s.live_readers.saturating_sub(1);
    let table_line = |name: &str| -> Res<String> {
        let (kind, st) = match txn.table_kind(name)? {
            Some(TableKind::Multimap) => {
                let m = txn.open_multimap(name)?;
                (format!(" (multimap, {} pairs)", m.len()?), m.stat()?)
            }
            Some(TableKind::TypedMultimap { key, value }) => {
                let m = txn.open_untyped_multimap(name)?;
                let pairs = m.len()?;
                (
                    format!(" (multimap {key} -> {value}, {pairs} pairs)"),
                    m.stat()?,
                )
            }
            Some(TableKind::Typed { key, value }) => (
                format!(" ({key} -> {value})"),
                txn.open_table(name)?.stat()?,
            ),
            _ => (String::new(), txn.open_table(name)?.stat()?),
        };
        Ok(format!(
            "{name:?}{kind}: {} entries, depth {}, {} branch, {} leaf, {} overflow pages, \
             {} packed values ({} bytes)",
            st.entries,
            st.depth,
            st.branch_pages,
            st.leaf_pages,
            st.overflow_pages,
            st.packed_values,
            st.packed_bytes
        ))
    };
    let mut out = BufWriter::new(io::stdout().lock());
    if let Some(name) = table {
        writeln!(out, "{}", table_line(name)?)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "page size: {}", s.page_size)?;
    writeln!(out, "last transaction: {}", s.txn_id)?;
    writeln!(
        out,
        "pages: {} (file {} bytes, mapped {} bytes)",
        s.pages, s.file_size, s.map_size
    )?;
    writeln!(
        out,
        "free pages: {} ({} pending), free-list pages: {}",
        s.free_pages, s.pending_free_pages, s.freelist_pages
    )?;
    writeln!(
        out,
        "value heap: {} segments, {} pages, {} bytes of packed values",
        s.segments, s.segment_pages, s.packed_bytes
    )?;
    writeln!(out, "live readers: {}", s.live_readers)?;
    if let Some(aside) = s.set_aside {
        writeln!(out, "{}", set_aside_line(&aside))?;
    }
    writeln!(out, "tables: {}", s.tables)?;
    for name in txn.list_tables()? {
        writeln!(out, "  {}", table_line(&name)?)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Says which meta open set aside and why: the newest commit was torn or
/// damaged, and the state shown is the one before it.
fn set_aside_line(aside: &larch::SetAside) -> String {
    match aside.txn_id {
        Some(txn) => format!(
            "set aside: transaction {txn} in meta slot {} ({}); showing the commit before it",
            aside.slot, aside.reason
        ),
        None => format!(
            "set aside: meta slot {} holds no valid meta ({})",
            aside.slot, aside.reason
        ),
    }
}

fn check(path: &Path) -> Res<ExitCode> {
    let db = open_read(path)?;
    let r = db.check_report()?;
    let mut text = format!(
        "transaction {}: {} pages, {} table(s), {} entries, depth {}\n",
        r.txn_id, r.pages, r.tables, r.entries, r.max_depth
    );
    if let Some(aside) = db.stat()?.set_aside {
        text += &set_aside_line(&aside);
        text += "\n";
    }
    text += &format!(
        "{} branch, {} leaf, {} overflow, {} free-list pages; {} free ({} pending), {} leaked\n",
        r.branch_pages,
        r.leaf_pages,
        r.overflow_pages,
        r.freelist_pages,
        r.free_pages,
        r.pending_free_pages,
        r.leaked_pages
    );
    text += &format!(
        "value heap: {} segments, {} pages, {} bytes of packed values\n",
        r.segments, r.segment_pages, r.packed_bytes
    );
    for e in &r.errors {
        text += &format!("problem: {e}\n");
    }
    let code = if r.is_clean() {
        text += "ok\n";
        ExitCode::SUCCESS
    } else {
        text += &format!("{} problem(s) found\n", r.errors.len());
        ExitCode::FAILURE
    };
    // The verdict is the exit status, whoever reads the text.
    match io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(code),
    }
}

fn dump_table(
    out: &mut impl Write,
    txn: &ReadTxn,
    name: &str,
    format: Format,
    mapsize: u64,
) -> Res<()> {
    if txn.table_kind(name)?.is_some_and(|k| k.is_multimap()) {
        // Each pair on its own, the key repeated, marked `dupsort=1`:
        // `mdb_load` makes it a dupsort database, `larch load` a multimap.
        // A typed multimap's pairs are their encoded bytes (its types are
        // not dumped, as a typed table's are not).
        let m = txn.open_untyped_multimap(name)?;
        dump::write_header(out, format, Some(name), mapsize, true)?;
        for pair in m.iter()? {
            let (k, v) = pair?;
            dump::write_item(out, &k, format)?;
            dump::write_item(out, v, format)?;
        }
        return Ok(dump::write_footer(out)?);
    }
    let t = txn.open_table(name)?;
    dump::write_header(out, format, Some(name), mapsize, false)?;
    for entry in t.iter()? {
        let (k, v) = entry?;
        dump::write_item(out, k, format)?;
        dump::write_item(out, v, format)?;
    }
    Ok(dump::write_footer(out)?)
}

fn dump_cmd(
    path: &Path,
    table: Option<&str>,
    format: Format,
    output: Option<&Path>,
) -> Res<ExitCode> {
    let db = open_read(path)?;
    let file = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let txn = db.begin_read()?;
    // A map size for mdb_load: room for the data twice over.
    let mapsize = (2 * file.len()).max(1 << 20).next_multiple_of(1 << 20);
    let names = match table {
        Some(t) => vec![t.to_owned()],
        None => txn.list_tables()?,
    };
    // Whatever would stop the dump halfway stops it before it writes.
    for name in &names {
        if name.contains(['\n', '\r']) {
            return fail(format!(
                "table {name:?}: a name with a line break cannot be written in the dump format"
            ));
        }
        if txn.table_kind(name)?.is_none() {
            return Err(larch::Error::TableNotFound(name.clone()).into());
        }
    }
    let dump_all = |out: &mut dyn Write| -> Res<()> {
        let mut out = BufWriter::new(out);
        for name in &names {
            dump_table(&mut out, &txn, name, format, mapsize)?;
        }
        Ok(out.flush()?)
    };
    match output {
        Some(p) => {
            let mut out = Output::create(p, &file)?;
            dump_all(&mut out)?;
            out.finish()?;
        }
        None => dump_all(&mut io::stdout().lock())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn load_cmd(path: &Path, table: Option<&str>, file: Option<&Path>, no_wait: bool) -> Res<ExitCode> {
    let input: Box<dyn Read> = match file {
        Some(p) => Box::new(File::open(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Box::new(io::stdin().lock()),
    };
    if let Some(t) = table
        && t.contains(['\n', '\r'])
    {
        return fail(format!(
            "--table {t:?}: a name with a line break cannot be written in the dump format"
        ));
    }
    let target = open_or_create(path)?;
    // Dropping the transaction on any error writes nothing.
    let txn = begin_write(&target.db, path, no_wait)?;
    let mut reader = dump::Reader::new(BufReader::new(input));
    let (mut sections, mut entries) = (0u64, 0u64);
    let nothing = |e: String| Failure::Message(format!("{e}; nothing was loaded"));
    while let Some(h) = reader.next_section().map_err(|e| nothing(e.to_string()))? {
        let name = match (table, &h.database) {
            (Some(_), _) if sections > 0 => {
                return Err(nothing(format!(
                    "line {}: --table names one table, but the dump has several sections",
                    h.line
                )));
            }
            (Some(t), _) => t.to_owned(),
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(nothing(format!(
                    "line {}: the section names no table (no database= line); pass --table",
                    h.line
                )));
            }
        };
        sections += 1;
        let name_error = |e: larch::Error| {
            // The name is a key of the catalog, but to the user a table name.
            let e = match e {
                larch::Error::KeyTooLarge { len, max } => {
                    format!("table name of {len} bytes is longer than the limit of {max} bytes")
                }
                e => e.to_string(),
            };
            match (table, h.database_line) {
                (Some(_), _) => nothing(format!("--table: {e}")),
                (None, Some(line)) => nothing(format!("line {line}: {e}")),
                (None, None) => nothing(e),
            }
        };
        let pair_error = |e: larch::Error, line: usize| match e {
            // The value is on the line read last, its key on the one before.
            larch::Error::KeyTooLarge { .. } => nothing(format!("line {}: {e}", line - 1)),
            larch::Error::ValueTooLarge { .. } => nothing(format!("line {line}: {e}")),
            e => nothing(e.to_string()),
        };
        if h.duplicates {
            // A dupsort section: a multimap, each pair added.
            let mut m = txn.open_multimap(&name).map_err(name_error)?;
            while let Some((k, v)) = reader.next_pair().map_err(|e| nothing(e.to_string()))? {
                m.insert(&k, &v).map_err(|e| match e {
                    // A pair is one key of the tree: the key and the value
                    // together, so the value's line (read last) overflows.
                    larch::Error::KeyTooLarge { max, .. } => nothing(format!(
                        "line {}: a value of {} bytes is too long for its {}-byte key: a \
                         multimap pair holds {max} bytes with its framing",
                        reader.line(),
                        v.len(),
                        k.len()
                    )),
                    e => pair_error(e, reader.line()),
                })?;
                entries += 1;
            }
            continue;
        }
        let mut t = txn.open_table(&name).map_err(name_error)?;
        while let Some((k, v)) = reader.next_pair().map_err(|e| nothing(e.to_string()))? {
            t.insert(&k, &v).map_err(|e| pair_error(e, reader.line()))?;
            entries += 1;
        }
    }
    if sections == 0 {
        // Most likely a failed command before the pipe, not a wish to load
        // nothing.
        return Err(nothing("the dump is empty (no section)".into()));
    }
    txn.commit()?;
    target.keep();
    eprintln!("loaded {entries} entries in {sections} section(s)");
    Ok(ExitCode::SUCCESS)
}

fn scan(
    path: &Path,
    table: &str,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u64>,
    hex: bool,
) -> Res<ExitCode> {
    use std::ops::Bound;
    let db = open_read(path)?;
    let from = from.map(|k| arg_bytes(&k, hex)).transpose()?;
    let to = to.map(|k| arg_bytes(&k, hex)).transpose()?;
    let txn = db.begin_read()?;
    let t = txn.open_table(table)?;
    let start = from.as_deref().map_or(Bound::Unbounded, Bound::Included);
    let end = to.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let mut out = BufWriter::new(io::stdout().lock());
    let range = t.range((start, end))?;
    for entry in range.take(limit.map_or(usize::MAX, |l| l as usize)) {
        let (k, v) = entry?;
        writeln!(out, "{}\t{}", display_bytes(k, hex), display_bytes(v, hex))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
