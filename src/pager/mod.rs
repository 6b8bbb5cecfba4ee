//! The bottom of larch: the file, its locks, the read-only map, the lock
//! file's shared map, and the one place where bytes reach the disk.
//!
//! This is the only module with `unsafe`: page slices are made from the map's
//! raw pointer, the lock file's words from its shared map's, and byte-range
//! locks are `fcntl` calls. Every write, resize and sync goes through the [`Storage`]
//! trait, so tests can record, drop or fail them.
#![allow(unsafe_code)]

pub(crate) mod lock;
pub(crate) mod shared;

use std::fs::{File, Metadata, OpenOptions, TryLockError};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;

use crate::error::{Error, Result, corrupted};
use crate::format::page::PageId;

/// Where the writer's bytes go. Reads never pass here: they come from the map.
///
/// A test build (feature `testing`) can wrap it to record, drop or fail writes.
pub trait Storage: Send + Sync {
    /// Writes all of `data` at byte `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Writes all of `bufs`, one after the other, from byte `offset`: one
    /// write of their concatenation. The default makes that concatenation and
    /// calls [`write_at`](Storage::write_at) once.
    fn write_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        self.write_at(offset, &bufs.concat())
    }
    /// Sets the file length.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Grows the file from `from` to `to` bytes with the blocks of the new
    /// part allocated, so that writes there cannot fail for want of space.
    /// The default only sets the length.
    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        let _ = from;
        self.set_len(to)
    }
    /// Makes every write and resize so far durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
    /// Asks for the writes in `len` bytes from `offset` to start on their way
    /// to the disk, without waiting and without making anything durable.
    /// The default does nothing.
    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
}

/// Builds the storage of a freshly opened file (feature `testing`).
pub type StorageHook = std::sync::Arc<dyn Fn(File) -> io::Result<Box<dyn Storage>> + Send + Sync>;

/// The real file.
pub struct FileStorage {
    file: File,
}

impl FileStorage {
    /// Storage that writes to `file`.
    pub fn new(file: File) -> FileStorage {
        FileStorage { file }
    }
}

impl Storage for FileStorage {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// `pwritev` calls straight from the buffers, without copying them
    /// together.
    fn write_vectored_at(&self, mut offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // 64-bit offsets on 32-bit Linux too.
        #[cfg(not(target_os = "linux"))]
        use libc::{off_t as Offset, pwritev};
        #[cfg(target_os = "linux")]
        use libc::{off64_t as Offset, pwritev64 as pwritev};
        /// Buffers one call takes, at most (Linux's `IOV_MAX`).
        const IOV_MAX: usize = 1024;
        let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let Ok(at) = Offset::try_from(offset) else {
                return Err(io::ErrorKind::FileTooLarge.into());
            };
            let count = rest.len().min(IOV_MAX) as libc::c_int;
            // SAFETY: `IoSlice` has the layout of `iovec` on Unix, and the
            // first `count` slices of `rest` are live buffers the call only
            // reads; the descriptor is owned by `self.file`.
            let n = unsafe {
                pwritev(
                    self.file.as_raw_fd(),
                    rest.as_ptr().cast::<libc::iovec>(),
                    count,
                    at,
                )
            };
            match n {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n if n > 0 => {
                    IoSlice::advance_slices(&mut rest, n as usize);
                    offset += n as u64;
                }
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
            return Err(io::ErrorKind::FileTooLarge.into());
        };
        // SAFETY: a plain system call on a descriptor `self.file` owns.
        let mut r = unsafe { libc::posix_fallocate(self.file.as_raw_fd(), offset, len) };
        while r == libc::EINTR {
            // SAFETY: as above.
            r = unsafe { libc::posix_fallocate(self.file.as_raw_fd(), offset, len) };
        }
        match r {
            0 => Ok(()),
            // A file system that cannot allocate ahead: only set the length.
            libc::EOPNOTSUPP | libc::EINVAL => self.file.set_len(to),
            e => {
                // A failure may leave part of the range allocated and the
                // file longer, by a length that need not be whole pages.
                // Nothing lies past `from`: give the file its length back.
                let _ = self.file.set_len(from);
                Err(io::Error::from_raw_os_error(e))
            }
        }
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// `sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux; a hint, so a
    /// failure is ignored (the sync that follows reports any error).
    fn start_writeback(&self, offset: u64, len: u64) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (Ok(offset), Ok(len)) = (
                libc::off64_t::try_from(offset),
                libc::off64_t::try_from(len),
            ) else {
                return;
            };
            // SAFETY: a plain system call on a descriptor `self.file` owns.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    offset,
                    len,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
    }
}

