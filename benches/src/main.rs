//! larch side by side with LMDB (heed), redb, sled and RocksDB: the same
//! workloads on the same data with the same durability, in one run, each
//! engine in a fresh temporary directory. Prints a Markdown table, writes the
//! raw figures as JSON and the comparison as an SVG plot.
//!
//! Every engine runs in a child process of its own (this binary again, with
//! `--child`), so none inherits the heap, the page cache state or the resident
//! set another left behind: in one shared process the first engine ran its
//! bulk load 15-20% slower than it did in second place. An engine that fails
//! shows "failed" in its column; the others' results are still reported, and
//! the run exits non-zero.
//!
//! `reads_2_processes` starts this binary once more per reader, with
//! `--reader` (see `processes.rs`); it runs for the engines whose database
//! several processes can open at once (larch and LMDB), and shows "n/a" for
//! the others.
//!
//! `churn_long_reader` measures what a long-lived reader costs in space: on a
//! database of its own, always 200,000 pairs whatever `--n`, 20 rounds each
//! rewrite a random 10% of the keys, while a snapshot taken after the load is
//! held through the first 10 (see `churn`). It reports the time of the rounds
//! and the files' size at the end (`file_after_churn`).
//!
//! `value_sizes` measures the space and time values of each size cost: for
//! each size of `SWEEP`, on a database of its own, 20,000 pairs of 24-byte
//! keys and values of that size are written in transactions of 1,000 and
//! read back in random order (see `sweep`). It reports the growth of the
//! files, and the time of the writes and of the reads, per size.
//!
//! `long_keys` measures keys longer than a node holds: on a database of its
//! own, 20,000 pairs of 2,000-byte random keys (a text primary key) and
//! 100-byte values, written in transactions of 1,000 and read back in random
//! order. It reports the time of both and the growth of the files
//! (`file_long_keys`); LMDB, whose keys stop at 511 bytes, is skipped.
//!
//! `compact_after_delete` measures how much of the space of deleted data an
//! engine gives back: on a database of its own, always 200,000 pairs of 24-byte
//! keys and 5,000-byte values (about 1 GiB) whatever `--n`, loaded in
//! transactions of 2,000 pairs, 90% of the keys, chosen at random, are deleted
//! in transactions of 2,000, and the engine compacts (see `compact`). It
//! reports the compaction's time and the files' size after the deletes and
//! after the compaction (`file_after_delete`, `file_after_compact`).

mod engines;
mod plot;
mod processes;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use engines::{Compaction, ENGINES, Engine, KNOWN};

#[derive(Parser, Debug)]
#[command(about = "Benchmark larch against LMDB, redb, sled and RocksDB")]
struct Args {
    /// Number of key-value pairs loaded (24-byte keys, 150-byte values);
    /// churn_long_reader and compact_after_delete always load 200,000 (the
    /// latter with 5,000-byte values), whatever --n.
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    /// Engines to run, comma-separated (default: all built in; RocksDB only
    /// with the `rocksdb` feature, which is on by default).
    #[arg(long, value_delimiter = ',', default_values_t = ENGINES.iter().map(|s| s.to_string()))]
    engines: Vec<String>,
    /// Workloads to run, comma-separated (default: all); an unknown name is
    /// refused.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Directory for results.json and comparison.svg.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Directory for the databases (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run the one engine named by `--engines` in this process and report its
    /// figures on stdout, one per line (used by the parent run).
    #[arg(long, hide = true)]
    child: bool,
    /// Read the keys given on stdin from the database of the one engine named
    /// by `--engines` in directory `--db`, once released (used by
    /// `reads_2_processes`).
    #[arg(long, hide = true, requires = "db")]
    reader: bool,
    /// The database directory of a `--reader`.
    #[arg(long, hide = true)]
    db: Option<PathBuf>,
}

/// The timed workloads, in table order.
const WORKLOADS: &[&str] = &[
    "bulk_load_random",
    "bulk_load_sorted",
    "individual_writes",
    "eventual_writes",
    "batch_writes",
    "len",
    "random_reads",
    "range_reads",
    "reads_1_thread",
    "reads_2_threads",
    "reads_4_threads",
    "reads_2_processes",
    "remove_half",
    "writes_after_remove",
    "churn_long_reader",
    "compact_after_delete",
    "value_sizes",
    "long_keys",
];

/// The workloads with a database of their own, not the data of `--n`.
const OWN_DATABASE: &[&str] = &[
    "churn_long_reader",
    "compact_after_delete",
    "value_sizes",
    "long_keys",
];

/// One value size of `value_sizes`, with the names of its figures.
struct Sweep {
    bytes: usize,
    write: &'static str,
    read: &'static str,
    file: &'static str,
}

/// The sizes of `value_sizes`, smallest first.
const SWEEP: &[Sweep] = &[
    sweep(
        100,
        "values_100_write",
        "values_100_read",
        "values_100_file",
    ),
    sweep(
        1100,
        "values_1100_write",
        "values_1100_read",
        "values_1100_file",
    ),
    sweep(
        2100,
        "values_2100_write",
        "values_2100_read",
        "values_2100_file",
    ),
    sweep(
        5000,
        "values_5000_write",
        "values_5000_read",
        "values_5000_file",
    ),
    sweep(
        16384,
        "values_16384_write",
        "values_16384_read",
        "values_16384_file",
    ),
    sweep(
        102400,
        "values_102400_write",
        "values_102400_read",
        "values_102400_file",
    ),
];

