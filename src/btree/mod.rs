//! The copy-on-write B+tree: search, cursors, insert with splits, delete with
//! merge and redistribution, and moving pages down the file (compaction).
//!
//! The tree knows pages, not transactions: reads go through
//! `view::PageSource`, writes through [`PageStore`], which the transaction
//! implements.

mod boundary;
mod cells;
mod cursor;
mod delete;
mod insert;
mod path;
mod read;
mod relocate;
mod stat;
mod store;

pub(crate) use cursor::Cursor;
pub(crate) use delete::{drop_tree, remove};
pub(crate) use insert::{InsertHint, insert};
pub(crate) use read::{get, value_place};
pub(crate) use relocate::relocate;
pub(crate) use stat::count_pages;
pub(crate) use store::{PageStore, load_node};

#[cfg(test)]
mod tests;
