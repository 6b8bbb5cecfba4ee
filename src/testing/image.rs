//! Reading a whole-file image without opening it: its metas and the pages
//! each one reaches.

use crate::check::check_image;
use crate::format::meta::{META_SIZE, Meta};
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
    /// Pages reachable from the meta (trees, overflow runs, free-list chain);
    /// `None` when the snapshot does not pass the check.
    pub reachable: Option<Vec<PageId>>,
}

/// The valid metas of `image` (whose page size is `page_size`).
pub fn image_state(image: &[u8], page_size: usize) -> Vec<ImageState> {
    let mut out = Vec::new();
    for slot in 0..2u64 {
        let at = slot as usize * page_size;
        let Some(bytes) = image.get(at..at + META_SIZE) else {
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
            reachable: check_image(image, &meta).ok().map(|(_, r)| r),
        });
    }
    out
}