const fn sweep(bytes: usize, write: &'static str, read: &'static str, file: &'static str) -> Sweep {
    Sweep {
        bytes,
        write,
        read,
        file,
    }
}

/// Pairs of each size in `value_sizes`.
const SWEEP_PAIRS: usize = 20_000;
/// Pairs per write transaction in `value_sizes`.
const SWEEP_BATCH: usize = 1_000;
/// Key bytes in `value_sizes`.
const SWEEP_KEY: usize = 24;

/// Sizes measured, in bytes.
const SIZES: &[&str] = &[
    "file_after_load",
    "file_after_remove",
    "peak_rss",
    "file_after_churn",
    "file_after_delete",
    "file_after_compact",
    "file_long_keys",
];

/// Bytes of each key of `long_keys`: a text primary key of a SQL table,
/// longer than LMDB's limit of 511 bytes and than a quarter of a 4 KiB page.
const LONG_KEY: usize = 2_000;
/// Bytes of each value of `long_keys`.
const LONG_KEY_VALUE: usize = 100;

/// Pairs in `churn_long_reader`'s database, whatever `--n`: about 30 MiB of
/// keys and values, so that what a held reader keeps shows against the data.
const CHURN_KEYS: usize = 200_000;
/// Rounds of `churn_long_reader`, each one write transaction.
const CHURN_ROUNDS: usize = 20;
/// The rounds through which the reader is held.
const CHURN_HELD: usize = 10;
/// Keys the held reader reads before it is dropped.
const CHURN_CHECKS: usize = 500;

/// Pairs in `compact_after_delete`'s database, whatever `--n`.
const COMPACT_KEYS: usize = 200_000;
/// Bytes of each of its values: with the keys, about 1 GiB in all.
const COMPACT_VALUE: usize = 5_000;
/// Pairs loaded, or keys deleted, per write transaction.
const COMPACT_BATCH: usize = 2_000;
/// Keys deleted: 90%.
const COMPACT_DELETED: usize = COMPACT_KEYS / 10 * 9;
/// Bytes of keys and values left after the deletes.
const COMPACT_LIVE: usize = (COMPACT_KEYS - COMPACT_DELETED) * (24 + COMPACT_VALUE);

