//! Cells copied out of nodes while they are split, merged or redistributed.

use crate::format::node::{BRANCH_HEAD_COST, cell_cost};

/// Raw cells in one buffer.
#[derive(Default)]
pub(super) struct Cells {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Cells {
    pub(super) fn push(&mut self, cell: &[u8]) {
        self.data.extend_from_slice(cell);
        self.ends.push(self.data.len());
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    pub(super) fn range(
        &self,
        r: std::ops::Range<usize>,
    ) -> impl DoubleEndedIterator<Item = &[u8]> + Clone {
        r.map(|i| self.get(i))
    }

    fn cost(&self, r: std::ops::Range<usize>) -> usize {
        self.range(r).map(|c| cell_cost(c.len())).sum()
    }

    /// Bytes of a node holding all the cells.
    pub(super) fn total(&self) -> usize {
        self.cost(0..self.len())
    }

    /// Node sizes if cells `..m` go left and `m..` go right. For a branch, cell
    /// `m`'s key moves up to the parent and its child stays as the right node's
    /// first cell, which then costs only its header.
    #[cfg(test)]
    pub(super) fn sizes(&self, m: usize, leaf: bool) -> (usize, usize) {
        let left = self.cost(0..m);
        let right = if leaf {
            self.cost(m..self.len())
        } else {
            BRANCH_HEAD_COST + self.cost(m + 1..self.len())
        };
        (left, right)
    }

    /// The split index that balances the two halves by size while both fit in
    /// `usable` bytes; `None` when no split fits.
    pub(super) fn split_point(&self, leaf: bool, usable: usize) -> Option<usize> {
        let n = self.len();
        let mut best: Option<(usize, usize)> = None;
        let mut left = 0;
        let total = self.total();
        for m in 1..n {
            left += cell_cost(self.get(m - 1).len());
            let right = if leaf {
                total - left
            } else {
                BRANCH_HEAD_COST + total - left - cell_cost(self.get(m).len())
            };
            if left > usable || right > usable {
                continue;
            }
            let diff = left.abs_diff(right);
            if best.is_none_or(|(d, _)| diff < d) {
                best = Some((diff, m));
            }
        }
        best.map(|(_, m)| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_balances_by_size() {
        let mut c = Cells::default();
        for len in [100, 100, 100, 300] {
            c.push(&vec![0u8; len]);
        }
        // Leaf: 102*3 = 306 vs 302: split before the big cell.
        assert_eq!(c.split_point(true, 400), Some(3));
        assert_eq!(c.sizes(3, true), (306, 302));
        assert_eq!(c.split_point(true, 200), None);
    }
}
