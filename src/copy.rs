//! Hot backups: a snapshot written to a new file while writers go on.
//!
//! The copy is written under a temporary name of its own beside the
//! destination, synced, and only then linked under the final name, so a crash
//! leaves either no file under the final name or a whole one.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::db::Options;
use crate::error::{Error, Result};
use crate::format::page::PageId;
use crate::freelist::read_list;
use crate::pager::sync_parent_dir;
use crate::table::Shape;
use crate::txn::ReadTxn;
use crate::view::MapView;

/// Pages written per `write` call of a plain copy, and the bytes a compacting
/// copy inserts before it commits.
const CHUNK: usize = 1 << 20;
const COMPACT_TXN_BYTES: usize = 64 << 20;

impl ReadTxn {
    /// Writes this snapshot to a new database file at `path`, while writers go
    /// on committing: a hot backup.
    ///
    /// A plain copy holds every page up to the snapshot's high-water mark, with
    /// free pages zeroed; it has the snapshot's transaction id and free list.
    /// A `compact` copy rebuilds every table in key order into fresh, full
    /// pages, so it is about the size of the live data and has (almost) no
    /// free pages; its transaction ids start again from 1.
    ///
    /// The file is written under a temporary name of its own beside `path`
    /// (`path` plus `.larch-copy-` and a suffix unique to the call, created
    /// with `create_new`), synced, then linked as `path` (and the directory
    /// synced): a crash never leaves a partial copy under `path`. Fails with
    /// an I/O error of kind `AlreadyExists` if `path` exists, also when
    /// another copy creates it first. No file this call did not create is
    /// removed; a failed copy removes its temporary file. The snapshot's
    /// pages stay pinned (not reused by writers) until the copy and this
    /// transaction end. A plain copy copies pages as they are, without
    /// checking them (run [`check`](ReadTxn::check) on the copy, or make a
    /// `compact` one, which reads every entry through the checked paths).
    pub fn copy_to(&self, path: impl AsRef<Path>, compact: bool) -> Result<()> {
        let path = path.as_ref();
        if path.exists() {
            return Err(already_exists());
        }
        let (temp, file) = create_temp(path)?;
        let temp = TempFile(Some(temp));
        // On an error `temp` is dropped, which removes the temporary file.
        if compact {
            drop(file);
            self.copy_compact(temp.path())?;
        } else {
            self.copy_pages(file)?;
        }
        publish(temp, path)
    }

    /// Every page of the snapshot, free ones zeroed, and its meta in both slots.
    fn copy_pages(&self, mut file: File) -> Result<()> {
        let pager = &self.core().pager;
        let ps = pager.page_size();
        let meta = *self.meta();
        let map = pager.map_for(meta.high_water)?;
        let view = MapView::new(pager, &map, meta.high_water, meta.txn_id);
        // Free pages may be rewritten by the writer while this runs: they are
        // not read, and the copy's free list lists them as the snapshot's does.
        let free: HashSet<PageId> = read_list(view, &meta)?
            .entries
            .into_iter()
            .map(|e| e.page)
            .collect();
        let encoded = meta.encode();
        let mut buf = vec![0u8; 2 * ps];
        buf[..encoded.len()].copy_from_slice(&encoded);
        buf[ps..ps + encoded.len()].copy_from_slice(&encoded);
        for id in 2..meta.high_water {
            if free.contains(&id) {
                buf.resize(buf.len() + ps, 0);
            } else {
                // Straight from the map: a page past an overflow run's first
                // has no header to check, and `id` lies below the
                // snapshot's high-water mark.
                buf.extend_from_slice(pager.bytes(&map, id, ps)?);
            }
            if buf.len() >= CHUNK {
                file.write_all(&buf)?;
                buf.clear();
            }
        }
        file.write_all(&buf)?;
        file.sync_all()?;
        Ok(())
    }

    /// Every table rebuilt in key order in a new database.
    fn copy_compact(&self, temp: &Path) -> Result<()> {
        let pager = &self.core().pager;
        let ps = pager.page_size() as u32;
        // The copy holds no more than the original: a map as large as the
        // original's spares it remaps.
        let copy = Options::new()
            .page_size(ps)
            .map_size(pager.map_len())
            .open_own(temp)?;
        for name in self.list_tables()? {
            // A typed table stays typed in the copy, a multimap a multimap.
            let Some(entry) = self.table_entry(&name)? else {
                continue;
            };
            let table = self.open_table_as(&name, Shape::As(&entry))?;
            let mut entries = table.iter()?.peekable();
            // Each transaction holds its pages in memory until it commits:
            // commit every COMPACT_TXN_BYTES so a big table needs bounded memory.
            loop {
                let txn = copy.begin_write()?;
                let mut bytes = 0;
                {
                    let mut out = txn.open_table_as(&name, Shape::As(&entry))?;
                    while bytes < COMPACT_TXN_BYTES {
                        let Some(entry) = entries.next() else { break };
                        let (key, value) = entry?;
                        out.insert(key, value)?;
                        bytes += key.len() + value.len();
                    }
                }
                txn.commit()?;
                if entries.peek().is_none() {
                    break;
                }
            }
        }
        // Each commit gives back what its last value segment did not fill,
        // and later ones may not need those pages: compaction moves the
        // pages past them down, so the copy has no hole. The file grows
        // ahead of use; the copy keeps only its pages.
        copy.compact()?;
        let len = copy.stat()?.pages * u64::from(ps);
        drop(copy);
        let file = OpenOptions::new().write(true).open(temp)?;
        file.set_len(len)?;
        file.sync_all()?;
        Ok(())
    }
}

/// The error of a copy whose destination exists.
fn already_exists() -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "the destination of a copy exists",
    ))
}

/// Copies started by this process, so that two calls in the same instant
/// never pick the same temporary name.
static COPIES: AtomicU64 = AtomicU64::new(0);

/// How many names `create_temp` tries before it gives up.
const TEMP_ATTEMPTS: u32 = 64;

/// Creates (with `create_new`) a temporary file beside `path` under a name no
/// other call uses: `path` plus `.larch-copy-`, the process id, a counter of
/// this process's copies and the clock. A name that exists all the same is
/// left alone and the next one tried.
fn create_temp(path: &Path) -> Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let n = COPIES.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut name = path.as_os_str().to_owned();
        name.push(format!(
            ".larch-copy-{:x}-{n:x}-{nanos:x}",
            std::process::id()
        ));
        let temp = PathBuf::from(name);
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.expect("at least one name was tried").into())
}

/// A temporary file this call created: removed when dropped, unless it was
/// published.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("not yet published")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Gives the finished, synced temporary file the name `path`, refusing to
/// replace a file there: a hard link, which fails if `path` exists, then the
/// temporary name is removed. Where the file system has no hard links, a
/// rename once `path` is seen not to exist (a copy racing this one to the
/// same `path` may then be replaced by it, whole). Then the directory is
/// synced.
fn publish(mut temp: TempFile, path: &Path) -> Result<()> {
    match std::fs::hard_link(temp.path(), path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(already_exists()),
        Err(_) => {
            if path.exists() {
                return Err(already_exists());
            }
            std::fs::rename(temp.path(), path)?;
            temp.0 = None;
        }
    }
    // Dropping `temp` removes the temporary name (unless renamed above).
    drop(temp);
    sync_parent_dir(path)
}
