//! [`Figures`]: what a power-loss run measured, and its summary line.

use std::fmt;

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Seed of the run.
    pub seed: u64,
    /// Page size of the database.
    pub page_size: usize,
    /// Committed transactions of the workload.
    pub txns: u64,
    /// Syncs at which a crash was simulated.
    pub crash_points: u64,
    /// Crash images opened and verified.
    pub images: u64,
    /// Images that opened to an older state than the last acknowledged commit.
    pub lost_acked: u64,
    /// Images that opened to a state that is neither the acknowledged commit
    /// nor the one in flight.
    pub mixed_states: u64,
    /// Images that did not open.
    pub unopenable: u64,
    /// Images that failed `check` (at once, or after more transactions).
    pub check_failures: u64,
    /// Pending writes that touched a page a durable meta or a live reader
    /// could reach.
    pub monitor_violations: u64,
    /// Transactions run on the recovered images.
    pub after_txns: u64,
    /// Commits made durable with one sync (pages and a sealed meta together).
    pub single_sync_commits: u64,
    /// Commits too big for the seal list, or after commits that were not
    /// durable: pages synced, then the meta.
    pub two_sync_commits: u64,
    /// Commits left without a sync (`Durability::Eventual` or `None`).
    pub weak_commits: u64,
    /// Calls of `Database::sync` that had commits to make durable.
    pub syncs_called: u64,
    /// Durable commits and syncs after weak commits that took one sync (the
    /// meta listing every page written since the durable commit).
    pub one_sync_after_weak: u64,
    /// Chained crashes: a process crash at a crash point, a reopen of what
    /// the page cache held, more transactions, then a power loss.
    pub chained: u64,
    /// Crash images built from the power losses of the chained crashes
    /// (counted in `images` too).
    pub chained_images: u64,
    /// Big deletes followed by `compact` (the file cut at commit).
    pub compactions: u64,
    /// Of those, the ones that gave bytes back to the file system.
    pub cuts: u64,
    /// Readers held over many commits (20 or more).
    pub long_readers: u64,
    /// Readers whose snapshot, read again when they ended, was not what it
    /// held when they began.
    pub reader_changes: u64,
}

impl Figures {
    /// Whether the run found no problem.
    pub fn clean(&self) -> bool {
        self.lost_acked == 0
            && self.mixed_states == 0
            && self.unopenable == 0
            && self.check_failures == 0
            && self.monitor_violations == 0
            && self.reader_changes == 0
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RELIABILITY suite=powerloss seed={} page_size={} txns={} crash_points={} images={} \
             lost_acked={} mixed_states={} unopenable={} check_failures={} monitor_violations={} \
             after_txns={} single_sync_commits={} two_sync_commits={} weak_commits={} \
             syncs_called={} one_sync_after_weak={} chained={} \
             chained_images={} long_readers={} reader_changes={} compactions={} cuts={}",
            self.seed,
            self.page_size,
            self.txns,
            self.crash_points,
            self.images,
            self.lost_acked,
            self.mixed_states,
            self.unopenable,
            self.check_failures,
            self.monitor_violations,
            self.after_txns,
            self.single_sync_commits,
            self.two_sync_commits,
            self.weak_commits,
            self.syncs_called,
            self.one_sync_after_weak,
            self.chained,
            self.chained_images,
            self.long_readers,
            self.reader_changes,
            self.compactions,
            self.cuts
        )
    }
}
