//! The write transaction and the commit protocol (DESIGN.md, "Commit protocol").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use parking_lot::MutexGuard;

use super::core::{Core, WriterState};
use crate::btree;
use crate::dirty::{Dirty, TxnPages};
use crate::error::{Result, corrupted};
use crate::format::meta::{CHECKSUM_AT, MAX_TXN_ID, Meta, TableDesc, seal_capacity};
use crate::freelist;
use crate::table::{TableMut, catalog_get, catalog_names, check_key};
use crate::view::View;

/// Bytes of consecutive dirty pages merged into one `pwrite`.
const WRITE_CHUNK: usize = 1 << 20;

/// A table opened in this transaction.
struct Open {
    desc: TableDesc,
    /// Whether the descriptor must be written to the catalog at commit.
    changed: bool,
}

/// The one write transaction. Only one exists at a time: `begin_write` waits
/// for the previous one to end.
///
/// Changes are private until [`commit`](WriteTxn::commit) returns; dropping the
/// transaction, or [`abort`](WriteTxn::abort), discards them.
///
/// # Errors fail the transaction
///
/// A change that fails may have been half-applied (an insert that ran out of
/// map space in the middle of a split), so an error from a call that changes
/// the transaction fails it: [`open_table`](WriteTxn::open_table),
/// [`delete_table`](WriteTxn::delete_table), [`TableMut::insert`],
/// [`TableMut::remove`]. From then on every call on the transaction and on its
/// table handles, reads included, returns [`Error::TxnFailed`], and so does
/// `commit`; nothing of it reaches the file. Abort it (or drop it) and retry
/// in a new transaction. (LMDB does the same: `MDB_TXN_ERROR`.)
///
/// The exceptions are the errors that reject an argument before anything
/// changes, which leave the transaction as it was: [`Error::KeyTooLarge`]
/// from `insert` and `open_table`, and [`Error::ValueTooLarge`] from
/// `insert`. (`remove` and `delete_table` answer a key or name too long to
/// exist with `Ok(false)`.) Errors from reads (`get`, `range`, `iter`, a
/// cursor, `list_tables`) change nothing and leave it as it was too.
///
/// [`Error::TxnFailed`]: crate::Error::TxnFailed
/// [`Error::KeyTooLarge`]: crate::Error::KeyTooLarge
/// [`Error::ValueTooLarge`]: crate::Error::ValueTooLarge
pub struct WriteTxn<'db> {
    core: &'db Core,
    guard: MutexGuard<'db, WriterState>,
    dirty: Dirty,
    base: Meta,
    catalog: TableDesc,
    tables: BTreeMap<String, Open>,
    finished: bool,
}