/// A small deterministic random generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// `len` random bytes, eight per step: for values of many kilobytes.
    fn fill(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The data every engine gets.
struct Data {
    /// The bulk load, in random order.
    pairs: Pairs,
    /// The same, sorted.
    sorted: Pairs,
    /// 1,000 single inserts.
    singles: Pairs,
    /// 100 batches of 1,000 inserts.
    batches: Vec<Pairs>,
    /// Keys to read, in another random order.
    reads: Vec<Vec<u8>>,
    /// The checksum of each read key's value, in the same order.
    read_checksums: Vec<u64>,
    /// Range starts.
    starts: Vec<Vec<u8>>,
    /// Half the keys, to remove.
    removals: Vec<Vec<u8>>,
}

impl Data {
    fn new(n: usize) -> Data {
        let mut rng = Rng(0x1a2c4);
        let pair = |rng: &mut Rng| (rng.bytes(24), rng.bytes(150));
        let pairs: Pairs = (0..n).map(|_| pair(&mut rng)).collect();
        let singles = (0..1000).map(|_| pair(&mut rng)).collect();
        let batches = (0..100)
            .map(|_| (0..1000).map(|_| pair(&mut rng)).collect())
            .collect();
        // Each list is copied out of `pairs` in the order a workload reads it,
        // so that it lies in memory as a stream, as data read from a file
        // would: sorting or shuffling the vectors themselves would move only
        // their pointers and leave every workload chasing the harness's own
        // bytes across the heap (a cache miss per pair, up to two thirds of
        // a sorted load's time). Only index vectors are freed, so no freed
        // heap is left for an engine to reuse unseen by its peak memory.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| pairs[a].cmp(&pairs[b]));
        let sorted = order.iter().map(|&i| pairs[i].clone()).collect();
        rng.shuffle(&mut order);
        let reads: Vec<Vec<u8>> = order.iter().map(|&i| pairs[i].0.clone()).collect();
        let read_checksums = order
            .iter()
            .map(|&i| engines::checksum(&pairs[i].1))
            .collect();
        let starts = order[..n / 2].iter().map(|&i| pairs[i].0.clone()).collect();
        rng.shuffle(&mut order);
        let removals = order[..n / 2].iter().map(|&i| pairs[i].0.clone()).collect();
        Data {
            pairs,
            sorted,
            singles,
            batches,
            reads,
            read_checksums,
            starts,
            removals,
        }
    }
}

/// The data of `churn_long_reader`.
struct Churn {
    /// The load, in random order.
    load: Pairs,
    /// Each round's rewrites: a random tenth of the keys, each with a new
    /// value, in random order.
    rounds: Vec<Pairs>,
    /// Keys the held reader reads: all rewritten in the first round.
    checks: Vec<Vec<u8>>,
    /// The checksum of their values as loaded.
    check_sum: u64,
}

impl Churn {
    fn new() -> Churn {
        let mut rng = Rng(0xc4a2);
        let load: Pairs = (0..CHURN_KEYS)
            .map(|_| (rng.bytes(24), rng.bytes(150)))
            .collect();
        let mut order: Vec<usize> = (0..CHURN_KEYS).collect();
        let mut checks = Vec::new();
        // Copied in the order each round writes them, as `Data` lays its
        // lists out.
        let rounds = (0..CHURN_ROUNDS)
            .map(|round| {
                rng.shuffle(&mut order);
                let chosen = &order[..CHURN_KEYS / 10];
                if round == 0 {
                    checks = chosen[..CHURN_CHECKS].to_vec();
                }
                chosen
                    .iter()
                    .map(|&i| (load[i].0.clone(), rng.bytes(150)))
                    .collect()
            })
            .collect();
        let check_sum = checks.iter().map(|&i| engines::checksum(&load[i].1)).sum();
        let checks = checks.iter().map(|&i| load[i].0.clone()).collect();
        Churn {
            load,
            rounds,
            checks,
            check_sum,
        }
    }
}

/// `churn_long_reader` on engine `name`, in a fresh directory under `base`:
/// loads `CHURN_KEYS` pairs, takes a snapshot in another thread, then writes
/// the rounds, one synchronous transaction each. After round `CHURN_HELD`
/// the snapshot reads `CHURN_CHECKS` values, which must be those loaded (all
/// were rewritten since), and is dropped. Returns the milliseconds of the
/// rounds (the load and the reader's check outside), the bytes of the
/// engine's files once closed, and why it ran without the reader, if it did.
fn churn(name: &str, base: &Path) -> (f64, u64, Option<&'static str>) {
    let data = Churn::new();
    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    let engine = engines::open(name, dir.path());
    let e: &dyn Engine = &*engine;
    e.write(&data.load);
    let mut ms = 0.0;
    let mut round = |pairs: &Pairs| ms += timed(|| e.write(pairs)).0;
    // The reader lives in a thread of its own, as a long reader would, and
    // as LMDB wants (one read transaction per thread).
    let no_reader = std::thread::scope(|s| {
        let (taken, was_taken) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let checks = &data.checks;
        let reader = s.spawn(move || {
            let snapshot = e.snapshot();
            taken.send(snapshot.as_ref().err().copied()).unwrap();
            released.recv().unwrap();
            // Read before dropping it, so that it cannot have been dropped
            // early, and check that it still sees the load.
            snapshot.map(|snap| snap.get_all(checks))
        });
        let no_reader = was_taken.recv().expect("the reader thread");
        for pairs in &data.rounds[..CHURN_HELD] {
            round(pairs);
        }
        release.send(()).unwrap();
        if let Ok(sum) = reader.join().unwrap() {
            assert_eq!(sum, data.check_sum, "the held reader saw later writes");
        }
        no_reader
    });
    for pairs in &data.rounds[CHURN_HELD..] {
        round(pairs);
    }
    drop(engine);
    (ms, dir_size(dir.path()), no_reader)
}

/// `compact_after_delete` on engine `name`, in a fresh directory under
/// `base`: loads `COMPACT_KEYS` pairs (each transaction's values generated
/// just before it, so that the harness never holds the gigabyte), deletes
/// `COMPACT_DELETED` keys chosen at random, in random order, then compacts.
/// Returns the bytes of the engine's files after the deletes, and the
/// milliseconds of the compaction alone, the bytes after it (the copy's, for
/// an engine that compacts into a copy) and how it ran; or why the engine
/// cannot compact. Sizes are taken with the database open, as an online
/// compaction leaves it. The engine must still hold the keys not deleted
/// afterwards.
fn compact(name: &str, base: &Path) -> (u64, Result<(f64, u64, Compaction), &'static str>) {
    let mut rng = Rng(0xc0a7);
    let keys: Vec<Vec<u8>> = (0..COMPACT_KEYS).map(|_| rng.bytes(24)).collect();
    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    let spare = tempfile::tempdir_in(base).expect("temporary directory");
    let mut engine = engines::open(name, dir.path());
    for chunk in keys.chunks(COMPACT_BATCH) {
        let pairs: Pairs = chunk
            .iter()
            .map(|k| (k.clone(), rng.bytes(COMPACT_VALUE)))
            .collect();
        engine.write(&pairs);
    }
    let mut order: Vec<usize> = (0..COMPACT_KEYS).collect();
    rng.shuffle(&mut order);
    for chunk in order[..COMPACT_DELETED].chunks(COMPACT_BATCH) {
        let doomed: Vec<Vec<u8>> = chunk.iter().map(|&i| keys[i].clone()).collect();
        engine.remove(&doomed);
    }
    let after_delete = dir_size(dir.path());
    let (ms, how) = timed(|| engine.compact(spare.path()));
    let compacted = how.map(|how| {
        let bytes = match &how {
            Compaction::InPlace => dir_size(dir.path()),
            Compaction::Copy(file) => std::fs::metadata(file).expect("the compacted copy").len(),
        };
        (ms, bytes, how)
    });
    assert_eq!(
        engine.len(),
        (COMPACT_KEYS - COMPACT_DELETED) as u64,
        "pairs left after the compaction"
    );
    drop(engine);
    (after_delete, compacted)
}

/// `value_sizes` for one size on engine `name`, in a fresh directory under
/// `base`: writes `SWEEP_PAIRS` pairs of `SWEEP_KEY`-byte random keys and
/// random values of `bytes` bytes, in transactions of `SWEEP_BATCH` (each
/// transaction's values generated just before it, untimed, so that the
/// harness never holds them all), then reads every key back in another
/// random order in one read transaction, whose checksum must match the
/// values written. Returns the milliseconds of the writes and of the reads,
/// and how much the engine's files grew from the empty database, measured
/// once it is closed.
fn sweep_one(name: &str, base: &Path, bytes: usize) -> (f64, f64, u64) {
    sweep_pairs(name, base, SWEEP_KEY, bytes)
}

/// `sweep_one` with keys of `key_bytes` random bytes (`long_keys`).
fn sweep_pairs(name: &str, base: &Path, key_bytes: usize, bytes: usize) -> (f64, f64, u64) {
    let mut rng = Rng(0x5eed ^ bytes as u64 ^ (key_bytes as u64) << 32);
    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    let engine = engines::open(name, dir.path());
    let empty = dir_size(dir.path());
    let keys: Vec<Vec<u8>> = (0..SWEEP_PAIRS).map(|_| rng.bytes(key_bytes)).collect();
    let mut sums = Vec::with_capacity(SWEEP_PAIRS);
    let mut write_ms = 0.0;
    for chunk in keys.chunks(SWEEP_BATCH) {
        let pairs: Pairs = chunk.iter().map(|k| (k.clone(), rng.fill(bytes))).collect();
        sums.extend(pairs.iter().map(|(_, v)| engines::checksum(v)));
        write_ms += timed(|| engine.write(&pairs)).0;
    }
    let mut order: Vec<usize> = (0..SWEEP_PAIRS).collect();
    rng.shuffle(&mut order);
    let reads: Vec<Vec<u8>> = order.iter().map(|&i| keys[i].clone()).collect();
    let expected: u64 = sums.iter().sum();
    let (read_ms, sum) = timed(|| engine.get_all(&reads));
    assert_eq!(sum, expected, "values of {bytes} bytes read back");
    drop(engine);
    (
        write_ms,
        read_ms,
        dir_size(dir.path()).saturating_sub(empty),
    )
}

/// Total size of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Resets the peak resident set size of this process (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A field of /proc/self/status, in bytes (Linux).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Reads all of `keys` split over `threads` threads; one read transaction each.
fn parallel_reads(engine: &dyn Engine, keys: &[Vec<u8>], threads: usize) -> u64 {
    let chunk = keys.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .chunks(chunk)
            .map(|part| s.spawn(move || engine.get_all(part)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// Reads `data.reads` split as `parallel_reads` splits it over `processes`
/// reader processes of engine `name`'s database in `dir`, all at once; the
/// milliseconds from their release until the last is done.
fn process_reads(name: &str, dir: &Path, data: &Data, processes: usize) -> f64 {
    let chunk = data.reads.len().div_ceil(processes);
    let parts: Vec<&[Vec<u8>]> = data.reads.chunks(chunk).collect();
    let expected: Vec<u64> = data
        .read_checksums
        .chunks(chunk)
        .map(|c| c.iter().sum())
        .collect();
    match processes::reads(name, dir, &parts, &expected) {
        Ok(ms) => ms,
        Err(e) => panic!("reads from {processes} processes: {e}"),
    }
}

/// Figures of one engine: milliseconds per workload, bytes per size, the
/// workloads it cannot run and why, how it ran others differently; or why it
/// failed.
#[derive(Default)]
struct Figures {
    ms: BTreeMap<&'static str, f64>,
    bytes: BTreeMap<&'static str, u64>,
    skipped: BTreeMap<&'static str, String>,
    notes: BTreeMap<&'static str, String>,
    failed: Option<String>,
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_secs_f64() * 1000.0, out)
}

/// Runs every wanted workload on engine `name`, printing each figure on
/// stdout as it is measured: `start W`, `ms W VALUE`, `bytes S VALUE`,
/// `skip W REASON` for a workload the engine cannot run, or `note W TEXT`
/// for one it ran differently.
fn run_engine(name: &str, n: usize, base: &Path, wanted: &dyn Fn(&str) -> bool) {
    // The workloads on the data of `--n`, all after the random bulk load;
    // none when only workloads with databases of their own are wanted.
    if WORKLOADS
        .iter()
        .any(|w| !OWN_DATABASE.contains(w) && wanted(w))
    {
        let data = Data::new(n);
        run_suite(name, &data, base, wanted);
    }
    // After the peak RSS is taken, which it does not count.
    if wanted("churn_long_reader") {
        println!("start churn_long_reader");
        let (ms, bytes, no_reader) = churn(name, base);
        if let Some(why) = no_reader {
            println!("note churn_long_reader {why}");
        }
        println!("ms churn_long_reader {ms:.3}");
        println!("bytes file_after_churn {bytes}");
    }
    if wanted("value_sizes") {
        for size in SWEEP {
            println!("start {}", size.write);
            let (write, read, grown) = sweep_one(name, base, size.bytes);
            println!("ms {} {write:.3}", size.write);
            println!("ms {} {read:.3}", size.read);
            println!("bytes {} {grown}", size.file);
        }
    }
    if wanted("long_keys") {
        println!("start long_keys");
        if name == "lmdb" {
            println!("skip long_keys LMDB keys are at most 511 bytes");
        } else {
            let (write, read, grown) = sweep_pairs(name, base, LONG_KEY, LONG_KEY_VALUE);
            println!("ms long_keys {:.3}", write + read);
            println!("bytes file_long_keys {grown}");
        }
    }
    if wanted("compact_after_delete") {
        println!("start compact_after_delete");
        let (after_delete, compacted) = compact(name, base);
        println!("bytes file_after_delete {after_delete}");
        match compacted {
            Ok((ms, bytes, how)) => {
                if let Compaction::Copy(_) = how {
                    println!(
                        "note compact_after_delete a compacting copy to a new file, synced, \
                         not in place: file_after_compact is the copy's size, and the \
                         database's own file keeps its size"
                    );
                }
                println!("bytes file_after_compact {bytes}");
                println!("ms compact_after_delete {ms:.3}");
            }
            Err(why) => println!("skip compact_after_delete {why}"),
        }
    }
}

/// The workloads on the data of `--n`, as `run_engine` reports them.
fn run_suite(name: &str, data: &Data, base: &Path, wanted: &dyn Fn(&str) -> bool) {
    let report = |line: String| println!("{line}");
    let step = |workload: &'static str, f: &mut dyn FnMut() -> u64| {
        // The random bulk load is every later workload's data: it always
        // runs; the removals are `writes_after_remove`'s.
        let setup = workload == "bulk_load_random"
            || (workload == "remove_half" && wanted("writes_after_remove"));
        if !wanted(workload) && !setup {
            return;
        }
        report(format!("start {workload}"));
        let (ms, check) = timed(&mut *f);
        std::hint::black_box(check);
        if wanted(workload) {
            report(format!("ms {workload} {ms:.3}"));
        }
    };
    // The peak counts what the engine adds to the resident set, not the data
    // set the harness holds.
    reset_peak_rss();
    let baseline = status_bytes("VmRSS:");
    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    let engine = engines::open(name, dir.path());
    let e: &dyn Engine = &*engine;
    step("bulk_load_random", &mut || {
        e.write(&data.pairs);
        0
    });
    report(format!("bytes file_after_load {}", dir_size(dir.path())));
    step("individual_writes", &mut || {
        for p in &data.singles {
            e.write(std::slice::from_ref(p));
        }
        0
    });
    // The same small transactions without a sync of their own, made durable
    // every 100 commits and at the end.
    step("eventual_writes", &mut || {
        for (i, p) in data.singles.iter().enumerate() {
            e.write_unsynced(std::slice::from_ref(p));
            if i % 100 == 99 {
                e.sync();
            }
        }
        e.sync();
        0
    });
    step("batch_writes", &mut || {
        for b in &data.batches {
            e.write(b);
        }
        0
    });
    step("len", &mut || e.len());
    step("random_reads", &mut || {
        e.get_all(&data.reads) + e.get_all(&data.reads)
    });
    step("range_reads", &mut || {
        e.ranges(&data.starts, 10) + e.ranges(&data.starts, 10)
    });
    step("reads_1_thread", &mut || parallel_reads(e, &data.reads, 1));
    step("reads_2_threads", &mut || parallel_reads(e, &data.reads, 2));
    step("reads_4_threads", &mut || parallel_reads(e, &data.reads, 4));
    // Timed from the readers' release, not around the whole step. This
    // process keeps its handle open meanwhile, with no write transaction.
    if wanted("reads_2_processes") {
        report("start reads_2_processes".into());
        match engines::single_process(name) {
            None => {
                let ms = process_reads(name, dir.path(), data, 2);
                report(format!("ms reads_2_processes {ms:.3}"));
            }
            Some(why) => report(format!("skip reads_2_processes {why}")),
        }
    }
    step("remove_half", &mut || {
        e.remove(&data.removals);
        0
    });
    // The small transactions of `individual_writes` again, now that half the
    // file is free: what an engine's record of its free pages costs each
    // commit when it is large.
    step("writes_after_remove", &mut || {
        for p in &data.singles {
            e.write(std::slice::from_ref(p));
        }
        0
    });
    drop(engine);
    report(format!("bytes file_after_remove {}", dir_size(dir.path())));
    drop(dir);

    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    let engine = engines::open(name, dir.path());
    step("bulk_load_sorted", &mut || {
        engine.write(&data.sorted);
        0
    });
    drop(engine);
    let peak = status_bytes("VmHWM:").saturating_sub(baseline);
    report(format!("bytes peak_rss {peak}"));
}

/// Runs engine `name` in a child process and collects its figures; a child
/// that cannot start, reports nonsense or fails gives figures that say so.
fn run_child(name: &str, args: &Args, bar: &ProgressBar) -> Figures {
    let mut fig = Figures::default();
    if let Err(e) = collect_child(name, args, bar, &mut fig) {
        fig.failed = Some(e);
    }
    fig
}

fn collect_child(
    name: &str,
    args: &Args,
    bar: &ProgressBar,
    fig: &mut Figures,
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("path of this binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["--child", "--n", &args.n.to_string(), "--engines", name]);
    if !args.workloads.is_empty() {
        cmd.args(["--workloads", &args.workloads.join(",")]);
    }
    if let Some(dir) = &args.dir {
        cmd.arg("--dir").arg(dir);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the engine's process: {e}"))?;
    let out = child.stdout.take().expect("piped stdout");
    // Read to the end whatever happens, so the child never blocks on a full
    // pipe; keep the first problem.
    let mut problem = None;
    for line in BufReader::new(out).lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                problem.get_or_insert(format!("read the engine's report: {e}"));
                break;
            }
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let swept = SWEEP.iter().flat_map(|s| [s.write, s.read, s.file]);
        let known = |w: &str| {
            (WORKLOADS.iter().chain(SIZES).copied().chain(swept.clone())).find(|k| *k == w)
        };
        match fields.as_slice() {
            ["start", w] => bar.set_message(format!("{name}: {w}")),
            ["ms", w, v] => match (known(w), v.parse()) {
                (Some(w), Ok(v)) => {
                    fig.ms.insert(w, v);
                    bar.inc(1);
                }
                _ => {
                    problem.get_or_insert(format!("unexpected report line: {line}"));
                }
            },
            ["skip", w, why @ ..] => match known(w) {
                Some(w) => {
                    fig.skipped.insert(w, why.join(" "));
                    bar.inc(1);
                }
                None => {
                    problem.get_or_insert(format!("unexpected report line: {line}"));
                }
            },
            ["note", w, text @ ..] => match known(w) {
                Some(w) => {
                    fig.notes.insert(w, text.join(" "));
                }
                None => {
                    problem.get_or_insert(format!("unexpected report line: {line}"));
                }
            },
            ["bytes", w, v] => match (known(w), v.parse()) {
                (Some(w), Ok(v)) => {
                    fig.bytes.insert(w, v);
                }
                _ => {
                    problem.get_or_insert(format!("unexpected report line: {line}"));
                }
            },
            _ => {
                problem.get_or_insert(format!("unexpected report line: {line}"));
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("wait for the engine's process: {e}"))?;
    if !status.success() {
        return Err(format!("its process failed ({status})"));
    }
    problem.map_or(Ok(()), Err)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn table(engines: &[String], results: &BTreeMap<String, Figures>) -> String {
    // A failed engine's column says so on every line, whatever it measured.
    let failed = |e: &str| results[e].failed.is_some();
    // Ratio columns only beside a larch that ran to the end.
    let larch = results.get("larch").filter(|l| l.failed.is_none());
    let peers: Vec<&String> = match larch {
        Some(_) => engines.iter().filter(|e| *e != "larch").collect(),
        None => Vec::new(),
    };
    let mut out = String::from("| workload |");
    for e in engines {
        out += &format!(" {e} |");
    }
    for p in &peers {
        out += &format!(" larch/{p} |");
    }
    out += "\n|---|";
    out += &"---:|".repeat(engines.len() + peers.len());
    out += "\n";
    let ratio = |l: Option<f64>, p: &str, pv: Option<f64>| match (l, pv) {
        (Some(a), Some(b)) if b > 0.0 && !failed(p) => format!(" {:.2} |", a / b),
        _ => " - |".into(),
    };
    for w in WORKLOADS {
        if !results.values().any(|f| f.ms.contains_key(w)) {
            continue;
        }
        out += &format!("| {w} (ms) |");
        for e in engines {
            match results[e].ms.get(w) {
                _ if failed(e) => out += " failed |",
                Some(ms) => out += &format!(" {ms:.0} |"),
                None if results[e].skipped.contains_key(w) => out += " n/a |",
                None => out += " - |",
            }
        }
        let l = larch.and_then(|l| l.ms.get(w).copied());
        for p in &peers {
            out += &ratio(l, p, results[*p].ms.get(w).copied());
        }
        out += "\n";
    }
    for s in SIZES {
        if !results.values().any(|f| f.bytes.contains_key(s)) {
            continue;
        }
        out += &format!("| {s} |");
        for e in engines {
            out += &match results[e].bytes.get(s) {
                _ if failed(e) => " failed |".into(),
                Some(b) => format!(" {} |", mib(*b)),
                None => " - |".into(),
            };
        }
        let l = larch.and_then(|l| l.bytes.get(s).map(|&b| b as f64));
        for p in &peers {
            out += &ratio(l, p, results[*p].bytes.get(s).map(|&b| b as f64));
        }
        out += "\n";
    }
    // Why a workload is "n/a", once per engine and workload.
    let skipped: Vec<String> = engines
        .iter()
        .flat_map(|e| {
            results[e]
                .skipped
                .iter()
                .map(move |(w, why)| format!("- {w} on {e}: {why}.\n"))
        })
        .collect();
    if !skipped.is_empty() {
        out += "\nn/a, not run:\n\n";
        out += &skipped.concat();
    }
    if results.values().any(|f| f.ms.contains_key("long_keys")) {
        out += &format!(
            "\nlong_keys and file_long_keys: on a database of its own, {SWEEP_PAIRS} pairs of \
             {LONG_KEY}-byte random keys and {LONG_KEY_VALUE}-byte values written in \
             transactions of {SWEEP_BATCH}, then read back in another random order; the time \
             is the writes' and the reads', the file the growth from the empty database.\n"
        );
    }
    if results
        .values()
        .any(|f| f.ms.contains_key("churn_long_reader"))
    {
        out += &format!(
            "\nchurn_long_reader and file_after_churn: {CHURN_KEYS} pairs whatever n; \
             {CHURN_ROUNDS} transactions each rewriting a random 10% of the keys, \
             a snapshot taken after the load held through the first {CHURN_HELD}.\n"
        );
    }
    if results
        .values()
        .any(|f| f.bytes.contains_key("file_after_delete"))
    {
        out += &format!(
            "\ncompact_after_delete, file_after_delete and file_after_compact: \
             {COMPACT_KEYS} pairs of 24-byte keys and {COMPACT_VALUE}-byte values whatever n, \
             loaded in transactions of {COMPACT_BATCH}; {COMPACT_DELETED} keys deleted at \
             random in transactions of {COMPACT_BATCH}, leaving {} of keys and values \
             ({COMPACT_LIVE} bytes); sizes with the database open, the time is the \
             compaction's alone.\n",
            mib(COMPACT_LIVE as u64)
        );
    }
    // How a workload ran differently, once per engine and workload.
    let notes: Vec<String> = engines
        .iter()
        .flat_map(|e| {
            results[e]
                .notes
                .iter()
                .map(move |(w, text)| format!("- {w} on {e}: {text}.\n"))
        })
        .collect();
    if !notes.is_empty() {
        out += "\nNotes:\n\n";
        out += &notes.concat();
    }
    out
}

/// The table of `value_sizes`, one row per size: each engine's file growth,
/// write and read times, larch's ratios to each peer, and larch's growth
/// over the bytes of keys and values written; empty when it did not run.
fn sweep_table(engines: &[String], results: &BTreeMap<String, Figures>) -> String {
    let ran: Vec<&String> = engines
        .iter()
        .filter(|e| results[*e].failed.is_none())
        .collect();
    if !ran
        .iter()
        .any(|e| SWEEP.iter().any(|s| results[*e].bytes.contains_key(s.file)))
    {
        return String::new();
    }
    let peers: Vec<&String> = ran.iter().copied().filter(|e| *e != "larch").collect();
    let larch = ran.iter().any(|e| *e == "larch");
    let mut out = String::from("| value bytes | keys+values |");
    for what in ["file", "write ms", "read ms"] {
        for e in &ran {
            out += &format!(" {e} {what} |");
        }
    }
    if larch {
        for p in &peers {
            out += &format!(" larch/{p} file | larch/{p} write | larch/{p} read |");
        }
        out += " larch file/data |";
    }
    let columns = 2 + 3 * ran.len() + if larch { 3 * peers.len() + 1 } else { 0 };
    out += &format!("\n|{}\n", "---:|".repeat(columns));
    for size in SWEEP {
        let data = (SWEEP_PAIRS * (SWEEP_KEY + size.bytes)) as f64;
        out += &format!("| {} | {} |", size.bytes, mib(data as u64));
        let file = |e: &str| results[e].bytes.get(size.file).map(|&b| b as f64);
        let write = |e: &str| results[e].ms.get(size.write).copied();
        let read = |e: &str| results[e].ms.get(size.read).copied();
        for e in &ran {
            out += &file(e).map_or(" - |".into(), |b| format!(" {} |", mib(b as u64)));
        }
        for get in [&write as &dyn Fn(&str) -> Option<f64>, &read] {
            for e in &ran {
                out += &get(e).map_or(" - |".into(), |ms| format!(" {ms:.0} |"));
            }
        }
        if larch {
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!(" {:.2} |", a / b),
                _ => " - |".into(),
            };
            for p in &peers {
                out += &ratio(file("larch"), file(p));
                out += &ratio(write("larch"), write(p));
                out += &ratio(read("larch"), read(p));
            }
            out += &ratio(file("larch"), Some(data));
        }
        out += "\n";
    }
    out += &format!(
        "\nvalue_sizes: for each size, on a database of its own, {SWEEP_PAIRS} pairs of \
         {SWEEP_KEY}-byte random keys and values of that size, written in transactions of \
         {SWEEP_BATCH}, then read back in another random order in one read transaction; \
         file is how much the engine's files grew from the empty database, once closed.\n"
    );
    out
}

fn json(n: usize, results: &BTreeMap<String, Figures>) -> String {
    let mut out = format!(
        "{{\n  \"n\": {n},\n  \"churn_keys\": {CHURN_KEYS},\n  \
         \"compact_keys\": {COMPACT_KEYS},\n  \"compact_value_bytes\": {COMPACT_VALUE},\n  \
         \"compact_deleted\": {COMPACT_DELETED},\n  \"compact_live_bytes\": {COMPACT_LIVE},\n  \
         \"engines\": {{\n"
    );
    let engines: Vec<String> = results
        .iter()
        .map(|(name, f)| {
            let ms: Vec<String> =
                f.ms.iter()
                    .map(|(k, v)| format!("\"{k}\": {v:.3}"))
                    .collect();
            let bytes: Vec<String> = f
                .bytes
                .iter()
                .map(|(k, v)| format!("\"{k}\": {v}"))
                .collect();
            let quote = |s: &str| s.replace(['\\', '"'], "'");
            let failed = f
                .failed
                .as_ref()
                .map_or(String::new(), |e| format!(", \"failed\": \"{}\"", quote(e)));
            let skipped: Vec<String> = f
                .skipped
                .iter()
                .map(|(k, v)| format!("\"{k}\": \"{}\"", quote(v)))
                .collect();
            let skipped = if skipped.is_empty() {
                String::new()
            } else {
                format!(", \"skipped\": {{ {} }}", skipped.join(", "))
            };
            let notes: Vec<String> = f
                .notes
                .iter()
                .map(|(k, v)| format!("\"{k}\": \"{}\"", quote(v)))
                .collect();
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(", \"notes\": {{ {} }}", notes.join(", "))
            };
            format!(
                "    \"{name}\": {{ \"ms\": {{ {} }}, \"bytes\": {{ {} }}{skipped}{notes}{failed} }}",
                ms.join(", "),
                bytes.join(", ")
            )
        })
        .collect();
    out += &engines.join(",\n");
    out += "\n  }\n}\n";
    out
}

fn main() -> ExitCode {
    let args = Args::parse();
    let engines: Vec<String> = args.engines.clone();
    // Names that cannot run are refused before anything runs.
    for e in &engines {
        if !ENGINES.contains(&e.as_str()) {
            if KNOWN.contains(&e.as_str()) {
                eprintln!(
                    "engine {e} is not built in: build with the rocksdb feature (on by default)"
                );
            } else {
                eprintln!("unknown engine {e}; known: {}", ENGINES.join(", "));
            }
            return ExitCode::from(2);
        }
    }
    if engines.is_empty() {
        eprintln!("no engine to run");
        return ExitCode::from(2);
    }
    if args.n == 0 {
        eprintln!("--n must be at least 1");
        return ExitCode::from(2);
    }
    if let Some(w) = args
        .workloads
        .iter()
        .find(|w| !WORKLOADS.contains(&w.as_str()))
    {
        eprintln!("unknown workload {w}; known: {}", WORKLOADS.join(", "));
        return ExitCode::from(2);
    }
    if args.reader {
        let (Some(db), [name]) = (&args.db, engines.as_slice()) else {
            eprintln!("--reader reads from exactly one engine's --db");
            return ExitCode::from(2);
        };
        if engines::single_process(name).is_some() {
            eprintln!("engine {name} cannot share its database with another process");
            return ExitCode::from(2);
        }
        return processes::reader_main(name, db);
    }
    let wanted = |w: &str| args.workloads.is_empty() || args.workloads.iter().any(|x| x == w);
    if args.child {
        let [name] = engines.as_slice() else {
            eprintln!("--child runs exactly one engine");
            return ExitCode::from(2);
        };
        let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        run_engine(name, args.n, &base, &wanted);
        return ExitCode::SUCCESS;
    }
    // One step per figure in milliseconds: two per size of value_sizes.
    let steps = |w: &&str| {
        if *w == "value_sizes" {
            2 * SWEEP.len()
        } else {
            1
        }
    };
    let per_engine = WORKLOADS
        .iter()
        .filter(|w| wanted(w))
        .map(steps)
        .sum::<usize>() as u64;
    let bar = ProgressBar::new(per_engine * engines.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("progress template"),
    );
    let mut results = BTreeMap::new();
    for name in &engines {
        let fig = run_child(name, &args, &bar);
        if let Some(e) = &fig.failed {
            bar.suspend(|| eprintln!("{name} failed: {e}"));
        }
        results.insert(name.clone(), fig);
    }
    bar.finish_and_clear();

    let main_table = table(&engines, &results);
    // A main table with no row (value_sizes alone) is left out.
    let table = match main_table.lines().nth(2) {
        Some(_) => main_table + "\n" + &sweep_table(&engines, &results),
        None => sweep_table(&engines, &results),
    };
    let mut own_n = String::new();
    if wanted("churn_long_reader") {
        own_n += &format!("; churn_long_reader {CHURN_KEYS} whatever n");
    }
    if wanted("value_sizes") {
        own_n += &format!("; value_sizes {SWEEP_PAIRS} per size whatever n");
    }
    if wanted("long_keys") {
        own_n += &format!("; long_keys {SWEEP_PAIRS} with {LONG_KEY}-byte keys whatever n");
    }
    if wanted("compact_after_delete") {
        own_n += &format!(
            "; compact_after_delete {COMPACT_KEYS} with {COMPACT_VALUE}-byte values whatever n"
        );
    }
    println!(
        "n = {} (24-byte keys, 150-byte values{own_n}), times in milliseconds\n",
        args.n
    );
    println!("{table}");
    std::fs::create_dir_all(&args.out).expect("results directory");
    std::fs::write(args.out.join("results.json"), json(args.n, &results))
        .expect("write results.json");
    std::fs::write(args.out.join("results.md"), &table).expect("write results.md");
    let failed: Vec<&String> = engines
        .iter()
        .filter(|e| results[*e].failed.is_some())
        .collect();
    // The plot compares the engines that ran to the end.
    let ran: Vec<String> = engines
        .iter()
        .filter(|e| results[*e].failed.is_none())
        .cloned()
        .collect();
    let svg = args.out.join("comparison.svg");
    if ran.is_empty() {
        eprintln!(
            "wrote results.json and results.md in {}; no plot",
            args.out.display()
        );
    } else {
        plot::comparison(&svg, &ran, WORKLOADS, &|e, w| results[e].ms.get(w).copied())
            .expect("write the plot");
        eprintln!("wrote {}, results.json and results.md", svg.display());
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        let names: Vec<&str> = failed.iter().map(|s| s.as_str()).collect();
        eprintln!("failed: {}", names.join(", "));
        ExitCode::FAILURE
    }
}
