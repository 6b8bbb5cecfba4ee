//! A cursor: a stack of (node, index) from the root to a leaf entry.
//!
//! On every level the index names the child (or, on the leaf, the entry) the
//! cursor is in. Moving past the end of a node pops it and steps its parent.

use super::store::load_node;
use crate::error::Result;
use crate::format::meta::TableDesc;
use crate::format::node::Node;
use crate::format::page::PageId;
use crate::view::PageSource;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Never positioned: `next` starts at the first entry, `prev` at the last.
    Unset,
    /// On an entry.
    At,
    /// Moved past the last entry: `prev` returns the last one.
    AfterEnd,
    /// Moved before the first entry: `next` returns the first one.
    BeforeStart,
}

/// An entry: key and value, borrowed from the source.
pub(crate) type Entry<'a> = (&'a [u8], &'a [u8]);

pub(crate) struct Cursor<'a, P: PageSource<'a>> {
    src: P,
    desc: TableDesc,
    stack: Vec<(Node<'a>, usize)>,
    state: State,
}

impl<'a, P: PageSource<'a>> Cursor<'a, P> {
    pub(crate) fn new(src: P, desc: TableDesc) -> Self {
        Cursor {
            src,
            desc,
            stack: Vec::new(),
            state: State::Unset,
        }
    }

    /// Loads page `id` as the next level down, positioned at its start
    /// (`forward`) or one past its end.
    fn push(&mut self, id: PageId, forward: bool) -> Result<()> {
        let node = load_node(self.src.page(id)?, id, self.stack.len(), self.desc.depth)?;
        let idx = if forward { 0 } else { node.count() };
        self.stack.push((node, idx));
        Ok(())
    }

    #[inline]
    fn current(&self) -> Result<Entry<'a>> {
        let &(node, idx) = self.stack.last().expect("cursor is positioned");
        let (key, value) = node.entry(idx)?;
        self.src.entry(key, value)
    }

    /// Settles on the first entry at or after the stack's position.
    fn forward(&mut self) -> Result<Option<Entry<'a>>> {
        loop {
            let Some(&(node, idx)) = self.stack.last() else {
                self.state = State::AfterEnd;
                return Ok(None);
            };
            if idx < node.count() {
                if node.is_leaf() {
                    self.state = State::At;
                    return self.current().map(Some);
                }
                self.push(node.child(idx)?, true)?;
                continue;
            }
            self.stack.pop();
            if let Some(top) = self.stack.last_mut() {
                top.1 += 1;
            }
        }
    }

    /// Settles on the last entry before the stack's position.
    fn backward(&mut self) -> Result<Option<Entry<'a>>> {
        loop {
            let Some(&(node, idx)) = self.stack.last() else {
                self.state = State::BeforeStart;
                return Ok(None);
            };
            if idx > 0 {
                let i = idx - 1;
                self.stack.last_mut().expect("not empty").1 = i;
                if node.is_leaf() {
                    self.state = State::At;
                    return self.current().map(Some);
                }
                self.push(node.child(i)?, false)?;
                continue;
            }
            self.stack.pop();
        }
    }

    fn start(&mut self, forward: bool) -> Result<Option<Entry<'a>>> {
        self.stack.clear();
        if self.desc.root == 0 {
            self.state = if forward {
                State::AfterEnd
            } else {
                State::BeforeStart
            };
            return Ok(None);
        }
        self.push(self.desc.root, forward)?;
        if forward {
            self.forward()
        } else {
            self.backward()
        }
    }

    /// The first entry.
    pub(crate) fn first(&mut self) -> Result<Option<Entry<'a>>> {
        self.guard(|c| c.start(true))
    }

    /// The last entry.
    pub(crate) fn last(&mut self) -> Result<Option<Entry<'a>>> {
        self.guard(|c| c.start(false))
    }

    /// The entry after the current one (the first if unpositioned).
    #[inline]
    pub(crate) fn next(&mut self) -> Result<Option<Entry<'a>>> {
        match self.state {
            State::Unset | State::BeforeStart => self.first(),
            State::AfterEnd => Ok(None),
            State::At => {
                // The common step of a scan: the next entry on the same leaf.
                if let Some((node, idx)) = self.stack.last_mut()
                    && node.is_leaf()
                    && *idx + 1 < node.count()
                {
                    *idx += 1;
                    return self.guard(|c| c.current().map(Some));
                }
                // Across a leaf's end: up the stack and down the next subtree.
                self.guard(|c| {
                    c.stack.last_mut().expect("positioned").1 += 1;
                    c.forward()
                })
            }
        }
    }

    /// The entry before the current one (the last if unpositioned).
    pub(crate) fn prev(&mut self) -> Result<Option<Entry<'a>>> {
        match self.state {
            State::Unset | State::AfterEnd => self.last(),
            State::BeforeStart => Ok(None),
            State::At => self.guard(|c| c.backward()),
        }
    }

    /// The first entry whose key is `>= key`.
    pub(crate) fn seek(&mut self, key: &[u8]) -> Result<Option<Entry<'a>>> {
        self.guard(|c| {
            c.stack.clear();
            let mut id = c.desc.root;
            if id == 0 {
                c.state = State::AfterEnd;
                return Ok(None);
            }
            loop {
                let level = c.stack.len();
                let node = load_node(c.src.page(id)?, id, level, c.desc.depth)?;
                if node.is_leaf() {
                    let (i, _) = node.search_leaf(key, &c.src)?;
                    c.stack.push((node, i));
                    return c.forward();
                }
                let i = node.search_branch(key, &c.src)?;
                c.stack.push((node, i));
                id = node.child(i)?;
            }
        })
    }

    /// The last entry whose key is `<= key` (or `< key` when not `inclusive`).
    pub(crate) fn seek_back(&mut self, key: &[u8], inclusive: bool) -> Result<Option<Entry<'a>>> {
        match self.seek(key)? {
            None => self.last(),
            Some((k, v)) if k < key || (inclusive && k == key) => Ok(Some((k, v))),
            Some(_) => self.prev(),
        }
    }

    /// Runs a move; an error leaves the cursor unpositioned rather than on a
    /// half-built stack.
    fn guard(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Option<Entry<'a>>>,
    ) -> Result<Option<Entry<'a>>> {
        let r = f(self);
        if r.is_err() {
            self.stack.clear();
            self.state = State::AfterEnd;
        }
        r
    }
}
