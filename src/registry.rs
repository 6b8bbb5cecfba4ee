//! The reader registry: which snapshots are alive in every process of a
//! database, the committed transaction they start from, and the writer lock.
//!
//! It lives in the lock file beside the database (`<file>-lock`), mapped
//! shared by every process (`format::registry` has its layout, DESIGN.md
//! "Many processes" the protocol). Liveness is proved by byte-range locks that
//! the kernel drops when their process dies: a slot whose lock is free belongs
//! to nobody, whatever its words say.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::meta::{MAX_TXN_ID, Meta};
use crate::format::registry::{
    HEADER_SIZE, INITIAL_SLOTS, MAX_SLOTS, REGISTRY_MAGIC, REGISTRY_VERSION, RESERVE, SLOT_SIZE,
    WEAK_SIZE, file_len, header, locks, slot, slot_word, weak_at,
};
use crate::pager::lock::{self, Mode};
use crate::pager::shared::SharedMap;

/// A read transaction of some process, as [`Database::readers`] lists it.
///
/// [`Database::readers`]: crate::Database::readers
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderInfo {
    /// The process that holds it.
    pub pid: u32,
    /// The transaction whose snapshot it reads.
    pub txn_id: u64,
    /// How long it has been open (0 if the clocks disagree).
    pub age: Duration,
    /// Pages of the last commit's free list that this reader's snapshot
    /// alone keeps from reuse: written before it and freed after it, and
    /// reached by no other live reader's snapshot and neither meta on disk.
    /// Readers sharing a snapshot each count them all; ending all of them
    /// lets the next writer reuse the pages. 0 where the list was not read.
    pub pinned_pages: u64,
}

/// The lock file's name: the database's name with `-lock` appended.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push("-lock");
    PathBuf::from(name)
}

/// What opening the lock file found.
pub(crate) enum Opening {
    /// No other handle has the database open: the caller recovers the data
    /// file and then calls [`First::build`].
    First(First),
    /// Other handles have it open; the registry is theirs too.
    Joined(Registry),
    /// The lock file cannot be written (a read-only open): no slot can be
    /// published, so no writer may run while this handle is open (the data
    /// file's `DATA_WRITER` byte, held shared, sees to it). The lock file,
    /// read-only, where there is one.
    Private(Option<File>),
}

/// The first opener: it holds the lock file's open lock exclusively until
/// `build`.
pub(crate) struct First {
    map: SharedMap,
}

/// The registry of one open handle.
pub(crate) struct Registry {
    inner: Inner,
}

enum Inner {
    Shared(Shared),
    /// A read-only handle that publishes nothing; no writer runs meanwhile
    /// (it holds the data file's `DATA_WRITER` byte shared).
    Private {
        committed: AtomicU64,
        /// The newest durable commit, and the meta of `committed` when it
        /// is not durable (the live registry's weak meta, read at open).
        durable: u64,
        weak: Option<Meta>,
    },
}

struct Shared {
    map: SharedMap,
    pid: u64,
    local: Mutex<Local>,
}

/// The slots this handle owns.
#[derive(Default)]
struct Local {
    /// Owned slots holding no snapshot.
    idle: Vec<u64>,
    /// `owned[i]`: slot `i` is this handle's (it holds the slot's lock).
    owned: Vec<bool>,
}

impl Local {
    fn owns(&self, i: u64) -> bool {
        self.owned.get(i as usize).copied().unwrap_or(false)
    }

    fn own(&mut self, i: u64) {
        let i = i as usize;
        if self.owned.len() <= i {
            self.owned.resize(i + 1, false);
        }
        self.owned[i] = true;
    }
}

fn damaged(reason: &'static str) -> Error {
    Error::LockFile(reason)
}

