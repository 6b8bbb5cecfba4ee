//! The copy-on-write B+tree: search, cursors, insert with splits, delete with
//! merge and redistribution.
//!
//! The tree knows pages, not transactions: reads go through [`PageSource`],
//! writes through [`PageStore`], which the transaction implements.

mod boundary;
mod cells;
mod cursor;
mod delete;
mod insert;
mod path;
mod read;
mod source;
mod stat;

pub(crate) use cursor::Cursor;
pub(crate) use delete::{drop_tree, remove};
pub(crate) use insert::{InsertHint, insert};
pub(crate) use read::get;
#[cfg(feature = "testing")]
pub(crate) use source::SliceView;
pub(crate) use source::{MapView, PageSource, PageStore, load_node};
pub(crate) use stat::count_pages;

/// Deepest tree a descent accepts. Trees this deep cannot exist (each branch
/// holds at least two children), so the bound only stops cycles.
pub(crate) const MAX_DEPTH: usize = 64;

#[cfg(test)]
mod tests;
