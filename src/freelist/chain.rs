//! The free list in the file: a chain of free-list pages (layout in
//! `format::page`). Reading a snapshot's chain, every id checked; and writing
//! the chain a commit leaves, checked by the same rules.

use zerocopy::little_endian::U64;

use super::list::{Entry, FreeList, Header, TxnFreeList};
use super::rules::ListRules;
use crate::error::{Result, corrupted};
use crate::format::meta::Meta;
use crate::format::page::{
    FreeEntry, KIND_BRANCH, KIND_FREELIST, KIND_LEAF, KIND_OVERFLOW, KIND_SEGMENT, PageId,
    freelist_capacity, overflow_run, read_freelist, segment_run, write_freelist, written_by,
};
use crate::view::PageSource;

/// A persisted free list as read: its entries and the chain's own pages.
pub(crate) struct Chain {
    pub entries: Vec<Entry>,
    pub pages: Vec<PageId>,
}

/// A free list as a commit persists it: the list, and the pages of the chain
/// that holds it. The writer keeps the last commit's between transactions.
#[derive(Debug, Default)]
pub(crate) struct Persisted {
    pub list: FreeList,
    pub chain: Vec<PageId>,
}

impl Persisted {
    /// The chain's first page (the meta's `freelist_head`), 0 when empty.
    pub(crate) fn head(&self) -> PageId {
        self.chain.first().copied().unwrap_or(0)
    }

    /// Entries in the chain (the meta's `freelist_entries`).
    pub(crate) fn entries(&self) -> u64 {
        self.list.len() as u64
    }
}

/// Reads the free-list chain of `meta`, checking every id, loop and count.
pub(crate) fn read_chain<'a>(view: impl PageSource<'a>, meta: &Meta) -> Result<Chain> {
    let mut rules = ListRules::new(meta.high_water, meta.txn_id);
    let mut chain = Vec::new();
    let mut entries = Vec::new();
    let mut id = meta.freelist_head;
    while id != 0 {
        if let Err(broken) = rules.chain_page(id) {
            return corrupted(id, broken.reason());
        }
        let (next, list) = read_freelist(view.page(id)?, id)?;
        chain.push(id);
        for e in list {
            let e = Entry {
                freed_by: e.freed_by.get(),
                written_by: e.written_by.get(),
                page: e.page.get(),
            };
            if let Err(broken) = rules.entry(e.freed_by, e.written_by, e.page) {
                return corrupted(id, broken.reason());
            }
            entries.push(e);
        }
        id = next;
    }
    if entries.len() as u64 != meta.freelist_entries {
        return corrupted(meta.txn_id % 2, "free-list length differs from the meta");
    }
    if let Err((_, broken)) = rules.finish() {
        return corrupted(meta.freelist_head, broken.reason());
    }
    Ok(Chain {
        entries,
        pages: chain,
    })
}

/// The free list of `meta`, read from its chain, for the writer.
pub(crate) fn load<'a>(view: impl PageSource<'a>, meta: &Meta) -> Result<Persisted> {
    let chain = read_chain(view, meta)?;
    Ok(Persisted {
        list: FreeList::from_entries(chain.entries),
        chain: chain.pages,
    })
}

/// The header of page `id` of `view`, as a release checks it (see
/// `FreeList::release`): who wrote the page, and the pages it spans. Read
/// through the view's checks, so never a writer newer than the snapshot.
pub(crate) fn header<'a>(view: impl PageSource<'a>, id: PageId) -> Header {
    let page = view.page(id).ok()?;
    let n = match *page.first()? {
        KIND_BRANCH | KIND_LEAF | KIND_FREELIST => 1,
        KIND_OVERFLOW => overflow_run(page, id).ok()?,
        KIND_SEGMENT => segment_run(page, id).ok()?,
        _ => return None,
    };
    Some((written_by(page), n))
}

/// The writer's pages, as writing a chain needs them.
pub(crate) trait ChainStore {
    fn page_size(&self) -> usize;
    /// Id of the running transaction.
    fn txn_id(&self) -> u64;
    /// The high-water mark, this transaction's allocations included.
    fn high_water(&self) -> u64;
    /// The transaction's free list.
    fn free_list(&mut self) -> &mut TxnFreeList;
    /// Lowers the high-water mark past the reusable pages at the end of the
    /// file, taking them off the list.
    fn trim_tail(&mut self);
    /// The transaction that wrote committed page `id`, from its header.
    fn written_by(&self, id: PageId) -> Result<u64>;
    /// Allocates a zeroed page (taken from the free list first, which
    /// shortens it).
    fn alloc_page(&mut self) -> Result<PageId>;
    /// A page this transaction allocated, for writing.
    fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]>;
}

/// The free list a commit leaves, written into a new chain (DESIGN.md, commit
/// protocol step 2); `old` is the chain of the commit before.
///
/// Frees the old chain into the transaction's group, allocates the new chain
/// (each page taken from the pool shortens the list, so the count is taken
/// again after every page), checks the chain and the list against the rules
/// the reader enforces, and fills the chain's pages. A list that breaks a
/// rule, which only a damaged file can produce (a page reachable from two
/// places is freed twice), is `Error::Corrupted`: open would drop such a
/// commit without a word, so it is refused before anything is written.
pub(crate) fn write_chain(store: &mut impl ChainStore, old: &[PageId]) -> Result<Persisted> {
    // Only snapshot `txn_id - 1` reaches the old chain (its pages were free
    // in every older one): written by it, freed now.
    for &id in old {
        let by = store.written_by(id)?;
        store.free_list().free_committed(id, 1, by);
    }
    // The free pages at the end of the file leave the list and the snapshot
    // before the chain is sized (DESIGN.md, "Shrinking the file").
    store.trim_tail();
    let txn_id = store.txn_id();
    let cap = freelist_capacity(store.page_size());
    let mut chain = Vec::new();
    while chain.len() < store.free_list().len().div_ceil(cap) {
        chain.push(store.alloc_page()?);
    }
    let list = store.free_list().committed(txn_id);
    let mut rules = ListRules::new(store.high_water(), txn_id);
    for &id in &chain {
        if let Err(broken) = rules.chain_page(id) {
            return corrupted(id, broken.commit_reason());
        }
    }
    let mut entries = Vec::with_capacity(list.len());
    for e in list.entries() {
        if let Err(broken) = rules.entry(e.freed_by, e.written_by, e.page) {
            return corrupted(e.page, broken.commit_reason());
        }
        entries.push(FreeEntry {
            freed_by: U64::new(e.freed_by),
            written_by: U64::new(e.written_by),
            page: U64::new(e.page),
        });
    }
    if let Err((page, broken)) = rules.finish() {
        return corrupted(page, broken.commit_reason());
    }
    if entries.len() > chain.len() * cap {
        return corrupted(0, "the commit's free list does not fit its chain");
    }
    let mut parts = entries.chunks(cap);
    for (i, &id) in chain.iter().enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(0);
        let part = parts.next().unwrap_or(&[]);
        write_freelist(store.page_mut(id)?, next, part, txn_id);
    }
    Ok(Persisted { list, chain })
}
