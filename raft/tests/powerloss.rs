//! A power loss keeps what the store acknowledged, and its state machine
//! is a prefix of its log: every write and sync of a store's database is
//! recorded, and at each sync the file a power loss would leave (the
//! writes since the last sync each kept, lost or torn) is opened and
//! checked.
//!
//! A SIGKILL leaves the page cache, so it proves an append commits before
//! it is reported flushed; this proves the commit was also synced, and
//! that the state machine's `Eventual` commits (applies, snapshots) are
//! never durable without the ones before them, nor lost when a purge that
//! needed them is durable.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use larch::testing::Rng;
use larch::testing::{Fate, Recorder, apply};
use larch::{Database, Options};
use larch_raft::{Request, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote,
};

type NodeId = u64;

fn log_id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// The key the entry at `index` sets: 37 keys, each set many times.
fn key_of(index: u64) -> String {
    format!("k{:02}", index % 37)
}

fn value_of(index: u64) -> String {
    format!("v{index}-{}", "y".repeat((index % 61) as usize))
}

fn entry_of(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Request::Set {
            key: key_of(index),
            value: value_of(index),
        }),
    }
}

/// The map after the entries `1..=applied`.
fn map_after(applied: u64) -> BTreeMap<String, String> {
    (1..=applied).map(|i| (key_of(i), value_of(i))).collect()
}

/// What the store had acknowledged when a sync began: the last index
/// whose append returned, and the vote's term.
#[derive(Clone, Copy, Default)]
struct Acked {
    index: u64,
    term: u64,
}

