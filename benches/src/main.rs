//! larch side by side with LMDB (heed), redb, sled and RocksDB: the same
//! workloads on the same data with the same durability, in one run, each
//! engine in a fresh temporary directory. Prints a Markdown table, writes the
//! raw figures as JSON and the comparison as an SVG plot.
//!
//! Every engine runs in a child process of its own (this binary again, with
//! `--child`), so none inherits the heap, the page cache state or the resident
//! set another left behind: in one shared process the first engine ran its
//! bulk load 15-20% slower than it did in second place.

mod engines;
mod plot;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use engines::{ENGINES, Engine};

#[derive(Parser, Debug)]
#[command(about = "Benchmark larch against LMDB, redb, sled and RocksDB")]
struct Args {
    /// Number of key-value pairs loaded (24-byte keys, 150-byte values).
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    /// Engines to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = ENGINES.iter().map(|s| s.to_string()))]
    engines: Vec<String>,
    /// Workloads to run, comma-separated (default: all).
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
}

/// The timed workloads, in table order.
const WORKLOADS: &[&str] = &[
    "bulk_load_random",
    "bulk_load_sorted",
    "individual_writes",
    "batch_writes",
    "len",
    "random_reads",
    "range_reads",
    "reads_1_thread",
    "reads_2_threads",
    "reads_4_threads",
    "remove_half",
];

/// Sizes measured, in bytes.
const SIZES: &[&str] = &["file_after_load", "file_after_remove", "peak_rss"];

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
        let starts = order[..n / 2].iter().map(|&i| pairs[i].0.clone()).collect();
        rng.shuffle(&mut order);
        let removals = order[..n / 2].iter().map(|&i| pairs[i].0.clone()).collect();
        Data {
            pairs,
            sorted,
            singles,
            batches,
            reads,
            starts,
            removals,
        }
    }
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

/// Figures of one engine: milliseconds per workload, bytes per size.
#[derive(Default)]
struct Figures {
    ms: BTreeMap<&'static str, f64>,
    bytes: BTreeMap<&'static str, u64>,
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_secs_f64() * 1000.0, out)
}

