//! What the transactions share: the pager, the registry, the writer lock, and
//! how a transaction finds the commit it starts from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::SetAside;
use super::commit::Unsynced;
use crate::error::{Error, Result, corrupted};
use crate::format::meta::{CHECKSUM_AT, MAX_TXN_ID, Meta, Seal};
use crate::format::registry::locks;
use crate::freelist::{self, Persisted};
use crate::pager::Pager;
use crate::pager::lock::Mode;
use crate::registry::{Registry, SlotId};
use crate::view::MapView;

/// State only the writer touches; its mutex is this handle's half of the
/// writer lock (the registry's byte lock is the other processes' half).
pub(crate) struct WriterState {
    /// The free list as of commit `known`, and its chain.
    pub free: Persisted,
    /// The commit `free` belongs to. Another process's commit makes it stale.
    pub known: u64,
}

pub(crate) struct Core {
    /// Dropped before `registry`: the data file's lock goes before the open
    /// lock, so that an opener that finds the open lock free (and so thinks
    /// itself first) never finds the data file still locked by this handle.
    pub pager: Pager,
    pub registry: Registry,
    /// The newest meta this handle has read or written: snapshots of it start
    /// without reading the file.
    pub latest: Mutex<Meta>,
    pub writer: Arc<Mutex<WriterState>>,
    /// Set after a failed write or sync: no further write transaction starts.
    pub poisoned: AtomicBool,
    /// The meta open set aside, if any, until a commit overwrites its slot
    /// (the next one that writes does).
    pub set_aside: Mutex<Option<SetAside>>,
    /// The process that opened the handle: a child made by `fork` shares its
    /// locks and must not use it.
    pub pid: u32,
    /// The high-water mark of every commit this handle has read or written
    /// a meta of and that a live snapshot may still hold (`HighWaters`):
    /// what a writer may cut the file down to ("Shrinking the file").
    pub high_waters: Mutex<HighWaters>,
    /// Cuts of the file's tail that failed (`Pager::shrink`); each left the
    /// file longer, nothing else.
    pub shrink_failures: AtomicU64,
    /// The last commit this handle wrote, `None` before its first (0 is a
    /// commit too: a new file's): closing cuts the file only when that is
    /// still the newest (`cut_on_close`).
    pub wrote: Mutex<Option<u64>>,
    /// What this handle wrote since the newest durable commit, for a
    /// single-sync `sync` (`Unsynced`).
    pub unsynced: Mutex<Unsynced>,
    /// Set when the last clone of the handle went: a write transaction that
    /// outlives it makes the commits that are not durable durable as it
    /// ends, since the close could not (it held the writer lock).
    pub closed: AtomicBool,
}

/// Marks a handle keeps at most.
const MAX_MARKS: usize = 4096;

/// The high-water marks of the commits a handle knows, by transaction id.
/// The lock file's slots hold snapshot ids only; a writer cuts the file
/// only when it knows the mark of every snapshot still alive.
#[derive(Debug, Default)]
pub(crate) struct HighWaters {
    marks: BTreeMap<u64, u64>,
}

impl HighWaters {
    /// A handle that starts out knowing `meta`.
    pub(crate) fn new(meta: &Meta) -> HighWaters {
        let mut h = HighWaters::default();
        h.learn(meta);
        h
    }

    /// Records the high-water mark of `meta`'s commit. A handle that only
    /// reads never forgets (`forget_before` is the writer's), so the oldest
    /// marks go past `MAX_MARKS`: a snapshot of those is then unknown, which
    /// only stops a cut.
    pub(crate) fn learn(&mut self, meta: &Meta) {
        self.marks.insert(meta.txn_id, meta.high_water);
        if self.marks.len() > MAX_MARKS {
            self.marks.pop_first();
        }
    }

    /// The highest mark of the snapshots `ids`, or `None` if one of them is
    /// unknown to this handle.
    pub(crate) fn max_of(&self, ids: &BTreeSet<u64>) -> Option<u64> {
        ids.iter()
            .map(|id| self.marks.get(id).copied())
            .try_fold(0, |m, h| Some(m.max(h?)))
    }

    /// Forgets the commits older than `oldest`: no snapshot of them can start
    /// any more (new ones take the committed id or newer), and none is
    /// alive. One that shows up in a later scan anyway (a reader about to
    /// retry) is unknown, and blocks a cut: the safe side.
    pub(crate) fn forget_before(&mut self, oldest: u64) {
        self.marks = self.marks.split_off(&oldest);
    }
}

