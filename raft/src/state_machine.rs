//! The replicated key-value map, its applied log id and membership, and its
//! snapshots in larch tables.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use larch::{Database, TableDefinition};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StoredMembership,
};
use serde::de::DeserializeOwned;

use crate::codec::{decode_error, existing, from_bytes, io_error, to_bytes};
use crate::order::InstallGate;
use crate::snapshot::{self, SnapshotData};
use crate::{LOG_DURABILITY, Request, Response, STATE_DURABILITY, TypeConfig, blocking};

/// The map.
const DATA: TableDefinition<&str, &str> = TableDefinition::new("kv.data");
/// `applied` and `membership`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("kv.meta");
/// `meta` and `data` of the current snapshot.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("kv.snapshot");

const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
const SNAPSHOT_META: &str = "meta";
const SNAPSHOT_DATA: &str = "data";

type NodeId = u64;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// openraft's state machine over a larch database: a map of strings in the
/// table `kv.data`, the last applied log id and membership in `kv.meta`,
/// and the current snapshot in `kv.snapshot`.
///
/// Clones share the database, so an application keeps one to read the map
/// ([`get`](StateMachine::get)) while openraft owns another. A clone is
/// also the snapshot builder: it builds from a read transaction, so a
/// snapshot is one consistent state while applies go on.
#[derive(Clone)]
pub struct StateMachine {
    db: Database,
    gate: Arc<InstallGate>,
}

impl StateMachine {
    /// The state machine of `db`, and the gate its log store waits on
    /// before a purge.
    pub(crate) fn new(db: Database, gate: Arc<InstallGate>) -> Self {
        StateMachine { db, gate }
    }

    /// The index of the last entry applied, as the file holds it (0 if
    /// none, or if it cannot be read: the gate then only waits longer).
    pub(crate) fn applied_in_file(&self) -> u64 {
        self.db
            .begin_read()
            .ok()
            .and_then(|r| read_meta::<Option<LogId<NodeId>>>(&r, APPLIED).ok())
            .flatten()
            .flatten()
            .map_or(0, |id| id.index)
    }

    /// The database the state machine keeps its map in.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The value of `key` in the map as this node applied it.
    pub fn get(&self, key: &str) -> Result<Option<String>, StorageError<NodeId>> {
        let read = sm_error(ErrorVerb::Read);
        let r = self.db.begin_read().map_err(&read)?;
        match existing(&r, DATA).map_err(&read)? {
            Some(table) => Ok(table.get(key).map_err(&read)?.map(String::from)),
            None => Ok(None),
        }
    }

    /// Every entry of the map, in key order, and the last applied log id:
    /// one consistent state.
    #[allow(clippy::type_complexity)]
    pub fn dump(
        &self,
    ) -> Result<(Option<LogId<NodeId>>, Vec<(String, String)>), StorageError<NodeId>> {
        let read = sm_error(ErrorVerb::Read);
        let r = self.db.begin_read().map_err(&read)?;
        let applied = read_meta::<Option<LogId<NodeId>>>(&r, APPLIED)?.flatten();
        let pairs = match existing(&r, DATA).map_err(&read)? {
            Some(table) => table
                .iter()
                .map_err(&read)?
                .map(|e| e.map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect::<larch::Result<_>>()
                .map_err(&read)?,
            None => Vec::new(),
        };
        Ok((applied, pairs))
    }
}

/// The value under `key` in `kv.meta`, decoded.
fn read_meta<T: DeserializeOwned>(
    r: &larch::ReadTxn,
    key: &str,
) -> Result<Option<T>, StorageError<NodeId>> {
    let read = sm_error(ErrorVerb::Read);
    let Some(table) = existing(r, META).map_err(&read)? else {
        return Ok(None);
    };
    match table.get(key).map_err(&read)? {
        Some(bytes) => from_bytes(bytes)
            .map(Some)
            .map_err(|e| decode_error(ErrorSubject::StateMachine, format!("kv.meta {key}: {e}"))),
        None => Ok(None),
    }
}

/// A failure of the state machine's storage.
fn sm_error(verb: ErrorVerb) -> impl Fn(larch::Error) -> StorageError<NodeId> {
    move |e| io_error(ErrorSubject::StateMachine, verb, e)
}

/// A failure of the snapshot storage.
fn snapshot_error(verb: ErrorVerb) -> impl Fn(larch::Error) -> StorageError<NodeId> {
    move |e| io_error(ErrorSubject::Snapshot(None), verb, e)
}

/// A snapshot id unique to this build of it.
fn snapshot_id(last: Option<&LogId<NodeId>>) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    match last {
        Some(id) => format!("{}-{}-{nanos}", id.leader_id, id.index),
        None => format!("none-{nanos}"),
    }
}

