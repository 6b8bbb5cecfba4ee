//! The database handle: options, open and recovery, transactions.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::check::{self, CheckReport};
use crate::error::{Error, Result, corrupted};
use crate::format::meta::{MAGIC, Meta, MetaError, Seal, SealEntry, TableDesc, valid_page_size};
use crate::format::page::{MAX_PAGE_SIZE, MIN_PAGE_SIZE, page_checksum};
use crate::format::registry::locks;
use crate::freelist;
#[cfg(feature = "testing")]
use crate::pager::StorageHook;
use crate::pager::lock::Mode;
use crate::pager::{LockedFile, Map, Pager, sync_parent_dir};
use crate::registry::{self, Opening, ReaderInfo, Registry};
use crate::txn::{
    Core, HighWaters, ReadTxn, SetAside, Stat, WriteTxn, WriterState, publish_snapshot, read_meta,
};
use crate::view::{MapView, PageSource};

/// Default address space reserved for the first map: 1 GiB. A file that
/// outgrows it gets a larger map (DESIGN.md, "Growing past the map").
pub const DEFAULT_MAP_SIZE: u64 = 1 << 30;

/// How to open a database.
///
/// ```no_run
/// let opts = larch::Options::new().page_size(4096).map_size(1 << 30);
/// // SAFETY: nothing else modifies or truncates the file while it is open.
/// let db = unsafe { opts.open("data.larch") }?;
/// # Ok::<(), larch::Error>(())
/// ```
#[derive(Clone)]
pub struct Options {
    page_size: u32,
    map_size: u64,
    max_size: u64,
    verify: bool,
    read_only: bool,
    /// A file larch created for itself (a copy being written), which no
    /// other process opens: its lock file is removed once open.
    own: bool,
    #[cfg(feature = "testing")]
    storage: Option<StorageHook>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            page_size: 4096,
            map_size: DEFAULT_MAP_SIZE,
            max_size: u64::MAX,
            verify: false,
            read_only: false,
            own: false,
            #[cfg(feature = "testing")]
            storage: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("page_size", &self.page_size)
            .field("map_size", &self.map_size)
            .field("max_size", &self.max_size)
            .field("verify", &self.verify)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// The defaults: 4 KiB pages, a 1 GiB first map, no ceiling on the size.
    pub fn new() -> Options {
        Options::default()
    }

    /// Page size for a new file: a power of two from 512 to 65536. An existing
    /// file keeps the page size it was created with.
    pub fn page_size(mut self, size: u32) -> Options {
        self.page_size = size;
        self
    }

    /// Bytes of address space to reserve for the first map (at least the
    /// file's length). It is not a limit: when the file outgrows the map,
    /// new transactions get a map of twice the reservation, while running
    /// ones keep reading through theirs (DESIGN.md, "Growing past the map").
    /// Reserving costs address space, not memory; a larger first map saves
    /// the remaps of a file known to grow large.
    pub fn map_size(mut self, size: u64) -> Options {
        self.map_size = size;
        self
    }

    /// The longest the file may grow, in bytes (default: no limit). A commit
    /// that needs more fails with [`Error::MapFull`] and leaves the committed
    /// state as it was. A file already longer opens, and commits that do not
    /// grow it succeed.
    pub fn max_size(mut self, size: u64) -> Options {
        self.max_size = size;
        self
    }

    /// Whether open runs the full integrity check ([`ReadTxn::check`]) on the
    /// commit it is about to use, free list against reachable pages included,
    /// before any transaction can start (default: no).
    ///
    /// This is how to open a file that larch did not write, or that something
    /// other than larch may have changed: a crafted free list naming a live
    /// page, or one page shared by two trees, would otherwise let the writer
    /// overwrite bytes a reader holds. A commit that fails the check is set
    /// aside like a torn one: open uses the older meta if that passes, and
    /// [`Stat::set_aside`](crate::Stat::set_aside) says so; if neither
    /// passes, open fails with [`Error::Corrupted`]. The check reads every
    /// page the commit reaches, so it costs time in proportion to the file.
    pub fn verify(mut self, verify: bool) -> Options {
        self.verify = verify;
        self
    }

    /// Opens the file for reading only (default false). A read-only open
    /// needs no write permission and never changes the file: it does not
    /// create a missing file (an [`Error::Io`] of kind `NotFound`), does not
    /// initialise an empty or all-zero one as a new database (it is
    /// [`Error::Corrupted`]: not a larch database), and writes no byte.
    /// [`Database::begin_write`] fails with [`Error::ReadOnly`].
    ///
    /// It shares the database with every other handle, writers of other
    /// processes included, through the lock file beside it, which it creates
    /// if missing and writes (its snapshots must be seen by writers). Where
    /// the lock file cannot be written (a read-only directory or mount, a
    /// lock file of another user), no writer may run while the handle is
    /// open: writers of every process wait in `begin_write` until it closes,
    /// and if one runs now, the open fails with [`Error::AlreadyOpen`]. It
    /// then reads the commit the other handles published, which it learns
    /// from the lock file if it can read it, or fails with
    /// [`Error::AlreadyOpen`] if others have the database open and it cannot
    /// (DESIGN.md, "Read-only without the lock file").
    pub fn read_only(mut self, read_only: bool) -> Options {
        self.read_only = read_only;
        self
    }

