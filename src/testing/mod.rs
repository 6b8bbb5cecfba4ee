//! Test support, built with the `testing` feature: storage wrappers that
//! record, drop and fail writes, and the reliability suites as library
//! functions, so that plain tests and fuzz targets share them.
//!
//! Not a stable API.

pub mod corrupt;
pub mod faults;
pub mod fuzz;
mod image;
mod model;
pub mod powerloss;
mod recorder;

pub use crate::pager::{FileStorage, Storage};
pub use image::{ImageState, MetaFields, edit_meta, image_state, restamp};
pub use model::{Model, read_model, read_snapshot};
pub use recorder::{CrashPoint, Fate, NoSync, Op, Recorder, apply};

/// A small deterministic random generator (splitmix64).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Value lengths on both sides of every boundary of the layout at
/// `page_size`-byte pages, for keys of `key_len` bytes: the longest inline
/// value, a page less a run header, a page, two pages, the longest value
/// packed into a segment; each one byte shorter, exact and one byte longer.
/// A long key's value is never inline: its lengths are a short key's.
pub fn boundary_lengths(page_size: usize, key_len: usize) -> Vec<usize> {
    use crate::format::heap::{PACK_PAGES, SEGMENT_DATA};
    use crate::format::node::{max_inline_key, usable, value_inline};
    let key_len = key_len.min(max_inline_key(page_size));
    let inline_max = (0..page_size)
        .take_while(|&len| value_inline(key_len, len, page_size))
        .last()
        .unwrap_or(0);
    let packed_max = PACK_PAGES as usize * page_size - SEGMENT_DATA;
    debug_assert!(inline_max < usable(page_size));
    let mut lens = Vec::new();
    for b in [
        inline_max,
        page_size - SEGMENT_DATA,
        page_size,
        2 * page_size,
        packed_max,
    ] {
        lens.extend([b - 1, b, b + 1]);
    }
    lens
}

/// A key on one side or the other of the longest a node holds whole, or
/// far past it, chosen by `n`: keys of one length share all their bytes but
/// the last, so the separators between them are long too.
pub fn long_key(page_size: usize, n: u8) -> Vec<u8> {
    let inline = crate::format::node::max_inline_key(page_size);
    let lens = [inline - 1, inline, inline + 1, 2 * inline + 5, 3000];
    let len = lens[usize::from(n) % lens.len()];
    let mut key = vec![b'L'; len];
    key[len - 1] = n;
    key
}

/// Prints a suite's summary line (`RELIABILITY suite=...`) to standard error
/// directly, past the test harness's output capture, so every run shows it.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The seed from `LARCH_SEED`, or one from the clock.
pub fn seed_from_env() -> u64 {
    std::env::var("LARCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// The budget from `LARCH_BUDGET`, or `default`.
pub fn budget_from_env(default: u64) -> u64 {
    std::env::var("LARCH_BUDGET")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
