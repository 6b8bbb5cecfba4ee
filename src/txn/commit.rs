//! The commit protocol: one function per step of DESIGN.md, "Commit
//! protocol", under the same number.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use super::write::{Durability, EVENTUAL_PERIOD, WriteTxn};
use crate::btree;
use crate::dirty::Buffers;
use crate::error::{Result, corrupted};
use crate::format::meta::{CHECKSUM_AT, MAX_TXN_ID, Meta, Seal, SealEntry, seal_capacity};
use crate::format::page::{PageId, stamp_checksum};
use crate::freelist::{self, Persisted};
use crate::pager::Pager;

/// Bytes of consecutive dirty pages merged into one vectored write. The page
/// cache keeps a write's pages in folios as large as the write allows, and a
/// reader's fault maps a whole folio: 20,000 values of 100 KiB read back
/// with 9,660 faults after writes of 1 MiB, 1,988 after writes of 16 MiB.
const WRITE_CHUNK: usize = 8 << 20;

/// Buffers merged into one vectored write, at most.
const MAX_SLICES: usize = 512;

/// Bytes of the file the commit's writes span before it asks the kernel to
/// start writing them back.
const WRITEBACK_STEP: usize = 4 << 20;

/// The commit after step 3: its meta, and what the meta vouches for.
struct Sealed {
    meta: Meta,
    /// One entry per dirty buffer, in page order; the checksums are filled
    /// in as the buffers are stamped and written (step 5).
    seal: Vec<SealEntry>,
    /// Whether the seal list is in the meta (one sync) or the pages are
    /// synced before it (two syncs).
    single_sync: bool,
    /// A commit that is not durable: no sync, and its meta goes to the
    /// lock file, not to a meta slot.
    weak: bool,
    /// For a single-sync commit after commits that were not durable, the
    /// buffers they wrote that the list must name too (`Unsynced`).
    earlier: Vec<SealEntry>,
}

impl Sealed {
    /// The meta's bytes, with the seal list of a single-sync commit.
    fn meta_bytes(&self) -> Vec<u8> {
        if self.single_sync && !self.weak {
            let list = merged(&self.seal, &self.earlier);
            self.meta.encode_sealed(Seal::Listed(&list))
        } else {
            self.meta.encode_sealed(Seal::Synced)
        }
    }
}

/// What this handle wrote since the newest durable commit, while every
/// commit since was its own and not durable: each buffer's first page,
/// length and checksum, as the file holds them now, for the buffers the
/// last commit still reaches (a buffer written over replaces the entries it
/// overlaps; one a commit frees goes). When it lists every page written
/// since the durable commit that the last commit reaches, and fits a seal
/// list, making those commits durable takes one sync, not two: the meta
/// lists them and recovery checks them, as it checks a single-sync commit's
/// own (DESIGN.md, "Durability"). Only pages the meta reaches may be
/// listed: the reuse rule keeps those as they are while the meta is on
/// disk, and a freed one written over later would make recovery set the
/// meta aside.
#[derive(Debug, Default)]
pub(crate) struct Unsynced {
    /// The durable commit the writes follow.
    durable: u64,
    /// The last commit they include.
    last: u64,
    /// Whether they are every write since `durable`.
    complete: bool,
    /// By first page: pages and checksum.
    entries: std::collections::BTreeMap<PageId, (u32, u32)>,
}

impl Unsynced {
    /// Records the buffers of commit `id`, built on `base`, none of them
    /// durable, and the committed pages it freed (`freed`); `durable` is
    /// the newest durable commit. `cap` entries at most are worth keeping
    /// (a seal list's).
    fn record(
        &mut self,
        (durable, base, id): (u64, u64, u64),
        seal: &[SealEntry],
        freed: impl Iterator<Item = PageId>,
        cap: usize,
    ) {
        if self.durable != durable || self.last != base {
            // Another process wrote since, or a durable commit came.
            *self = Unsynced {
                durable,
                last: base,
                complete: base == durable,
                entries: Default::default(),
            };
        }
        self.last = id;
        if !self.complete {
            return;
        }
        // A run is freed whole, its first page with the rest.
        for p in freed {
            self.entries.remove(&p);
        }
        for e in seal {
            let (page, pages) = (e.page.get(), u64::from(e.pages.get()));
            self.forget_overlapping(page, page + pages);
            self.entries.insert(page, (e.pages.get(), e.checksum.get()));
        }
        if self.entries.len() > cap {
            self.complete = false;
            self.entries.clear();
        }
    }

