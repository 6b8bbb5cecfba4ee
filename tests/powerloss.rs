//! The power-loss simulator: every crash image of a seeded workload opens,
//! passes the integrity check and holds exactly the last acknowledged commit or
//! the one in flight (docs/reliability.md, suite 3), with commits of every
//! durability mixed. `LARCH_SEED` replays a
//! run; `LARCH_BUDGET` sets the number of crash images per page size.

use larch::testing::{budget_from_env, powerloss, seed_from_env};

fn suite(page_size: usize, seed: u64) {
    let images = budget_from_env(3000);
    let txns = 100;
    eprintln!("powerloss page_size={page_size}: LARCH_SEED={seed} LARCH_BUDGET={images}");
    let (figures, problems) = powerloss::run(seed, page_size, txns, images);
    larch::testing::report(&figures.to_string());
    assert!(figures.clean(), "{figures}\n{}", problems.join("\n"));
    assert!(figures.images >= images * 9 / 10, "{figures}");
    assert_eq!(figures.txns, txns);
    assert!(figures.single_sync_commits > 0, "{figures}");
    assert!(figures.chained >= 10, "{figures}");
    assert!(figures.chained_images >= 100, "{figures}");
    assert!(figures.long_readers > 0, "{figures}");
    // Mixed durabilities: commits left weak, made durable by later
    // commits, by `sync` and by closing; with 4 KiB pages mostly in one
    // sync, the meta listing every page they wrote.
    assert!(figures.weak_commits >= 10, "{figures}");
    assert!(figures.syncs_called > 0, "{figures}");
    if page_size == 4096 {
        assert!(figures.one_sync_after_weak >= 5, "{figures}");
    }
    if page_size == 512 {
        assert!(figures.two_sync_commits > 0, "{figures}");
    }
}

#[test]
fn power_loss_at_every_sync_512() {
    suite(512, seed_from_env());
}

#[test]
fn power_loss_at_every_sync_4096() {
    suite(4096, seed_from_env());
}