/// The open file, its maps and its storage.
pub(crate) struct Pager {
    /// Holds the data file's lock (shared) for as long as the database is
    /// open; meta slots are read through it.
    file: File,
    /// The largest map so far, which new transactions take (`None` only
    /// after a remap that failed, having let go of an idle map first). A
    /// transaction keeps the map it started with; a smaller map is unmapped
    /// when the last transaction holding it ends.
    map: Mutex<Option<Arc<Map>>>,
    storage: Box<dyn Storage>,
    page_size: usize,
    /// The file may not grow past this many bytes (`Options::max_size`).
    max_size: u64,
    /// Length of the file as this handle's readers know it: never below the
    /// high-water mark of a live snapshot of this handle. Another process's
    /// writer may have made the file longer (`refresh_len` learns that) or
    /// shorter (never below a live snapshot's high-water mark, which is all
    /// a reader reads); a reader's `refresh_len` racing a truncation may
    /// leave it higher than the file. The writer does not use it.
    file_len: AtomicU64,
    /// Length of the file as the writer knows it: learnt with `fstat` under
    /// the writer lock of every process (`writer_len_from_file`), then
    /// changed only by this handle's writer (`grow`, `shrink`). Readers never
    /// touch it, so a stale length they learn cannot make `grow` skip an
    /// allocation.
    writer_len: AtomicU64,
}

/// One read-only map of the file: a reservation of address space from the
/// start of the file, longer than the file, so that the file can grow into
/// it. Pages past the end of the file are mapped but never read.
pub(crate) struct Map {
    raw: MmapRaw,
}

impl Map {
    /// Maps `len` bytes of `file`. A length the system cannot reserve is
    /// `None`.
    fn new(file: &File, len: u64) -> Result<Option<Map>> {
        // A map's length is at most `isize::MAX` bytes.
        let Some(len) = usize::try_from(len)
            .ok()
            .filter(|&len| isize::try_from(len).is_ok())
        else {
            return Ok(None);
        };
        match MmapOptions::new().len(len).map_raw_read_only(file) {
            Ok(raw) => Ok(Some(Map { raw })),
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Bytes of address space the map reserves.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.raw.len() as u64
    }
}

/// Bytes a snapshot read from a [`Map`], kept by their place in it, so that
/// they can be read again after the borrow that found them ended: what lets
/// an iterator own its snapshot and still hand out values without copying.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MapBytes {
    at: usize,
    len: usize,
}

impl MapBytes {
    /// The place of `bytes` in `map`; `None` if they do not lie inside it.
    pub(crate) fn of(map: &Map, bytes: &[u8]) -> Option<MapBytes> {
        if bytes.is_empty() {
            return Some(MapBytes { at: 0, len: 0 });
        }
        let at = (bytes.as_ptr() as usize).checked_sub(map.raw.as_ptr() as usize)?;
        let end = at.checked_add(bytes.len())?;
        (end <= map.raw.len()).then_some(MapBytes {
            at,
            len: bytes.len(),
        })
    }

