//! I/O fault injection (docs/reliability.md, suite 4).
//!
//! A countdown storage fails the n-th write, resize or sync with EIO, with
//! ENOSPC, or as a short write, for n = 1, 2, ... until the workload completes
//! without reaching the fault. Every fault must come back as `Err` (no panic)
//! and leave a file that reopens to exactly the state before or after the
//! failed transaction, passing `check` with no page leaked. A failed write or
//! sync poisons the handle. A failed resize (commit step 4, before anything is
//! written; ENOSPC gives `MapFull`, and the disk stays full until the trap is
//! disarmed) must not: the handle keeps the state before, commits again once
//! the disk has room, and the file reopens to that next commit.

use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::powerloss::{self, Chain};
use super::{Model, Recorder, Rng, read_model};
use crate::pager::{FileStorage, Storage};
use crate::{Database, Error, Options};

/// Which operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A write.
    Write,
    /// A resize.
    Resize,
    /// A sync.
    Sync,
}

/// How it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// EIO.
    Eio,
    /// ENOSPC.
    NoSpace,
    /// Half the bytes are written, then the write fails.
    Short,
}

/// A fault that a test arms while a database runs: the storage built by
/// [`Trap::storage`] (the hook for `Options::storage`) fails the `n`-th
/// operation of `kind` after [`Trap::arm`], once. Clones share the trap.
///
/// A resize that fails with ENOSPC leaves the disk full: every later resize
/// that would grow the file fails the same way, until [`Trap::disarm`].
#[derive(Clone, Default)]
pub struct Trap {
    armed: Arc<Mutex<Option<Armed>>>,
    fired: Arc<AtomicU64>,
    /// Set when a resize failed with ENOSPC: the disk is full.
    full: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Clone, Copy)]
struct Armed {
    kind: Kind,
    fault: Fault,
    /// Operations of `kind` left before the failing one.
    left: u64,
}

impl Trap {
    /// A trap that is not armed.
    pub fn new() -> Trap {
        Trap::default()
    }

    /// Makes the `n`-th operation of `kind` from now on (`n >= 1`) fail with
    /// `fault`, replacing any fault armed before.
    pub fn arm(&self, kind: Kind, fault: Fault, n: u64) {
        *self.lock() = Some(Armed {
            kind,
            fault,
            left: n.max(1),
        });
    }

    /// Disarms the trap, if it has not fired yet, and frees the disk.
    pub fn disarm(&self) {
        *self.lock() = None;
        self.full.store(false, Ordering::SeqCst);
    }

