//! The power-loss simulator (docs/reliability.md, suite 3).
//!
//! A seeded workload runs on a database whose storage is a [`Recorder`]. At
//! every sync (a crash point) the monitor checks that no pending write touches
//! a page reachable from either durable meta or from a live reader, and crash
//! images are built from the durable image plus subsets of the pending
//! operations, each applied, dropped or torn at 512-byte sectors. Every image
//! must open through the real map, pass `check`, and hold exactly the last
//! acknowledged commit or the one in flight; then more transactions run on it
//! and it must pass `check` again.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::recorder::{CrashPoint, Fate, NoSync, Op, Recorder, apply};
use super::{Model, Rng, image_state, read_model};
use crate::pager::FileStorage;
use crate::{Database, Options};

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
    /// Commits too big for the seal list: pages synced, then the meta.
    pub two_sync_commits: u64,
    /// Chained crashes: a process crash at a crash point, a reopen of what
    /// the page cache held, more transactions, then a power loss.
    pub chained: u64,
    /// Crash images built from the power losses of the chained crashes
    /// (counted in `images` too).
    pub chained_images: u64,
}

impl Figures {
    /// Whether the run found no problem.
    pub fn clean(&self) -> bool {
        self.lost_acked == 0
            && self.mixed_states == 0
            && self.unopenable == 0
            && self.check_failures == 0
            && self.monitor_violations == 0
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RELIABILITY suite=powerloss seed={} page_size={} txns={} crash_points={} images={} \
             lost_acked={} mixed_states={} unopenable={} check_failures={} monitor_violations={} \
             after_txns={} single_sync_commits={} two_sync_commits={} chained={} \
             chained_images={}",
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
            self.chained,
            self.chained_images
        )
    }
}

/// What the crash images must show.
struct Expect {
    acked: Model,
    acked_txn: u64,
    in_flight: Option<Model>,
    /// Pages reachable by the live readers' snapshots.
    readers: Vec<Vec<u64>>,
    figures: Figures,
    rng: Rng,
    scratch: PathBuf,
    page_size: usize,
    per_point: usize,
    /// The first problems seen, for the report.
    problems: Vec<String>,
    /// Crash points seen so far.
    syncs: u64,
}

const TABLES: [&str; 3] = ["alpha", "beta", "gamma"];

/// One random transaction on `db`, mirrored in `model`: inserts of small and
/// overflowing values, removals, table creation and deletion; a `big` one
/// makes 60 to 119 changes, too many to seal in the meta at small pages. About one in
/// twelve aborts (`model` is then left as it was). `before_commit` sees the
/// model the commit will make durable. Returns whether it committed.
fn random_txn(
    db: &Database,
    model: &mut Model,
    rng: &mut Rng,
    big: bool,
    before_commit: impl FnOnce(&Model),
) -> crate::Result<bool> {
    let mut next = model.clone();
    let mut w = db.begin_write()?;
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
        let key = format!("key{:04}", rng.below(400)).into_bytes();
        match rng.below(10) {
            0..=2 => {
                t.remove(&key)?;
                entries.remove(&key);
            }
            3 => {
                let len = 600 + rng.below(6000) as usize;
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

fn open_fast(path: &Path, page_size: usize) -> crate::Result<Database> {
    let opts = Options::new()
        .page_size(page_size as u32)
        .map_size(1 << 30)
        .storage(|f| Ok(Box::new(NoSync(FileStorage::new(f)))));
    opts.open_scratch(path)
}

impl Expect {
    fn problem(&mut self, what: String) {
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
        for op in cp.pending {
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

    fn crash_point(&mut self, cp: &CrashPoint<'_>) {
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

/// Fates for the `pending` operations of one crash point: every
/// applied/dropped combination when there are few, then random mixes with
/// torn writes, `per_point` in all.
fn fates(rng: &mut Rng, per_point: usize, pending: &[Op], garble: bool) -> Vec<Vec<Fate>> {
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

/// What a crash image must hold.
struct ImageCheck<'a> {
    /// The states it may hold: the last acknowledged commit, and the ones in
    /// flight.
    ok: &'a [&'a Model],
    /// The last acknowledged transaction: a state older than it lost it.
    min_txn: u64,
    /// Transactions to run on the image once it checks out.
    more_txns: u64,
}

impl ImageCheck<'_> {
    /// Opens `image` through the real map (as file `scratch`), checks it and
    /// compares it with the allowed states, then writes to it and checks it
    /// again. Counts into `figures`; returns the problem found, if any.
    fn verify(
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
            if let Err(e) = random_txn(&db, &mut model, rng, big, |_| {}) {
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
            .map_size(1 << 30)
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
                    match random_txn(&db, &mut model, &mut rng, false, announce) {
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

/// Runs the workload of `txns` transactions with `images` crash images in all,
/// at `page_size`. Returns the figures and the first problems found.
pub fn run(seed: u64, page_size: usize, txns: u64, images: u64) -> (Figures, Vec<String>) {
    let dir = tempfile_dir(seed);
    let path = dir.join("live.larch");
    // About one crash point per commit (two for the few big ones).
    let per_point = images.div_ceil(txns).max(2) as usize;
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
        .map_size(1 << 30)
        .storage(move |f| hook.wrap(f));
    let db = opts.open_scratch(&path).expect("open the live database");

    let mut rng = Rng(seed);
    let mut model = Model::new();
    let mut reader: Option<(crate::ReadTxn<'_>, u64)> = None;
    let mut committed = 0;
    let mut attempts = 0u64;
    while committed < txns {
        // Sometimes hold a reader over the next few commits.
        if reader
            .as_ref()
            .is_some_and(|(_, until)| committed >= *until)
        {
            reader = None;
            expect.lock().readers.clear();
        }
        if reader.is_none() && rng.below(5) == 0 {
            let r = db.begin_read().expect("begin_read");
            let image = std::fs::read(&path).expect("read the live file");
            let reach = image_state(&image, page_size)
                .into_iter()
                .find(|s| s.txn_id == r.id())
                .and_then(|s| s.reachable)
                .unwrap_or_default();
            expect.lock().readers = vec![reach];
            reader = Some((r, committed + 1 + rng.below(4)));
        }
        let announce = |next: &Model| expect.lock().in_flight = Some(next.clone());
        let syncs_before = expect.lock().syncs;
        // Every tenth attempt is a big transaction.
        attempts += 1;
        let big = attempts.is_multiple_of(10);
        if !random_txn(&db, &mut model, &mut rng, big, announce).expect("workload transaction") {
            continue;
        }
        committed += 1;
        let mut e = expect.lock();
        match e.syncs - syncs_before {
            1 => e.figures.single_sync_commits += 1,
            2 => e.figures.two_sync_commits += 1,
            _ => {}
        }
        e.acked = model.clone();
        e.acked_txn = db.last_txn_id();
        e.in_flight = None;
    }
    drop(reader);
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
