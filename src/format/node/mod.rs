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
    LongKey, ValueRef, branch_cell, branch_cell_child, branch_cell_from_part, branch_cell_long_key,
    branch_key_long, branch_key_part, leaf_cell_inline, leaf_cell_key, leaf_cell_long,
    leaf_cell_long_key, leaf_cell_spilled, leaf_cell_value_ref,
};
pub(crate) use layout::{
    BRANCH_HEAD_COST, LONG_REF, MAX_KEY, cell_cost, long_prefix, max_inline_key, usable,
    value_inline,
};
pub(crate) use view::{Keys, LeafValue, Node, NodeKey};
pub(crate) use write::{
    build, insert_cell, rebuild, remove_cell, replace_cell, set_child, set_key_ref, set_value_ref,
};

#[cfg(test)]
mod tests;
