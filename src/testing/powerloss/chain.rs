//! The chained crash: a process crash at a crash point, a reopen of what the
//! page cache held, more transactions, then a power loss at each of their
//! syncs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::figures::Figures;
use super::images::{ImageCheck, fates};
use super::txns::{random_durability, random_txn};
use crate::Options;
use crate::testing::recorder::{CrashPoint, Op, Recorder, apply};
use crate::testing::{Model, Rng, read_model};

/// A chained crash: a process died at a crash point, leaving `durable` on the
/// disk, `pending` on its way there or not, and the file as the page cache
/// holds it (every write made). The file is reopened as the page cache holds
/// it, more transactions commit, and at each sync of that run the power
/// fails: every image must hold the last acknowledged commit or one in
/// flight, however the crashes chained.
pub(crate) struct Chain {
    /// The disk at the first crash.
    pub durable: Vec<u8>,
    /// Writes made before the first crash and not yet durable.
    pub pending: Vec<Op>,
    /// The states the disk may hold at the first crash.
    pub ok: Vec<Model>,
    /// The last acknowledged transaction at the first crash.
    pub min_txn: u64,
    /// Whether a torn sector may hold garbage.
    pub garble: bool,
    /// Seed of the run's transactions and fates.
    pub seed: u64,
}

/// Crash images per power loss of a chained crash.
const CHAIN_IMAGES_PER_SYNC: usize = 6;
/// Transactions committed after the reopen of a chained crash.
const CHAIN_TXNS: u64 = 3;

/// What the power losses of a chained crash must show as its run goes on.
struct ChainState {
    ok: Vec<Model>,
    in_flight: Option<Model>,
    min_txn: u64,
    garble: bool,
    rng: Rng,
    scratch: PathBuf,
    page_size: usize,
    figures: Figures,
    problems: Vec<String>,
}

impl ChainState {
    fn power_loss(&mut self, cp: &CrashPoint<'_>) {
        for fates in fates(
            &mut self.rng,
            CHAIN_IMAGES_PER_SYNC,
            cp.pending,
            self.garble,
        ) {
            let image = apply(cp.durable, cp.pending, &fates);
            let mut ok: Vec<&Model> = self.ok.iter().collect();
            ok.extend(self.in_flight.as_ref());
            let check = ImageCheck {
                ok: &ok,
                min_txn: self.min_txn,
                more_txns: 2,
            };
            if let Err(p) = check.verify(
                &image,
                cp.syncs,
                &self.scratch,
                self.page_size,
                &mut self.rng,
                &mut self.figures,
            ) && self.problems.len() < 10
            {
                self.problems.push(format!("chained: {p}"));
            }
        }
    }
}

impl Chain {
    /// Runs the chain on `live` (the file as the page cache held it), building
    /// images at `scratch`. Adds its counts to `figures`; returns the problems.
    pub(crate) fn run(
        self,
        live: &Path,
        scratch: &Path,
        page_size: usize,
        figures: &mut Figures,
    ) -> Vec<String> {
        let state = Arc::new(Mutex::new(ChainState {
            ok: self.ok,
            in_flight: None,
            min_txn: self.min_txn,
            garble: self.garble,
            rng: Rng(self.seed),
            scratch: scratch.to_path_buf(),
            page_size,
            figures: Figures::default(),
            problems: Vec::new(),
        }));
        let hook_state = state.clone();
        let recorder = Recorder::resume(self.durable, self.pending, 0, move |cp| {
            hook_state.lock().power_loss(cp)
        });
        let opts = Options::new()
            .page_size(page_size as u32)
            .map_size(16 * page_size as u64)
            .storage(move |f| recorder.wrap(f));
        let mut rng = Rng(self.seed ^ 0xc4a1);
        let mut problems = Vec::new();
        match opts.open_scratch(live) {
            Ok(db) => {
                let opened = read_model(&db);
                let s = state.lock();
                if !opened.as_ref().is_ok_and(|m| s.ok.contains(m)) {
                    figures.mixed_states += 1;
                    problems.push(format!(
                        "chained: the reopen shows txn {}, not a state the crash allowed",
                        db.last_txn_id()
                    ));
                }
                drop(s);
                let mut model = opened.unwrap_or_default();
                for _ in 0..CHAIN_TXNS {
                    let announce = |next: &Model| state.lock().in_flight = Some(next.clone());
                    let durability = random_durability(&mut rng);
                    match random_txn(&db, &mut model, &mut rng, false, durability, announce) {
                        // A commit left weak is not what a power loss keeps:
                        // the last durable one is, until a sync.
                        Ok(true) if db.durable_txn_id() != db.last_txn_id() => {
                            state.lock().in_flight = None;
                        }
                        Ok(true) => {
                            let mut s = state.lock();
                            s.ok = vec![model.clone()];
                            s.in_flight = None;
                            s.min_txn = db.last_txn_id();
                        }
                        Ok(false) => {}
                        Err(e) => {
                            figures.check_failures += 1;
                            problems.push(format!("chained: transaction after reopen: {e}"));
                            break;
                        }
                    }
                }
                // Closing makes the last commit durable, if it is not.
                state.lock().in_flight = Some(model);
                drop(db);
            }
            Err(e) => {
                figures.unopenable += 1;
                problems.push(format!("chained: reopen of the live file failed: {e}"));
            }
        }
        let s = state.lock();
        figures.chained += 1;
        figures.chained_images += s.figures.images;
        figures.images += s.figures.images;
        figures.lost_acked += s.figures.lost_acked;
        figures.mixed_states += s.figures.mixed_states;
        figures.unopenable += s.figures.unopenable;
        figures.check_failures += s.figures.check_failures;
        figures.after_txns += s.figures.after_txns;
        problems.extend(s.problems.iter().cloned());
        problems
    }
}
