//! The integrity checker: walks one snapshot and accounts for every page.
//!
//! Every page below the high-water mark must be exactly one of: reachable
//! from the catalog (a tree node or an overflow page), a free-list chain page,
//! or listed free. Keys must be sorted within and across pages, leaves all at
//! the depth their descriptor states, and entry counts must match.

use crate::btree::{MapView, PageSource, SliceView};
use crate::error::{Result, corrupted};
use crate::format::meta::{Meta, TableDesc};
use crate::format::node::LeafValue;
use crate::format::page::{PageId, overflow_pages, overflow_run};
use crate::freelist_io::read_chain;
use crate::pager::Pager;

/// What [`Database::check`](crate::Database::check) found in a consistent file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// Transaction id of the snapshot checked.
    pub txn_id: u64,
    /// Pages below the high-water mark (the two metas included).
    pub pages: u64,
    /// Branch pages of all trees, the catalog included.
    pub branch_pages: u64,
    /// Leaf pages of all trees, the catalog included.
    pub leaf_pages: u64,
    /// Pages of overflow runs.
    pub overflow_pages: u64,
    /// Pages of the free-list chain.
    pub freelist_pages: u64,
    /// Pages listed free (reusable or still pending).
    pub free_pages: u64,
    /// Number of tables.
    pub tables: u64,
    /// Entries in all tables.
    pub entries: u64,
    /// Depth of the deepest tree.
    pub max_depth: u32,
}

/// A page still to visit: id, level, and the key bounds its parent gives it.
type Pending = (PageId, usize, Option<Vec<u8>>, Option<Vec<u8>>);

struct Checker<P> {
    view: P,
    page_size: usize,
    seen: Vec<bool>,
    report: CheckReport,
}

impl<'a, P: PageSource<'a>> Checker<P> {
    fn claim(&mut self, id: PageId, what: &'static str) -> Result<()> {
        match self.seen.get_mut(id as usize) {
            Some(seen) if id >= 2 => {
                if *seen {
                    return corrupted(id, what);
                }
                *seen = true;
                Ok(())
            }
            _ => corrupted(id, "page id outside the snapshot"),
        }
    }

    /// Walks one tree; calls `leaf_entry` for every entry in key order.
    fn tree(
        &mut self,
        desc: &TableDesc,
        mut leaf_entry: impl FnMut(&mut Self, &[u8], LeafValue<'a>) -> Result<()>,
    ) -> Result<()> {
        if desc.root == 0 {
            return Ok(());
        }
        self.report.max_depth = self.report.max_depth.max(desc.depth);
        let mut count = 0u64;
        let mut last_key: Option<Vec<u8>> = None;
        let mut stack: Vec<Pending> = vec![(desc.root, 0, None, None)];
        while let Some((id, level, lo, hi)) = stack.pop() {
            self.claim(id, "page reachable twice")?;
            let node = crate::btree::load_node(self.view.page(id)?, id, level, desc.depth)?;
            let in_bounds = |k: &[u8]| {
                lo.as_deref().is_none_or(|l| k >= l) && hi.as_deref().is_none_or(|h| k < h)
            };
            if node.is_leaf() {
                self.report.leaf_pages += 1;
                if node.count() == 0 {
                    return corrupted(id, "empty leaf in a tree");
                }
                for i in 0..node.count() {
                    let (key, value) = node.entry(i)?;
                    if !in_bounds(key) || last_key.as_deref().is_some_and(|l| key <= l) {
                        return corrupted(id, "keys out of order");
                    }
                    last_key = Some(key.to_vec());
                    leaf_entry(self, key, value)?;
                    count += 1;
                }
            } else {
                self.report.branch_pages += 1;
                let mut children = Vec::with_capacity(node.count());
                for i in 0..node.count() {
                    let lower = if i == 0 {
                        lo.clone()
                    } else {
                        Some(node.key(i)?.to_vec())
                    };
                    let upper = if i + 1 == node.count() {
                        hi.clone()
                    } else {
                        Some(node.key(i + 1)?.to_vec())
                    };
                    if let (Some(l), Some(u)) = (&lower, &upper)
                        && l >= u
                    {
                        return corrupted(id, "separators out of order");
                    }
                    if i > 0 && !in_bounds(node.key(i)?) {
                        return corrupted(id, "separator outside its parent's range");
                    }
                    children.push((node.child(i)?, level + 1, lower, upper));
                }
                stack.extend(children.into_iter().rev());
            }
        }
        if count != desc.entries {
            return corrupted(desc.root, "entry count differs from the descriptor");
        }
        Ok(())
    }

    fn value(&mut self, value: LeafValue<'a>) -> Result<()> {
        if let LeafValue::Overflow { page, len } = value {
            let pages = overflow_run(self.view.page(page)?, page)?;
            if pages < overflow_pages(len, self.page_size) {
                return corrupted(page, "overflow run shorter than its value");
            }
            for p in page..page.saturating_add(pages) {
                self.claim(p, "overflow page reachable twice")?;
            }
            self.report.overflow_pages += pages;
        }
        Ok(())
    }
}

/// Checks the snapshot `meta` of the file behind `pager`.
pub(crate) fn check(pager: &Pager, meta: &Meta) -> Result<CheckReport> {
    let view = MapView::new(pager, meta.pages);
    walk(view, pager.page_size(), meta).map(|(report, _)| report)
}

/// Checks the snapshot `meta` of a whole-file image.
pub(crate) fn check_image(image: &[u8], meta: &Meta) -> Result<(CheckReport, Vec<PageId>)> {
    let page_size = meta.page_size as usize;
    walk(
        SliceView::new(image, page_size, meta.pages),
        page_size,
        meta,
    )
}

/// Walks a snapshot; returns the report and the pages reachable from its meta
/// (tree, overflow and free-list pages; not the free ones).
fn walk<'a>(
    view: impl PageSource<'a>,
    page_size: usize,
    meta: &Meta,
) -> Result<(CheckReport, Vec<PageId>)> {
    let mut c = Checker {
        view,
        page_size,
        seen: vec![false; meta.pages as usize],
        report: CheckReport {
            txn_id: meta.txn_id,
            pages: meta.pages,
            ..CheckReport::default()
        },
    };
    let mut tables = Vec::new();
    c.tree(&meta.catalog, |c, name, value| {
        let bytes = c.view.value(value)?;
        match (std::str::from_utf8(name), TableDesc::decode(bytes)) {
            (Ok(_), Some(desc)) => {
                tables.push(desc);
                Ok(())
            }
            _ => corrupted(meta.catalog.root, "invalid catalog entry"),
        }
    })?;
    if tables.len() as u64 != meta.catalog.entries {
        return corrupted(meta.catalog.root, "table count differs from the meta");
    }
    c.report.tables = tables.len() as u64;
    for desc in &tables {
        c.tree(desc, |c, _, value| c.value(value))?;
        c.report.entries += desc.entries;
    }
    let chain = read_chain(c.view, meta)?;
    for &p in &chain.pages {
        c.claim(p, "free-list page also in use")?;
    }
    c.report.freelist_pages = chain.pages.len() as u64;
    let reachable: Vec<PageId> = (0..meta.pages).filter(|&p| c.seen[p as usize]).collect();
    for &(_, p) in &chain.entries {
        c.claim(p, "free page also in use")?;
    }
    c.report.free_pages = chain.entries.len() as u64;
    if let Some(leaked) = c.seen.iter().skip(2).position(|s| !s) {
        return corrupted(leaked as u64 + 2, "page neither in use nor free (leaked)");
    }
    Ok((c.report, reachable))
}
