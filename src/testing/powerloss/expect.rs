//! The crash-point hook of the workload: the monitor of pending writes, and
//! the crash images and chained crashes built at each sync.

use std::collections::HashSet;
use std::path::PathBuf;

use super::chain::Chain;
use super::figures::Figures;
use super::images::{ImageCheck, fates};
use crate::testing::recorder::{CrashPoint, Fate, Op, apply};
use crate::testing::{Model, Rng, image_state};

/// What the crash images must show.
pub(super) struct Expect {
    pub(super) acked: Model,
    pub(super) acked_txn: u64,
    pub(super) in_flight: Option<Model>,
    /// Pages reachable by the live readers' snapshots.
    pub(super) readers: Vec<Vec<u64>>,
    pub(super) figures: Figures,
    pub(super) rng: Rng,
    pub(super) scratch: PathBuf,
    pub(super) page_size: usize,
    pub(super) per_point: usize,
    /// The first problems seen, for the report.
    pub(super) problems: Vec<String>,
    /// Crash points seen so far.
    pub(super) syncs: u64,
}

impl Expect {
    pub(super) fn problem(&mut self, what: String) {
        if self.problems.len() < 10 {
            self.problems.push(what);
        }
    }

    /// The monitor: pending writes may only touch free pages and the older
    /// meta slot.
    fn monitor(&mut self, cp: &CrashPoint<'_>) {
        let ps = self.page_size;
        let states = image_state(cp.durable, ps);
        // The slot of the newest meta may be written only if the other slot
        // holds the same transaction (a new file starts with two copies of 0).
        let newest_txn = states.iter().map(|s| s.txn_id).max();
        let copies = states
            .iter()
            .filter(|s| Some(s.txn_id) == newest_txn)
            .count();
        let newest = states
            .iter()
            .find(|s| Some(s.txn_id) == newest_txn && copies == 1)
            .map(|s| s.slot);
        let mut protected: HashSet<u64> = HashSet::new();
        for s in &states {
            protected.extend(s.reachable.iter().flatten().copied());
        }
        for r in &self.readers {
            protected.extend(r.iter().copied());
        }
        // A cut of the file must leave every page a durable meta or a live
        // reader reaches, and both metas' high-water marks.
        let floor = states
            .iter()
            .map(|s| s.high_water)
            .chain(protected.iter().map(|&p| p + 1))
            .max()
            .unwrap_or(0);
        for op in cp.pending {
            if let Op::SetLen(len) = op
                && *len < floor * ps as u64
            {
                self.figures.monitor_violations += 1;
                self.problem(format!(
                    "the file is cut to {len} bytes, below page {floor}, at sync {}",
                    cp.syncs
                ));
            }
            let Op::Write { offset, data } = op else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let first = offset / ps as u64;
            let last = (offset + data.len() as u64 - 1) / ps as u64;
            for page in first..=last {
                let bad = if page < 2 {
                    Some(page) == newest
                } else {
                    protected.contains(&page)
                };
                if bad {
                    self.figures.monitor_violations += 1;
                    self.problem(format!(
                        "write touches live page {page} at sync {}",
                        cp.syncs
                    ));
                }
            }
        }
    }

    pub(super) fn crash_point(&mut self, cp: &CrashPoint<'_>) {
        self.syncs += 1;
        self.figures.crash_points += 1;
        self.monitor(cp);
        // A crash while a new file is first written leaves zeros or nothing;
        // garbage there cannot be told from a foreign file.
        let garble = !cp.durable.is_empty();
        for fates in fates(&mut self.rng, self.per_point, cp.pending, garble) {
            let image = apply(cp.durable, cp.pending, &fates);
            self.verify(&image, cp.syncs);
        }
        // Every fourth crash point is also crashed in a chain: the process
        // dies here, the file is reopened as the page cache holds it, more
        // transactions commit, and then the power fails.
        if self.syncs.is_multiple_of(4) {
            self.chained_crash(cp, garble);
        }
    }

    fn chained_crash(&mut self, cp: &CrashPoint<'_>, garble: bool) {
        let live = apply(
            cp.durable,
            cp.pending,
            &vec![Fate::Applied; cp.pending.len()],
        );
        let path = self.scratch.with_extension("chain");
        if std::fs::write(&path, live).is_err() {
            self.figures.unopenable += 1;
            return;
        }
        let mut ok = vec![self.acked.clone()];
        ok.extend(self.in_flight.clone());
        let chain = Chain {
            durable: cp.durable.to_vec(),
            pending: cp.pending.to_vec(),
            ok,
            min_txn: self.acked_txn,
            garble,
            seed: self.rng.next_u64(),
        };
        let problems = chain.run(&path, &self.scratch, self.page_size, &mut self.figures);
        for p in problems {
            self.problem(p);
        }
        let _ = std::fs::remove_file(&path);
    }

    fn verify(&mut self, image: &[u8], sync: u64) {
        let mut ok = vec![&self.acked];
        ok.extend(self.in_flight.as_ref());
        let check = ImageCheck {
            ok: &ok,
            min_txn: self.acked_txn,
            more_txns: 20,
        };
        if let Err(p) = check.verify(
            image,
            sync,
            &self.scratch,
            self.page_size,
            &mut self.rng,
            &mut self.figures,
        ) {
            self.problem(p);
        }
    }
}
