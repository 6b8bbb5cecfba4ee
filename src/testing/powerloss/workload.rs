//! The workload of a power-loss run: seeded transactions on a recorded
//! database, with readers held over a few commits and over many, and the
//! final check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::expect::Expect;
use super::figures::Figures;
use super::txns::{random_durability, random_txn};
use crate::testing::recorder::Recorder;
use crate::testing::{Model, Rng, image_state, read_snapshot};
use crate::{Database, Options};

/// Runs the workload of `txns` transactions with `images` crash images in all,
/// at `page_size`. Returns the figures and the first problems found.
pub fn run(seed: u64, page_size: usize, txns: u64, images: u64) -> (Figures, Vec<String>) {
    let dir = tempfile_dir(seed);
    let path = dir.join("live.larch");
    // About one crash point per commit (two for the few big ones), but for
    // the half left weak, which sync nothing: at least three per five
    // commits.
    let per_point = images.div_ceil(txns * 3 / 5).max(2) as usize;
    let expect = Arc::new(Mutex::new(Expect {
        acked: Model::new(),
        acked_txn: 0,
        in_flight: None,
        readers: Vec::new(),
        figures: Figures {
            seed,
            page_size,
            ..Figures::default()
        },
        rng: Rng(seed ^ 0x5eed),
        scratch: dir.join("image.larch"),
        page_size,
        per_point,
        problems: Vec::new(),
        syncs: 0,
    }));
    let hook_expect = expect.clone();
    let recorder = Recorder::new(move |cp| hook_expect.lock().crash_point(cp));
    let hook = recorder.clone();
    let opts = Options::new()
        .page_size(page_size as u32)
        .map_size(16 * page_size as u64)
        .storage(move |f| hook.wrap(f));
    let db = opts.open_scratch(&path).expect("open the live database");

    let mut rng = Rng(seed);
    let mut model = Model::new();
    // Readers held over some commits: at most one short one (1 to 4
    // commits) and one long one (20 to 59), each with the commit it ends
    // after, the pages its snapshot reaches, and what it read at first.
    let mut readers: Vec<Held> = Vec::new();
    let mut committed = 0;
    let mut attempts = 0u64;
    while committed < txns {
        let (ended, kept): (Vec<_>, Vec<_>) =
            readers.into_iter().partition(|h| committed >= h.until);
        readers = kept;
        for h in ended {
            h.end(&mut expect.lock().figures);
        }
        let short = readers.iter().any(|h| !h.long);
        if !short && rng.below(5) == 0 {
            let until = committed + 1 + rng.below(4);
            readers.push(Held::begin(&db, &path, page_size, until, false));
        }
        if !readers.iter().any(|h| h.long) && rng.below(8) == 0 {
            let until = committed + 20 + rng.below(40);
            readers.push(Held::begin(&db, &path, page_size, until, true));
            expect.lock().figures.long_readers += 1;
        }
        expect.lock().readers = readers.iter().map(|h| h.reach.clone()).collect();
        let announce = |next: &Model| expect.lock().in_flight = Some(next.clone());
        let syncs_before = expect.lock().syncs;
        // Every tenth attempt is a big transaction.
        attempts += 1;
        let big = attempts.is_multiple_of(10);
        // Every 40th deletes most keys and compacts: the file is cut.
        if attempts.is_multiple_of(40) {
            shrink(&db, &mut model, &mut rng, &expect);
            committed += 1;
            continue;
        }
        // Every durability, mixed: a commit left weak is visible but not
        // what a power loss keeps, until the next durable commit or sync.
        let durability = random_durability(&mut rng);
        let after_weak = db.durable_txn_id() != db.last_txn_id();
        let done = random_txn(&db, &mut model, &mut rng, big, durability, announce);
        if !done.expect("workload transaction") {
            continue;
        }
        committed += 1;
        let mut e = expect.lock();
        match e.syncs - syncs_before {
            0 => e.figures.weak_commits += 1,
            1 => e.figures.single_sync_commits += 1,
            _ => e.figures.two_sync_commits += 1,
        }
        if after_weak && e.syncs - syncs_before == 1 {
            e.figures.one_sync_after_weak += 1;
        }
        e.in_flight = None;
        if db.durable_txn_id() == db.last_txn_id() {
            e.acked = model.clone();
            e.acked_txn = db.last_txn_id();
        }
        // Now and then an explicit sync makes the weak commits durable.
        if e.acked_txn != db.last_txn_id() && rng.below(6) == 0 {
            e.in_flight = Some(model.clone());
            let before = e.syncs;
            drop(e);
            db.sync().expect("sync");
            let mut e = expect.lock();
            e.figures.syncs_called += 1;
            if e.syncs - before == 1 {
                e.figures.one_sync_after_weak += 1;
            }
            e.acked = model.clone();
            e.acked_txn = db.last_txn_id();
            e.in_flight = None;
        }
    }
    for h in readers {
        h.end(&mut expect.lock().figures);
    }
    expect.lock().readers.clear();
    // Closing makes the weak commits durable: its syncs are crash points too.
    if db.durable_txn_id() != db.last_txn_id() {
        expect.lock().in_flight = Some(model.clone());
        db.sync().expect("the closing sync");
        expect.lock().figures.syncs_called += 1;
    }
    recorder.disarm();
    let final_check = db.check();
    let mut e = expect.lock();
    if let Err(err) = final_check {
        e.figures.check_failures += 1;
        e.problem(format!("live database fails check: {err}"));
    }
    e.figures.txns = committed;
    let out = (e.figures.clone(), e.problems.clone());
    drop(e);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Deletes nine keys in ten of every table in one commit, then compacts
/// (several commits of the same data, the last ones cutting the file).
fn shrink(db: &Database, model: &mut Model, rng: &mut Rng, expect: &Mutex<Expect>) {
    let mut next = model.clone();
    let w = db.begin_write().expect("begin the big delete");
    for (name, entries) in next.iter_mut() {
        let mut t = w.open_table(name).expect("open a table");
        entries.retain(|key, _| {
            if rng.below(10) == 0 {
                return true;
            }
            t.remove(key).expect("remove a key");
            false
        });
    }
    expect.lock().in_flight = Some(next.clone());
    w.commit().expect("commit the big delete");
    *model = next;
    {
        let mut e = expect.lock();
        e.acked = model.clone();
        e.acked_txn = db.last_txn_id();
        e.figures.compactions += 1;
    }
    // Every commit of the compaction holds the same data: acknowledged.
    let returned = db.compact().expect("compact");
    let mut e = expect.lock();
    e.acked_txn = db.last_txn_id();
    e.in_flight = None;
    if returned > 0 {
        e.figures.cuts += 1;
    }
}

/// A reader the workload holds over some commits.
struct Held {
    txn: crate::ReadTxn,
    /// The commit count it ends at.
    until: u64,
    long: bool,
    /// The pages its snapshot reaches, which no write may touch.
    reach: Vec<u64>,
    /// What it read when it began.
    seen: Model,
}

impl Held {
    fn begin(db: &Database, path: &Path, page_size: usize, until: u64, long: bool) -> Self {
        let txn = db.begin_read().expect("begin_read");
        let image = std::fs::read(path).expect("read the live file");
        let reach = image_state(&image, page_size)
            .into_iter()
            .find(|s| s.txn_id == txn.id())
            .and_then(|s| s.reachable)
            .unwrap_or_default();
        let seen = read_snapshot(&txn).expect("read a new snapshot");
        Held {
            txn,
            until,
            long,
            reach,
            seen,
        }
    }

    /// Reads the snapshot again: it must hold what it held at first.
    fn end(self, figures: &mut Figures) {
        if read_snapshot(&self.txn).ok().as_ref() != Some(&self.seen) {
            figures.reader_changes += 1;
        }
    }
}

fn tempfile_dir(seed: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "larch-powerloss-{}-{seed}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}