    /// Faults fired so far.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::SeqCst)
    }

    /// The storage of `file`, failing where the trap says.
    pub fn storage(&self, file: std::fs::File) -> Box<dyn Storage> {
        Box::new(Trapped {
            file: FileStorage::new(file),
            trap: self.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Armed>> {
        self.armed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an operation of `kind`; the fault, if it is the failing one.
    fn hit(&self, kind: Kind) -> Option<Fault> {
        let mut armed = self.lock();
        let a = armed.as_mut().filter(|a| a.kind == kind)?;
        a.left -= 1;
        if a.left > 0 {
            return None;
        }
        let fault = a.fault;
        *armed = None;
        self.fired.fetch_add(1, Ordering::SeqCst);
        Some(fault)
    }
}

fn error(fault: Fault) -> io::Error {
    match fault {
        Fault::NoSpace => io::Error::from_raw_os_error(28),
        Fault::Eio | Fault::Short => io::Error::from_raw_os_error(5),
    }
}

struct Trapped {
    file: FileStorage,
    trap: Trap,
}

impl Storage for Trapped {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        match self.trap.hit(Kind::Write) {
            Some(Fault::Short) => {
                self.file.write_at(offset, &data[..data.len() / 2])?;
                Err(io::Error::new(io::ErrorKind::WriteZero, "short write"))
            }
            Some(fault) => Err(error(fault)),
            None => self.file.write_at(offset, data),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        match self.trap.hit(Kind::Resize) {
            Some(fault) => Err(error(fault)),
            None => self.file.set_len(len),
        }
    }

    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        if self.trap.full.load(Ordering::SeqCst) {
            return Err(error(Fault::NoSpace));
        }
        match self.trap.hit(Kind::Resize) {
            Some(Fault::NoSpace) => {
                self.trap.full.store(true, Ordering::SeqCst);
                Err(error(Fault::NoSpace))
            }
            Some(fault) => Err(error(fault)),
            None => self.file.allocate(from, to),
        }
    }

    fn sync(&self) -> io::Result<()> {
        match self.trap.hit(Kind::Sync) {
            Some(fault) => Err(error(fault)),
            None => self.file.sync(),
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Seed of the workload.
    pub seed: u64,
    /// Runs in which the fault fired.
    pub fault_sites: u64,
    /// Runs that panicked.
    pub panics: u64,
    /// Reopened files that held neither the state before nor after the failed
    /// transaction, or failed `check`.
    pub corruptions: u64,
    /// Write transactions that started on a poisoned handle, or errors that
    /// did not poison it.
    pub poison_violations: u64,
    /// Faults that came back as another error than `Error::Io`.
    pub wrong_errors: u64,
    /// Failed syncs followed by a reopen in the same boot (the page cache
    /// still showing what the failed writeback lost), more commits and a
    /// power loss.
    pub eio_reopens: u64,
    /// Crash images built from those power losses.
    pub eio_images: u64,
}

impl Figures {
    /// Whether the run found no problem.
    pub fn clean(&self) -> bool {
        self.panics == 0
            && self.corruptions == 0
            && self.poison_violations == 0
            && self.wrong_errors == 0
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RELIABILITY suite=faults seed={} fault_sites={} panics={} corruptions={} poison_violations={} \
             wrong_errors={} eio_reopens={} eio_images={}",
            self.seed,
            self.fault_sites,
            self.panics,
            self.corruptions,
            self.poison_violations,
            self.wrong_errors,
            self.eio_reopens,
            self.eio_images
        )
    }
}

/// The outcome of one run with one fault armed.
enum Outcome {
    /// The workload finished before the fault was reached, with this model.
    Completed(Model),
    /// A commit failed; the models before and after it.
    Failed { before: Model, after: Model },
}

/// The workload: `txns` seeded transactions; stops at the first error, which
/// must be an I/O error, or `MapFull` when `full_disk` (a resize that found
/// no space fails the commit before it writes).
fn workload(
    db: &Database,
    seed: u64,
    txns: u64,
    full_disk: bool,
    problems: &mut Vec<String>,
    wrong_errors: &mut u64,
) -> Outcome {
    let mut rng = Rng(seed);
    let mut model = Model::new();
    for _ in 0..txns {
        let mut next = model.clone();
        let result = (|| -> crate::Result<()> {
            let w = db.begin_write()?;
            for _ in 0..1 + rng.below(30) {
                let name = ["a", "b"][rng.below(2) as usize];
                let mut t = w.open_table(name)?;
                let entries = next.entry(name.to_owned()).or_default();
                let key = format!("k{:05}", rng.below(3000)).into_bytes();
                if rng.below(4) == 0 {
                    t.remove(&key)?;
                    entries.remove(&key);
                } else {
                    let len = if rng.below(8) == 0 { 5000 } else { 200 };
                    let v = rng.bytes(len);
                    t.insert(&key, &v)?;
                    entries.insert(key, v);
                }
            }
            w.commit()
        })();
        match result {
            Ok(()) => model = next,
            Err(e) => {
                let expected = if full_disk {
                    matches!(e, Error::MapFull { .. })
                } else {
                    matches!(e, Error::Io(_))
                };
                if !expected {
                    *wrong_errors += 1;
                    problems.push(format!("fault surfaced as {e:?}"));
                }
                return Outcome::Failed {
                    before: model,
                    after: next,
                };
            }
        }
    }
    Outcome::Completed(model)
}

fn open(path: &Path, trap: Option<&Trap>) -> crate::Result<Database> {
    let mut opts = Options::new().page_size(1024).map_size(16 * 1024);
    if let Some(trap) = trap {
        let trap = trap.clone();
        opts = opts.storage(move |f| Ok(trap.storage(f)));
    }
    opts.open_scratch(path)
}

/// Runs every kind of fault at every position of a `txns`-transaction
/// workload. Returns the figures and the first problems found.
pub fn run(seed: u64, txns: u64) -> (Figures, Vec<String>) {
    let mut figures = Figures {
        seed,
        ..Figures::default()
    };
    let mut problems = Vec::new();
    let dir = std::env::temp_dir().join(format!("larch-faults-{}-{seed}", std::process::id()));
    let kinds = [Kind::Write, Kind::Resize, Kind::Sync];
    let faults = [Fault::Eio, Fault::NoSpace, Fault::Short];
    for kind in kinds {
        for fault in faults {
            if fault == Fault::Short && kind != Kind::Write {
                continue;
            }
            for n in 1.. {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("scratch directory");
                let path = dir.join("db.larch");
                // Create the file first, so the countdown starts with the workload.
                drop(open(&path, None).expect("create"));
                let trap = Trap::new();
                trap.arm(kind, fault, n);
                let site = format!("{kind:?}/{fault:?}/{n}");
                let mut fired_in_workload = 0;
                let run = catch_unwind(AssertUnwindSafe(|| {
                    // Open syncs the file first; a fault there fails the open.
                    let db = match open(&path, Some(&trap)) {
                        Ok(db) => db,
                        Err(_) => {
                            return Outcome::Failed {
                                before: Model::new(),
                                after: Model::new(),
                            };
                        }
                    };
                    let full_disk = (kind, fault) == (Kind::Resize, Fault::NoSpace);
                    let outcome = workload(
                        &db,
                        seed,
                        txns,
                        full_disk,
                        &mut problems,
                        &mut figures.wrong_errors,
                    );
                    if let Outcome::Failed { before, .. } = &outcome {
                        if kind == Kind::Resize {
                            // A failed resize fails its commit before anything
                            // is written: the handle is not poisoned, holds the
                            // commit before, and commits again once the disk
                            // has room. The file must then reopen to exactly
                            // that next commit.
                            if read_model(&db).ok().as_ref() != Some(before) {
                                figures.corruptions += 1;
                                problems.push(format!("{site}: the failed commit is visible"));
                            }
                            trap.disarm();
                            let mut next = before.clone();
                            next.entry("c".to_owned())
                                .or_default()
                                .insert(b"k".to_vec(), b"v".to_vec());
                            let again = (|| {
                                let w = db.begin_write()?;
                                w.open_table("c")?.insert(b"k", b"v")?;
                                w.commit()
                            })();
                            if let Err(e) = again {
                                figures.poison_violations += 1;
                                problems
                                    .push(format!("{site}: write after the resize failed: {e}"));
                            }
                            return Outcome::Failed {
                                before: next.clone(),
                                after: next,
                            };
                        } else {
                            // The handle is poisoned now.
                            match db.begin_write() {
                                Err(Error::Poisoned) => {}
                                other => {
                                    figures.poison_violations += 1;
                                    problems.push(format!(
                                        "{site}: write after the fault gave {:?}",
                                        other.err()
                                    ));
                                }
                            }
                        }
                        // Readers still work on the last good commit.
                        if let Err(e) = db.check() {
                            figures.corruptions += 1;
                            problems.push(format!("{site}: live check failed: {e}"));
                        }
                    }
                    // The handle's close cuts the file (`cut_on_close`),
                    // which may hit the fault after the workload.
                    fired_in_workload = trap.fired();
                    outcome
                }));
                let outcome = match run {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        figures.panics += 1;
                        problems.push(format!("{site}: panicked"));
                        break;
                    }
                };
                let (before, after) = match outcome {
                    Outcome::Failed { before, after } => (before, after),
                    Outcome::Completed(_) if fired_in_workload > 0 => {
                        figures.fault_sites += 1;
                        problems.push(format!("{site}: the fault fired but no error came back"));
                        figures.corruptions += 1;
                        break;
                    }
                    // The cut at close failed, which nobody can be told: the
                    // file must reopen to the last commit all the same.
                    Outcome::Completed(model) if trap.fired() > 0 => (model.clone(), model),
                    Outcome::Completed(_) => break,
                };
                figures.fault_sites += 1;
                match open(&path, None) {
                    Ok(db) => match (db.check(), read_model(&db)) {
                        (Ok(_), Ok(model)) if model == before || model == after => {}
                        (Ok(_), Ok(_)) => {
                            figures.corruptions += 1;
                            problems.push(format!("{site}: reopened to a third state"));
                        }
                        (Err(e), _) | (_, Err(e)) => {
                            figures.corruptions += 1;
                            problems.push(format!("{site}: reopened file fails check: {e}"));
                        }
                    },
                    Err(e) => {
                        figures.corruptions += 1;
                        problems.push(format!("{site}: does not reopen: {e}"));
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    sync_eio_then_reopen(seed, txns, &mut figures, &mut problems);
    problems.truncate(10);
    (figures, problems)
}

/// Fails the n-th sync with EIO, for n = 0, 1, ...: each write it was to make
/// durable reaches the disk or not, yet the page cache (the file) shows all of
/// them, as after a failed writeback. The poisoned handle is dropped and the
/// file reopened in the same boot; more transactions commit and the power
/// fails at each of their syncs. Every image must hold the last acknowledged
/// commit or one in flight.
fn sync_eio_then_reopen(seed: u64, txns: u64, figures: &mut Figures, problems: &mut Vec<String>) {
    const PAGE_SIZE: usize = 1024;
    let dir = std::env::temp_dir().join(format!("larch-eio-{}-{seed}", std::process::id()));
    for n in 0.. {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let path = dir.join("db.larch");
        drop(open(&path, None).expect("create"));
        let recorder = Recorder::new(|_| {});
        recorder.fail_sync(n, seed ^ n);
        let hook = recorder.clone();
        let opts = Options::new()
            .page_size(PAGE_SIZE as u32)
            .map_size(16 * 1024)
            .storage(move |f| hook.wrap(f));
        let site = format!("sync EIO {n}");
        let (before, after, acked_txn) = match opts.open_scratch(&path) {
            // The sync at open failed: nothing was acknowledged.
            Err(_) => (Model::new(), Model::new(), 0),
            Ok(db) => {
                let outcome = workload(&db, seed, txns, false, problems, &mut figures.wrong_errors);
                let acked_txn = db.last_txn_id();
                match outcome {
                    Outcome::Completed(_) => break,
                    Outcome::Failed { before, after } => {
                        if !matches!(db.begin_write(), Err(Error::Poisoned)) {
                            figures.poison_violations += 1;
                            problems.push(format!("{site}: the handle was not poisoned"));
                        }
                        (before, after, acked_txn)
                    }
                }
            }
        };
        figures.eio_reopens += 1;
        let (durable, pending, _) = recorder.state();
        let chain = Chain {
            durable,
            pending,
            ok: vec![before, after],
            min_txn: acked_txn,
            garble: true,
            seed: seed ^ n.rotate_left(32),
        };
        let mut pl = powerloss::Figures::default();
        let found = chain.run(&path, &dir.join("image.larch"), PAGE_SIZE, &mut pl);
        figures.eio_images += pl.images;
        let bad = pl.lost_acked + pl.mixed_states + pl.unopenable + pl.check_failures;
        if bad > 0 {
            figures.corruptions += bad;
            problems.extend(found.into_iter().map(|p| format!("{site}: {p}")));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
