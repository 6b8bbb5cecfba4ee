//! openraft's own conformance suite for storage, run against larch.

use larch::Database;
use larch_raft::{LogStore, StateMachine, TypeConfig};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

/// Builds each store of the suite in a database of its own, in a directory
/// that lives as long as the store.
struct LarchBuilder;

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachine, TempDir> for LarchBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<TypeConfig>, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: the file is this test's alone.
        let db = unsafe { Database::open(dir.path().join("raft.larch")) }.unwrap();
        let (log, sm) = larch_raft::stores(db);
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(LarchBuilder).unwrap();
}
