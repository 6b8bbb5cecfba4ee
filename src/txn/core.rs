//! What the transactions share: the pager, the reader table, the writer lock.

use std::sync::atomic::AtomicBool;

use parking_lot::Mutex;

use super::SetAside;
use crate::freelist::Persisted;
use crate::pager::Pager;
use crate::readers::ReaderTable;

/// State only the writer touches; its mutex is the writer lock.
pub(crate) struct WriterState {
    /// The free list as of the last commit, and its chain.
    pub free: Persisted,
}

pub(crate) struct Core {
    pub pager: Pager,
    pub readers: ReaderTable,
    pub writer: Mutex<WriterState>,
    /// Set after a failed write or sync: no further write transaction starts.
    pub poisoned: AtomicBool,
    /// The meta open set aside, if any, until a commit overwrites its slot
    /// (the next one that writes does).
    pub set_aside: Mutex<Option<SetAside>>,
}
