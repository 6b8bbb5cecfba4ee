//! Read transactions: a snapshot of the last commit.

use super::core::Core;
use crate::btree::MapView;
use crate::check::{self, CheckReport};
use crate::error::{Error, Result};
use crate::format::meta::Meta;
use crate::table::{Table, View, catalog_get, catalog_names};

/// A consistent snapshot of the database as of the last commit before
/// [`Database::begin_read`](crate::Database::begin_read).
///
/// Any number may be open at once, in any threads, beside the writer; none of
/// them waits for it. Values read through it borrow it and point into the map.
/// Pages it can see are not reused while it lives, so drop long-lived readers
/// when done or the file grows.
pub struct ReadTxn<'db> {
    core: &'db Core,
    meta: Meta,
}

impl<'db> ReadTxn<'db> {
    pub(crate) fn new(core: &'db Core) -> ReadTxn<'db> {
        let meta = core.readers.begin();
        ReadTxn { core, meta }
    }

    fn view(&self) -> View<'_> {
        View::Map(MapView::new(&self.core.pager, self.meta.pages))
    }

    /// The id of the transaction whose commit this snapshot shows.
    pub fn id(&self) -> u64 {
        self.meta.txn_id
    }

    /// Opens table `name`, or [`Error::TableNotFound`].
    pub fn open_table(&self, name: &str) -> Result<Table<'_>> {
        match catalog_get(self.view(), &self.meta.catalog, name)? {
            Some(desc) => Ok(Table::new(self.view(), desc)),
            None => Err(Error::TableNotFound(name.to_owned())),
        }
    }

    /// Walks the whole snapshot and accounts for every page: each is reachable
    /// exactly once, or free; keys are sorted; leaves sit at one depth; overflow
    /// runs lie in bounds; entry counts match. The first problem found is an
    /// [`Error::Corrupted`] naming its page.
    pub fn check(&self) -> Result<CheckReport> {
        check::strict(self.check_report())
    }

    /// Walks the snapshot like [`check`](ReadTxn::check) but goes on past
    /// problems: the report lists every one found (`errors`, with pages) and
    /// counts leaked pages.
    pub fn check_report(&self) -> CheckReport {
        check::report(&self.core.pager, &self.meta)
    }

    /// Names of all tables, in order.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        catalog_names(self.view(), &self.meta.catalog)
    }
}

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        self.core.readers.end(self.meta.txn_id);
    }
}
