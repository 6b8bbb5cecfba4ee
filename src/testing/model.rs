//! The expected contents of a database, and reading one back.

use std::collections::BTreeMap;

use crate::{Database, ReadTxn, Result};

/// Tables by name, each a map of keys to values.
pub type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Everything the last commit of `db` holds.
pub fn read_model(db: &Database) -> Result<Model> {
    read_snapshot(&db.begin_read()?)
}

/// Everything the snapshot of `r` holds.
pub fn read_snapshot(r: &ReadTxn) -> Result<Model> {
    let mut model = Model::new();
    for name in r.list_tables()? {
        // Every kind, as the byte API sees its tree.
        let table = r.open_any(&name)?;
        let mut entries = BTreeMap::new();
        for e in table.iter()? {
            let (k, v) = e?;
            entries.insert(k.to_vec(), v.to_vec());
        }
        if entries.len() as u64 != table.len() {
            return Err(crate::Error::Corrupted {
                page: 0,
                reason: "table length differs from its entries",
            });
        }
        model.insert(name, entries);
    }
    Ok(model)
}