impl<'db> WriteTxn<'db> {
    /// Starts a write transaction; `guard` is the writer lock.
    pub(crate) fn new(core: &'db Core, mut guard: MutexGuard<'db, WriterState>) -> WriteTxn<'db> {
        let base = core.readers.committed();
        // A valid meta's id is at most MAX_TXN_ID, so this does not saturate;
        // `commit` refuses an id past MAX_TXN_ID.
        let txn_id = base.txn_id.saturating_add(1);
        // The reuse rule: pages freed by T are reusable once T <= W - 2 and no
        // live reader is older than T. A reader starting after this line sees
        // `base` (W - 1), which is newer than the limit.
        let mut limit = txn_id.saturating_sub(2);
        if let Some(oldest) = core.readers.oldest() {
            limit = limit.min(oldest);
        }
        let mut free = std::mem::take(&mut guard.free.list);
        free.release(limit);
        let ps = core.pager.page_size();
        let max_pages = core.pager.map_len() / ps as u64;
        WriteTxn {
            core,
            guard,
            dirty: Dirty::new(ps, txn_id, base.pages, max_pages, free),
            base,
            catalog: base.catalog,
            tables: BTreeMap::new(),
            finished: false,
        }
    }

    /// The id this transaction commits as.
    pub fn id(&self) -> u64 {
        self.dirty.txn_id()
    }

    fn view(&self) -> View<'_> {
        View::Dirty(self.dirty.view(&self.core.pager))
    }

    fn txn_pages(&mut self) -> TxnPages<'_> {
        TxnPages {
            pager: &self.core.pager,
            dirty: &mut self.dirty,
        }
    }

    /// Opens table `name`, creating it (empty) if it does not exist. A created
    /// table exists from this commit on, even if nothing is inserted.
    ///
    /// A name longer than the longest key gives
    /// [`Error::KeyTooLarge`](crate::Error::KeyTooLarge), which leaves the
    /// transaction as it was; any other error fails it (see [`WriteTxn`]).
    pub fn open_table(&mut self, name: &str) -> Result<TableMut<'_>> {
        self.dirty.live()?;
        check_key(name.as_bytes(), self.core.pager.page_size())?;
        if !self.tables.contains_key(name) {
            let found = catalog_get(self.view(), &self.catalog, name);
            let (desc, changed) = match self.dirty.outcome(found)? {
                Some(desc) => (desc, false),
                None => (TableDesc::default(), true),
            };
            self.tables.insert(name.to_owned(), Open { desc, changed });
        }
        let open = self.tables.get_mut(name).expect("inserted above");
        let writer = TxnPages {
            pager: &self.core.pager,
            dirty: &mut self.dirty,
        };
        Ok(TableMut::new(writer, &mut open.desc, &mut open.changed))
    }

    /// Deletes table `name` and frees all its pages. Returns whether it existed.
    /// An error fails the transaction (see [`WriteTxn`]).
    pub fn delete_table(&mut self, name: &str) -> Result<bool> {
        self.dirty.live()?;
        if check_key(name.as_bytes(), self.core.pager.page_size()).is_err() {
            return Ok(false);
        }
        let r = self.delete_table_inner(name);
        self.dirty.outcome(r)
    }

    fn delete_table_inner(&mut self, name: &str) -> Result<bool> {
        let mut desc = match self.tables.remove(name) {
            Some(open) => open.desc,
            None => match catalog_get(self.view(), &self.catalog, name)? {
                Some(desc) => desc,
                None => return Ok(false),
            },
        };
        let mut catalog = self.catalog;
        let mut w = self.txn_pages();
        btree::drop_tree(&mut w, &mut desc)?;
        btree::remove(&mut w, &mut catalog, name.as_bytes())?;
        self.catalog = catalog;
        Ok(true)
    }

    /// Names of all tables, including those created in this transaction.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        self.dirty.live()?;
        let mut names: BTreeSet<String> = catalog_names(self.view(), &self.catalog)?
            .into_iter()
            .collect();
        names.extend(self.tables.keys().cloned());
        Ok(names.into_iter().collect())
    }

    /// Makes the transaction's changes durable and visible to new readers.
    ///
    /// When this returns `Ok`, the transaction survives a crash or power loss.
    /// A transaction that failed earlier (see [`WriteTxn`]) is refused with
    /// [`Error::TxnFailed`](crate::Error::TxnFailed). Any other error before
    /// the commit's writes begin (`MapFull` while writing the catalog or the
    /// free list, `Corrupted`) leaves the file and the database as they were.
    /// On an I/O error the database is poisoned: later write transactions fail
    /// with [`Error::Poisoned`](crate::Error::Poisoned) until it is reopened,
    /// and the file holds the previous commit (or, when only the final sync
    /// failed, possibly this one).
    pub fn commit(mut self) -> Result<()> {
        self.dirty.live()?;
        let r = self.commit_inner();
        self.dirty.outcome(r)?;
        self.finished = true;
        Ok(())
    }

    /// Discards the transaction's changes (as dropping it does).
    pub fn abort(self) {}

    fn commit_inner(&mut self) -> Result<()> {
        let changed = self.tables.values().any(|t| t.changed);
        if !changed && self.dirty.is_clean() && self.catalog == self.base.catalog {
            // Nothing to write: keep the previous commit.
            self.guard.free.list = self.dirty.abort();
            return Ok(());
        }
        let txn_id = self.dirty.txn_id();
        if txn_id > MAX_TXN_ID {
            // Its meta would be invalid: the commit would be lost at reopen.
            return corrupted(self.base.txn_id % 2, "no transaction id is left to commit");
        }
        let ps = self.core.pager.page_size();

        // 1. Table descriptors into the catalog.
        let mut catalog = self.catalog;
        let mut w = TxnPages {
            pager: &self.core.pager,
            dirty: &mut self.dirty,
        };
        for (name, open) in self.tables.iter().filter(|(_, t)| t.changed) {
            let hint = &mut btree::InsertHint::default();
            btree::insert(
                &mut w,
                &mut catalog,
                hint,
                name.as_bytes(),
                &open.desc.encode(),
            )?;
        }
        self.catalog = catalog;

        // 2. The free list into a new chain, checked by the reader's rules.
        let free = freelist::write_chain(&mut self.dirty, &self.guard.free.chain)?;

        // 3. Seal: stamp every page's checksum. A commit whose seal list fits
        // in the meta slot is made durable with one sync (pages and meta
        // together; recovery checks the list). A bigger one syncs its pages
        // before writing the meta.
        let seal = self.dirty.seal();
        let one_sync = seal.len() <= seal_capacity(ps);
        let mut meta = Meta {
            page_size: ps as u32,
            txn_id,
            pages: self.dirty.pages(),
            freelist_head: free.head(),
            freelist_entries: free.entries(),
            catalog: self.catalog,
            pages_synced: !one_sync,
            seal_len: 0,
        };
        let meta_bytes = if one_sync {
            meta.seal_len = seal.len() as u32;
            meta.encode_sealed(&seal)
        } else {
            meta.encode()
        };
        // Like the free list, the meta must read back as written (roots and
        // seal list inside the file, depths in bound), or open would drop it.
        let file_len = self.core.pager.file_len().max(meta.pages * ps as u64);
        if Meta::decode(&meta_bytes, file_len) != Ok(meta) {
            return corrupted(
                txn_id % 2,
                "the commit's meta would not read back as written",
            );
        }

        // 4-8. Grow, write the pages, (sync,) write the meta, sync. A failure
        // here poisons the handle: the disk may hold anything the kernel kept.
        let pager = &self.core.pager;
        let io = || -> Result<()> {
            pager.grow(meta.pages * ps as u64)?;
            self.dirty.write_all(pager, &seal, WRITE_CHUNK)?;
            if !one_sync {
                pager.sync()?;
            }
            pager.write(txn_id % 2, &meta_bytes)?;
            pager.sync()
        };
        if let Err(e) = io() {
            self.core.poisoned.store(true, Ordering::Release);
            self.disown_slot();
            return Err(e);
        }

        // 9. Publish.
        self.guard.free = free;
        self.core.readers.publish(meta);
        // This commit overwrote the slot open may have set aside.
        *self.core.set_aside.lock() = None;
        Ok(())
    }
}

impl WriteTxn<'_> {
    /// After a failed write or sync, spoils the slot this transaction was
    /// writing, so that no later open can take this commit.
    ///
    /// A failed writeback can leave pages in the page cache that never reached
    /// the disk, and a later open in the same boot would read them there: it
    /// could find this commit whole and build on it, and the next commit would
    /// then overwrite the slot of the last durable one. The slot gets a meta
    /// whose checksum does not match (it reads as torn); the base meta in the
    /// other slot is durable (it was published after its sync, or synced at
    /// open). Best effort: if this write fails too, the next open's sync
    /// fails and says so, once; an open retried after that reads the cache
    /// again (DESIGN.md, "Crashes in chains", last row).
    fn disown_slot(&self) {
        let base = Meta {
            pages_synced: true,
            seal_len: 0,
            ..self.base
        };
        let mut spoiled = base.encode();
        spoiled[CHECKSUM_AT] ^= 0xff;
        let _ = self.core.pager.write(self.dirty.txn_id() % 2, &spoiled);
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.guard.free.list = self.dirty.abort();
        }
    }
}