    /// Forgets the entries that overlap pages `start..end`.
    fn forget_overlapping(&mut self, start: PageId, end: PageId) {
        let overlapping: Vec<PageId> = (self.entries.range(..end).rev())
            .take_while(|&(&p, &(n, _))| p + u64::from(n) > start)
            .map(|(&p, _)| p)
            .collect();
        for p in overlapping {
            self.entries.remove(&p);
        }
    }

    /// The file was cut to `page`: pages from there on no longer hold what
    /// was written.
    pub(crate) fn cut(&mut self, page: PageId) {
        self.forget_overlapping(page, PageId::MAX);
    }

    /// The entries to seal, besides `own` (a commit's own buffers, which
    /// replace what they overlap), for a commit built on `base` whose newest
    /// durable commit is `durable`, whose high-water mark is `high_water`
    /// and which freed `freed` (sorted): `None` when they are not known to
    /// be every write since that the commit reaches.
    fn sealable(
        &self,
        (durable, base, high_water): (u64, u64, u64),
        own: &[SealEntry],
        freed: &BTreeSet<PageId>,
    ) -> Option<Vec<SealEntry>> {
        if !self.complete || self.durable != durable || self.last != base {
            return None;
        }
        let mut out = Vec::new();
        let mut own = own.iter().peekable();
        for (&page, &(pages, checksum)) in &self.entries {
            let end = page + u64::from(pages);
            // Pages past the commit's high-water mark, or that it freed, are
            // not the commit's.
            if end > high_water || freed.contains(&page) {
                continue;
            }
            while own
                .peek()
                .is_some_and(|o| o.page.get() + u64::from(o.pages.get()) <= page)
            {
                own.next();
            }
            if own.peek().is_some_and(|o| o.page.get() < end) {
                continue;
            }
            out.push(SealEntry {
                page: page.into(),
                pages: pages.into(),
                checksum: checksum.into(),
            });
        }
        Some(out)
    }
}

/// `own` and `extra`, which do not overlap, as one list in page order.
fn merged(own: &[SealEntry], extra: &[SealEntry]) -> Vec<SealEntry> {
    let mut all: Vec<SealEntry> = own.iter().chain(extra).copied().collect();
    all.sort_unstable_by_key(|e| e.page.get());
    all
}

impl WriteTxn {
    /// Commits the transaction: the steps in order. Up to step 4 a failure
    /// leaves the committed state and the database as they were (the file
    /// may be longer); from step 5 on it poisons the database (`write_out`).
    pub(super) fn protocol(&mut self) -> Result<()> {
        self.gather()?;
        if self.unchanged() {
            // Nothing to write: keep the previous commit, made durable if it
            // is not and this commit is to be (as an `Immediate` commit
            // makes the ones before it durable).
            if self.durability == Durability::Immediate {
                self.make_durable()?;
            }
            self.guard.free.list = self.dirty.abort();
            return Ok(());
        }
        if self.dirty.txn_id() > MAX_TXN_ID {
            // Its meta would be invalid: the commit would be lost at reopen.
            return corrupted(self.base.txn_id % 2, "no transaction id is left to commit");
        }
        self.write_heap()?;
        self.clean_heap()?;
        self.write_catalog()?;
        // A table name long enough to push its descriptor out of the leaf
        // packs it into a segment: its change, too, goes into the heap.
        self.write_heap()?;
        let free = self.write_free_list()?;
        let weak = self.stays_weak();
        let sealed = match self.seal_and_write(&free, weak) {
            Ok(sealed) => sealed,
            Err(e) => {
                // The abort gives back what the transaction took from the
                // list the commit was to leave.
                self.dirty.give_back(free.list);
                return Err(e);
            }
        };
        if weak {
            let cap = seal_capacity(self.core.pager.page_size());
            let at = (
                self.disk.newest.txn_id,
                self.base.txn_id,
                sealed.meta.txn_id,
            );
            let freed = free.list.pending_of(sealed.meta.txn_id);
            (self.core.unsynced.lock()).record(at, &sealed.seal, freed, cap);
        }
        self.publish(sealed.meta, free, weak);
        self.cut_tail(&sealed.meta);
        Ok(())
    }