/// Stores `meta` and `data` as the current snapshot in the transaction
/// `w`, unless it holds a newer one already.
fn store_snapshot(
    w: &larch::WriteTxn,
    meta: &Meta,
    data: &[u8],
) -> Result<(), StorageError<NodeId>> {
    let write = snapshot_error(ErrorVerb::Write);
    let mut table = w.open_typed(SNAPSHOT).map_err(&write)?;
    if let Some(bytes) = table.get(SNAPSHOT_META).map_err(&write)? {
        let stored: Meta = from_bytes(bytes).map_err(|e| {
            decode_error(
                ErrorSubject::Snapshot(None),
                format!("kv.snapshot meta: {e}"),
            )
        })?;
        if stored.last_log_id > meta.last_log_id {
            return Ok(());
        }
    }
    table
        .insert(SNAPSHOT_META, to_bytes(meta).as_slice())
        .map_err(&write)?;
    table.insert(SNAPSHOT_DATA, data).map_err(&write)?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let read = snapshot_error(ErrorVerb::Read);
        // One read transaction: the map, the applied id and the membership
        // of one commit, while applies go on.
        let r = self.db.begin_read().map_err(&read)?;
        let last_log_id = read_meta::<Option<LogId<NodeId>>>(&r, APPLIED)?.flatten();
        let last_membership = read_meta::<Membership>(&r, MEMBERSHIP)?.unwrap_or_default();
        let data = match existing(&r, DATA).map_err(&read)? {
            Some(table) => snapshot::encode(table.iter().map_err(&read)?),
            None => snapshot::encode(std::iter::empty()),
        }
        .map_err(&read)?;
        drop(r);
        let meta = Meta {
            snapshot_id: snapshot_id(last_log_id.as_ref()),
            last_log_id,
            last_membership,
        };
        let write = snapshot_error(ErrorVerb::Write);
        let mut w = blocking(|| self.db.begin_write()).map_err(&write)?;
        w.set_durability(STATE_DURABILITY);
        store_snapshot(&w, &meta, &data)?;
        blocking(|| w.commit()).map_err(&write)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::new(data)),
        })
    }
}

impl StateMachine {
    /// Replaces the map, its applied id and membership and the current
    /// snapshot with `bytes`, all in one commit, durable before it returns:
    /// the purge openraft sends with an install must never be durable
    /// without it.
    fn install(&self, meta: &Meta, bytes: Vec<u8>) -> Result<(), StorageError<NodeId>> {
        let signature = Some(meta.signature());
        let pairs = snapshot::decode(&bytes)
            .map_err(|e| decode_error(ErrorSubject::Snapshot(signature), e))?;
        let write = snapshot_error(ErrorVerb::Write);
        let mut w = blocking(|| self.db.begin_write()).map_err(&write)?;
        w.set_durability(LOG_DURABILITY);
        {
            let mut data = w.open_typed(DATA).map_err(&write)?;
            data.remove_range::<&str>(..).map_err(&write)?;
            for (k, v) in pairs {
                data.insert(k, v).map_err(&write)?;
            }
            drop(data);
            let mut m = w.open_typed(META).map_err(&write)?;
            m.insert(APPLIED, to_bytes(&meta.last_log_id).as_slice())
                .map_err(&write)?;
            m.insert(MEMBERSHIP, to_bytes(&meta.last_membership).as_slice())
                .map_err(&write)?;
            drop(m);
            store_snapshot(&w, meta, &bytes)?;
        }
        blocking(|| w.commit()).map_err(&write)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let read = sm_error(ErrorVerb::Read);
        let r = self.db.begin_read().map_err(&read)?;
        let applied = read_meta::<Option<LogId<NodeId>>>(&r, APPLIED)?.flatten();
        let membership = read_meta::<Membership>(&r, MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let write = sm_error(ErrorVerb::Write);
        let mut w = blocking(|| self.db.begin_write()).map_err(&write)?;
        w.set_durability(STATE_DURABILITY);
        let mut responses = Vec::new();
        let mut applied = None;
        {
            let mut data = w.open_typed(DATA).map_err(&write)?;
            let mut membership = None;
            for entry in entries {
                applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::default(),
                    EntryPayload::Normal(Request::Set { key, value }) => {
                        let previous = data.get(key.as_str()).map_err(&write)?.map(String::from);
                        data.insert(key.as_str(), value.as_str()).map_err(&write)?;
                        Response { previous }
                    }
                    EntryPayload::Normal(Request::Delete { key }) => {
                        let previous = data.get(key.as_str()).map_err(&write)?.map(String::from);
                        data.remove(key.as_str()).map_err(&write)?;
                        Response { previous }
                    }
                    EntryPayload::Membership(m) => {
                        membership = Some(Membership::new(Some(entry.log_id), m));
                        Response::default()
                    }
                };
                responses.push(response);
            }
            drop(data);
            let mut meta = w.open_typed(META).map_err(&write)?;
            if let Some(applied) = applied {
                meta.insert(APPLIED, to_bytes(&Some(applied)).as_slice())
                    .map_err(&write)?;
            }
            if let Some(membership) = membership {
                meta.insert(MEMBERSHIP, to_bytes(&membership).as_slice())
                    .map_err(&write)?;
            }
        }
        blocking(|| w.commit()).map_err(&write)?;
        if let Some(applied) = applied {
            self.gate.applied(applied.index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        self.gate.receiving();
        Ok(Box::new(SnapshotData::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        let installed = self.install(meta, snapshot.into_inner());
        // The purge waiting on it goes on, or, after a failure, leaves the
        // log as it is.
        match &installed {
            Ok(()) => self
                .gate
                .installed(meta.last_log_id.map_or(0, |id| id.index)),
            Err(_) => self.gate.install_failed(),
        }
        installed
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let read = snapshot_error(ErrorVerb::Read);
        let r = self.db.begin_read().map_err(&read)?;
        let Some(table) = existing(&r, SNAPSHOT).map_err(&read)? else {
            return Ok(None);
        };
        let (Some(meta), Some(data)) = (
            table.get(SNAPSHOT_META).map_err(&read)?,
            table.get(SNAPSHOT_DATA).map_err(&read)?,
        ) else {
            return Ok(None);
        };
        let meta: Meta = from_bytes(meta).map_err(|e| {
            decode_error(
                ErrorSubject::Snapshot(None),
                format!("kv.snapshot meta: {e}"),
            )
        })?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::new(data.to_vec())),
        }))
    }
}