/// Runs every wanted workload on engine `name`, printing each figure on
/// stdout as it is measured: `start W`, `ms W VALUE`, `bytes S VALUE`.
fn run_engine(name: &str, data: &Data, base: &Path, wanted: &dyn Fn(&str) -> bool) {
    let report = |line: String| println!("{line}");
    let step = |workload: &'static str, f: &mut dyn FnMut() -> u64| {
        // The random bulk load is every later workload's data: it always runs.
        let setup = workload == "bulk_load_random";
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
    step("remove_half", &mut || {
        e.remove(&data.removals);
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

/// Runs engine `name` in a child process and collects its figures.
fn run_child(name: &str, args: &Args, bar: &ProgressBar) -> Figures {
    let exe = std::env::current_exe().expect("path of this binary");
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
        .expect("start the engine's process");
    let out = child.stdout.take().expect("piped stdout");
    let mut fig = Figures::default();
    for line in BufReader::new(out).lines() {
        let line = line.expect("read the engine's report");
        let fields: Vec<&str> = line.split_whitespace().collect();
        let known = |w: &str| WORKLOADS.iter().chain(SIZES).find(|k| **k == w).copied();
        match fields.as_slice() {
            ["start", w] => bar.set_message(format!("{name}: {w}")),
            ["ms", w, v] => {
                let w = known(w).expect("a workload this binary knows");
                fig.ms.insert(w, v.parse().expect("milliseconds"));
                bar.inc(1);
            }
            ["bytes", w, v] => {
                let w = known(w).expect("a size this binary knows");
                fig.bytes.insert(w, v.parse().expect("bytes"));
            }
            _ => panic!("unexpected report line from {name}: {line}"),
        }
    }
    let status = child.wait().expect("wait for the engine's process");
    assert!(status.success(), "{name} failed: {status}");
    fig
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn table(engines: &[String], results: &BTreeMap<String, Figures>) -> String {
    let peers: Vec<&String> = engines.iter().filter(|e| *e != "larch").collect();
    let larch = results.get("larch");
    let mut out = String::from("| workload |");
    for e in engines {
        out += &format!(" {e} |");
    }
    for p in &peers {
        out += &format!(" larch/{p} |");
    }
    out += "\n|---|";
    out += &"---:|".repeat(engines.len() + if larch.is_some() { peers.len() } else { 0 });
    out += "\n";
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!(" {:.2} |", a / b)
        } else {
            " - |".into()
        }
    };
    for w in WORKLOADS {
        if !results.values().any(|f| f.ms.contains_key(w)) {
            continue;
        }
        out += &format!("| {w} (ms) |");
        for e in engines {
            match results[e].ms.get(w) {
                Some(ms) => out += &format!(" {ms:.0} |"),
                None => out += " - |",
            }
        }
        if let Some(l) = larch.and_then(|l| l.ms.get(w)) {
            for p in &peers {
                out += &results[*p]
                    .ms
                    .get(w)
                    .map_or(" - |".into(), |pm| ratio(*l, *pm));
            }
        }
        out += "\n";
    }
    for s in SIZES {
        out += &format!("| {s} |");
        for e in engines {
            out += &results[e]
                .bytes
                .get(s)
                .map_or(" - |".into(), |b| format!(" {} |", mib(*b)));
        }
        if let Some(l) = larch.and_then(|l| l.bytes.get(s)) {
            for p in &peers {
                out += &results[*p]
                    .bytes
                    .get(s)
                    .map_or(" - |".into(), |pb| ratio(*l as f64, *pb as f64));
            }
        }
        out += "\n";
    }
    out
}

fn json(n: usize, results: &BTreeMap<String, Figures>) -> String {
    let mut out = format!("{{\n  \"n\": {n},\n  \"engines\": {{\n");
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
            format!(
                "    \"{name}\": {{ \"ms\": {{ {} }}, \"bytes\": {{ {} }} }}",
                ms.join(", "),
                bytes.join(", ")
            )
        })
        .collect();
    out += &engines.join(",\n");
    out += "\n  }\n}\n";
    out
}

fn main() {
    let args = Args::parse();
    let engines: Vec<String> = args.engines.clone();
    for e in &engines {
        assert!(
            ENGINES.contains(&e.as_str()),
            "unknown engine {e}; known: {ENGINES:?}"
        );
    }
    let wanted = |w: &str| args.workloads.is_empty() || args.workloads.iter().any(|x| x == w);
    if args.child {
        let [name] = engines.as_slice() else {
            panic!("--child runs exactly one engine");
        };
        let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        let data = Data::new(args.n);
        run_engine(name, &data, &base, &wanted);
        return;
    }
    let per_engine = WORKLOADS.iter().filter(|w| wanted(w)).count() as u64;
    let bar = ProgressBar::new(per_engine * engines.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("progress template"),
    );
    let mut results = BTreeMap::new();
    for name in &engines {
        let fig = run_child(name, &args, &bar);
        results.insert(name.clone(), fig);
    }
    bar.finish_and_clear();

    let table = table(&engines, &results);
    println!(
        "n = {} (24-byte keys, 150-byte values), times in milliseconds\n",
        args.n
    );
    println!("{table}");
    std::fs::create_dir_all(&args.out).expect("results directory");
    std::fs::write(args.out.join("results.json"), json(args.n, &results))
        .expect("write results.json");
    std::fs::write(args.out.join("results.md"), &table).expect("write results.md");
    let svg = args.out.join("comparison.svg");
    plot::comparison(&svg, &engines, WORKLOADS, &|e, w| {
        results[e].ms.get(w).copied()
    })
    .expect("write the plot");
    eprintln!("wrote {}, results.json and results.md", svg.display());
}