/// Opens the lock file beside `path`, whose data file is `data`, and takes
/// the open lock: exclusive if no other handle has the database open, shared
/// otherwise. `read_only` allows a lock file that cannot be written.
pub(crate) fn open(path: &Path, data: &Metadata, read_only: bool) -> Result<Opening> {
    let lock_path = lock_path(path);
    // A process that cannot write the database must not create its lock
    // file: it would own a file that others then refuse.
    let may_create = !read_only || crate::pager::may_write(path);
    let (file, created) = match open_lock_file(&lock_path, data, may_create) {
        Ok(opened) => opened,
        Err(e) if read_only && (is_denied(&e) || e.kind() == io::ErrorKind::NotFound) => {
            return match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&lock_path)
            {
                Ok(file) => {
                    check_permissions(&file.metadata()?, data)?;
                    Ok(Opening::Private(Some(file)))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Opening::Private(None)),
                Err(e) => Err(e.into()),
            };
        }
        Err(e) if is_denied(&e) => {
            return Err(damaged(
                "this process cannot create or write the lock file beside the database",
            ));
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(damaged("the lock file's name is a symbolic link"));
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = check_permissions(&file.metadata()?, data) {
        if created {
            // A lock file this open made and cannot use (a group it could
            // not give away) would lock everyone out: it goes.
            let _ = remove_if_same(&lock_path, &file);
        }
        return Err(e);
    }
    let map = SharedMap::new(file, RESERVE as usize)?;
    // A joiner that finds the lock file unbuilt (its builder died) tries to
    // build it itself; one that keeps finding it damaged while others hold it
    // open gives up.
    for _ in 0..100 {
        if lock::try_lock(map.file(), locks::OPEN, Mode::Exclusive)? {
            // A lock file this open created stays if the open fails: another
            // opener may have opened it already, and would be building its
            // registry in a file no other process could find.
            return Ok(Opening::First(First { map }));
        }
        lock::lock(map.file(), locks::OPEN, Mode::Shared)?;
        map.refresh_len()?;
        match validate(&map, data) {
            Ok(()) => {
                let registry = Registry {
                    inner: Inner::Shared(Shared {
                        map,
                        pid: u64::from(std::process::id()),
                        local: Mutex::new(Local::default()),
                    }),
                };
                registry.clear_stale()?;
                return Ok(Opening::Joined(registry));
            }
            Err(Error::LockFile("not built yet")) => {
                lock::unlock(map.file(), locks::OPEN)?;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    }
    Err(damaged(
        "the lock file is damaged while other processes have the database open",
    ))
}

/// What a live registry publishes, read by a handle that cannot map it.
pub(crate) struct Published {
    /// The commit new snapshots take.
    pub committed: u64,
    /// The commit a writer left unfinished, if any.
    pub writing: Option<u64>,
    /// The newest durable commit.
    pub durable: u64,
    /// The weak meta `committed` would be in, as it was read (checked by
    /// whoever needs it: it is `committed`'s only when not durable).
    pub weak: [u8; WEAK_SIZE as usize],
}

/// The commit a live registry in `file` publishes, its `writing` word and
/// weak meta: when members hold `file`'s open lock (shared: an exclusive
/// holder is a first opener, not yet built) and its header is valid for
/// `data`. Read with `pread` by a handle that cannot write (or map) the lock
/// file.
pub(crate) fn published(file: &File, data: &Metadata) -> Result<Option<Published>> {
    if lock::holder(file, locks::OPEN)? != Some(Mode::Shared) {
        return Ok(None);
    }
    let mut head = [0u8; HEADER_SIZE as usize];
    if file.read_exact_at(&mut head, 0).is_err() {
        return Ok(None);
    }
    let word = |at: u64| {
        let at = at as usize;
        u64::from_ne_bytes(head[at..at + 8].try_into().expect("8 bytes"))
    };
    let valid = word(header::MAGIC) == REGISTRY_MAGIC
        && word(header::VERSION) == REGISTRY_VERSION
        && word(header::DEV) == data.dev()
        && word(header::INO) == data.ino();
    let committed = word(header::COMMITTED);
    let at = weak_at(committed) as usize;
    let mut weak = [0u8; WEAK_SIZE as usize];
    weak.copy_from_slice(&head[at..at + WEAK_SIZE as usize]);
    Ok(valid.then(|| Published {
        committed,
        writing: word(header::WRITING).checked_sub(1),
        durable: word(header::DURABLE),
        weak,
    }))
}

/// Removes `path` if it still names `file` (same device and inode).
fn remove_if_same(path: &Path, file: &File) -> io::Result<()> {
    let ours = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => std::fs::remove_file(path),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the lock file beside `path` if it is still the one `registry`
/// maps (for a file no other process will open, such as a copy being
/// written: its handle keeps working through the open lock file).
pub(crate) fn unlink_own(path: &Path, registry: &Registry) -> Result<()> {
    let Inner::Shared(s) = &registry.inner else {
        return Ok(());
    };
    Ok(remove_if_same(&lock_path(path), s.map.file())?)
}

fn is_denied(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Opens the lock file for writing, creating it with the data file's mode
/// (no more permissive) and, where this process may, its owner.
/// Also returns whether it created the file.
fn open_lock_file(lock_path: &Path, data: &Metadata, may_create: bool) -> io::Result<(File, bool)> {
    let mode = data.mode() & 0o666;
    let open_existing = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(lock_path)
    };
    if !may_create {
        return open_existing().map(|f| (f, false));
    }
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(lock_path);
    match created {
        Ok(file) => {
            // The umask may have taken bits the data file's other writers
            // need; set the mode exactly.
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            let m = file.metadata()?;
            if m.gid() != data.gid() {
                // A member of the data file's group may give it that group.
                let _ = std::os::unix::fs::fchown(&file, None, Some(data.gid()));
            }
            if m.uid() != data.uid() {
                // Only a privileged process may give a file away; others keep
                // it as their own, which `check_permissions` accepts when
                // they can write the database through its group.
                let _ = std::os::unix::fs::fchown(&file, Some(data.uid()), None);
            }
            // The mode again: a change of owner may clear bits.
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            Ok((file, true))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open_existing().map(|f| (f, false)),
        Err(e) => Err(e),
    }
}

/// Whoever can write the lock file can make a writer reuse pages a reader
/// holds, so nobody may be able to write it who cannot write the database.
fn check_permissions(lock: &Metadata, data: &Metadata) -> Result<()> {
    if !lock.is_file() {
        return Err(damaged("the lock file is not a regular file"));
    }
    if lock.nlink() != 1 {
        // Another name of another file: the first opener would truncate it.
        return Err(damaged(
            "the lock file has more than one name (a hard link)",
        ));
    }
    let (lm, dm) = (lock.mode(), data.mode());
    let others_write_data = dm & 0o002 != 0;
    let group_writes_data = others_write_data || (dm & 0o020 != 0 && lock.gid() == data.gid());
    if lm & 0o002 != 0 && !others_write_data {
        return Err(damaged(
            "the lock file is writable by others who cannot write the database",
        ));
    }
    if lm & 0o020 != 0 && !group_writes_data {
        return Err(damaged(
            "the lock file is writable by a group that cannot write the database",
        ));
    }
    if lock.uid() != data.uid() && lock.uid() != 0 && !group_writes_data {
        return Err(damaged(
            "the lock file belongs to a user who cannot write the database",
        ));
    }
    Ok(())
}

/// Checks a lock file built by another process.
fn validate(map: &SharedMap, data: &Metadata) -> Result<()> {
    if map.known_len() < HEADER_SIZE {
        return Err(damaged("not built yet"));
    }
    let word = |at| {
        map.word(at)
            .expect("the header lies within the file")
            .load(Ordering::Acquire)
    };
    if word(header::MAGIC) != REGISTRY_MAGIC {
        return Err(damaged("not built yet"));
    }
    if word(header::VERSION) != REGISTRY_VERSION {
        return Err(damaged(
            "the lock file is of another version of larch, which has the database open",
        ));
    }
    if word(header::DEV) != data.dev() || word(header::INO) != data.ino() {
        return Err(damaged("the lock file belongs to another database file"));
    }
    let slots = word(header::SLOTS);
    if slots > MAX_SLOTS || word(header::USED) > slots || map.known_len() < file_len(slots) {
        return Err(damaged("the lock file's slot count is out of bounds"));
    }
    Ok(())
}

impl First {
    /// Builds the lock file anew for the commit open recovered (`committed`;
    /// `synced` when it is durable; `unfinished`, a newer meta recovery set
    /// aside, which the first writer spoils) and shares the open lock with
    /// the processes that come next.
    pub(crate) fn build(
        self,
        data: &Metadata,
        committed: u64,
        synced: bool,
        unfinished: Option<u64>,
    ) -> Result<Registry> {
        let map = self.map;
        map.set_len(0)?;
        map.set_len(file_len(INITIAL_SLOTS))?;
        let word = |at| map.word(at).expect("the header lies within the file");
        word(header::VERSION).store(REGISTRY_VERSION, Ordering::Relaxed);
        word(header::DEV).store(data.dev(), Ordering::Relaxed);
        word(header::INO).store(data.ino(), Ordering::Relaxed);
        word(header::COMMITTED).store(committed, Ordering::Relaxed);
        word(header::SLOTS).store(INITIAL_SLOTS, Ordering::Relaxed);
        word(header::USED).store(0, Ordering::Relaxed);
        word(header::SYNCED).store(u64::from(synced), Ordering::Relaxed);
        word(header::WRITING).store(unfinished.map_or(0, |t| t + 1), Ordering::Relaxed);
        word(header::DURABLE).store(committed, Ordering::Relaxed);
        word(header::WEAK_SINCE).store(0, Ordering::Relaxed);
        word(header::MAGIC).store(REGISTRY_MAGIC, Ordering::Release);
        // Converts the exclusive lock in place: no other opener slips between.
        lock::lock(map.file(), locks::OPEN, Mode::Shared)?;
        Ok(Registry {
            inner: Inner::Shared(Shared {
                map,
                pid: u64::from(std::process::id()),
                local: Mutex::new(Local::default()),
            }),
        })
    }
}

/// A slot published by `begin`, or none for a private handle.
pub(crate) type SlotId = Option<u64>;

impl Registry {
    /// The registry of a handle that publishes nothing (see `Opening::Private`).
    pub(crate) fn private(committed: u64, durable: u64, weak: Option<Meta>) -> Registry {
        Registry {
            inner: Inner::Private {
                committed: AtomicU64::new(committed),
                durable,
                weak,
            },
        }
    }

    /// The last commit published.
    pub(crate) fn committed(&self) -> u64 {
        match &self.inner {
            Inner::Shared(s) => s.header(header::COMMITTED).load(Ordering::SeqCst),
            Inner::Private { committed, .. } => committed.load(Ordering::Acquire),
        }
    }

    /// Publishes a reader of the last commit and returns its slot and the
    /// commit's id: from the moment this returns, no writer in any process
    /// reuses a page that commit can reach.
    pub(crate) fn begin(&self) -> Result<(SlotId, u64)> {
        let s = match &self.inner {
            Inner::Shared(s) => s,
            Inner::Private { .. } => return Ok((None, self.committed())),
        };

        let i = {
            let mut local = s.local.lock();
            match local.idle.pop() {
                Some(i) => i,
                None => s.claim(&mut local)?,
            }
        };
        s.slot(i, slot::SINCE)
            .store(now_micros(), Ordering::Relaxed);
        let txn = s.slot(i, slot::TXN);
        let committed = s.header(header::COMMITTED);
        loop {
            let id = committed.load(Ordering::SeqCst);
            if id > MAX_TXN_ID {
                txn.store(0, Ordering::SeqCst);
                s.local.lock().idle.push(i);
                return Err(damaged("the lock file names an impossible commit"));
            }
            txn.store(id + 1, Ordering::SeqCst);
            // A writer that scanned the slots before the store above started
            // from a commit no older than `id` only if `id` is still the
            // last one: otherwise publish the newer one (LMDB's ITS#7970).
            if committed.load(Ordering::SeqCst) == id {
                return Ok((Some(i), id));
            }
        }
    }

    /// Ends the reader in slot `i`.
    pub(crate) fn end(&self, i: SlotId) {
        if let (Inner::Shared(s), Some(i)) = (&self.inner, i) {
            // A child made by `fork` ends none of its parent's readers: the
            // slot is the parent's, and its snapshot still alive there.
            if !s.in_owner() {
                return;
            }
            s.slot(i, slot::TXN).store(0, Ordering::Release);
            s.local.lock().idle.push(i);
        }
    }

    /// Makes commit `id` the one new readers take: called after it is
    /// durable, or after `store_weak` gave its meta.
    pub(crate) fn publish(&self, id: u64) {
        match &self.inner {
            Inner::Shared(s) => s.header(header::COMMITTED).store(id, Ordering::SeqCst),
            Inner::Private { committed, .. } => committed.store(id, Ordering::Release),
        }
    }

    /// The snapshots readers of any process may hold, in one scan of the
    /// slots. A slot whose snapshot is not yet in the set is checked first:
    /// if its process died it is freed and does not count, so a dead reader
    /// never holds back the reuse of the pages its snapshot reaches (every
    /// snapshot pins pages under the interval rule, not only the oldest).
    /// One check per distinct snapshot: a slot whose snapshot a live slot
    /// already holds changes nothing.
    pub(crate) fn snapshots(&self) -> Result<BTreeSet<u64>> {
        let mut set = BTreeSet::new();
        let Inner::Shared(s) = &self.inner else {
            return Ok(set);
        };
        for i in 0..s.scan_len()? {
            let v = s.slot(i, slot::TXN).load(Ordering::SeqCst);
            if v == 0 {
                continue;
            }
            if !set.contains(&(v - 1)) && s.reclaim_if_dead(i)? {
                continue;
            }
            set.insert(v - 1);
        }
        Ok(set)
    }

    /// The read transactions of live processes, oldest snapshot first.
    pub(crate) fn readers(&self) -> Result<Vec<ReaderInfo>> {
        let Inner::Shared(s) = &self.inner else {
            return Ok(Vec::new());
        };
        let now = now_micros();
        let mut out = Vec::new();
        for i in 0..s.scan_len()? {
            let v = s.slot(i, slot::TXN).load(Ordering::SeqCst);
            if v == 0 || !s.alive(i)? {
                continue;
            }
            let since = s.slot(i, slot::SINCE).load(Ordering::Relaxed);
            out.push(ReaderInfo {
                pid: s.slot(i, slot::PID).load(Ordering::Relaxed) as u32,
                txn_id: v - 1,
                age: Duration::from_micros(now.saturating_sub(since)),
                pinned_pages: 0,
            });
        }
        out.sort_by_key(|r| (r.txn_id, std::cmp::Reverse(r.age)));
        Ok(out)
    }

    /// Read transactions alive, in every process.
    pub(crate) fn count(&self) -> usize {
        self.readers().map_or(0, |r| r.len())
    }

    /// Frees the slots of processes that died; returns how many.
    pub(crate) fn clear_stale(&self) -> Result<usize> {
        let Inner::Shared(s) = &self.inner else {
            return Ok(0);
        };
        let mut cleared = 0;
        for i in 0..s.scan_len()? {
            if s.slot(i, slot::PID).load(Ordering::Acquire) != 0 && s.reclaim_if_dead(i)? {
                cleared += 1;
            }
        }
        Ok(cleared)
    }

    /// Takes the writer lock of every process: waits for it when `wait`,
    /// else returns whether it was free. A private handle has none.
    pub(crate) fn lock_writer(&self, wait: bool) -> Result<bool> {
        let Inner::Shared(s) = &self.inner else {
            return Err(Error::ReadOnly);
        };
        if wait {
            lock::lock(s.map.file(), locks::WRITER, Mode::Exclusive)?;
            Ok(true)
        } else {
            Ok(lock::try_lock(
                s.map.file(),
                locks::WRITER,
                Mode::Exclusive,
            )?)
        }
    }

    /// Releases the writer lock.
    pub(crate) fn unlock_writer(&self) {
        if let Inner::Shared(s) = &self.inner {
            // If this fails the lock stays with this handle (whose next
            // `lock_writer` takes it again) until the handle closes.
            let _ = lock::unlock(s.map.file(), locks::WRITER);
        }
    }

    /// The transaction a writer began to write out and never published, if
    /// one did (it died, or failed): its meta slot may hold its meta.
    pub(crate) fn unfinished(&self) -> Option<u64> {
        match &self.inner {
            Inner::Shared(s) => s
                .header(header::WRITING)
                .load(Ordering::SeqCst)
                .checked_sub(1),
            Inner::Private { .. } => None,
        }
    }

    /// Records that transaction `id` is being written out (`Some`) or that
    /// none is (`None`).
    pub(crate) fn set_unfinished(&self, id: Option<u64>) {
        if let Inner::Shared(s) = &self.inner {
            let v = id.map_or(0, |id| id + 1);
            s.header(header::WRITING).store(v, Ordering::SeqCst);
        }
    }

    /// Whether a writable process has made the published commit durable.
    pub(crate) fn synced(&self) -> bool {
        match &self.inner {
            Inner::Shared(s) => s.header(header::SYNCED).load(Ordering::Acquire) != 0,
            Inner::Private { .. } => true,
        }
    }

    /// Records that the published commit is durable.
    pub(crate) fn set_synced(&self) {
        if let Inner::Shared(s) = &self.inner {
            s.header(header::SYNCED).store(1, Ordering::Release);
        }
    }

    /// The newest commit the data file holds durably.
    pub(crate) fn durable(&self) -> u64 {
        match &self.inner {
            Inner::Shared(s) => s.header(header::DURABLE).load(Ordering::SeqCst),
            Inner::Private { durable, .. } => *durable,
        }
    }

    /// Records that commit `id` is durable in its meta slot, and with it
    /// every commit before it.
    pub(crate) fn set_durable(&self, id: u64) {
        if let Inner::Shared(s) = &self.inner {
            s.header(header::DURABLE).store(id, Ordering::SeqCst);
            s.header(header::WEAK_SINCE).store(0, Ordering::SeqCst);
        }
    }

    /// Whether the oldest commit that is not durable was made `period` ago
    /// or more. A stamp in the future (the clock went back) counts as old:
    /// better one sync early than commits left weak for as long as the
    /// clock went back.
    pub(crate) fn weak_for(&self, period: Duration) -> bool {
        let Inner::Shared(s) = &self.inner else {
            return false;
        };
        let since = s.header(header::WEAK_SINCE).load(Ordering::SeqCst);
        let now = now_micros();
        since != 0 && (now < since || now - since >= period.as_micros() as u64)
    }

    /// Gives the meta of `meta.txn_id`, a commit that is not durable, to the
    /// readers of every process: its weak meta (`weak_at`), before
    /// `publish`. Notes when the first such commit since the last durable
    /// one was made.
    pub(crate) fn store_weak(&self, meta: &Meta) {
        let Inner::Shared(s) = &self.inner else {
            return;
        };
        let bytes = meta.encode();
        let at = weak_at(meta.txn_id);
        for (i, word) in bytes[..WEAK_SIZE as usize].chunks_exact(8).enumerate() {
            let v = u64::from_ne_bytes(word.try_into().expect("8 bytes"));
            s.header(at + 8 * i as u64).store(v, Ordering::Relaxed);
        }
        let since = s.header(header::WEAK_SINCE);
        let _ = since.compare_exchange(0, now_micros().max(1), Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The meta of commit `id` if a weak meta holds it whole, checked as a
    /// meta slot is, in a data file of `file_len` bytes. `None` when it is
    /// durable, or when a writer overwrote it since (two commits later).
    pub(crate) fn weak_meta(&self, id: u64, file_len: u64) -> Option<Meta> {
        match &self.inner {
            Inner::Shared(s) => {
                let at = weak_at(id);
                let mut bytes = [0u8; WEAK_SIZE as usize];
                for (i, word) in bytes.chunks_exact_mut(8).enumerate() {
                    let v = s.header(at + 8 * i as u64).load(Ordering::Relaxed);
                    word.copy_from_slice(&v.to_ne_bytes());
                }
                decode_weak(&bytes, id, file_len)
            }
            Inner::Private { weak, .. } => weak.filter(|m| m.txn_id == id),
        }
    }
}

/// The weak meta `bytes` if it is commit `id`'s, whole and valid.
pub(crate) fn decode_weak(bytes: &[u8], id: u64, file_len: u64) -> Option<Meta> {
    Meta::decode(bytes, file_len)
        .ok()
        .filter(|m| m.txn_id == id)
}

impl Shared {
    fn header(&self, at: u64) -> &AtomicU64 {
        // `validate` or `build` saw the header within the file, whose known
        // length never shrinks while the handle is open.
        self.map.word(at).expect("the header lies within the file")
    }

    /// Word `word` of slot `i`, which lies below `scan_len` or was claimed.
    fn slot(&self, i: u64, word: u64) -> &AtomicU64 {
        self.map
            .word(slot_word(i, word))
            .expect("slots below the scan length lie within the file")
    }

    /// Slots handed out so far, all within the file as this handle knows it.
    fn scan_len(&self) -> Result<u64> {
        let used = self.header(header::USED).load(Ordering::Acquire);
        let mut present = (self.map.known_len() - HEADER_SIZE) / SLOT_SIZE;
        if used > present {
            // Another process grew the file.
            present = (self.map.refresh_len()? - HEADER_SIZE) / SLOT_SIZE;
        }
        if used > present.min(MAX_SLOTS) {
            return Err(damaged("the lock file counts more slots than it holds"));
        }
        Ok(used)
    }

    /// Whether slot `i` belongs to a live handle (this one included).
    fn alive(&self, i: u64) -> Result<bool> {
        if self.local.lock().owns(i) {
            return Ok(true);
        }
        Ok(lock::held_elsewhere(self.map.file(), locks::SLOT_BASE + i)?)
    }

    /// Frees slot `i` if no live handle owns it; returns whether it did.
    fn reclaim_if_dead(&self, i: u64) -> Result<bool> {
        // Under the local lock, so that this handle does not claim the slot
        // meanwhile (a lock this handle holds does not stop its own `try_lock`).
        let local = self.local.lock();
        if local.owns(i) || !lock::try_lock(self.map.file(), locks::SLOT_BASE + i, Mode::Exclusive)?
        {
            return Ok(false);
        }
        self.slot(i, slot::TXN).store(0, Ordering::SeqCst);
        self.slot(i, slot::PID).store(0, Ordering::SeqCst);
        lock::unlock(self.map.file(), locks::SLOT_BASE + i)?;
        Ok(true)
    }

    /// Claims a slot for this handle: a free one, else a new one; when the
    /// file holds no more, first one whose process died, and only then does
    /// the file grow. (Looking for dead processes costs a system call per
    /// slot, so it waits until the file is full.)
    fn claim(&self, local: &mut Local) -> Result<u64> {
        let n = self.scan_len()?;
        for i in 0..n {
            if !local.owns(i)
                && self.slot(i, slot::PID).load(Ordering::Acquire) == 0
                && lock::try_lock(self.map.file(), locks::SLOT_BASE + i, Mode::Exclusive)?
            {
                return Ok(self.take(i, local));
            }
        }
        lock::lock(self.map.file(), locks::GROW, Mode::Exclusive)?;
        let r = self.claim_new(local);
        let _ = lock::unlock(self.map.file(), locks::GROW);
        r
    }

    /// Under the grow lock: hands out slot `used`; when the file holds no
    /// more, a slot of a dead process, else slot `used` after growing the
    /// file.
    fn claim_new(&self, local: &mut Local) -> Result<u64> {
        let used = self.header(header::USED).load(Ordering::Acquire);
        let slots = self.header(header::SLOTS).load(Ordering::Acquire);
        if used > slots || slots > MAX_SLOTS {
            return Err(damaged("the lock file's slot count is out of bounds"));
        }
        if used == slots {
            for i in 0..self.scan_len()? {
                if !local.owns(i)
                    && self.slot(i, slot::PID).load(Ordering::Acquire) != 0
                    && lock::try_lock(self.map.file(), locks::SLOT_BASE + i, Mode::Exclusive)?
                {
                    return Ok(self.take(i, local));
                }
            }
            if slots == MAX_SLOTS {
                return Err(damaged("every reader slot is taken by a live reader"));
            }
            let grown = (slots * 2).clamp(INITIAL_SLOTS, MAX_SLOTS);
            let len = self.map.refresh_len()?;
            if len < file_len(grown) {
                self.map.set_len(file_len(grown))?;
            }
            self.header(header::SLOTS).store(grown, Ordering::Release);
        } else if self.map.known_len() < file_len(used + 1) {
            self.map.refresh_len()?;
            if self.map.known_len() < file_len(used + 1) {
                return Err(damaged("the lock file counts more slots than it holds"));
            }
        }
        if !lock::try_lock(self.map.file(), locks::SLOT_BASE + used, Mode::Exclusive)? {
            return Err(damaged("a slot not yet handed out is owned"));
        }
        self.header(header::USED).store(used + 1, Ordering::Release);
        Ok(self.take(used, local))
    }

    /// Whether this is the process that opened the registry, not a child
    /// made by `fork` that inherited it.
    fn in_owner(&self) -> bool {
        u64::from(std::process::id()) == self.pid
    }

    /// Makes slot `i`, whose lock this handle just took, its own.
    fn take(&self, i: u64, local: &mut Local) -> u64 {
        self.slot(i, slot::TXN).store(0, Ordering::SeqCst);
        self.slot(i, slot::PID).store(self.pid, Ordering::Release);
        local.own(i);
        i
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A child made by `fork` leaves its parent's slots alone.
        if !self.in_owner() {
            return;
        }
        // The locks go with the file; the words are cleared so that nobody
        // needs to check them.
        let local = self.local.get_mut();
        for (i, _) in local.owned.iter().enumerate().filter(|(_, o)| **o) {
            if let Some(w) = self.map.word(slot_word(i as u64, slot::TXN)) {
                w.store(0, Ordering::SeqCst);
            }
            if let Some(w) = self.map.word(slot_word(i as u64, slot::PID)) {
                w.store(0, Ordering::SeqCst);
            }
        }
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
