//! `larch bench`: a self-contained workload that prints the throughput of
//! each phase. Every write transaction is synchronous, as in real use.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::Res;

const VALUE_LEN: usize = 100;

/// A deterministic random sequence (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn key(&mut self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.next().to_be_bytes());
        k[8..].copy_from_slice(&self.next().to_be_bytes());
        k
    }
}

/// The value stored under `key`: derived from it, so reads can be checked.
fn value_of(key: &[u8; 16]) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    for (i, b) in v.iter_mut().enumerate() {
        *b = key[i % 16] ^ i as u8;
    }
    v
}

/// Runs `ops` operations of a phase under a progress bar and prints its line.
fn phase(name: &str, ops: u64, mut body: impl FnMut(&ProgressBar) -> Res<()>) -> Res<()> {
    let bar = ProgressBar::new(ops);
    bar.set_style(
        ProgressStyle::with_template("{msg:<34} {bar:30} {pos}/{len} {per_sec}")
            .expect("progress template"),
    );
    bar.set_message(name.to_owned());
    let start = Instant::now();
    body(&bar)?;
    let took = start.elapsed();
    bar.finish_and_clear();
    report(name, ops, took)?;
    Ok(())
}

fn report(name: &str, ops: u64, took: Duration) -> io::Result<()> {
    let secs = took.as_secs_f64();
    writeln!(
        io::stdout(),
        "{name:<34} {ops:>10} ops {secs:>9.3} s {:>12.0} ops/s",
        ops as f64 / secs.max(1e-9)
    )
}

/// Memory a run needs per pair, beyond the file's pages: the key and its
/// place in the read order (24 bytes), and the pages the load and the
/// removals hold in their write transactions until they commit (a leaf cell
/// of 126 bytes each, twice), rounded up.
const MEMORY_PER_PAIR: u64 = 320;

/// Memory the system can give without swapping (Linux), if known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// Refuses a pair count this machine cannot hold, before anything is
/// allocated or created.
fn check_memory(n: u64) -> Res<()> {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let need = n
        .checked_mul(MEMORY_PER_PAIR)
        .filter(|_| usize::try_from(n).is_ok());
    match (need, available_memory()) {
        (None, _) => crate::fail(format!(
            "--n {n}: too many pairs to hold in memory on this machine"
        )),
        (Some(need), Some(free)) if need > free => crate::fail(format!(
            "--n {n}: the run needs about {:.1} GiB of memory, more than the {:.1} GiB available",
            gib(need),
            gib(free)
        )),
        _ => Ok(()),
    }
}

/// An empty vector with room for `n` items, or an error naming `--n`.
fn vec_for<T>(n: usize) -> Res<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|e| format!("--n {n}: cannot allocate the memory for the run ({e})"))?;
    Ok(v)
}

pub fn run(db: Option<&Path>, n: u64) -> Res<ExitCode> {
    if n < 1000 {
        return Err("--n must be at least 1000".into());
    }
    check_memory(n)?;
    // The data first: a run that cannot hold it fails before it creates a file.
    let mut rng = Rng(0x5eed);
    let mut keys: Vec<[u8; 16]> = vec_for(n as usize)?;
    keys.extend((0..n).map(|_| rng.key()));
    keys.sort_unstable();
    keys.dedup();
    let mut order: Vec<usize> = vec_for(keys.len())?;
    order.extend(0..keys.len());

    let temp;
    let path = match db {
        Some(p) => p.to_path_buf(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("bench.larch")
        }
    };
    if path.symlink_metadata().is_ok() {
        return crate::fail(format!(
            "{}: exists; bench creates a new database",
            path.display()
        ));
    }
    let mut out = io::stdout();
    writeln!(
        out,
        "larch bench: {n} pairs of 16-byte keys and {VALUE_LEN}-byte values"
    )?;
    writeln!(out, "database: {}", path.display())?;
    let target = crate::target::open_or_create(&path)?;
    if !target.is_new() {
        return crate::fail(format!(
            "{}: exists; bench creates a new database",
            path.display()
        ));
    }
    let db = &target.db;

    phase("load, sorted, one transaction", keys.len() as u64, |bar| {
        let w = db.begin_write()?;
        {
            let mut t = w.open_table("bench")?;
            for (i, k) in keys.iter().enumerate() {
                t.insert(k, &value_of(k))?;
                if i % 4096 == 0 {
                    bar.set_position(i as u64);
                }
            }
        }
        Ok(w.commit()?)
    })?;

    // Reads and scans in a random order of the loaded keys.
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    phase("random reads", order.len() as u64, |bar| {
        let r = db.begin_read()?;
        let t = r.open_table("bench")?;
        for (i, &j) in order.iter().enumerate() {
            let k = &keys[j];
            match t.get(k)? {
                Some(v) if v == value_of(k) => {}
                _ => return crate::fail(format!("wrong value read for key {i}")),
            }
            if i % 4096 == 0 {
                bar.set_position(i as u64);
            }
        }
        Ok(())
    })?;

    let scans = (n / 100).max(1);
    phase("range scans of 100 entries", scans, |bar| {
        let r = db.begin_read()?;
        let t = r.open_table("bench")?;
        for (i, &j) in order.iter().take(scans as usize).enumerate() {
            let from = &keys[j][..];
            let seen = t.range(from..)?.take(100).count();
            if seen != 100.min(keys.len() - j) {
                return crate::fail(format!("scan {i} saw {seen} entries"));
            }
            bar.set_position(i as u64);
        }
        Ok(())
    })?;

    let batches = (n / 10_000).max(1);
    phase(
        "batch writes, 1000 per transaction",
        batches * 1000,
        |bar| {
            for b in 0..batches {
                let w = db.begin_write()?;
                {
                    let mut t = w.open_table("bench")?;
                    for _ in 0..1000 {
                        let k = rng.key();
                        t.insert(&k, &value_of(&k))?;
                    }
                }
                w.commit()?;
                bar.set_position((b + 1) * 1000);
            }
            Ok(())
        },
    )?;

    phase("single writes, synchronous", 1000, |bar| {
        for i in 0..1000 {
            let w = db.begin_write()?;
            let k = rng.key();
            w.open_table("bench")
                .and_then(|mut t| t.insert(&k, &value_of(&k)))?;
            w.commit()?;
            bar.set_position(i + 1);
        }
        Ok(())
    })?;

    let half = keys.len() / 2;
    phase("remove half, one transaction", half as u64, |bar| {
        let w = db.begin_write()?;
        {
            let mut t = w.open_table("bench")?;
            for (i, &j) in order.iter().take(half).enumerate() {
                if !t.remove(&keys[j])? {
                    return Err("a loaded key was missing".into());
                }
                if i % 4096 == 0 {
                    bar.set_position(i as u64);
                }
            }
        }
        Ok(w.commit()?)
    })?;

    let start = Instant::now();
    let report_ = db.check()?;
    let stat = db.stat()?;
    writeln!(
        out,
        "check: {} entries, {} pages, no problems ({:.3} s); file {:.1} MiB, {} free pages",
        report_.entries,
        report_.pages,
        start.elapsed().as_secs_f64(),
        stat.file_size as f64 / (1 << 20) as f64,
        stat.free_pages
    )?;
    target.keep();
    Ok(ExitCode::SUCCESS)
}
