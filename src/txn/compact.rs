//! One step of compaction: the write transaction moves the pages near the
//! end of the file to free pages nearer its start (DESIGN.md, "Shrinking
//! the file").

use super::write::{Open, WriteTxn};
use crate::btree;
use crate::error::{Result, corrupted};
use crate::format::page::freelist_capacity;
use crate::table::{catalog_get, catalog_names};

impl WriteTxn<'_> {
    /// Moves up to `budget` pages of the catalog and of every table from the
    /// end of the file to free pages below the pages in use, copy-on-write,
    /// and makes the transaction commit even if nothing moved (its free list
    /// is written anew, so pages the metas held pending move on and the tail
    /// may be cut). Returns the pages moved. An error fails the transaction.
    pub(crate) fn relocate_tail(&mut self, budget: u64) -> Result<u64> {
        self.dirty.live()?;
        let r = self.relocate_inner(budget);
        self.dirty.outcome(r)
    }

    fn relocate_inner(&mut self, budget: u64) -> Result<u64> {
        self.rewrite = true;
        self.dirty.lowest_first();
        // The pages in use (the metas and the free-list chain included),
        // were they packed from page 0 on: a page past this mark has a free
        // page waiting for it lower down, or will have.
        let free = self.dirty.free_len() as u64;
        let in_use = self.dirty.high_water().saturating_sub(free).max(2);
        // Moves take reusable pages and free as many (pending): the list keeps
        // its length, and its chain needs this many pages at the commit.
        let cap = freelist_capacity(self.core.pager.page_size()) as u64;
        let keep = free.div_ceil(cap) + 1;
        let names = catalog_names(self.view(), &self.catalog)?;
        let mut catalog = self.catalog;
        let mut pages = self.dirty.lend(&self.core.pager);
        let mut moved = btree::relocate(&mut pages, &mut catalog, in_use, budget, keep)?;
        self.catalog = catalog;
        for name in names {
            if moved >= budget {
                break;
            }
            let desc = match self.tables.get(&name) {
                Some(open) => open.desc,
                None => match catalog_get(self.view(), &self.catalog, &name)? {
                    Some(desc) => desc,
                    None => return corrupted(self.catalog.root, "a listed table is missing"),
                },
            };
            let mut moved_desc = desc;
            let mut pages = self.dirty.lend(&self.core.pager);
            moved += btree::relocate(&mut pages, &mut moved_desc, in_use, budget - moved, keep)?;
            if moved_desc != desc {
                let open = self.tables.entry(name).or_insert(Open {
                    desc,
                    changed: false,
                });
                open.desc = moved_desc;
                open.changed = true;
            }
        }
        Ok(moved)
    }
}