/// A file a power loss leaves, and what was acknowledged before it.
struct Image {
    bytes: Vec<u8>,
    acked: Acked,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Opens the store at `path`, appends `batches` of entries (votes between
/// some), applies behind the log, builds snapshots and purges below them;
/// returns the power-loss images recorded at its syncs.
fn run_store(path: &Path, batches: u64, seed: u64) -> Vec<Image> {
    let acked_index = Arc::new(AtomicU64::new(0));
    let acked_term = Arc::new(AtomicU64::new(0));
    let images = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder::new({
        let (acked_index, acked_term, images) =
            (acked_index.clone(), acked_term.clone(), images.clone());
        let mut rng = Rng(seed);
        move |cp| {
            let acked = Acked {
                index: acked_index.load(Ordering::SeqCst),
                term: acked_term.load(Ordering::SeqCst),
            };
            // Before the sync: everything since the last one lost, and a
            // random mix of kept, lost and torn writes.
            let dropped = vec![Fate::Dropped; cp.pending.len()];
            let mixed: Vec<Fate> = cp
                .pending
                .iter()
                .map(|_| match rng.below(4) {
                    0 => Fate::Dropped,
                    1 => Fate::Torn {
                        seed: rng.next_u64(),
                        garble: rng.below(2) == 0,
                    },
                    _ => Fate::Applied,
                })
                .collect();
            let mut images = images.lock().unwrap();
            for fates in [dropped, mixed] {
                images.push(Image {
                    bytes: apply(cp.durable, cp.pending, &fates),
                    acked,
                });
            }
        }
    });
    let options = Options::new().storage({
        let recorder = recorder.clone();
        move |file| recorder.wrap(file)
    });
    // SAFETY: the file is this test's alone.
    let db = unsafe { options.open(path) }.unwrap();
    let (mut log, mut sm) = larch_raft::stores(db.clone());
    let mut rng = Rng(seed ^ 0x5eed);
    runtime().block_on(async {
        let mut next = 1;
        let mut applied = 0;
        for batch in 0..batches {
            if batch % 7 == 0 {
                let term = batch / 7 + 1;
                log.save_vote(&Vote::new(term, 1)).await.unwrap();
                acked_term.store(term, Ordering::SeqCst);
            }
            let n = 1 + rng.below(30);
            let entries: Vec<_> = (next..next + n).map(entry_of).collect();
            log.blocking_append(entries).await.unwrap();
            next += n;
            acked_index.store(next - 1, Ordering::SeqCst);
            // The state machine follows the log a little behind.
            let upto = next - 1 - rng.below(5).min(next - 1 - applied);
            if upto > applied {
                let entries = log.try_get_log_entries(applied + 1..=upto).await.unwrap();
                sm.apply(entries).await.unwrap();
                applied = upto;
            }
            if batch % 25 == 24 {
                let snapshot = sm
                    .get_snapshot_builder()
                    .await
                    .build_snapshot()
                    .await
                    .unwrap();
                let last = snapshot.meta.last_log_id.unwrap();
                if last.index > 20 {
                    log.purge(log_id(last.index - 20)).await.unwrap();
                }
            }
        }
    });
    drop((log, sm, db));
    recorder.disarm();
    Arc::try_unwrap(images).ok().unwrap().into_inner().unwrap()
}

/// Checks the store a power loss left in `bytes` against what was
/// acknowledged; returns the failures.
fn check_image(dir: &Path, n: usize, image: &Image) -> Vec<String> {
    let path = dir.join(format!("image-{n}.larch"));
    std::fs::write(&path, &image.bytes).unwrap();
    let mut failures = Vec::new();
    // SAFETY: the file is this test's alone.
    let db: Database = match unsafe { Database::open(&path) } {
        Ok(db) => db,
        Err(e) => return vec![format!("image {n} does not open: {e}")],
    };
    if let Err(e) = db.check() {
        failures.push(format!("image {n} fails check: {e}"));
    }
    let (mut log, mut sm) = larch_raft::stores(db.clone());
    runtime().block_on(async {
        let vote = log.read_vote().await.unwrap();
        let term = vote.map_or(0, |v| v.leader_id().term);
        if term < image.acked.term {
            failures.push(format!(
                "image {n}: vote of term {term}, {} acknowledged",
                image.acked.term
            ));
        }
        let state = log.get_log_state().await.unwrap();
        let purged = state.last_purged_log_id.map_or(0, |id| id.index);
        let last = state.last_log_id.map_or(0, |id| id.index);
        if last < image.acked.index {
            failures.push(format!(
                "image {n}: log ends at {last}, {} acknowledged",
                image.acked.index
            ));
        }
        let entries = log.try_get_log_entries(..).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        let expected: Vec<u64> = (purged + 1..=last).collect();
        if indexes != expected {
            failures.push(format!(
                "image {n}: log holds {} entries from {:?}, not {}..={last}",
                indexes.len(),
                indexes.first(),
                purged + 1
            ));
        }
        for e in &entries {
            if e.payload != entry_of(e.log_id.index).payload {
                failures.push(format!("image {n}: entry {} differs", e.log_id.index));
            }
        }
        let (applied, _) = sm.applied_state().await.unwrap();
        let applied = applied.map_or(0, |id| id.index);
        // The map is exactly the one after a prefix of the log, and a
        // purge durable means the state it stood on is durable too.
        let (_, pairs) = sm.dump().unwrap();
        let map: BTreeMap<String, String> = pairs.into_iter().collect();
        if map != map_after(applied) {
            failures.push(format!("image {n}: the map is not the one at {applied}"));
        }
        if applied < purged {
            failures.push(format!(
                "image {n}: applied {applied} below purged {purged}"
            ));
        }
        if purged > 0 {
            match sm.get_current_snapshot().await.unwrap() {
                Some(s) if s.meta.last_log_id.map_or(0, |id| id.index) >= purged => {}
                _ => failures.push(format!("image {n}: purged {purged} without its snapshot")),
            }
        }
    });
    drop((log, sm, db));
    let _ = std::fs::remove_file(&path);
    failures
}

#[test]
fn a_power_loss_keeps_every_acknowledged_entry_and_a_prefix_of_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let images = run_store(&dir.path().join("node.larch"), 150, 0x1a4c);
    assert!(images.len() > 200, "{} images", images.len());
    let mut failures = Vec::new();
    let mut acked_max = 0;
    for (n, image) in images.iter().enumerate() {
        acked_max = acked_max.max(image.acked.index);
        failures.extend(check_image(dir.path(), n, image));
    }
    larch::testing::report(&format!(
        "RELIABILITY suite=powerloss part=raft images={} acked_entries={acked_max} failures={}",
        images.len(),
        failures.len()
    ));
    assert!(
        failures.is_empty(),
        "{} failures: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}