/// Reads the meta of commit `id`: from its slot, or from the other one (a
/// lone meta of the other parity, before its first writer gives it a
/// twin), or, for a commit that is not durable, from `registry`'s weak meta
/// of its parity. `None` when none holds it whole: a writer of another
/// process overwrote it, or is overwriting it now.
pub(crate) fn read_meta(pager: &Pager, registry: &Registry, id: u64) -> Result<Option<Meta>> {
    if id > MAX_TXN_ID {
        return corrupted(id % 2, "the lock file names an impossible commit");
    }
    let len = pager.refresh_len()?;
    let ps = pager.page_size();
    let mut buf = vec![0u8; ps];
    for slot in [id % 2, 1 - id % 2] {
        let n = pager.read_at(&mut buf, slot * ps as u64)?;
        match Meta::decode(&buf[..n], len) {
            Ok(meta) if meta.txn_id == id && meta.page_size as usize == ps => {
                return Ok(Some(meta));
            }
            _ => continue,
        }
    }
    Ok(registry
        .weak_meta(id, len)
        .filter(|m| m.page_size as usize == ps))
}

/// Publishes a snapshot of the last commit in `registry` and returns its
/// slot and its meta, which `meta_of` reads; retried while writers of other
/// processes overwrite the meta's slot (`meta_of` gives `None`).
pub(crate) fn publish_snapshot(
    registry: &Registry,
    meta_of: impl Fn(u64) -> Result<Option<Meta>>,
) -> Result<(SlotId, Meta)> {
    for _ in 0..100 {
        let (slot, id) = registry.begin()?;
        match meta_of(id) {
            Ok(Some(meta)) => return Ok((slot, meta)),
            // Overwritten since it was published: take the newer one.
            Ok(None) => registry.end(slot),
            Err(e) => {
                registry.end(slot);
                return Err(e);
            }
        }
    }
    corrupted(
        registry.committed() % 2,
        "the lock file names a commit the file does not hold",
    )
}

impl Core {
    /// Takes the writer lock of every handle and process, after this
    /// handle's mutex: the lock file's, then the data file's `DATA_WRITER`
    /// byte (which read-only handles without a slot hold shared). Waits for
    /// them when `wait`, else returns whether both were free.
    pub(crate) fn lock_writer(&self, wait: bool) -> Result<bool> {
        if !self.registry.lock_writer(wait)? {
            return Ok(false);
        }
        match self
            .pager
            .lock_byte(locks::DATA_WRITER, Mode::Exclusive, wait)
        {
            Ok(true) => Ok(true),
            other => {
                self.registry.unlock_writer();
                other
            }
        }
    }

    /// Releases what `lock_writer` took.
    pub(crate) fn unlock_writer(&self) {
        // If this fails the lock stays with this handle until it takes it
        // again or closes.
        let _ = self.pager.unlock_byte(locks::DATA_WRITER);
        self.registry.unlock_writer();
    }

    /// Refuses a process other than the one that opened the handle (a child
    /// made by `fork`, which shares the handle's locks).
    pub(crate) fn same_process(&self) -> Result<()> {
        if std::process::id() == self.pid {
            Ok(())
        } else {
            Err(Error::Forked)
        }
    }

    /// The meta of commit `id`, from `latest` or the file.
    fn meta_of(&self, id: u64) -> Result<Option<Meta>> {
        let latest = *self.latest.lock();
        if latest.txn_id == id {
            return Ok(Some(latest));
        }
        let found = read_meta(&self.pager, &self.registry, id)?;
        if let Some(meta) = found {
            self.high_waters.lock().learn(&meta);
            let mut latest = self.latest.lock();
            if meta.txn_id > latest.txn_id {
                *latest = meta;
            }
        }
        Ok(found)
    }

    /// Starts a snapshot of the last commit: its slot in the registry,
    /// published, and its meta.
    pub(crate) fn snapshot(&self) -> Result<(SlotId, Meta)> {
        self.same_process()?;
        publish_snapshot(&self.registry, |id| self.meta_of(id))
    }

