//! Crash images: the fates of a crash point's pending writes, and the check
//! every image built from them must pass.

use std::path::Path;

use super::figures::Figures;
use super::txns::random_txn;
use crate::pager::FileStorage;
use crate::testing::recorder::{Fate, NoSync, Op};
use crate::testing::{Model, Rng, read_model};
use crate::{Database, Durability, Options};

/// Fates for the `pending` operations of one crash point: every
/// applied/dropped combination when there are few, then random mixes with
/// torn writes, `per_point` in all.
pub(super) fn fates(
    rng: &mut Rng,
    per_point: usize,
    pending: &[Op],
    garble: bool,
) -> Vec<Vec<Fate>> {
    let k = pending.len();
    let mut out = Vec::new();
    if k < 16 && (1usize << k) <= per_point / 2 {
        for mask in 0..(1u32 << k) {
            out.push(
                (0..k)
                    .map(|i| {
                        if mask & (1 << i) != 0 {
                            Fate::Applied
                        } else {
                            Fate::Dropped
                        }
                    })
                    .collect(),
            );
        }
    } else {
        out.push(vec![Fate::Applied; k]);
        out.push(vec![Fate::Dropped; k]);
    }
    while out.len() < per_point.max(2) {
        let fates = (0..k)
            .map(|_| match rng.below(3) {
                0 => Fate::Applied,
                1 => Fate::Dropped,
                _ => Fate::Torn {
                    seed: rng.next_u64(),
                    garble,
                },
            })
            .collect();
        out.push(fates);
    }
    out
}

fn open_fast(path: &Path, page_size: usize) -> crate::Result<Database> {
    let opts = Options::new()
        .page_size(page_size as u32)
        .map_size(1 << 30)
        .storage(|f| Ok(Box::new(NoSync(FileStorage::new(f)))));
    opts.open_scratch(path)
}

/// What a crash image must hold.
pub(super) struct ImageCheck<'a> {
    /// The states it may hold: the last acknowledged commit, and the ones in
    /// flight.
    pub(super) ok: &'a [&'a Model],
    /// The last acknowledged transaction: a state older than it lost it.
    pub(super) min_txn: u64,
    /// Transactions to run on the image once it checks out.
    pub(super) more_txns: u64,
}

impl ImageCheck<'_> {
    /// Opens `image` through the real map (as file `scratch`), checks it and
    /// compares it with the allowed states, then writes to it and checks it
    /// again. Counts into `figures`; returns the problem found, if any.
    pub(super) fn verify(
        &self,
        image: &[u8],
        sync: u64,
        scratch: &Path,
        page_size: usize,
        rng: &mut Rng,
        figures: &mut Figures,
    ) -> Result<(), String> {
        figures.images += 1;
        if std::fs::write(scratch, image).is_err() {
            figures.unopenable += 1;
            return Err(format!("image at sync {sync} could not be written"));
        }
        let db = match open_fast(scratch, page_size) {
            Ok(db) => db,
            Err(e) => {
                figures.unopenable += 1;
                return Err(format!("image at sync {sync} does not open: {e}"));
            }
        };
        let mut model = match (db.check(), read_model(&db)) {
            (Ok(_), Ok(model)) => model,
            (Err(e), _) | (_, Err(e)) => {
                figures.check_failures += 1;
                return Err(format!("image at sync {sync} fails check: {e}"));
            }
        };
        if !self.ok.contains(&&model) {
            if db.last_txn_id() < self.min_txn {
                figures.lost_acked += 1;
            } else {
                figures.mixed_states += 1;
            }
            return Err(format!(
                "image at sync {sync} holds txn {}, neither txn {} nor one in flight",
                db.last_txn_id(),
                self.min_txn
            ));
        }
        // Keep writing on the recovered file.
        for _ in 0..self.more_txns {
            let big = rng.below(15) == 0;
            if let Err(e) = random_txn(&db, &mut model, rng, big, Durability::Immediate, |_| {}) {
                figures.check_failures += 1;
                return Err(format!("write after recovery failed: {e}"));
            }
        }
        figures.after_txns += self.more_txns;
        if let Err(e) = db.check() {
            figures.check_failures += 1;
            return Err(format!("check after more transactions: {e}"));
        }
        Ok(())
    }
}