    /// Steps 3 to 8: seal, map and grow, write out.
    fn seal_and_write(&mut self, free: &Persisted, weak: bool) -> Result<Sealed> {
        let mut sealed = self.seal(free, weak)?;
        // 4. A map the next transactions can read the commit through, then
        // the file's growth: either failing leaves nothing written.
        let pager = &self.core.pager;
        pager.map_for(sealed.meta.high_water)?;
        pager.grow(sealed.meta.high_water * pager.page_size() as u64)?;
        self.write_out(&mut sealed)?;
        Ok(sealed)
    }

    /// Whether this commit is to be left without a sync (DESIGN.md,
    /// "Durability"): `None` always, `Eventual` until the oldest commit
    /// that is not durable is `EVENTUAL_PERIOD` old.
    fn stays_weak(&self) -> bool {
        match self.durability {
            Durability::Immediate => false,
            Durability::None => true,
            Durability::Eventual => !self.core.registry.weak_for(EVENTUAL_PERIOD),
        }
    }

    /// Whether commits that are not durable came after the newest durable
    /// one: their pages are not synced, so a durable commit syncs them
    /// before its meta (two syncs) whatever its seal list.
    fn after_weak(&self) -> bool {
        self.base.txn_id != self.disk.newest.txn_id
    }

    /// Whether the transaction changed nothing: no table, no page, no catalog
    /// (and was not asked to commit anyway).
    fn unchanged(&self) -> bool {
        !self.rewrite
            && !self.tables_changed()
            && self.dirty.is_clean(&self.part)
            && self.catalog == self.base.catalog
    }

    /// Step 1: the descriptors of the tables changed in this transaction into the
    /// catalog.
    fn write_catalog(&mut self) -> Result<()> {
        let mut catalog = self.catalog;
        let changed = self.changed_tables()?;
        let mut pages = self.dirty.lend(&self.core.pager, &mut self.part);
        for (name, entry) in changed {
            let hint = &mut btree::InsertHint::default();
            btree::insert(&mut pages, &mut catalog, hint, name.as_bytes(), &entry)?;
        }
        self.catalog = catalog;
        Ok(())
    }

    /// Step 2: the free list's changed leaves and its directory, checked by
    /// the reader's rules.
    fn write_free_list(&mut self) -> Result<Persisted> {
        let mut pages = self.dirty.list_pages(&self.core.pager, &mut self.part);
        freelist::write_list(&mut pages, &self.guard.free.layout)
    }

