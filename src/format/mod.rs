//! On-disk layouts: pure functions over byte slices, no I/O.
//!
//! Every structure here has a byte table in DESIGN.md.

pub(crate) mod catalog;
pub(crate) mod escape;
pub(crate) mod heap;
pub(crate) mod meta;
pub(crate) mod multimap;
pub(crate) mod node;
pub(crate) mod page;
pub(crate) mod registry;
