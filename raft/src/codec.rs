//! Storage errors and the encodings of what the tables hold.

use larch::{Key, ReadTxn, TableDefinition, TypedTable, Value};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A larch or decoding failure as openraft's storage error about `subject`.
pub(crate) fn io_error<NID: openraft::NodeId>(
    subject: ErrorSubject<NID>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<NID> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// Bytes from the file or the network that do not decode, as openraft's
/// storage error about `subject`.
pub(crate) fn decode_error<NID: openraft::NodeId>(
    subject: ErrorSubject<NID>,
    what: impl std::fmt::Display,
) -> StorageError<NID> {
    StorageIOError::new(subject, ErrorVerb::Read, AnyError::error(what)).into()
}

/// Table `def` as `r` sees it, or `None` if nothing has written it yet
/// (tables are created by their first write).
pub(crate) fn existing<'r, K: Key + 'static, V: Value + 'static>(
    r: &'r ReadTxn,
    def: TableDefinition<'_, K, V>,
) -> larch::Result<Option<TypedTable<'r, K, V>>> {
    match r.open_typed(def) {
        Ok(table) => Ok(Some(table)),
        Err(larch::Error::TableNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `value` as the bytes a table stores.
pub(crate) fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing types made of strings, integers and maps cannot fail.
    serde_json::to_vec(value).expect("a storage type serializes")
}

/// Bytes a table stored, as a `T`; bytes that do not decode are an error
/// (the file is never trusted).
pub(crate) fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice(bytes)
}