    /// Step 3, seal: the seal list (its checksums still zero), the meta
    /// encoded with it (when it fits, for a single-sync commit) and decoded
    /// back as open would read it.
    fn seal(&mut self, free: &Persisted, weak: bool) -> Result<Sealed> {
        let pager = &self.core.pager;
        let ps = pager.page_size();
        let txn_id = self.dirty.txn_id();
        let mut seal: Vec<SealEntry> = (self.part.buffers().spans())
            .map(|(id, pages)| SealEntry {
                page: id.into(),
                pages: (pages as u32).into(),
                checksum: 0.into(),
            })
            .collect();
        seal.sort_unstable_by_key(|e| e.page.get());
        // Buffers never share a page, so the entries do not overlap: a meta
        // whose list did would be invalid (`Meta::decode`).
        debug_assert!(
            seal.windows(2)
                .all(|w| w[0].page.get() + u64::from(w[0].pages.get()) <= w[1].page.get())
        );
        let mut sealed = Sealed {
            meta: Meta {
                page_size: ps as u32,
                txn_id,
                high_water: self.dirty.high_water(),
                freelist_head: free.head(),
                freelist_entries: free.entries(),
                catalog: self.catalog,
                heap: self.heap,
            },
            single_sync: false,
            weak,
            earlier: Vec::new(),
            seal,
        };
        // After commits that were not durable, one sync does only if the
        // list can name every page they wrote too.
        // (A weak commit seals nothing: no need to ask.)
        let earlier = match self.after_weak() && !weak {
            false => Some(Vec::new()),
            true => {
                let freed: BTreeSet<PageId> = free.list.pending_of(txn_id).collect();
                let at = (
                    self.disk.newest.txn_id,
                    self.base.txn_id,
                    sealed.meta.high_water,
                );
                (self.core.unsynced.lock()).sealable(at, &sealed.seal, &freed)
            }
        };
        if let Some(earlier) = earlier
            && sealed.seal.len() + earlier.len() <= seal_capacity(ps)
        {
            sealed.single_sync = true;
            sealed.earlier = earlier;
        }
        // Like the free list, the meta must read back as written (roots and
        // seal list inside the file, depths in bound), or open would drop it.
        // The checksums the list will hold change none of that.
        let meta = sealed.meta;
        let bytes = sealed.meta_bytes();
        let file_len = pager.file_len().max(meta.high_water * ps as u64);
        let listed = sealed.single_sync && !weak;
        if Meta::decode(&bytes, file_len) != Ok(meta)
            || matches!(Meta::seal(&bytes), Seal::Listed(_)) != listed
        {
            return corrupted(
                txn_id % 2,
                "the commit's meta would not read back as written",
            );
        }
        Ok(sealed)
    }

    /// Steps 5-8: stamp and write the pages, sync them (two-sync commits
    /// only), write the meta, sync. A failure poisons the database, and the
    /// slot being written is spoiled (`disown_slot`): the disk may hold
    /// anything the kernel kept. A commit that is not durable writes its
    /// pages only, where no meta on disk reaches them, so a failure spoils
    /// nothing.
    fn write_out(&mut self, s: &mut Sealed) -> Result<()> {
        let pager = &self.core.pager;
        let bufs = self.part.buffers_mut();
        if s.weak {
            // No sync follows: the kernel writes them back in its own time.
            let r = write_pages(pager, bufs, &mut s.seal, false);
            if r.is_err() {
                self.core.poisoned.store(true, Ordering::Release);
            }
            return r;
        }
        // Should this process die from here on, the next writer spoils the
        // slot being written (`Core::adopt`).
        self.core.registry.set_unfinished(Some(s.meta.txn_id));
        let mut io = || -> Result<()> {
            write_pages(pager, bufs, &mut s.seal, true)?; // 5.
            if !s.single_sync {
                pager.sync()?; // 6.
            }
            pager.write(s.meta.txn_id % 2, &s.meta_bytes())?; // 7.
            pager.sync() // 8.
        };
        let r = io();
        if r.is_err() {
            self.core.poisoned.store(true, Ordering::Release);
            self.disown_slot(s.meta.txn_id % 2);
        }
        r
    }