    /// For a writer holding the writer lock of every process: cleans up after
    /// a writer that did not finish, makes the published commit durable if no
    /// writable handle has yet, and returns that commit, with `state`
    /// reloaded if another process committed since this handle last wrote,
    /// and the metas the data file holds.
    pub(crate) fn adopt(&self, state: &mut WriterState) -> Result<(Meta, OnDisk)> {
        // The file as other writers left it, grown or shrunk: never grow it
        // from a stale length (a cut by another process would make a length
        // this handle learnt earlier too long, and `grow` would skip the
        // allocation a commit needs).
        self.pager.writer_len_from_file()?;
        let id = self.registry.committed();
        let durable = self.registry.durable();
        if id > MAX_TXN_ID || durable > id {
            return Err(Error::LockFile("the lock file names an impossible commit"));
        }
        // Commits are published in order: a committed id older than one this
        // handle has seen, or than a commit the file holds that no writer was
        // writing out, is a damaged lock file. Building on it would reuse
        // pages of the newer commit and overwrite its meta.
        let newest_seen = self.latest.lock().txn_id.max(state.known);
        let unfinished = self.registry.unfinished();
        // The durable commit's slot is never written while it is the
        // newest durable one; the other slot is the one commits write. (A
        // meta in the other slot of the durable one's parity is invalid:
        // open set it aside, and the next durable commit overwrites it.)
        let other = 1 - durable % 2;
        let mut in_other = read_slot(&self.pager, other)?;
        let beyond = in_other.filter(|m| m.txn_id > id && m.txn_id % 2 == other);
        // A newer meta is what a writer that died or failed left, or what
        // recovery set aside (torn): either way recorded as unfinished.
        let left_behind = |m: &Meta| unfinished == Some(m.txn_id);
        if id < newest_seen || beyond.is_some_and(|m| !left_behind(&m)) {
            return Err(Error::LockFile(
                "the lock file's committed id is behind the commits the database holds",
            ));
        }
        let base = self.meta_of(id)?.ok_or(Error::Corrupted {
            page: id % 2,
            reason: "the lock file names a commit the file does not hold",
        })?;
        if let Some(unfinished) = unfinished {
            // A writer died or failed while writing `unfinished` out (or
            // making the published commit durable): its meta may be in its
            // slot, durable or in the page cache, over pages this writer
            // may now reuse. Spoil the slot durably before anything builds
            // on the base (DESIGN.md, "Many processes"). (Only the other
            // slot: a crafted word naming the durable commit's own slot
            // must not spoil it.)
            if unfinished > durable && unfinished % 2 == other {
                let mut spoiled = base.encode();
                spoiled[CHECKSUM_AT] ^= 0xff;
                self.durably(|| {
                    self.pager.write(unfinished % 2, &spoiled)?;
                    self.pager.sync()
                })?;
                in_other = None;
            }
            self.registry.set_unfinished(None);
        }
        if !self.registry.synced() {
            // A read-only first opener took the commit without making it
            // durable, or giving a lone meta its twin.
            self.durably(|| {
                self.pager.sync()?;
                if read_slot(&self.pager, id % 2)? != Some(base) {
                    let bytes = base.encode_sealed(Seal::Synced);
                    self.pager.write(id % 2, &bytes)?;
                    self.pager.sync()?;
                }
                Ok(())
            })?;
            self.registry.set_synced();
        }
        // The metas on disk, which every commit keeps whole until a newer
        // durable one replaces them: the durable commit must be in its slot.
        let newest = match read_slot(&self.pager, durable % 2)? {
            Some(m) if m.txn_id == durable => m,
            _ => {
                return Err(Error::LockFile(
                    "the lock file's durable commit is not in its meta slot",
                ));
            }
        };
        // A newer valid meta in the other slot that no writer left
        // unfinished (it was spoiled above) means the `durable` word lags
        // the file: pinning the older meta would let this writer reuse the
        // newer one's pages. (One of the other parity is no meta of that
        // slot: open set it aside, and the next durable commit overwrites
        // it.)
        if in_other.is_some_and(|m| m.txn_id > durable && m.txn_id % 2 == other) {
            return Err(Error::LockFile(
                "the lock file's durable commit is older than the one the file holds",
            ));
        }
        let older = in_other.filter(|m| m.txn_id < durable);
        if state.known != id {
            let map = self.pager.map_for(base.high_water)?;
            let view = MapView::new(&self.pager, &map, base.high_water, base.txn_id);
            state.free = freelist::load(view, &base)?;
            state.known = id;
        }
        Ok((base, OnDisk { newest, older }))
    }
}

/// The metas the data file holds, as a writer found them: what a power
/// loss leaves to open, which no commit may touch until a newer durable one
/// replaces them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OnDisk {
    /// The newest durable commit, in its slot.
    pub newest: Meta,
    /// The one in the other slot, if it holds an older valid one.
    pub older: Option<Meta>,
}

impl OnDisk {
    /// The highest high-water mark of the two.
    pub(crate) fn high_water(&self) -> u64 {
        let older = self.older.map_or(0, |m| m.high_water);
        self.newest.high_water.max(older)
    }

    /// The older meta's id, or the newest's when the other slot holds none.
    pub(crate) fn oldest_id(&self) -> u64 {
        self.older.map_or(self.newest.txn_id, |m| m.txn_id)
    }
}

impl Core {
    /// Runs writes and syncs that must be durable before a writer builds; a
    /// failure poisons the handle, as a failed commit does (after a failed
    /// sync, a retry could report success falsely).
    fn durably(&self, io: impl FnOnce() -> Result<()>) -> Result<()> {
        let r = io();
        if r.is_err() {
            self.poisoned.store(true, Ordering::Release);
        }
        r
    }
}

impl Core {
    /// The ids of the valid metas on disk, read now without any lock (for
    /// figures only: a writer may be overwriting one).
    pub(crate) fn metas_on_disk(&self) -> Vec<u64> {
        (0..2)
            .filter_map(|slot| read_slot(&self.pager, slot).ok().flatten())
            .map(|m| m.txn_id)
            .collect()
    }
}

/// The meta in `slot`, if it holds a valid one.
fn read_slot(pager: &Pager, slot: u64) -> Result<Option<Meta>> {
    let ps = pager.page_size();
    let mut buf = vec![0u8; ps];
    let n = pager.read_at(&mut buf, slot * ps as u64)?;
    Ok(Meta::decode(&buf[..n], pager.file_len()).ok())
}