    /// The bytes again, from `map`, the map `of` found them in.
    ///
    /// The caller holds the snapshot they were read through (a registry
    /// slot that is still published) for as long as the slice lives.
    pub(crate) fn get<'m>(&self, map: &'m Map) -> &'m [u8] {
        assert!(
            self.at + self.len <= map.raw.len(),
            "a map place read from another map"
        );
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the range lies inside the map (checked above), which stays
        // mapped while borrowed. `of` made it from a slice of this map that a
        // snapshot read through `Pager::bytes`, so it lies under that
        // snapshot's high-water mark and was backed by the file; the caller
        // keeps that snapshot alive, so, as for `Pager::bytes`, no writer of
        // any process cuts the file under it or writes these bytes while the
        // slice lives.
        unsafe { std::slice::from_raw_parts(map.raw.as_ptr().add(self.at), self.len) }
    }
}

/// An opened, locked file before its page size is known.
pub(crate) struct LockedFile {
    file: File,
    storage: Box<dyn Storage>,
    len: u64,
}

impl LockedFile {
    /// Opens (creating if missing) the file at `path`, unlocked; its writes
    /// go through the storage `hook` builds, or straight to the file.
    /// `read_only` opens an existing file without write access.
    pub(crate) fn open(
        path: &Path,
        hook: Option<&StorageHook>,
        read_only: bool,
    ) -> Result<LockedFile> {
        // Only a regular file: a block device reports a length of 0 and would
        // be initialised over whatever it holds, and opening a FIFO blocks.
        let not_a_file = || {
            Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ))
        };
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(not_a_file());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .create(!read_only)
            .truncate(false)
            .open(path)?;
        // Again on the file opened, in case the name changed meanwhile.
        if !file.metadata()?.is_file() {
            return Err(not_a_file());
        }
        let len = file.metadata()?.len();
        let storage = match hook {
            Some(hook) => hook(file.try_clone()?)?,
            None => Box::new(FileStorage::new(file.try_clone()?)),
        };
        Ok(LockedFile { file, storage, len })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Learns the file's length anew: another handle may have created or
    /// grown it while this one waited for the lock file.
    pub(crate) fn refresh_len(&mut self) -> Result<()> {
        self.len = self.current_len()?;
        Ok(())
    }

    /// The file's length now, which a writer of another handle may have
    /// grown since [`len`](LockedFile::len) was learnt.
    pub(crate) fn current_len(&self) -> Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Takes, for the life of the file, a shared lock on byte `at` (the
    /// data file's `DATA_REGISTERED`).
    pub(crate) fn lock_byte_shared(&self, at: u64) -> Result<()> {
        lock::lock(&self.file, at, lock::Mode::Shared)?;
        Ok(())
    }

    /// Whether another open file description holds a lock on byte `at`.
    pub(crate) fn byte_held_elsewhere(&self, at: u64) -> Result<bool> {
        Ok(lock::held_elsewhere(&self.file, at)?)
    }

    /// Takes a lock on byte `at` in `mode` if no other open file
    /// description holds a conflicting one; returns whether it did.
    pub(crate) fn try_lock_byte(&self, at: u64, mode: lock::Mode) -> Result<bool> {
        Ok(lock::try_lock(&self.file, at, mode)?)
    }

    /// The file's metadata (owner, mode, identity).
    pub(crate) fn metadata(&self) -> Result<Metadata> {
        Ok(self.file.metadata()?)
    }

    /// Locks the whole file (`flock`) in `mode` if no other open file
    /// description holds a conflicting lock; returns whether it did. A lock
    /// this file already holds is converted (not atomically: see DESIGN.md,
    /// "Opening beside other processes").
    pub(crate) fn try_lock(&self, mode: lock::Mode) -> Result<bool> {
        let r = match mode {
            lock::Mode::Shared => self.file.try_lock_shared(),
            lock::Mode::Exclusive => self.file.try_lock(),
        };
        match r {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(Error::Io(e)),
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`, returning how many were read.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        read_fully(&self.file, buf, offset)
    }

    /// Maps the file with `map_size` bytes of address space (at least the file
    /// length) and turns it into a pager whose file never grows past
    /// `max_size` bytes. A first map the system cannot reserve is an invalid
    /// `map_size`.
    pub(crate) fn into_pager(
        self,
        page_size: usize,
        map_size: u64,
        max_size: u64,
    ) -> Result<Pager> {
        let map = Map::new(&self.file, map_size.max(self.len))?.ok_or(Error::InvalidOption(
            "map_size is more address space than the system can reserve",
        ))?;
        Ok(Pager {
            file: self.file,
            map: Mutex::new(Some(Arc::new(map))),
            storage: self.storage,
            page_size,
            max_size,
            file_len: AtomicU64::new(self.len),
            writer_len: AtomicU64::new(self.len),
        })
    }

    /// Makes every write the file has received durable, from this process or
    /// from one that died before its sync returned.
    pub(crate) fn sync(&self) -> Result<()> {
        self.storage.sync()?;
        Ok(())
    }

    /// Writes `data` at `offset` and makes it durable (used to initialise a new
    /// file, before any map exists).
    pub(crate) fn write_durably(&mut self, data: &[u8], offset: u64) -> Result<()> {
        self.storage.write_at(offset, data)?;
        self.storage.sync()?;
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }
}

/// Whether `e` says the disk or the file-size limit is full.
fn is_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge | io::ErrorKind::QuotaExceeded
    )
}

/// Reads up to `buf.len()` bytes of `file` at `offset`, returning how many
/// were read (fewer only at the end of the file).
fn read_fully(file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Whether this process may write the file at `path` (`access(W_OK)`),
/// without opening it.
pub(crate) fn may_write(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Makes the directory entry of a newly created file durable.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()?;
    Ok(())
}

impl Pager {
    #[inline]
    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }

    #[inline]
    pub(crate) fn file_len(&self) -> u64 {
        self.file_len.load(Ordering::Acquire)
    }

    /// The longest the file may grow (`Options::max_size`).
    pub(crate) fn max_size(&self) -> u64 {
        self.max_size
    }

    /// A map that covers pages `0..high_water`: the current one,
    /// or, when the file has outgrown it, a new one of at least twice its
    /// reservation, which new transactions take from then on. Transactions
    /// holding an older map keep reading through it: nothing waits. A
    /// current map no transaction holds is let go first, so that the old and
    /// the new reservation need not fit at once.
    ///
    /// A reservation the system cannot give is [`Error::MapFull`].
    pub(crate) fn map_for(&self, high_water: u64) -> Result<Arc<Map>> {
        let ps = self.page_size as u64;
        let len = high_water.saturating_mul(ps);
        let mut current = self.map.lock();
        let old_len = current.as_ref().map_or(0, |m| m.len());
        if let Some(map) = current.as_ref()
            && map.len() >= len
        {
            return Ok(Arc::clone(map));
        }
        // Clones are made only under this lock: a count of one stays one.
        if current.as_ref().is_some_and(|m| Arc::strong_count(m) == 1) {
            *current = None;
        }
        // Twice the reservation, whatever `max_size` says (it limits this
        // handle's writes, not what others grew the file to): a doubling per
        // remap, not a map per commit. Half may fit where the double did not.
        let round = |n: u64| n.saturating_add(ps - 1) / ps * ps;
        for reserve in [round(len.max(old_len.saturating_mul(2))), round(len)] {
            if let Some(map) = Map::new(&self.file, reserve)? {
                let map = Arc::new(map);
                *current = Some(Arc::clone(&map));
                return Ok(map);
            }
        }
        Err(Error::MapFull {
            needed: len,
            limit: old_len,
            reason: "the system cannot reserve the address space to map the file",
        })
    }

    /// Bytes of address space the current map reserves.
    pub(crate) fn map_len(&self) -> u64 {
        self.map.lock().as_ref().map_or(0, |m| m.len())
    }

    /// For the writer, under the writer lock of every process: learns the
    /// file's real length (`fstat`), which another process's writer may have
    /// grown or shrunk since this handle last wrote. Returns it.
    pub(crate) fn writer_len_from_file(&self) -> Result<u64> {
        let len = self.file.metadata()?.len();
        self.writer_len.store(len, Ordering::Release);
        self.file_len.fetch_max(len, Ordering::AcqRel);
        Ok(len)
    }

    /// The file's length now (`fstat`), changing nothing this handle knows.
    pub(crate) fn real_len(&self) -> Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// The file's length as the writer knows it.
    pub(crate) fn writer_len(&self) -> u64 {
        self.writer_len.load(Ordering::Acquire)
    }

    /// Learns the file's length anew: another process may have grown it.
    pub(crate) fn refresh_len(&self) -> Result<u64> {
        let len = self.file.metadata()?.len();
        self.file_len.fetch_max(len, Ordering::AcqRel);
        Ok(len)
    }

    /// Reads up to `buf.len()` bytes at `offset` with `pread`, not through the
    /// map (for meta slots, which writers overwrite in place).
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        read_fully(&self.file, buf, offset)
    }

    /// Takes a lock on byte `at` of the data file in `mode`: waiting for
    /// other holders when `wait`, else only if free; returns whether it did.
    pub(crate) fn lock_byte(&self, at: u64, mode: lock::Mode, wait: bool) -> Result<bool> {
        if wait {
            lock::lock(&self.file, at, mode)?;
            Ok(true)
        } else {
            Ok(lock::try_lock(&self.file, at, mode)?)
        }
    }

    /// Releases this handle's lock on byte `at` of the data file.
    pub(crate) fn unlock_byte(&self, at: u64) -> Result<()> {
        Ok(lock::unlock(&self.file, at)?)
    }

    /// Converts the data file's lock to shared (see [`LockedFile::try_lock`]).
    pub(crate) fn share_lock(&self) -> Result<bool> {
        match self.file.try_lock_shared() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(Error::Io(e)),
        }
    }

    /// `len` bytes of the file starting at page `id`, straight from `map`.
    ///
    /// The caller bounds `id` by its snapshot; this check only guarantees that
    /// no slice reaches past the map or the end of the file (which would raise
    /// SIGBUS).
    #[inline]
    pub(crate) fn bytes<'m>(&self, map: &'m Map, id: PageId, len: usize) -> Result<&'m [u8]> {
        let start = id.checked_mul(self.page_size as u64);
        let end = start.and_then(|s| s.checked_add(len as u64));
        match (start, end) {
            (Some(start), Some(end)) if end <= self.file_len().min(map.len()) => {
                // SAFETY: `start..end` lies inside the map and, as the caller
                // bounds it, below its snapshot's high-water mark, which the
                // file never shrinks under while the snapshot lives: a writer
                // of any process cuts the file only down to the high-water
                // marks of every live snapshot and both metas, and not at all
                // while a live snapshot's mark is unknown to it (DESIGN.md,
                // "Shrinking the file"). So the range is mapped and backed by
                // the file. (`file_len` bounds it too, where it is not stale.)
                // The slice borrows `map`,
                // which stays mapped while borrowed. Nobody writes these bytes
                // while the slice lives: the writer of every process writes only
                // pages no live snapshot of any process can reach (DESIGN.md,
                // "The page reuse rule" and "Many processes") and the meta pages,
                // which are never sliced after open; `Database::open`'s contract
                // forbids writers other than larch.
                Ok(
                    unsafe {
                        std::slice::from_raw_parts(map.raw.as_ptr().add(start as usize), len)
                    },
                )
            }
            _ => corrupted(id, "page lies past the end of the file"),
        }
    }

    /// Writes `data` at the start of page `id`.
    pub(crate) fn write(&self, id: PageId, data: &[u8]) -> Result<()> {
        let offset = id * self.page_size as u64;
        debug_assert!(offset + data.len() as u64 <= self.writer_len().max(self.file_len()));
        self.storage.write_at(offset, data)?;
        Ok(())
    }

    /// Writes `bufs` one after the other from the start of page `id`.
    pub(crate) fn write_vectored(&self, id: PageId, bufs: &[&[u8]]) -> Result<()> {
        let offset = id * self.page_size as u64;
        debug_assert!(
            offset + bufs.iter().map(|b| b.len() as u64).sum::<u64>() <= self.writer_len()
        );
        self.storage.write_vectored_at(offset, bufs)?;
        Ok(())
    }

    /// Grows the file to at least `len` bytes, in steps, never past
    /// `max_size`, with its blocks allocated: a full disk or file-size limit
    /// is [`Error::MapFull`] here, before a commit writes anything, and not a
    /// failed write later. Maps are not touched: the transactions that read
    /// the new pages take a map that covers them ([`map_for`](Pager::map_for)).
    pub(crate) fn grow(&self, len: u64) -> Result<()> {
        // The length the writer learnt with `fstat` under the writer lock,
        // never one a reader learnt: that may be another process's grow
        // that failed and was cut back, and growing from there would leave
        // blocks unallocated (or pages past the end).
        let current = self.writer_len();
        if len <= current {
            return Ok(());
        }
        if len > self.max_size {
            return Err(Error::MapFull {
                needed: len,
                limit: self.max_size,
                reason: "the file would grow past Options::max_size",
            });
        }
        // Grow by an eighth, from 1 MiB to 64 MiB at a time, in whole pages.
        let step = (current / 8).clamp(1 << 20, 64 << 20);
        let ps = self.page_size as u64;
        let target = len.max(current + step).div_ceil(ps) * ps;
        let target = target.min(self.max_size / ps * ps).max(len);
        let grown = match self.storage.allocate(current, target) {
            Ok(()) => target,
            // A step ahead may not fit where `len` does.
            Err(e) if is_full(&e) => match self.storage.allocate(current, len) {
                Ok(()) => len,
                Err(e) if is_full(&e) => {
                    return Err(Error::MapFull {
                        needed: len,
                        limit: current,
                        reason: "no space is left on the device for the file to grow",
                    });
                }
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        self.writer_len.store(grown, Ordering::Release);
        self.file_len.fetch_max(grown, Ordering::AcqRel);
        Ok(())
    }

    /// Cuts the file to `len` bytes, for the writer, which has made sure that
    /// no live snapshot of any process and no meta on disk reaches past it
    /// (DESIGN.md, "Shrinking the file"). The cut need not be durable: a
    /// crash that undoes it leaves a longer file, which is harmless.
    ///
    /// A failure changes nothing the writer relies on: the length is learnt
    /// again (`fstat`), and failing that, the next writer learns it anyway.
    pub(crate) fn shrink(&self, len: u64) -> Result<()> {
        debug_assert!(len.is_multiple_of(self.page_size as u64));
        if let Err(e) = self.storage.set_len(len) {
            let _ = self.writer_len_from_file();
            return Err(e.into());
        }
        self.writer_len.store(len, Ordering::Release);
        // This handle's readers hold snapshots no longer than `len`; a
        // concurrent `refresh_len` may raise it again with the length it
        // learnt before the cut, which only weakens this belt-and-braces
        // bound back to the snapshots' own.
        self.file_len.store(len, Ordering::Release);
        Ok(())
    }

    /// Makes every write and resize so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.storage.sync()?;
        Ok(())
    }

    /// Starts the writes to pages `from..to` on their way to the disk
    /// (`Storage::start_writeback`), so that the sync that follows has less
    /// left to wait for.
    pub(crate) fn start_writeback(&self, from: PageId, to: PageId) {
        let ps = self.page_size as u64;
        self.storage.start_writeback(from * ps, (to - from) * ps);
    }
}
