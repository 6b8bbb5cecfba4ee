//! Figures for shrinking a file: loads about 1 GiB (200,000 values of
//! 5 KiB), deletes 90% of the keys at random, then compares
//! `Database::compact` with a compacted copy (`ReadTxn::copy_to(path,
//! true)`) of the same data: file sizes against the pages in use, and time.
//!
//! `cargo run --release --example shrink_figures [DIR]` (default: a
//! temporary directory, removed afterwards). It needs about 2.2 GiB free.

use std::time::Instant;

use larch::{Database, Options};

const N: u32 = 200_000;
const LEN: usize = 5 << 10;

fn value(i: u32) -> Vec<u8> {
    i.to_le_bytes().iter().copied().cycle().take(LEN).collect()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn main() -> larch::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| tmp.path().to_owned(), Into::into);
    let path = dir.join("figures.larch");
    let copy = dir.join("figures-copy.larch");
    for p in [&path, &copy] {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(format!("{}-lock", p.display()));
    }
    // SAFETY: this program alone uses the file.
    let db: Database = unsafe { Options::new().open(&path) }?;
    let t = Instant::now();
    for start in (0..N).step_by(10_000) {
        let w = db.begin_write()?;
        {
            let mut table = w.open_table("t")?;
            for i in start..(start + 10_000).min(N) {
                table.insert(&i.to_be_bytes(), &value(i))?;
            }
        }
        w.commit()?;
    }
    let loaded = std::fs::metadata(&path)?.len();
    println!(
        "load: {N} x {LEN} B in {:.1?}, file {}",
        t.elapsed(),
        mib(loaded)
    );

    // Delete 90% at random (a fixed xorshift), 20,000 keys a commit.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut gone = Vec::new();
    for i in 0..N {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if !x.is_multiple_of(10) {
            gone.push(i);
        }
    }
    let t = Instant::now();
    for chunk in gone.chunks(20_000) {
        let w = db.begin_write()?;
        {
            let mut table = w.open_table("t")?;
            for i in chunk {
                table.remove(&i.to_be_bytes())?;
            }
        }
        w.commit()?;
    }
    let s = db.stat()?;
    let ps = u64::from(s.page_size);
    let live = s.pages - s.free_pages;
    let deleted = std::fs::metadata(&path)?.len();
    println!(
        "delete {} keys in {:.1?}: file {}, high-water {}, in use {} ({} pages)",
        gone.len(),
        t.elapsed(),
        mib(deleted),
        mib(s.pages * ps),
        mib(live * ps),
        live
    );

    let t = Instant::now();
    db.begin_read()?.copy_to(&copy, true)?;
    let copy_len = std::fs::metadata(&copy)?.len();
    println!(
        "copy_to(compact = true): {:.1?}, copy {} ({:.2} x in use)",
        t.elapsed(),
        mib(copy_len),
        copy_len as f64 / (live * ps) as f64
    );

    let t = Instant::now();
    let txn_before = db.last_txn_id();
    let returned = db.compact()?;
    let after = std::fs::metadata(&path)?.len();
    let s = db.stat()?;
    let live = s.pages - s.free_pages;
    println!(
        "compact(): {:.1?}, {} commits, returned {}, file {} -> {} ({:.2} x in use, {} pages in use)",
        t.elapsed(),
        db.last_txn_id() - txn_before,
        mib(returned),
        mib(deleted),
        mib(after),
        after as f64 / (live * ps) as f64,
        live
    );
    db.check()?;
    Ok(())
}
