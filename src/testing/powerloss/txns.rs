//! The random transactions of the workload and of the recovered images.

use crate::testing::{Model, Rng};
use crate::{Database, Durability};

const TABLES: [&str; 3] = ["alpha", "beta", "gamma"];

/// One random transaction on `db`, mirrored in `model`: inserts of small and
/// overflowing values under short and long keys, removals, table creation and deletion; a `big` one
/// makes 60 to 119 changes, too many to seal in the meta at small pages. About one in
/// twelve aborts (`model` is then left as it was). `before_commit` sees the
/// model the commit will make (durable, unless `durability` leaves it
/// weak). Returns whether it committed.
pub(super) fn random_txn(
    db: &Database,
    model: &mut Model,
    rng: &mut Rng,
    big: bool,
    durability: Durability,
    before_commit: impl FnOnce(&Model),
) -> crate::Result<bool> {
    let mut next = model.clone();
    let mut w = db.begin_write()?;
    w.set_durability(durability);
    let ops = if big {
        60 + rng.below(60)
    } else {
        1 + rng.below(12)
    };
    for _ in 0..ops {
        let name = TABLES[rng.below(TABLES.len() as u64) as usize];
        if rng.below(40) == 0 {
            w.delete_table(name)?;
            next.remove(name);
            continue;
        }
        let mut t = w.open_table(name)?;
        let entries = next.entry(name.to_owned()).or_default();
        // One key in eight on either side of the longest a node holds
        // whole, or far past it.
        let key = match rng.below(8) {
            0 => crate::testing::long_key(db.page_size() as usize, rng.below(40) as u8),
            _ => format!("key{:04}", rng.below(400)).into_bytes(),
        };
        match rng.below(10) {
            0..=2 => {
                t.remove(&key)?;
                entries.remove(&key);
            }
            3 => {
                // Inline, packed and of runs of their own, and on both
                // sides of each boundary between them.
                let lens = crate::testing::boundary_lengths(db.page_size() as usize, key.len());
                let len = match rng.below(3) {
                    0 => lens[rng.below(lens.len() as u64) as usize],
                    _ => 600 + rng.below(6000) as usize,
                };
                let v = rng.bytes(len);
                t.insert(&key, &v)?;
                entries.insert(key, v);
            }
            _ => {
                let len = rng.below(120) as usize;
                let v = rng.bytes(len);
                t.insert(&key, &v)?;
                entries.insert(key, v);
            }
        }
    }
    if rng.below(12) == 0 {
        w.abort();
        return Ok(false);
    }
    before_commit(&next);
    w.commit()?;
    *model = next;
    Ok(true)
}

/// A durability for a transaction of a mixed workload: half `Immediate`,
/// the rest `Eventual` and `None`.
pub(super) fn random_durability(rng: &mut Rng) -> Durability {
    match rng.below(4) {
        0 => Durability::Eventual,
        1 => Durability::None,
        _ => Durability::Immediate,
    }
}
