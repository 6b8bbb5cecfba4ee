//! Point lookups.

use super::store::load_node;
use crate::error::{Result, corrupted};
use crate::format::meta::TableDesc;
use crate::view::PageSource;

/// The value stored under `key`, borrowed from the source.
pub(crate) fn get<'a, P: PageSource<'a>>(
    src: P,
    desc: &TableDesc,
    key: &[u8],
) -> Result<Option<&'a [u8]>> {
    let mut id = desc.root;
    for level in 0..desc.depth as usize {
        let node = load_node(src.page(id)?, id, level, desc.depth)?;
        if node.is_leaf() {
            let (i, found) = node.search_leaf(key, &src)?;
            if !found {
                return Ok(None);
            }
            return Ok(Some(src.value(node.entry(i)?.1)?));
        }
        id = node.child(node.search_branch(key, &src)?)?;
    }
    if desc.root == 0 {
        return Ok(None);
    }
    corrupted(id, "descent did not reach a leaf")
}