    /// Makes the commit this transaction started from durable, if it is
    /// not: every page written so far is synced, then its meta goes into its
    /// slot (the one the newest durable meta is not in: ids that are not
    /// durable have that parity), synced too. `Database::sync`, and a handle
    /// closing. A failure poisons the database and spoils the slot, as a
    /// failed commit does.
    pub(crate) fn make_durable(&mut self) -> Result<()> {
        self.core.same_process()?;
        if !self.after_weak() {
            return Ok(());
        }
        let base = self.base;
        let registry = &self.core.registry;
        let pager = &self.core.pager;
        // One sync when the meta can name every page written since the
        // durable commit, else the pages are synced first.
        let at = (self.disk.newest.txn_id, base.txn_id, base.high_water);
        let listed = (self.core.unsynced.lock())
            .sealable(at, &[], &BTreeSet::new())
            .filter(|l| l.len() <= seal_capacity(pager.page_size()));
        let bytes = match &listed {
            Some(list) => base.encode_sealed(Seal::Listed(list)),
            None => base.encode(),
        };
        if Meta::decode(&bytes, pager.file_len()) != Ok(base) {
            return corrupted(base.txn_id % 2, "the meta would not read back as written");
        }
        registry.set_unfinished(Some(base.txn_id));
        let r = (|| {
            if listed.is_none() {
                pager.sync()?;
            }
            pager.write(base.txn_id % 2, &bytes)?;
            pager.sync()
        })();
        if r.is_err() {
            self.core.poisoned.store(true, Ordering::Release);
            self.disown_slot(base.txn_id % 2);
            return r;
        }
        registry.set_durable(base.txn_id);
        registry.set_unfinished(None);
        // The slot open may have set aside is overwritten, if it was this one.
        *self.core.set_aside.lock() = None;
        self.disk.older = Some(self.disk.newest);
        self.disk.newest = base;
        Ok(())
    }

    /// Step 9, publish: new readers of every process see this commit, and the
    /// writer keeps its free list.
    fn publish(&mut self, meta: Meta, mut free: Persisted, weak: bool) {
        free.published();
        self.guard.free = free;
        self.guard.known = meta.txn_id;
        self.core.high_waters.lock().learn(&meta);
        *self.core.latest.lock() = meta;
        let registry = &self.core.registry;
        if weak {
            registry.store_weak(&meta);
        } else {
            registry.set_durable(meta.txn_id);
            // This commit overwrote the slot open may have set aside.
            *self.core.set_aside.lock() = None;
        }
        registry.publish(meta.txn_id);
        registry.set_unfinished(None);
        *self.core.wrote.lock() = Some(meta.txn_id);
    }

    /// Step 10, after the commit is durable and published: cuts the file
    /// down to the highest high-water mark anything may still read
    /// (DESIGN.md, "Shrinking the file"), when that frees at least a growth
    /// step (an eighth of the file, at least 1 MiB), so that a file near a
    /// step's boundary does not grow and shrink by turns; a compaction's
    /// commits cut whatever they can.
    ///
    /// The floor is the high-water mark of both metas on disk (this commit's
    /// and its base's) and of every live snapshot of every process, scanned
    /// now that this commit is published: a reader whose slot the scan
    /// misses published after it, so its re-check of `committed` finds this
    /// commit, which it reads (or it retries). A live snapshot whose mark
    /// this handle does not know stops the cut. Nothing here can fail the
    /// commit, which is durable already: a failed cut leaves a longer file,
    /// as a crash before it would (the `shrink_failures` count says so).
    fn cut_tail(&self, meta: &Meta) {
        let pager = &self.core.pager;
        let len = pager.writer_len();
        // Compaction (`rewrite`) wants every page back that it can get.
        let step = if self.rewrite {
            pager.page_size() as u64
        } else {
            (len / 8).max(1 << 20)
        };
        // The metas on disk before this commit: a durable one replaced the
        // older, but keeping its mark costs at most one step.
        let metas = (meta.high_water.max(self.base.high_water)).max(self.disk.high_water());
        self.cut_above(metas, step);
    }

    /// When the handle closes, with no transaction running in any process:
    /// cuts the file down to the highest high-water mark anything may still
    /// read, whatever that frees, so that a closed database keeps neither
    /// the steps its growth allocated ahead nor a free tail. Only when the
    /// newest commit (the base) is this handle's own and durable (a handle
    /// that wrote nothing may have opened past a meta it set aside, whose
    /// pages must stay for a later open that finds it whole): the metas on
    /// disk are then the base's and the one before, whose marks the writer
    /// read.
    pub(crate) fn cut_on_close(&self) {
        if *self.core.wrote.lock() != Some(self.base.txn_id) || self.after_weak() {
            return;
        }
        let ps = self.core.pager.page_size() as u64;
        self.cut_above(self.base.high_water.max(self.disk.high_water()), ps);
    }

