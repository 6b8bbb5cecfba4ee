//! The fuzz targets' bodies over the checked-in corpus (`fuzz/corpus/<target>`)
//! and over seeded random inputs, so `cargo test` covers them without
//! cargo-fuzz (docs/reliability.md, suite 8). `LARCH_BUDGET` sets the random
//! inputs per target.

mod common;

use std::path::Path;

use common::Rng;
use larch::testing::{budget_from_env, fuzz, seed_from_env};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    inputs.sort();
    inputs
}

fn run(target: &str, body: fn(&[u8]), make: impl Fn(&mut Rng) -> Vec<u8>) {
    let seed = seed_from_env();
    let budget = budget_from_env(200);
    let inputs = corpus(target);
    for input in &inputs {
        body(input);
    }
    let mut rng = Rng(seed);
    for _ in 0..budget {
        body(&make(&mut rng));
    }
    let f = fuzz::take_findings();
    larch::testing::report(&format!(
        "RELIABILITY suite=fuzz_replay target={target} seed={seed} corpus={} random={budget} panics=0 \
         verified={} verified_write_errors={} verified_superseded={} unverified={} \
         unverified_reader_changed={} unverified_dropped={} unverified_superseded={}",
        inputs.len(),
        f.verified,
        f.verified_write_errors,
        f.verified_superseded,
        f.unverified,
        f.unverified_reader_changed,
        f.unverified_dropped,
        f.unverified_superseded,
    ));
}

fn random_len(rng: &mut Rng, max: u64) -> Vec<u8> {
    let len = rng.below(max) as usize;
    rng.bytes(len)
}

#[test]
fn open_bytes() {
    run("open_bytes", fuzz::open_bytes, |rng| {
        // Mostly garbage; sometimes a valid-looking start.
        let mut data = random_len(rng, 20_000);
        if rng.below(2) == 0 && data.len() > 16 {
            data[..8].copy_from_slice(b"larch\0db");
        }
        data
    });
}

#[test]
fn meta_pages() {
    run("meta_pages", fuzz::meta_pages, |rng| {
        let mut data = vec![0u8; 146];
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(144) as usize;
            data[at] = rng.next_u64() as u8;
        }
        data[144] = rng.below(4) as u8;
        data[145] = rng.next_u64() as u8;
        data
    });
}

#[test]
fn page_bytes() {
    run("page_bytes", fuzz::page_bytes, |rng| random_len(rng, 64));
}

#[test]
fn ops() {
    run("ops", fuzz::ops, |rng| random_len(rng, 600));
}

/// The damaged-file sequence on a crafted free list that names a live page:
/// opened without verify, the writer is handed that page, but the commit's
/// own check of its free list (the page is freed a second time) refuses the
/// commit before anything reaches the file, so the held reader's bytes stay
/// as they were. The verified open sets that commit aside. (Inputs where an
/// unverified writer does change a held reader's bytes are counted, not
/// asserted: such files are outside `open`'s contract.)
#[test]
fn the_damaged_file_sequence_notices_a_free_list_naming_a_live_page() {
    let image =
        larch::testing::corrupt::damaged_image(larch::testing::corrupt::Class::FreeAlsoReachable);
    fuzz::take_findings();
    fuzz::open_bytes(&image);
    let f = fuzz::take_findings();
    assert_eq!((f.verified, f.unverified), (1, 1), "{f:?}");
    assert_eq!(f.unverified_reader_changed, 0, "{f:?}");
}
