//! Reading a whole-file image without opening it: its metas and the pages
//! each one reaches.

use crate::check::check_image;
use crate::format::meta::{Meta, Seal, SealEntry};
use crate::format::page::PageId;

/// One valid meta slot of an image and the pages its snapshot reaches.
#[derive(Clone, Debug)]
pub struct ImageState {
    /// Slot (0 or 1).
    pub slot: u64,
    /// Transaction id of the meta.
    pub txn_id: u64,
    /// Page size of the file.
    pub page_size: usize,
    /// The meta's high-water mark.
    pub high_water: u64,
    /// Pages reachable from the meta (trees, overflow runs, free-list pages);
    /// `None` when the snapshot does not pass the check.
    pub reachable: Option<Vec<PageId>>,
}

/// The valid metas of `image` (whose page size is `page_size`).
pub fn image_state(image: &[u8], page_size: usize) -> Vec<ImageState> {
    let mut out = Vec::new();
    for slot in 0..2u64 {
        let at = slot as usize * page_size;
        let Some(bytes) = image.get(at..(at + page_size).min(image.len())) else {
            continue;
        };
        let Ok(meta) = Meta::decode(bytes, image.len() as u64) else {
            continue;
        };
        if meta.page_size as usize != page_size {
            continue;
        }
        out.push(ImageState {
            slot,
            txn_id: meta.txn_id,
            page_size,
            high_water: meta.high_water,
            reachable: check_image(image, &meta).ok().map(|(_, r)| r),
        });
    }
    out
}

/// The fields of a meta slot, for tests that forge metas with valid checksums.
#[derive(Clone, Debug)]
pub struct MetaFields {
    /// Page size.
    pub page_size: u32,
    /// Transaction id.
    pub txn_id: u64,
    /// High-water mark: every page id in use lies below it.
    pub high_water: u64,
    /// First free-list page.
    pub freelist_head: u64,
    /// Free-list entries.
    pub freelist_entries: u64,
    /// Catalog root page.
    pub catalog_root: u64,
    /// Number of tables.
    pub catalog_entries: u64,
    /// Catalog depth.
    pub catalog_depth: u32,
    /// Root page of the value heap's tree.
    pub heap_root: u64,
    /// Segments in the heap.
    pub heap_entries: u64,
    /// Depth of the heap's tree.
    pub heap_depth: u32,
    /// Pages of all segments.
    pub heap_pages: u64,
    /// Live bytes in them.
    pub heap_live: u64,
    /// The seal list: `(page, pages, checksum)` of each entry (empty for a
    /// commit whose pages were synced before its meta; such a slot stays
    /// flagged as synced unless the edit puts entries in the list).
    pub seal: Vec<(u64, u32, u32)>,
}

/// Rewrites meta slot `slot` of `image` (whose slots sit `page_size` apart)
/// with `edit` applied, and a valid checksum. Returns false when the slot held
/// no valid meta to start from.
pub fn edit_meta(
    image: &mut [u8],
    page_size: usize,
    slot: usize,
    edit: impl FnOnce(&mut MetaFields),
) -> bool {
    let at = slot * page_size;
    let Some(bytes) = image.get(at..(at + page_size).min(image.len())) else {
        return false;
    };
    let Ok(meta) = Meta::decode(bytes, u64::MAX) else {
        return false;
    };
    let was_synced = Meta::seal(bytes) == Seal::Synced;
    let mut f = MetaFields {
        page_size: meta.page_size,
        txn_id: meta.txn_id,
        high_water: meta.high_water,
        freelist_head: meta.freelist_head,
        freelist_entries: meta.freelist_entries,
        catalog_root: meta.catalog.root,
        catalog_entries: meta.catalog.entries,
        catalog_depth: meta.catalog.depth,
        heap_root: meta.heap.tree.root,
        heap_entries: meta.heap.tree.entries,
        heap_depth: meta.heap.tree.depth,
        heap_pages: meta.heap.pages,
        heap_live: meta.heap.live,
        seal: Meta::seal(bytes)
            .entries()
            .iter()
            .map(|e| (e.page.get(), e.pages.get(), e.checksum.get()))
            .collect(),
    };
    edit(&mut f);
    let meta = Meta {
        page_size: f.page_size,
        txn_id: f.txn_id,
        high_water: f.high_water,
        freelist_head: f.freelist_head,
        freelist_entries: f.freelist_entries,
        catalog: crate::format::meta::TableDesc {
            root: f.catalog_root,
            entries: f.catalog_entries,
            depth: f.catalog_depth,
        },
        heap: crate::format::heap::HeapDesc {
            tree: crate::format::meta::TableDesc {
                root: f.heap_root,
                entries: f.heap_entries,
                depth: f.heap_depth,
            },
            pages: f.heap_pages,
            live: f.heap_live,
        },
    };
    let synced = was_synced && f.seal.is_empty();
    let seal: Vec<SealEntry> = f
        .seal
        .iter()
        .map(|&(page, pages, checksum)| SealEntry {
            page: page.into(),
            pages: pages.into(),
            checksum: checksum.into(),
        })
        .collect();
    let bytes = if synced {
        meta.encode()
    } else {
        meta.encode_sealed(Seal::Listed(&seal))
    };
    image[at..at + bytes.len()].copy_from_slice(&bytes);
    true
}

/// Stamps page `page` of `image` (pages of `page_size` bytes) with the
/// checksum of its bytes, as a commit does: for tests that edit a page and
/// want only the structural checks to notice.
pub fn restamp(image: &mut [u8], page_size: usize, page: u64) {
    let at = page as usize * page_size;
    crate::format::page::stamp_checksum(&mut image[at..at + page_size]);
}
