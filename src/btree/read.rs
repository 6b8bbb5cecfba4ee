//! Point lookups.

use super::path::Path;
use super::store::{PageStore, load_node};
use crate::error::{Result, corrupted};
use crate::format::meta::TableDesc;
use crate::format::node::{LeafValue, Node, ValueRef};
use crate::format::page::{OVERFLOW_DATA, PageId};
use crate::view::PageSource;

/// Where a value lies in the writer's buffers: `len` bytes, `at` bytes into
/// the buffer that starts at page `first` (its leaf, its segment or its
/// run).
pub(crate) struct ValuePlace {
    pub first: PageId,
    pub at: usize,
    pub len: usize,
}

/// Where the value under `key` lies, for a store whose path to it is
/// dirty (an insert just made it). `None` when the key is not there.
pub(crate) fn value_place<S: PageStore>(
    s: &S,
    desc: &TableDesc,
    key: &[u8],
) -> Result<Option<ValuePlace>> {
    if desc.root == 0 {
        return Ok(None);
    }
    let path = Path::find(s, desc, key)?;
    if !path.found {
        return Ok(None);
    }
    let leaf = *path.steps.last().expect("a path has a leaf");
    let node = Node::parse(s.page(leaf.id)?, leaf.id)?;
    if let Some((at, len)) = node.inline_value_at(leaf.idx)? {
        return Ok(Some(ValuePlace {
            first: leaf.id,
            at,
            len,
        }));
    }
    let LeafValue::Spilled { at, len, key } = node.entry(leaf.idx)?.1 else {
        return corrupted(leaf.id, "a value neither inline nor out of its leaf");
    };
    let (first, start) = match at {
        ValueRef::Run(page) => (page, OVERFLOW_DATA),
        ValueRef::Packed { seg, off } => (seg, off as usize),
    };
    Ok(Some(ValuePlace {
        first,
        at: start + key,
        len: len - key,
    }))
}

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
