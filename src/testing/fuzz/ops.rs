//! The target `ops`: operations against a model, with commits, aborts and
//! crashes whose images must hold the acknowledged or the in-flight state.

use super::scratch::{Scratch, open};
use crate::Options;
use crate::testing::recorder::{Fate, Op, Recorder, apply};
use crate::testing::{Model, read_model};

/// The durable image and the pending operations at a crash point.
type Captured = (Vec<u8>, Vec<Op>);

/// Target `ops`: the input is a sequence of operations against a `BTreeMap`
/// model, with commits, aborts and crashes. A crash builds the file a power
/// loss at the next sync would leave (the input chooses which pending writes
/// land, which are lost and which are torn) and reopens it: it must hold the
/// acknowledged state or the one in flight, and pass `check`.
///
/// Panics when larch breaks a promise: that is the finding.
pub fn ops(data: &[u8]) {
    let scratch = Scratch::new("ops");
    let recorder = Recorder::new(|_| {});
    let hook = recorder.clone();
    let captured: std::sync::Arc<parking_lot::Mutex<Option<Captured>>> = Default::default();
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let Some(page_shift) = next() else { return };
    let page_size = 512u32 << (page_shift % 4);
    let opts = Options::new()
        .page_size(page_size)
        .map_size(16 * u64::from(page_size))
        .storage(move |f| hook.wrap(f));
    let db = opts.open_scratch(&scratch.0).expect("create");
    let mut acked = Model::new();
    let mut pending = acked.clone();
    let mut txn = None;
    while let Some(op) = next() {
        let key = match next().unwrap_or(0) {
            b if b >= 200 => crate::testing::long_key(page_size as usize, b),
            b => format!("k{b:03}").into_bytes(),
        };
        match op % 16 {
            0..=6 => {
                let len = match next().unwrap_or(0) {
                    n if n > 240 => {
                        // Both sides of each boundary of the layout.
                        let lens = crate::testing::boundary_lengths(page_size as usize, key.len());
                        lens[usize::from(n) % lens.len()]
                    }
                    n if n > 224 => 600 + usize::from(n) * 20,
                    n => usize::from(n % 64),
                };
                let value = vec![op; len];
                let w = txn.get_or_insert_with(|| db.begin_write().expect("begin"));
                w.open_table("t")
                    .expect("table")
                    .insert(&key, &value)
                    .expect("insert");
                pending
                    .entry("t".to_owned())
                    .or_default()
                    .insert(key, value);
            }
            7..=9 => {
                let w = txn.get_or_insert_with(|| db.begin_write().expect("begin"));
                let removed = w
                    .open_table("t")
                    .expect("table")
                    .remove(&key)
                    .expect("remove");
                let had = pending
                    .entry("t".to_owned())
                    .or_default()
                    .remove(&key)
                    .is_some();
                assert_eq!(removed, had);
            }
            10 => {
                if let Some(w) = txn.as_mut() {
                    w.delete_table("t").expect("delete");
                    pending.remove("t");
                }
            }
            11 | 12 => {
                if let Some(w) = txn.take() {
                    w.commit().expect("commit");
                    acked = pending.clone();
                }
            }
            13 => {
                txn = None;
                pending = acked.clone();
            }
            _ => {
                // Crash at the next sync of the running transaction's commit.
                let Some(w) = txn.take() else { continue };
                let choices: Vec<u8> = (0..8).map(|_| next().unwrap_or(0)).collect();
                let cap = captured.clone();
                let stop_after = usize::from(choices[0] % 2);
                let mut seen = 0;
                recorder.set_on_sync(move |cp| {
                    if seen == stop_after && cap.lock().is_none() {
                        *cap.lock() = Some((cp.durable.to_vec(), cp.pending.to_vec()));
                    }
                    seen += 1;
                });
                w.commit().expect("commit");
                recorder.set_on_sync(|_| {});
                let in_flight = pending.clone();
                let Some((durable, ops)) = captured.lock().take() else {
                    acked = pending.clone();
                    continue;
                };
                let fates: Vec<Fate> = (0..ops.len())
                    .map(|i| match choices[1 + i % 7] % 3 {
                        0 => Fate::Applied,
                        1 => Fate::Dropped,
                        _ => Fate::Torn {
                            seed: u64::from(choices[1 + i % 7]) + i as u64,
                            garble: true,
                        },
                    })
                    .collect();
                let image = apply(&durable, &ops, &fates);
                let crash = Scratch::new("crash");
                std::fs::write(&crash.0, &image).expect("write the crash image");
                let recovered = open(&crash.0, page_size).expect("a crash image opens");
                recovered.check().expect("a crash image passes check");
                let model = read_model(&recovered).expect("a crash image reads");
                assert!(
                    model == acked || model == in_flight,
                    "a crash image holds neither the acknowledged nor the in-flight state"
                );
                acked = in_flight;
            }
        }
    }
    drop(txn);
    db.check().expect("the live file passes check");
    let model = read_model(&db).expect("read");
    assert!(model == acked, "the live file lost a commit");
}