    /// Sends every write, resize and sync through the storage `hook` builds
    /// from the opened file (for crash and fault tests).
    #[cfg(feature = "testing")]
    pub fn storage(
        mut self,
        hook: impl Fn(std::fs::File) -> std::io::Result<Box<dyn crate::pager::Storage>>
        + Send
        + Sync
        + 'static,
    ) -> Options {
        self.storage = Some(std::sync::Arc::new(hook));
        self
    }

    /// Opens (or creates) the database at `path`; see
    /// [`read_only`](Options::read_only) for an open that never writes.
    ///
    /// # Safety
    ///
    /// The file is memory-mapped and values are handed out as slices of the
    /// map, so the caller guarantees two things:
    ///
    /// - Nothing but larch modifies or truncates the file or its lock file
    ///   (`<path>-lock`) while the returned [`Database`] is open. Other larch
    ///   handles, in this process or others, may open and write it: they
    ///   coordinate through the lock file and its byte-range locks, which
    ///   stop other larch handles but not a program that ignores them. The
    ///   file must be on a local file system (the processes share its page
    ///   cache and locks).
    /// - The file's contents were written by larch: every file larch created,
    ///   however its writers crashed or lost power, qualifies. larch checks
    ///   every offset, length and id it reads, so damaged or crafted bytes give
    ///   [`Error::Corrupted`] rather than a wild read, but a page that the
    ///   free list names while a tree still reaches it (or that two trees
    ///   share) would be reused by the writer while a reader holds a slice of
    ///   it, and one at the end of the file would be cut off with the free
    ///   tail by the next commits. A file from anywhere else (received, restored from an untrusted
    ///   backup, edited by another tool) must be opened with
    ///   [`verify(true)`](Options::verify), which rules that out before any
    ///   transaction starts; that lifts this second condition.
    #[allow(unsafe_code)] // The contract is the caller's; no unsafe operation here.
    pub unsafe fn open(&self, path: impl AsRef<Path>) -> Result<Database> {
        let ps = self.page_size as usize;
        if !valid_page_size(ps) {
            return Err(Error::InvalidOption(
                "page_size must be a power of two from 512 to 65536",
            ));
        }
        if self.map_size < 4 * ps as u64 {
            return Err(Error::InvalidOption(
                "map_size must hold at least four pages",
            ));
        }
        // Refused before the file is created: no map is longer than this.
        if isize::try_from(self.map_size).is_err() {
            return Err(Error::InvalidOption("map_size exceeds the address space"));
        }
        if self.max_size < 4 * ps as u64 {
            return Err(Error::InvalidOption(
                "max_size must hold at least four pages",
            ));
        }
        let path = path.as_ref();
        #[cfg(feature = "testing")]
        let hook = self.storage.as_ref();
        #[cfg(not(feature = "testing"))]
        let hook = None;
        let mut file = LockedFile::open(path, hook, self.read_only)?;
        let data = file.metadata()?;
        let opening = registry::open(path, &data, self.read_only)?;
        // Another handle may have created or grown the file while this one
        // waited for the lock file's open lock.
        file.refresh_len()?;
        let (opened, registry) = match opening {
            Opening::First(first) => {
                // No handle that uses this lock file has the database open;
                // one holding the data file without it would not see this
                // lock file's readers or writer.
                if !file.try_lock(Mode::Exclusive)? {
                    return Err(Error::AlreadyOpen);
                }
                file.lock_byte_shared(locks::DATA_REGISTERED)?;
                let opened = self.recover(path, file)?;
                // Shared before the open lock is: a joiner takes the data
                // file's lock only after the open lock, so it never finds
                // it exclusive (and the conversion, which is not atomic,
                // has nobody to lose it to).
                if !opened.pager.share_lock()? {
                    return Err(Error::AlreadyOpen);
                }
                // A newer meta that recovery set aside (a torn commit) stays
                // in its slot until the first writer spoils it.
                let newer = opened
                    .set_aside
                    .and_then(|s| s.txn_id)
                    .filter(|&t| t > opened.meta.txn_id);
                let registry = first.build(&data, opened.meta.txn_id, opened.durable, newer)?;
                (opened, registry)
            }
            Opening::Joined(registry) => {
                if !file.try_lock(Mode::Shared)? {
                    return Err(Error::AlreadyOpen);
                }
                file.lock_byte_shared(locks::DATA_REGISTERED)?;
                (self.join(file, &registry)?, registry)
            }
            Opening::Private(hold) => {
                // No writer of any name runs while this handle is open, and
                // none runs now, or it would not get these.
                if !file.try_lock(Mode::Shared)?
                    || !file.try_lock_byte(locks::DATA_WRITER, Mode::Shared)?
                {
                    return Err(Error::AlreadyOpen);
                }
                if file.byte_held_elsewhere(locks::DATA_REGISTERED)? {
                    // Handles with a lock file have the database open: this
                    // one reads the commit their registry published (a dead
                    // writer's unpublished one is never served), which only
                    // a live registry of this name can say.
                    let published = match &hold {
                        Some(lock_file) => registry::published(lock_file, &data)?,
                        None => None,
                    };
                    let Some(published) = published else {
                        return Err(Error::AlreadyOpen);
                    };
                    self.watch(file, published)?
                } else {
                    let opened = self.recover(path, file)?;
                    let registry = Registry::private(opened.meta.txn_id, opened.meta.txn_id, None);
                    (opened, registry)
                }
            }
        };
        if self.own {
            registry::unlink_own(path, &registry)?;
        }
        let Opened {
            pager,
            meta,
            free,
            set_aside,
            ..
        } = opened;
        Ok(Database::new(
            Core {
                pager,
                registry,
                latest: Mutex::new(meta),
                writer: Arc::new(Mutex::new(WriterState {
                    free,
                    known: meta.txn_id,
                })),
                poisoned: AtomicBool::new(false),
                set_aside: Mutex::new(set_aside),
                pid: std::process::id(),
                high_waters: Mutex::new(HighWaters::new(&meta)),
                shrink_failures: AtomicU64::new(0),
                wrote: Mutex::new(None),
                unsynced: Mutex::default(),
                closed: AtomicBool::new(false),
            },
            self.read_only,
        ))
    }

