//! Branch and leaf pages: a slotted layout with cells packed at the page end.
//!
//! Reads go through [`Node`], which checks every offset and length against the
//! page before use. Writes go through the free functions of `write`, which
//! work on a dirty page buffer and check what they read the same way.

mod cell;
mod layout;
mod view;
mod write;

pub(crate) use cell::{
    ValueRef, branch_cell, branch_cell_child, branch_cell_key, leaf_cell_inline, leaf_cell_key,
    leaf_cell_spilled, leaf_cell_value_ref,
};
pub(crate) use layout::{BRANCH_HEAD_COST, cell_cost, max_key, usable, value_inline};
pub(crate) use view::{LeafValue, Node};
pub(crate) use write::{
    build, insert_cell, rebuild, remove_cell, replace_cell, set_child, set_value_ref,
};

#[cfg(test)]
mod tests;
