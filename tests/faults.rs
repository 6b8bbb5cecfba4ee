//! I/O fault injection: every failed write, resize or sync comes back as an
//! error, poisons the handle and leaves the state before or after the failed
//! transaction (docs/reliability.md, suite 4).

use larch::testing::{budget_from_env, faults, seed_from_env};

#[test]
fn every_fault_site_is_survived() {
    let seed = seed_from_env();
    let txns = budget_from_env(40);
    eprintln!("faults: LARCH_SEED={seed} LARCH_BUDGET={txns}");
    let (figures, problems) = faults::run(seed, txns);
    larch::testing::report(&figures.to_string());
    assert!(figures.clean(), "{figures}\n{}", problems.join("\n"));
    assert!(figures.fault_sites > 3 * txns, "{figures}");
    // One reopen per sync of the workload: some transactions change nothing
    // and commit without a sync, so not quite one per transaction.
    assert!(figures.eio_reopens >= txns / 2, "{figures}");
    assert!(figures.eio_images > 4 * txns, "{figures}");
}