    /// Recovery, for the first handle to open the database (or a read-only
    /// one that cannot use the lock file): initialises a new file, makes what
    /// the page cache holds durable, and takes the newest commit that passes
    /// its checks.
    fn recover(&self, path: &Path, mut file: LockedFile) -> Result<Opened> {
        let ps = self.page_size as usize;
        let blank = is_blank(&file)?;
        if blank {
            if self.read_only {
                return corrupted(0, "not a larch database (empty or all zeros)");
            }
            initialise(&mut file, ps)?;
            sync_parent_dir(path)?;
        }
        // What open reads comes from the page cache, which may still hold a
        // commit whose process died before its sync returned. The next commit
        // overwrites the slot of the commit before that one, so whatever open
        // finds must be durable before anything builds on it. A read-only
        // open builds nothing, and a file just initialised was just synced.
        // A read-only open makes it durable too where it can (a sync writes
        // nothing of its own), so that no other process reads a commit a
        // power loss could take back; where it cannot, the first writer does.
        let mut durable = true;
        if !blank {
            if self.read_only {
                durable = file.sync().is_ok();
            } else {
                file.sync()?;
            }
        }
        let (mut candidates, mut set_aside) = read_metas(&file)?;
        if self.read_only
            && let [(slot, meta, _)] = &candidates[..]
            && meta.txn_id % 2 != *slot
        {
            // A lone meta a read-only open cannot give its twin: the first
            // writer does.
            durable = false;
        }
        if !self.read_only
            && let [(slot, meta, seal)] = &candidates[..]
            && meta.txn_id % 2 != *slot
        {
            // The one valid meta sits in the slot of the other parity (a plain
            // copy, or a new file, whose twin in the other slot was lost or
            // damaged). The next commit would overwrite it in place, so it
            // gets its twin first. The other slot held nothing newer: a newer
            // commit would have written this slot.
            let other = 1 - *slot;
            let offset = other * u64::from(meta.page_size);
            let seal = seal.as_deref().map_or(Seal::Synced, Seal::Listed);
            file.write_durably(&meta.encode_sealed(seal), offset)?;
            (candidates, set_aside) = read_metas(&file)?;
        }
        let page_size = candidates[0].1.page_size as usize;
        let pager = self.pager(file, page_size)?;
        let mut first_error = None;
        for (slot, meta, seal) in candidates {
            let loaded = (|| -> Result<freelist::Persisted> {
                let map = pager.map_for(meta.high_water)?;
                verify_seal(&pager, &map, &meta, seal.as_deref().unwrap_or(&[]))?;
                let view = MapView::new(&pager, &map, meta.high_water, meta.txn_id);
                let loaded = freelist::load(view, &meta)?;
                if self.verify {
                    check::strict(check::report(&pager, &map, &meta))?;
                }
                Ok(loaded)
            })();
            match loaded {
                Ok(free) => {
                    return Ok(Opened {
                        pager,
                        meta,
                        free,
                        set_aside,
                        durable,
                    });
                }
                Err(e) => {
                    if set_aside.is_none_or(|s| s.txn_id.is_none()) {
                        set_aside = Some(SetAside {
                            slot,
                            txn_id: Some(meta.txn_id),
                            reason: match &e {
                                Error::Corrupted { reason, .. } => reason,
                                _ => "could not be read",
                            },
                        });
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.expect("at least one candidate was tried"))
    }

    /// Maps `file`, whose pages are `page_size` bytes: the first map reserves
    /// `map_size` (no more than `max_size`, no less than the file).
    fn pager(&self, file: LockedFile, page_size: usize) -> Result<Pager> {
        file.into_pager(page_size, self.map_size.min(self.max_size), self.max_size)
    }

    /// Opening beside other handles: the commit they published, which the
    /// first of them recovered and later writers made durable. What it reads
    /// (the free list, the check of `verify`) it reads under a published
    /// snapshot, so no writer of another process reuses those pages meanwhile.
    fn join(&self, file: LockedFile, registry: &Registry) -> Result<Opened> {
        let (candidates, _) = read_metas(&file)?;
        let page_size = candidates[0].1.page_size as usize;
        let pager = self.pager(file, page_size)?;
        let (slot, meta) = publish_snapshot(registry, |id| read_meta(&pager, registry, id))?;
        let loaded = (|| -> Result<freelist::Persisted> {
            let map = pager.map_for(meta.high_water)?;
            // A writer loads it again if another process commits first.
            let free = if self.read_only {
                freelist::Persisted::default()
            } else {
                freelist::load(
                    MapView::new(&pager, &map, meta.high_water, meta.txn_id),
                    &meta,
                )?
            };
            if self.verify {
                check::strict(check::report(&pager, &map, &meta))?;
            }
            Ok(free)
        })();
        registry.end(slot);
        Ok(Opened {
            pager,
            meta,
            free: loaded?,
            set_aside: None,
            durable: true,
        })
    }

    /// A read-only open that cannot publish snapshots, beside handles that
    /// can: the commit their registry published (`published`, with the
    /// commit it says a writer left unfinished and the weak meta the
    /// commit's would be in); no writer commits while this handle holds
    /// `DATA_WRITER` shared.
    fn watch(
        &self,
        file: LockedFile,
        published: registry::Published,
    ) -> Result<(Opened, Registry)> {
        let registry::Published {
            committed,
            writing,
            durable,
            weak,
        } = published;
        let (candidates, _) = read_metas(&file)?;
        // A registry that lags the file (that of another name for the
        // database, whose handles went on committing) is not the live one.
        let lags = candidates
            .iter()
            .any(|(_, m, _)| m.txn_id > committed && Some(m.txn_id) != writing);
        if lags {
            return Err(Error::AlreadyOpen);
        }
        let page_size = candidates[0].1.page_size as usize;
        let pager = self.pager(file, page_size)?;
        let weak = registry::decode_weak(&weak, committed, pager.file_len());
        let registry = Registry::private(committed, durable.min(committed), weak);
        let Some(meta) = read_meta(&pager, &registry, committed)? else {
            return corrupted(
                committed % 2,
                "the lock file names a commit the file does not hold",
            );
        };
        if self.verify {
            let map = pager.map_for(meta.high_water)?;
            check::strict(check::report(&pager, &map, &meta))?;
        }
        let opened = Opened {
            pager,
            meta,
            free: freelist::Persisted::default(),
            set_aside: None,
            durable: true,
        };
        Ok((opened, registry))
    }
}

/// What open hands the new `Database`.
struct Opened {
    pager: Pager,
    meta: Meta,
    free: freelist::Persisted,
    set_aside: Option<SetAside>,
    /// Whether `meta` is known durable and in its own slot (else the first
    /// writer makes it so).
    durable: bool,
}

/// Whether the file holds nothing yet: it is empty, or no longer than two of
/// the largest pages and all zeros (a crash while it was first written).
fn is_blank(file: &LockedFile) -> Result<bool> {
    if file.len() == 0 {
        return Ok(true);
    }
    if file.len() > 2 * MAX_PAGE_SIZE as u64 {
        return Ok(false);
    }
    let mut buf = vec![0u8; file.len() as usize];
    let n = file.read_at(&mut buf, 0)?;
    Ok(buf[..n].iter().all(|&b| b == 0))
}

#[cfg(feature = "testing")]
impl Options {
    /// Opens a scratch file that the test suites created for themselves alone.
    #[allow(unsafe_code)] // Calls the unsafe open under the contract below.
    pub(crate) fn open_scratch(&self, path: impl AsRef<Path>) -> Result<Database> {
        // SAFETY: the suites' scratch files are theirs alone; nothing else
        // modifies or truncates them while open.
        unsafe { Options::open(self, path) }
    }
}

impl Options {
    /// Opens a file larch itself just created under a name of its own (a
    /// copy's temporary file).
    #[allow(unsafe_code)] // Calls the unsafe open under the contract below.
    pub(crate) fn open_own(&self, path: impl AsRef<Path>) -> Result<Database> {
        let own = Options {
            own: true,
            ..self.clone()
        };
        // SAFETY: the file was created by this call's caller under a temporary
        // name and is published only after this handle is dropped; nothing else
        // modifies or truncates it while open.
        unsafe { Options::open(&own, path) }
    }
}

/// Writes the two metas of transaction 0 into an empty file and syncs it.
fn initialise(file: &mut LockedFile, page_size: usize) -> Result<()> {
    let meta = Meta {
        page_size: page_size as u32,
        txn_id: 0,
        high_water: 2,
        freelist_head: 0,
        freelist_entries: 0,
        catalog: TableDesc::default(),
        heap: Default::default(),
    };
    let bytes = meta.encode();
    let mut buf = vec![0u8; 2 * page_size];
    buf[..bytes.len()].copy_from_slice(&bytes);
    buf[page_size..page_size + bytes.len()].copy_from_slice(&bytes);
    file.write_durably(&buf, 0)
}

/// A slot's seal kept past the bytes it was read from: `None` for
/// `Seal::Synced`, else the list.
type OwnedSeal = Option<Vec<SealEntry>>;

/// A valid meta, its slot and its seal.
type Candidate = (u64, Meta, OwnedSeal);

/// Reads both meta slots and returns the valid ones, newest first, and the
/// slot that holds no valid meta, if the other one does.
fn read_metas(file: &LockedFile) -> Result<(Vec<Candidate>, Option<SetAside>)> {
    // A slot is read up to `len` bytes (one page; the seal list lies within).
    // The file's length is read after the slot: beside a writer of another
    // handle, which grows the file before it writes a meta that needs the
    // growth, a length learnt before would fail a healthy meta.
    let read = |offset: u64, len: usize| -> Result<Result<(Meta, OwnedSeal), MetaError>> {
        let mut buf = vec![0u8; len];
        let n = file.read_at(&mut buf, offset)?;
        buf.truncate(n);
        let file_len = file.current_len()?;
        let seal = match Meta::seal(&buf) {
            Seal::Synced => None,
            Seal::Listed(entries) => Some(entries.to_vec()),
        };
        Ok(Meta::decode(&buf, file_len).map(|m| (m, seal)))
    };
    let mut slot0 = read(0, MAX_PAGE_SIZE)?;
    // Slot 1 sits one page in. If slot 0 is valid it says where; otherwise try
    // every page size, accepting only a meta that names its own offset.
    let sizes: Vec<usize> = match &slot0 {
        Ok((m, _)) => vec![m.page_size as usize],
        Err(_) => (MIN_PAGE_SIZE.trailing_zeros()..=MAX_PAGE_SIZE.trailing_zeros())
            .map(|shift| 1usize << shift)
            .collect(),
    };
    let mut slot1 = Err(MetaError::Short);
    for size in sizes {
        match read(size as u64, size)? {
            Ok((m, seal)) if m.page_size as usize == size => {
                slot1 = Ok((m, seal));
                break;
            }
            Ok(_) => slot1 = Err(MetaError::PageSize),
            Err(e) => slot1 = Err(e),
        }
    }
    // Transaction `N` writes slot `N % 2`, and the next commit overwrites the
    // other slot. A meta in the slot of the other parity would have the next
    // commit overwrite it in place, so beside another valid meta it is valid
    // only as that meta's exact twin (both slots of a plain copy, or of a new
    // file, hold one meta). Alone, it stands: a writable open gives it its
    // twin before anything builds on it.
    let twins = matches!((&slot0, &slot1), (Ok(a), Ok(b)) if a == b);
    let both = slot0.is_ok() && slot1.is_ok();
    let misplaced = |m: &Result<(Meta, OwnedSeal), MetaError>, slot: u64| {
        m.as_ref().is_ok_and(|(m, _)| m.txn_id % 2 != slot)
    };
    if both && !twins {
        if misplaced(&slot0, 0) {
            slot0 = Err(MetaError::Slot);
        }
        if misplaced(&slot1, 1) {
            slot1 = Err(MetaError::Slot);
        }
    }
    let reason0 = slot0.as_ref().err().copied();
    let invalid = [&slot0, &slot1]
        .iter()
        .enumerate()
        .find_map(|(slot, m)| m.as_ref().err().map(|e| (slot as u64, *e)))
        .map(|(slot, e)| SetAside {
            slot,
            txn_id: None,
            reason: e.reason(),
        });
    let mut valid: Vec<Candidate> = [slot0, slot1]
        .into_iter()
        .enumerate()
        .filter_map(|(slot, m)| m.ok().map(|(meta, seal)| (slot as u64, meta, seal)))
        .collect();
    if valid.is_empty() {
        // A file that does not start with the magic is someone else's, however
        // short: say so rather than what its bytes failed first.
        let mut head = [0u8; MAGIC.len()];
        let n = file.read_at(&mut head, 0)?;
        let reason = if head[..n] != MAGIC[..] {
            MetaError::Magic
        } else {
            reason0.unwrap_or(MetaError::Checksum)
        };
        return corrupted(0, reason.reason());
    }
    valid.sort_by_key(|(_, m, _)| std::cmp::Reverse(m.txn_id));
    let page_size = valid[0].1.page_size;
    valid.retain(|(_, m, _)| m.page_size == page_size);
    Ok((valid, invalid))
}

/// Checks a meta committed with a single sync against its seal list: every
/// page the commit wrote must hold the checksum the list records. A mismatch
/// means the crash tore the commit, and the older meta is used instead.
fn verify_seal(pager: &Pager, map: &Map, meta: &Meta, seal: &[SealEntry]) -> Result<()> {
    let view = MapView::new(pager, map, meta.high_water, meta.txn_id);
    for e in seal {
        let (id, n) = (e.page.get(), u64::from(e.pages.get()));
        if page_checksum(view.run_bytes(id, n)?) != e.checksum.get() {
            return corrupted(id, "page does not match its commit's seal (torn commit)");
        }
    }
    Ok(())
}

/// An open database file.
///
/// A cheap handle: clones share the one open file, its map and its locks
/// (as an `Arc` does), and it is `Send` and `Sync`, so threads and async
/// tasks may each hold a clone or share one by reference. Any number of
/// [`ReadTxn`] run beside at most one [`WriteTxn`], in this process and every
/// other that has the file open.
///
/// Transactions do not borrow the handle: each holds the open file itself,
/// so an application may keep a database and its open transactions together
/// in one struct, or move a transaction to another thread. The file is
/// closed, and its locks released, when the last clone of the handle and the
/// last transaction are gone; what closing does to the file's free tail
/// happens when the last clone goes (a transaction still alive then keeps
/// its snapshot, which the cut respects).
///
/// A child process made with `fork` cannot use a `Database` of its parent
/// (it shares the parent's locks, so neither could tell the other's readers
/// or writer from its own): transactions it asks for fail with
/// [`Error::Forked`]. Open the file again in the child, as any other
/// process does.
#[derive(Clone)]
pub struct Database {
    core: Arc<Core>,
    /// Opened with [`Options::read_only`]: no write transaction starts.
    read_only: bool,
    /// Shared by the clones of this handle: the last one to go closes it.
    _closer: Arc<Closer>,
}

/// What closing a handle does, once its last clone is dropped
/// (transactions still alive keep the file open until they end).
struct Closer {
    core: Arc<Core>,
    read_only: bool,
}

impl Drop for Closer {
    /// Gives the file's preallocated and free tail back to the file system
    /// (DESIGN.md, "Shrinking the file"), if no write transaction runs in
    /// this process or another and the handle can write; never waits.
    fn drop(&mut self) {
        // A child made by `fork` touches nothing of its parent's (and takes
        // no lock another thread of the parent may have held at the fork).
        if self.read_only
            || self.core.same_process().is_err()
            || self.core.poisoned.load(Ordering::Acquire)
        {
            return;
        }
        // Commits that are not durable become durable as a handle closes
        // (`Durability`), whoever made them. Otherwise only a handle whose
        // commit is the newest it knows: starting a write transaction is
        // not free of effects (it spoils a slot open set aside, for one),
        // and the cut needs that commit's metas.
        self.core.closed.store(true, Ordering::Release);
        let registry = &self.core.registry;
        let weak = registry.durable() != registry.committed();
        let latest = self.core.latest.lock().txn_id;
        let mine = *self.core.wrote.lock() == Some(latest);
        if !weak && !mine {
            return;
        }
        match start_write(&self.core, false) {
            Ok(Some(mut w)) => {
                let durable = !weak || w.make_durable().is_ok();
                if durable && mine {
                    w.cut_on_close();
                }
            }
            // The writer lock is taken: by a write transaction of this
            // handle, which syncs as it ends (`Core::closed`); by a writer
            // of another process, alive, whose handle syncs as it closes;
            // or, the data file's writer byte held shared, by a read-only
            // handle that cannot publish its snapshot, which reads only the
            // published commit: making that durable writes only the other
            // meta slot, which it does not read, so it goes ahead under the
            // lock file's writer lock alone.
            Ok(None) if weak => {
                if let Ok(Some(mut w)) = start_sync(&self.core) {
                    let _ = w.make_durable();
                }
            }
            _ => {}
        }
    }
}

/// A write transaction of `core`'s handle under the lock file's writer
/// lock alone (not the data file's writer byte), for `make_durable` only:
/// `None` if either lock is taken.
fn start_sync(core: &Arc<Core>) -> Result<Option<WriteTxn>> {
    let Some(guard) = core.writer.try_lock_arc() else {
        return Ok(None);
    };
    if !core.registry.lock_writer(false)? {
        return Ok(None);
    }
    WriteTxn::new(Arc::clone(core), guard).map(Some)
}

/// Starts the write transaction of `core`'s handle, waiting for it if
/// `wait`; `None` if it does not wait and another one runs.
fn start_write(core: &Arc<Core>, wait: bool) -> Result<Option<WriteTxn>> {
    core.same_process()?;
    // This handle's threads first, then the other handles and processes.
    let guard = if wait {
        core.writer.lock_arc()
    } else {
        match core.writer.try_lock_arc() {
            Some(guard) => guard,
            None => return Ok(None),
        }
    };
    if core.poisoned.load(Ordering::Acquire) {
        return Err(Error::Poisoned);
    }
    if !core.lock_writer(wait)? {
        return Ok(None);
    }
    WriteTxn::new(Arc::clone(core), guard).map(Some)
}

/// Bytes of pages one compaction transaction moves, at most: its dirty
/// buffers stay bounded.
const COMPACT_BYTES: u64 = 64 << 20;

/// Compaction transactions one `compact` runs, at most.
const MAX_COMPACT_PASSES: u32 = 1000;

impl Database {
    fn new(core: Core, read_only: bool) -> Database {
        let core = Arc::new(core);
        Database {
            _closer: Arc::new(Closer {
                core: Arc::clone(&core),
                read_only,
            }),
            core,
            read_only,
        }
    }

    /// Opens (or creates) the database at `path` with default [`Options`].
    ///
    /// # Safety
    ///
    /// As for [`Options::open`]: nothing else may modify or truncate the file
    /// while it is open, and its contents were written by larch (otherwise
    /// open it with [`Options::verify`]).
    #[allow(unsafe_code)] // The contract is the caller's; no unsafe operation here.
    pub unsafe fn open(path: impl AsRef<Path>) -> Result<Database> {
        // SAFETY: the caller upholds the same contract.
        unsafe { Options::new().open(path) }
    }

    /// Starts a read transaction on the last commit of any process. Never
    /// waits for a writer.
    pub fn begin_read(&self) -> Result<ReadTxn> {
        ReadTxn::new(Arc::clone(&self.core))
    }

    /// Starts the write transaction, waiting while another one runs, in this
    /// process or any other. (So a thread that already holds a write
    /// transaction, of this handle or another handle of the same file, and
    /// asks for a second one waits forever: end the first one first.)
    ///
    /// Fails with [`Error::Poisoned`] after an earlier write or sync error,
    /// and with [`Error::ReadOnly`] on a read-only open.
    pub fn begin_write(&self) -> Result<WriteTxn> {
        let started = self.start_write(true)?;
        Ok(started.expect("a waiting start always gets the writer lock"))
    }

    /// Starts the write transaction if no other one runs, in this process or
    /// any other; `Ok(None)` if one does. Fails as
    /// [`begin_write`](Database::begin_write) does.
    pub fn try_begin_write(&self) -> Result<Option<WriteTxn>> {
        self.start_write(false)
    }

    fn start_write(&self, wait: bool) -> Result<Option<WriteTxn>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        start_write(&self.core, wait)
    }

    /// Gives the free pages at the end of the file back to the file system,
    /// in ordinary write transactions, so readers of every process go on
    /// reading and other writers interleave. Returns the bytes by which the
    /// file got shorter (0 if it did not, or if another process's writer
    /// made it longer meanwhile).
    ///
    /// Each transaction moves the pages that lie past the pages in use
    /// (tree nodes and overflow runs, 64 MiB at most) to the lowest free
    /// pages, copy-on-write, and commits; the pages it freed are reused, or
    /// cut off with the end of the file, once no snapshot reaches them
    /// (DESIGN.md, "Shrinking the file"). It stops when three commits in a
    /// row moved nothing and lowered nothing. A read transaction that is
    /// alive, in any process, keeps the pages its snapshot reaches and the
    /// file's length under its snapshot's: the file shrinks less, or not at
    /// all, until it ends (a later commit or `compact` cuts the rest).
    /// [`readers`](Database::readers) says who holds what.
    ///
    /// Fails as [`begin_write`](Database::begin_write) and
    /// [`WriteTxn::commit`] do; the commits made before a failure stay.
    pub fn compact(&self) -> Result<u64> {
        let before = self.core.pager.real_len()?;
        let budget = (COMPACT_BYTES / u64::from(self.page_size())).max(1);
        let mut idle = 0;
        // A bound on the passes, whatever other writers do meanwhile.
        for _ in 0..MAX_COMPACT_PASSES {
            let mut w = self.begin_write()?;
            let high_water = w.base_high_water();
            let moved = w.relocate_tail(budget)?;
            match w.commit() {
                // Nothing moved, and the free list cannot be written anew
                // (a file at `max_size`, or a full disk, whose free pages
                // are all pending): nothing more fits, and the file stays.
                Err(Error::MapFull { .. }) if moved == 0 => break,
                r => r?,
            }
            let lowered = self.core.latest.lock().high_water < high_water;
            idle = if moved > 0 || lowered { 0 } else { idle + 1 };
            // Pages a commit frees are reusable two commits later (the
            // metas hold them until then), and the file is cut one commit
            // after the high-water mark drops (the older meta's mark).
            if idle == 3 {
                break;
            }
        }
        Ok(before.saturating_sub(self.core.pager.real_len()?))
    }

    /// The read transactions of every process that has the database open,
    /// this one included, oldest snapshot first (like `mdb_stat -r`). Readers
    /// of processes that died are left out.
    ///
    /// Each says how many pages of the last commit's free list its snapshot
    /// alone keeps from reuse ([`ReaderInfo::pinned_pages`]), read from a
    /// snapshot of the last commit this call takes after listing the readers
    /// (so it is not listed itself); 0 for all when that snapshot's free list
    /// cannot be read.
    pub fn readers(&self) -> Result<Vec<ReaderInfo>> {
        self.core.same_process()?;
        let mut readers = self.core.registry.readers()?;
        if readers.is_empty() {
            return Ok(readers);
        }
        // A free list that cannot be read (a damaged file) still lists the
        // readers, with nothing counted.
        if let Ok(r) = self.begin_read() {
            let _ = r.count_pins(&mut readers);
        }
        Ok(readers)
    }

    /// Frees the registry slots of processes that died and returns how many.
    /// There is no need to call it: every writer frees the slots of dead
    /// processes whose snapshots would pin pages (one check per distinct
    /// snapshot), and openers and readers free slots before they could fill
    /// the registry. It is here for tools.
    pub fn clear_stale_readers(&self) -> Result<usize> {
        self.core.same_process()?;
        self.core.registry.clear_stale()
    }

    /// The page size of the file.
    pub fn page_size(&self) -> u32 {
        self.core.pager.page_size() as u32
    }

    /// The id of the last committed transaction, of any process.
    pub fn last_txn_id(&self) -> u64 {
        self.core.registry.committed()
    }

    /// The id of the newest durable commit: a power loss now leaves the
    /// database at this commit or a later one. Below
    /// [`last_txn_id`](Database::last_txn_id) while commits made with
    /// [`Durability::Eventual`] or [`Durability::None`] wait for a sync.
    ///
    /// [`Durability::Eventual`]: crate::Durability::Eventual
    /// [`Durability::None`]: crate::Durability::None
    pub fn durable_txn_id(&self) -> u64 {
        self.core.registry.durable()
    }

    /// Makes every commit made so far durable, in this process and any
    /// other: a no-op when they are (every commit `Immediate`), else the
    /// pages written since the last durable commit are synced, then the
    /// newest commit's meta is written into its slot and synced (two
    /// `fdatasync`s, no new commit). Waits for the writer lock, as
    /// [`begin_write`](Database::begin_write) does, and fails as it does;
    /// a failed sync poisons the handle as a failed commit does.
    /// (LMDB's `mdb_env_sync`.)
    pub fn sync(&self) -> Result<()> {
        let registry = &self.core.registry;
        if registry.durable() == registry.committed() {
            return Ok(());
        }
        self.begin_write()?.make_durable()
    }

    /// Checks the last committed state: see [`ReadTxn::check`].
    pub fn check(&self) -> Result<CheckReport> {
        self.begin_read()?.check()
    }

    /// The full report on the last committed state, problems included: see
    /// [`ReadTxn::check_report`].
    pub fn check_report(&self) -> Result<CheckReport> {
        Ok(self.begin_read()?.check_report())
    }

    /// Figures of the last committed state: see [`ReadTxn::stat`].
    /// `live_readers` leaves out the read transaction this call opens.
    pub fn stat(&self) -> Result<Stat> {
        // The readers before this call's own, which it leaves out.
        let readers = self.core.registry.readers()?;
        self.begin_read()?.stat_with(readers)
    }

    /// Number of read transactions alive, in every process (those of a
    /// process that died count until a writer frees their slots).
    pub fn live_readers(&self) -> usize {
        self.core.registry.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A joiner learns the file's length, and then reads the metas: a writer
    /// of another handle that grows the file and commits twice in between
    /// leaves both slots pointing past the length it learnt. The metas are
    /// judged against the length read after them.
    #[test]
    #[allow(unsafe_code)] // Opens a file only this test uses.
    fn metas_written_after_the_length_was_read_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.larch");
        // SAFETY: the test owns the file.
        let db = unsafe { Database::open(&path) }.unwrap();
        let file = LockedFile::open(&path, None, true).unwrap();
        let before = file.len();
        for round in 0..2u64 {
            let w = db.begin_write().unwrap();
            {
                let mut t = w.open_table("t").unwrap();
                for k in 0..2_000u64 {
                    t.insert(&(round << 32 | k).to_be_bytes(), &[7u8; 100])
                        .unwrap();
                }
            }
            w.commit().unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() > before);
        let (valid, _) = read_metas(&file).unwrap();
        assert_eq!(valid.len(), 2);
    }
}
