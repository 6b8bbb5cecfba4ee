//! The lock file mapped shared: words every process of a database reads and
//! writes with atomic operations (the reader registry, `registry.rs`).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

/// The lock file, mapped read-write and shared with every process that maps it.
pub(crate) struct SharedMap {
    file: File,
    map: MmapRaw,
    /// Bytes of the file known to exist: no word past them is handed out.
    /// The file only grows while any process has it mapped (only the first
    /// opener, alone, shortens it).
    known: AtomicU64,
}

impl SharedMap {
    /// Maps `file` with `reserve` bytes of address space (the most the file
    /// may grow to while mapped).
    pub(crate) fn new(file: File, reserve: usize) -> io::Result<SharedMap> {
        let map = MmapOptions::new().len(reserve).map_raw(&file)?;
        let known = file.metadata()?.len();
        Ok(SharedMap {
            file,
            map,
            known: AtomicU64::new(known),
        })
    }

    /// The lock file, for its byte-range locks.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Bytes of the file known to exist.
    pub(crate) fn known_len(&self) -> u64 {
        self.known.load(Ordering::Acquire)
    }

    /// Learns the file's length anew (another process may have grown it);
    /// returns the known length, which never goes down here.
    pub(crate) fn refresh_len(&self) -> io::Result<u64> {
        let len = self.file.metadata()?.len();
        // Never past the map: words beyond it are not mapped.
        let len = len.min(self.map.len() as u64);
        // Only ever up: a file shortened under the map by something other
        // than larch breaks `Options::open`'s contract, and words handed out
        // must stay in bounds for this handle's own checks.
        let before = self.known.fetch_max(len, Ordering::AcqRel);
        Ok(before.max(len))
    }

    /// Sets the file's length (within the map's reservation). Shortening is
    /// only for the first opener, while no other process maps the file.
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        if len > self.map.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "lock file past its map's reservation",
            ));
        }
        // Shrinks the known length first, so that nothing is handed out past
        // the new end while the file shortens.
        self.known.fetch_min(len, Ordering::AcqRel);
        self.file.set_len(len)?;
        self.known.store(len, Ordering::Release);
        Ok(())
    }

    /// The 8-byte word at `offset`, or `None` if it is not 8-aligned or does
    /// not lie wholly within the known length of the file.
    #[inline]
    pub(crate) fn word(&self, offset: u64) -> Option<&AtomicU64> {
        let end = offset.checked_add(8)?;
        if !offset.is_multiple_of(8) || end > self.known_len() || end > self.map.len() as u64 {
            return None;
        }
        // SAFETY: the map starts page-aligned and `offset` is a multiple of 8,
        // so the pointer is aligned for `AtomicU64`. `offset..offset + 8` lies
        // within the map and within the file (its known length, which only
        // shrinks while no other process maps the file, and then only through
        // `set_len`, which lowers `known` first), so the bytes are mapped and
        // backed: no SIGBUS unless something outside larch truncates the lock
        // file, which `Options::open`'s contract excludes. Every process
        // touches these bytes only through atomic operations, and the
        // reference lives no longer than the map (`&self`).
        Some(unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset as usize).cast()) })
    }
}