    /// Cuts the file down to the highest high-water mark anything may still
    /// read (`metas`, the marks of both metas on disk, and every live
    /// snapshot's), when that frees at least `step` bytes (see `cut_tail`).
    fn cut_above(&self, metas: u64, step: u64) {
        let pager = &self.core.pager;
        let ps = pager.page_size() as u64;
        let len = pager.writer_len();
        if len < (metas * ps).saturating_add(step) {
            return;
        }
        let Ok(live) = self.core.registry.snapshots() else {
            return;
        };
        let Some(readers) = self.core.high_waters.lock().max_of(&live) else {
            return;
        };
        let floor = metas.max(readers) * ps;
        if len >= floor.saturating_add(step) {
            // Pages past the cut no longer hold what was written there.
            self.core.unsynced.lock().cut(floor / ps);
            if pager.shrink(floor).is_err() {
                self.core.shrink_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

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
    fn disown_slot(&self, slot: u64) {
        let mut spoiled = self.base.encode();
        spoiled[CHECKSUM_AT] ^= 0xff;
        let _ = self.core.pager.write(slot, &spoiled);
    }
}

/// Writes the buffers `seal` lists (in page order), each stamped with its
/// checksum just before, which goes into its seal entry. Consecutive buffers
/// go out in one vectored write of at most `WRITE_CHUNK` bytes and
/// `MAX_SLICES` buffers, straight from the buffers, each stamped while the
/// run is gathered, so that it is still in the cache when it is written.
/// With `kick` (a sync follows), every `WRITEBACK_STEP` of the file the
/// writes span is handed to the kernel to write back at once.
fn write_pages(
    pager: &Pager,
    bufs: &mut Buffers,
    seal: &mut [SealEntry],
    kick: bool,
) -> Result<()> {
    let ps = bufs.page_size();
    let kick_pages = (WRITEBACK_STEP / ps) as u64;
    let mut kicked = seal.first().map_or(0, |e| e.page.get());
    let mut rest = seal;
    while !rest.is_empty() {
        let (run, tail) = rest.split_at_mut(run_len(rest, ps));
        for e in run.iter_mut() {
            let id = e.page.get();
            let Some(buf) = bufs.get_mut(id) else {
                return corrupted(id, "a sealed page has no buffer");
            };
            e.checksum = stamp_checksum(buf).into();
        }
        let start: PageId = run[0].page.get();
        let slices: Vec<&[u8]> = (run.iter())
            .map(|e| bufs.get(e.page.get()).expect("stamped above"))
            .collect();
        // A lone buffer is one `pwrite`; a run, one `pwritev`.
        match &slices[..] {
            [one] => pager.write(start, one)?,
            _ => pager.write_vectored(start, &slices)?,
        }
        let last = &run[run.len() - 1];
        let end = last.page.get() + u64::from(last.pages.get());
        if kick && end - kicked >= kick_pages {
            pager.start_writeback(kicked, end);
            kicked = end;
        }
        rest = tail;
    }
    Ok(())
}

/// How many of the first entries of `seal` one vectored write takes: buffers
/// that follow one another in the file, at least one, and more only while
/// they stay within `WRITE_CHUNK` bytes and `MAX_SLICES` buffers.
fn run_len(seal: &[SealEntry], page_size: usize) -> usize {
    let span = |e: &SealEntry| u64::from(e.pages.get());
    let mut end = seal[0].page.get() + span(&seal[0]);
    let mut bytes = span(&seal[0]) as usize * page_size;
    let mut n = 1;
    while let Some(e) = seal.get(n) {
        let len = span(e) as usize * page_size;
        if n == MAX_SLICES || e.page.get() != end || bytes + len > WRITE_CHUNK {
            break;
        }
        end += span(e);
        bytes += len;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(page: u64, pages: u32) -> SealEntry {
        SealEntry {
            page: page.into(),
            pages: pages.into(),
            checksum: 0.into(),
        }
    }

    fn pages(list: &[SealEntry]) -> Vec<(u64, u32)> {
        list.iter().map(|e| (e.page.get(), e.pages.get())).collect()
    }

    #[test]
    fn unsynced_lists_only_what_the_last_commit_reaches_as_the_file_holds_it() {
        let none = BTreeSet::new();
        let mut u = Unsynced::default();
        // Durable commit 4; weak 5 writes 10, a run at 20..23 and 30.
        u.record(
            (4, 4, 5),
            &[entry(10, 1), entry(20, 3), entry(30, 1)],
            [].into_iter(),
            10,
        );
        // Weak 7 frees 10 (a page 5 wrote: 7 no longer reaches it) and
        // writes 21 over the run, which 7 freed too, and 40.
        u.record(
            (4, 5, 7),
            &[entry(21, 1), entry(40, 1)],
            [10, 20, 22].into_iter(),
            10,
        );
        let list = u.sealable((4, 7, 100), &[], &none).unwrap();
        assert_eq!(pages(&list), [(21, 1), (30, 1), (40, 1)]);
        // Past the high-water mark, or freed by the commit sealing: out;
        // overlapped by its own buffers: out.
        let freed = BTreeSet::from([30]);
        let list = u.sealable((4, 7, 40), &[entry(21, 1)], &freed).unwrap();
        assert!(pages(&list).is_empty(), "{:?}", pages(&list));
        // A cut forgets what lay past it.
        u.cut(35);
        assert_eq!(
            pages(&u.sealable((4, 7, 100), &[], &none).unwrap()),
            [(21, 1), (30, 1)]
        );
        // Not the commit it followed, or another durable one: unknown.
        assert!(u.sealable((4, 9, 100), &[], &none).is_none());
        assert!(u.sealable((7, 7, 100), &[], &none).is_none());
        // A commit of another process came between: incomplete from then on.
        u.record((4, 9, 11), &[entry(50, 1)], [].into_iter(), 10);
        assert!(u.sealable((4, 11, 100), &[], &none).is_none());
        // Too many to list: incomplete until the next durable commit.
        let mut u = Unsynced::default();
        let many: Vec<_> = (0..11).map(|i| entry(100 + i, 1)).collect();
        u.record((4, 4, 5), &many, [].into_iter(), 10);
        assert!(u.sealable((4, 5, 1000), &[], &none).is_none());
        u.record((7, 7, 9), &[entry(5, 1)], [].into_iter(), 10);
        assert_eq!(
            pages(&u.sealable((7, 9, 1000), &[], &none).unwrap()),
            [(5, 1)]
        );
    }

    #[test]
    fn a_write_takes_the_buffers_that_follow_each_other_up_to_its_bounds() {
        let ps = 4096;
        // 2, 3-4 (a run of two) and 5 follow each other; 7 does not.
        let seal = [entry(2, 1), entry(3, 2), entry(5, 1), entry(7, 1)];
        assert_eq!(run_len(&seal, ps), 3);
        assert_eq!(run_len(&seal[3..], ps), 1);
        // A buffer larger than a chunk still goes out, alone.
        let big = (WRITE_CHUNK / ps) as u32 + 1;
        assert_eq!(
            run_len(&[entry(2, big), entry(2 + u64::from(big), 1)], ps),
            1
        );
        // Bytes: a chunk's worth of runs, and not one more (runs of 16
        // pages, so that the chunk holds fewer than `MAX_SLICES`).
        let runs = (WRITE_CHUNK / (16 * ps)) as u64;
        assert!(runs < MAX_SLICES as u64);
        let seal: Vec<_> = (0..runs + 1).map(|i| entry(10 + 16 * i, 16)).collect();
        assert_eq!(run_len(&seal, ps), runs as usize);
        // Buffers: `MAX_SLICES`, whatever their bytes.
        let seal: Vec<_> = (0..MAX_SLICES as u64 + 5)
            .map(|i| entry(10 + i, 1))
            .collect();
        assert_eq!(run_len(&seal, 512), MAX_SLICES);
    }
}
